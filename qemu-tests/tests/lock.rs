//! The reboot semaphore (`agent::lock`) against real etcd on loopback, no
//! QEMU: many agents at once, a leader killed under them, an agent killed
//! while holding the lock, and etcd down while an agent waits. Every
//! invariant is checked on etcd's own history of the key (every revision
//! of it), not on what the agents say they did.
//!
//! Needs `etcd` (Debian's etcd-server); none of the TANDEM_* variables.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use agent::etcd::{Auth, Etcd, Tls};
use agent::lock::{Lock, Locked, Unlocked, Waits};
use anyhow::{Context, Result, bail, ensure};
use qemu_tests::etcd::{EtcdCluster, cpu_time};

/// Short waits, so the tests stay quick: 100 ms … 1 s backoff.
const WAITS: Waits = Waits {
    first: Duration::from_millis(100),
    cap: Duration::from_secs(1),
    watch: Duration::from_secs(5),
};

/// A random hold between `lo` and `hi` milliseconds.
fn hold(lo: u64, hi: u64) -> Duration {
    let r = (updater::backoff::random_unit() + 1.0) / 2.0;
    Duration::from_millis(lo + (r * (hi - lo) as f64) as u64)
}

fn client(urls: &[String]) -> Result<Etcd> {
    Ok(Etcd::new(urls, Auth::None, &Tls::default())?)
}

/// One agent's rounds: wait for a slot, hold it a while, give it back; the
/// longest `lock_wait` or unlock.
fn agent_rounds(
    urls: &[String],
    key: &str,
    id: &str,
    rounds: usize,
    hold_ms: (u64, u64),
    done: &AtomicUsize,
) -> Result<Duration> {
    let mut longest = Duration::ZERO;
    let etcd = client(urls)?;
    let lock = Lock::at_key(&etcd, key);
    for round in 0..rounds {
        let t = Instant::now();
        let l = lock
            .lock_wait(id, &WAITS, &|| false)
            .with_context(|| format!("{id} round {round}: lock"))?;
        // AlreadyHeld: the answer to our own compare-and-swap was lost
        // (the leader died under it) and the retry found it had landed;
        // etcd's history still shows one acquisition (checked after).
        ensure!(
            matches!(l, Locked::Acquired { .. } | Locked::AlreadyHeld { .. }),
            "{id} round {round}: {l:?}"
        );
        longest = longest.max(t.elapsed());
        std::thread::sleep(hold(hold_ms.0, hold_ms.1));
        let t = Instant::now();
        let u = lock
            .retry(&WAITS, &|| false, |l| l.unlock(id))
            .with_context(|| format!("{id} round {round}: unlock"))?;
        // NotHeld: likewise, our release landed but its answer was lost.
        ensure!(
            matches!(u, Unlocked::Released { .. } | Unlocked::NotHeld { .. }),
            "{id} round {round}: {u:?}"
        );
        longest = longest.max(t.elapsed());
        done.fetch_add(1, Ordering::SeqCst);
    }
    Ok(longest)
}

#[test]
fn fifty_agents_share_three_slots() -> Result<()> {
    const AGENTS: usize = 50;
    let cluster = EtcdCluster::start(1)?;
    let urls = cluster.client_urls();
    let key = "tandem-test/fifty/semaphore";
    let etcd = cluster.client()?;
    Lock::at_key(&etcd, key).set_max(3)?;

    let barrier = Arc::new(Barrier::new(AGENTS));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..AGENTS)
        .map(|i| {
            let (urls, barrier, done) = (urls.clone(), Arc::clone(&barrier), Arc::clone(&done));
            std::thread::spawn(move || {
                barrier.wait();
                agent_rounds(&urls, key, &format!("agent-{i:02}"), 1, (20, 100), &done)
            })
        })
        .collect();
    let mut longest = Duration::ZERO;
    for t in threads {
        longest = longest.max(t.join().expect("agent thread")?);
    }
    let took = started.elapsed();
    assert_eq!(done.load(Ordering::SeqCst), AGENTS);

    let rec = cluster.semaphore_history(key, 3)?;
    println!(
        "50 agents, max 3: all through in {:.2} s (longest wait for a slot {:.2} s); etcd history: {} revisions, {} acquisitions, {} releases, {} hand-offs, at most {} holders",
        took.as_secs_f64(),
        longest.as_secs_f64(),
        rec.revisions,
        rec.acquired.values().sum::<usize>(),
        rec.released,
        rec.handoffs,
        rec.peak
    );
    assert_eq!(rec.acquired.len(), AGENTS, "{:?}", rec.acquired);
    assert!(rec.acquired.values().all(|n| *n == 1), "{:?}", rec.acquired);
    assert_eq!(rec.released, AGENTS);
    assert_eq!(rec.peak, 3, "never full: no contention was tested");
    // Creation by set-max, then one revision per lock and per unlock.
    assert_eq!(rec.revisions, 1 + 2 * AGENTS);
    let last = rec.last.expect("a value");
    assert!(last.holders.is_empty(), "{last:?}");
    Ok(())
}

#[test]
fn leader_killed_while_agents_lock_and_unlock() -> Result<()> {
    const AGENTS: usize = 8;
    const ROUNDS: usize = 6;
    let mut cluster = EtcdCluster::start(3)?;
    let urls = cluster.client_urls();
    let key = "tandem-test/leader-killed/semaphore";
    let etcd = cluster.client()?;
    Lock::at_key(&etcd, key).set_max(2)?;

    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..AGENTS)
        .map(|i| {
            let (urls, done) = (urls.clone(), Arc::clone(&done));
            std::thread::spawn(move || {
                agent_rounds(&urls, key, &format!("node-{i}"), ROUNDS, (20, 60), &done)
            })
        })
        .collect();
    // Kill the leader once the agents are well under way.
    while done.load(Ordering::SeqCst) < AGENTS {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "agents made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let leader = cluster.wait_leader(Duration::from_secs(5))?;
    let at_kill = done.load(Ordering::SeqCst);
    cluster.kill(leader)?;
    let killed = Instant::now();
    println!(
        "killed leader m{leader} (SIGKILL) after {at_kill} of {} rounds",
        AGENTS * ROUNDS
    );
    let new_leader = cluster.wait_leader(Duration::from_secs(10))?;
    println!(
        "m{new_leader} leads {:.2} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    assert_ne!(new_leader, leader);
    let mut longest = Duration::ZERO;
    for t in threads {
        longest = longest.max(t.join().expect("agent thread")?);
    }
    println!(
        "all {} rounds done {:.2} s after the kill ({:.2} s in all; longest single lock_wait or unlock {:.2} s)",
        AGENTS * ROUNDS,
        killed.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64(),
        longest.as_secs_f64()
    );
    assert_eq!(done.load(Ordering::SeqCst), AGENTS * ROUNDS);
    cluster.restart(leader)?;

    let rec = cluster.semaphore_history(key, 2)?;
    println!(
        "etcd history: {} revisions, {} hand-offs, at most {} holders",
        rec.revisions, rec.handoffs, rec.peak
    );
    assert_eq!(rec.acquired.len(), AGENTS);
    assert!(
        rec.acquired.values().all(|n| *n == ROUNDS),
        "{:?}",
        rec.acquired
    );
    assert_eq!(rec.released, AGENTS * ROUNDS);
    let last = rec.last.expect("a value");
    assert!(last.holders.is_empty(), "{last:?}");
    Ok(())
}

/// A listener on a stopped member's client port that accepts and closes
/// every connection, noting when.
struct Knocks {
    stop: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<Instant>>,
}

impl Knocks {
    fn listen(url: &str) -> Result<Knocks> {
        let addr = url.trim_start_matches("http://");
        let listener = TcpListener::bind(addr).with_context(|| format!("cannot bind {addr}"))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicUsize::new(0));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut at = Vec::new();
            while flag.load(Ordering::SeqCst) == 0 {
                match listener.accept() {
                    Ok((conn, _)) => {
                        at.push(Instant::now());
                        drop(conn);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            at
        });
        Ok(Knocks { stop, thread })
    }

    /// Closes the port; when each connection came.
    fn stop(self) -> Vec<Instant> {
        self.stop.store(1, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// A `lock-agent` process and the lines it prints.
struct AgentProc {
    child: Child,
    lines: Receiver<String>,
}

impl AgentProc {
    fn start(
        urls: &[String],
        key: &str,
        holder: &str,
        action: &str,
        extra: &[&str],
    ) -> Result<AgentProc> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lock-agent"))
            .arg(urls.join(","))
            .args([key, holder, action])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start lock-agent")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(AgentProc { child, lines })
    }

    /// The next line, within `timeout`.
    fn line(&self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => bail!("lock-agent said nothing for {timeout:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("lock-agent ended without a word"),
        }
    }

    /// Runs to the end: its last line.
    fn outcome(mut self) -> Result<String> {
        ensure!(self.line(Duration::from_secs(10))? == "started");
        let l = self.line(Duration::from_secs(20))?;
        let status = self.child.wait()?;
        ensure!(status.success(), "lock-agent: {status}");
        Ok(l)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_killed_while_holding_finds_its_own_hold() -> Result<()> {
    let cluster = EtcdCluster::start(3)?;
    let urls = cluster.client_urls();
    let key = "tandem-test/agent-killed/semaphore";
    let etcd = cluster.client()?;
    let lock = Lock::at_key(&etcd, key);

    let mut a = AgentProc::start(&urls, key, "node-a", "hold", &[])?;
    assert_eq!(a.line(Duration::from_secs(10))?, "started");
    assert_eq!(a.line(Duration::from_secs(20))?, "acquired");
    a.child.kill()?; // SIGKILL
    a.child.wait()?;
    assert_eq!(lock.status()?.semaphore.holders, ["node-a"]);

    let run = |holder: &str, action: &str| {
        AgentProc::start(&urls, key, holder, action, &[]).and_then(AgentProc::outcome)
    };
    assert_eq!(run("node-b", "lock")?, "full");
    assert_eq!(run("node-a", "lock")?, "already-held");
    assert_eq!(run("node-a", "unlock")?, "released");
    assert_eq!(run("node-a", "unlock")?, "not-held");
    assert_eq!(run("node-b", "lock")?, "acquired");
    assert_eq!(run("node-b", "unlock")?, "released");

    let rec = cluster.semaphore_history(key, 1)?;
    println!(
        "etcd history: {} revisions, acquisitions {:?}",
        rec.revisions, rec.acquired
    );
    assert_eq!(rec.acquired.get("node-a"), Some(&1));
    assert_eq!(rec.acquired.get("node-b"), Some(&1));
    // Created by the first lock, then unlock, lock, unlock.
    assert_eq!(rec.revisions, 4);
    Ok(())
}

#[test]
fn etcd_down_while_waiting_backs_off_without_spinning() -> Result<()> {
    const CAP_MS: u64 = 3000;
    const OUTAGE: Duration = Duration::from_secs(15);
    let mut cluster = EtcdCluster::start(3)?;
    let urls = cluster.client_urls();
    let key = "tandem-test/etcd-down/semaphore";
    let etcd = cluster.client()?;
    let lock = Lock::at_key(&etcd, key);
    assert!(matches!(lock.lock("blocker")?, Locked::Acquired { .. }));

    let w = AgentProc::start(&urls, key, "node-w", "wait", &["200", &CAP_MS.to_string()])?;
    assert_eq!(w.line(Duration::from_secs(10))?, "started");
    // Let it find the semaphore full and watch it.
    std::thread::sleep(Duration::from_secs(1));
    let pid = w.child.id();
    let revisions_before = cluster.history(key)?.len();

    cluster.stop_all()?;
    let cpu_before = cpu_time(pid)?;
    let down = Instant::now();
    // Meanwhile, something on member 0's client port that accepts and
    // hangs up at once: when the agent knocks is its backoff.
    let knocks = Knocks::listen(&urls[0])?;
    while down.elapsed() < OUTAGE {
        match w.lines.recv_timeout(Duration::from_millis(500)) {
            Ok(l) => bail!("lock-agent said {l:?} while etcd was down"),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => bail!("lock-agent ended while etcd was down"),
        }
    }
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    println!(
        "etcd down {:.1} s: lock-agent used {:.3} s CPU (utime+stime) meanwhile, {:.3} s since its start",
        down.elapsed().as_secs_f64(),
        cpu.as_secs_f64(),
        cpu_time(pid)?.as_secs_f64()
    );
    let knocks = knocks.stop();
    let gaps: Vec<String> = knocks
        .windows(2)
        .map(|w| format!("{:.2}", (w[1] - w[0]).as_secs_f64()))
        .collect();
    println!(
        "lock-agent tried member 0 {} times while etcd was down; seconds between tries: {}",
        knocks.len(),
        gaps.join(" ")
    );
    assert!(
        cpu < Duration::from_millis(300),
        "busy loop: {cpu:?} of CPU in {OUTAGE:?}"
    );
    // 200 ms doubling to 3 s: about 8 tries in 15 s, not hundreds.
    assert!(
        (2..=20).contains(&knocks.len()),
        "{} tries in {OUTAGE:?}",
        knocks.len()
    );

    cluster.start_all()?;
    let up = Instant::now();
    lock.retry(&WAITS, &|| false, |l| l.unlock("blocker"))?;
    let got = w.line(Duration::from_millis(CAP_MS) + Duration::from_secs(5))?;
    let after = up.elapsed();
    println!(
        "etcd back: lock-agent {got} {:.2} s after etcd answered again (backoff cap {:.1} s)",
        after.as_secs_f64(),
        CAP_MS as f64 / 1000.0
    );
    assert_eq!(got, "acquired");
    assert!(
        after < Duration::from_millis(CAP_MS + 1500),
        "took {after:?}, cap {CAP_MS} ms"
    );

    let rec = cluster.semaphore_history(key, 1)?;
    // Nothing was written while etcd was down (obviously), nor before
    // the blocker's unlock: then the unlock and node-w's lock.
    assert_eq!(rec.revisions, revisions_before + 2);
    assert_eq!(rec.acquired.get("node-w"), Some(&1));
    assert_eq!(
        rec.last.map(|s| s.holders),
        Some(vec!["node-w".to_string()])
    );
    Ok(())
}
