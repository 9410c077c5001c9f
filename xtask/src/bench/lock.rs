//! `cargo xtask bench lock`: the reboot semaphore (`agent::lock`) on a real
//! one-member etcd on loopback, next to etcd's own floor in the same run: a
//! bare compare-and-swap transaction. Then hand-offs per second with many
//! contenders for one slot, checked afterwards on etcd's history of the key.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use qemu_tests::agent::etcd::{Etcd, Expect};
use qemu_tests::agent::lock::{Lock, Locked, Unlocked, Waits};
use qemu_tests::etcd::EtcdCluster;

use super::{Latency, percentiles};
use crate::setup;

/// Samples of each latency.
const N: usize = 500;
/// Contender threads for the hand-off rate.
const CONTENDERS: usize = 50;
/// How long the contenders run.
const CONTENTION: Duration = Duration::from_secs(10);

/// Runs the benchmark.
pub fn run() -> Result<()> {
    setup::run()?;
    eprintln!("bench lock: starting a one-member etcd on loopback");
    let cluster = EtcdCluster::start(1)?;
    let etcd = cluster.client()?;
    let version = std::process::Command::new(qemu_tests::etcd::ETCD)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();

    // (a) etcd's floor: one compare-and-swap transaction per sample.
    let cas = cas_latencies(&etcd)?;
    // ... and a linearizable read, the other half of every lock operation.
    let read = read_latencies(&etcd)?;
    // (b) lock + unlock, nobody else around.
    let round_trip = lock_round_trips(&etcd)?;
    // (c) many contenders, one slot.
    eprintln!("bench lock: {CONTENDERS} contenders for one slot for {CONTENTION:?}");
    let contention = hand_offs(&cluster)?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "bench lock: {version}, 1 member on loopback (data on disk, fsync per write), {N} samples each"
    );
    println!("                                          p50        p99       mean");
    println!(
        "  compare-and-swap txn (Etcd::cas)     {:7.2} ms {:7.2} ms {:7.2} ms",
        ms(cas.p50),
        ms(cas.p99),
        ms(cas.mean)
    );
    println!(
        "  linearizable read (Etcd::range)      {:7.2} ms {:7.2} ms {:7.2} ms",
        ms(read.p50),
        ms(read.p99),
        ms(read.mean)
    );
    println!(
        "  lock + unlock (Lock::lock, unlock)   {:7.2} ms {:7.2} ms {:7.2} ms   (2 linearizable reads + 2 CAS)",
        ms(round_trip.p50),
        ms(round_trip.p99),
        ms(round_trip.mean)
    );
    println!(
        "  ratio lock round trip / CAS (p50)    {:7.2}",
        round_trip.p50.as_secs_f64() / cas.p50.as_secs_f64()
    );
    println!(
        "  hand-offs, {CONTENDERS} contenders, max 1: {} in {:.1} s = {:.0} per second ({} revisions of the key; never more than one holder)",
        contention.hand_offs,
        contention.elapsed.as_secs_f64(),
        contention.hand_offs as f64 / contention.elapsed.as_secs_f64(),
        contention.revisions
    );
    Ok(())
}

fn cas_latencies(etcd: &Etcd) -> Result<Latency> {
    let key = "tandem-bench/cas";
    let mut rev = etcd
        .cas(key, Expect::Absent, b"0", None)?
        .context("the scratch key exists already")?;
    // A few unmeasured, so connections are open.
    let mut samples = Vec::with_capacity(N);
    for i in 0..N + 20 {
        let value = i.to_string();
        let started = Instant::now();
        rev = etcd
            .cas(key, Expect::ModRevision(rev), value.as_bytes(), None)?
            .context("the scratch key changed under the benchmark")?;
        if i >= 20 {
            samples.push(started.elapsed());
        }
    }
    Ok(percentiles(samples))
}

fn read_latencies(etcd: &Etcd) -> Result<Latency> {
    let mut samples = Vec::with_capacity(N);
    for i in 0..N + 20 {
        let started = Instant::now();
        etcd.range("tandem-bench/cas")?;
        if i >= 20 {
            samples.push(started.elapsed());
        }
    }
    Ok(percentiles(samples))
}

fn lock_round_trips(etcd: &Etcd) -> Result<Latency> {
    let lock = Lock::at_key(etcd, "tandem-bench/round-trip/semaphore");
    let mut samples = Vec::with_capacity(N);
    for i in 0..N + 20 {
        let started = Instant::now();
        let locked = lock.lock("bench")?;
        let unlocked = lock.unlock("bench")?;
        let took = started.elapsed();
        ensure!(
            matches!(locked, Locked::Acquired { .. })
                && matches!(unlocked, Unlocked::Released { .. }),
            "single contender: {locked:?} then {unlocked:?}"
        );
        if i >= 20 {
            samples.push(took);
        }
    }
    Ok(percentiles(samples))
}

struct Contention {
    hand_offs: u64,
    elapsed: Duration,
    revisions: usize,
}

/// `CONTENDERS` threads, each its own client, lock and unlock in a loop
/// on a semaphore with max 1 for `CONTENTION`; then the key's history is
/// checked: one holder at most at every revision.
fn hand_offs(cluster: &EtcdCluster) -> Result<Contention> {
    let key = "tandem-bench/contention/semaphore";
    let etcd = cluster.client()?;
    Lock::at_key(&etcd, key).set_max(1)?;
    let urls = cluster.client_urls();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let waits = Waits {
        first: Duration::from_millis(50),
        cap: Duration::from_secs(1),
        watch: Duration::from_secs(1),
    };
    let threads: Vec<_> = (0..CONTENDERS)
        .map(|i| {
            let (urls, stop, count) = (urls.clone(), Arc::clone(&stop), Arc::clone(&count));
            std::thread::spawn(move || -> Result<()> {
                let etcd = Etcd::new(
                    &urls,
                    qemu_tests::agent::etcd::Auth::None,
                    &Default::default(),
                )?;
                let lock = Lock::at_key(&etcd, key);
                let id = format!("contender-{i:02}");
                let stopped = || stop.load(Ordering::SeqCst);
                while !stopped() {
                    match lock.lock_wait(&id, &waits, &stopped) {
                        Ok(_) => {}
                        Err(qemu_tests::agent::lock::Error::Stopped { .. }) => break,
                        Err(e) => return Err(e.into()),
                    }
                    if !stopped() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    lock.retry(&waits, &|| false, |l| l.unlock(&id))?;
                }
                Ok(())
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(CONTENTION);
    stop.store(true, Ordering::SeqCst);
    let hand_offs = count.load(Ordering::SeqCst);
    let elapsed = started.elapsed();
    for t in threads {
        match t.join() {
            Ok(r) => r?,
            Err(_) => bail!("a contender thread panicked"),
        }
    }
    // Never two holders, from etcd's own record.
    let history = cluster.semaphore_history(key, 1)?;
    Ok(Contention {
        hand_offs,
        elapsed,
        revisions: history.revisions,
    })
}
