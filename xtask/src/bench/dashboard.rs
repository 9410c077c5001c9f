//! `cargo xtask bench dashboard`: `tandem dashboard` over a real
//! one-member etcd holding 1,000 node records (a rollout under way), with a
//! repository channel. Each page is timed as a client sees it (connect,
//! request, whole body), the dashboard reading etcd and the repository for
//! every request (`--refresh 0s`, its worst case) and then with its
//! default one-second snapshot. The reference, in the same run: etcd's
//! own answer to the range of those records (JSON over its gateway), the
//! floor of any fresh answer.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use qemu_tests::dashboard::{self, Dashboard};
use qemu_tests::etcd::EtcdCluster;

use super::{Latency, percentiles};
use crate::{artifacts, setup};

/// Nodes in the fleet.
const NODES: usize = 1000;
/// Samples per figure.
const N: usize = 50;
/// The goal for an answer with 1,000 nodes.
const GOAL: Duration = Duration::from_millis(100);

/// Runs the benchmark.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    eprintln!("bench dashboard: a one-member etcd on loopback with {NODES} node records");
    let cluster = EtcdCluster::start(1)?;
    let etcd = cluster.client()?;
    let now = updater::clock::now_unix();
    let (records, _) = dashboard::large_fleet(NODES, "bench", now)?;
    dashboard::put_records(&etcd, &records)?;
    let repo = tempfile_dir()?;
    write_channel(&repo, now)?;
    let urls = cluster.client_urls();

    // The reference: etcd's own answer to the read every fresh page needs
    // (the range of every node record, as JSON over a new connection, as
    // the timed GETs below), parsed, nothing else.
    let range =
        r#"{"key":"dGFuZGVtL2ZsZWV0L25vZGVzLw==","range_end":"dGFuZGVtL2ZsZWV0L25vZGVzMA=="}"#;
    let mut samples = Vec::with_capacity(N);
    for i in 0..N + 5 {
        let started = Instant::now();
        let answer = qemu_tests::etcd::post(&urls[0], "/v3/kv/range", range, None)?;
        let took = started.elapsed();
        let n = answer["kvs"].as_array().map_or(0, Vec::len);
        ensure!(n == NODES, "{n} records read back");
        if i >= 5 {
            samples.push(took);
        }
    }
    let floor = percentiles(samples);

    let fresh = Dashboard::start(&a.tandem, &urls, Some(&repo), None, &["--refresh", "0s"])?;
    let cached = Dashboard::start(&a.tandem, &urls, Some(&repo), None, &[])?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "bench dashboard: {NODES} nodes in a one-member etcd on loopback, {N} requests each, one at a time"
    );
    println!(
        "                                                p50        p99      bytes   p50 / etcd range"
    );
    let line = |what: &str, l: &Latency, bytes: usize| {
        println!(
            "  {what:<40} {:7.1} ms {:7.1} ms {:>8}   {:5.2}",
            ms(l.p50),
            ms(l.p99),
            bytes,
            l.p50.as_secs_f64() / floor.p50.as_secs_f64()
        );
    };
    line("etcd range of the records (reference)", &floor, 0);
    let mut worst = Duration::ZERO;
    for path in ["/", "/fragment", "/api/fleet", "/metrics"] {
        let (l, bytes) = timed(&fresh, path)?;
        worst = worst.max(l.p99);
        line(&format!("GET {path} (read for each request)"), &l, bytes);
    }
    let (l, bytes) = timed(&cached, "/")?;
    line("GET / (1 s snapshot, the default)", &l, bytes);
    println!(
        "  slowest p99 reading for each request: {:.1} ms (goal < {} ms: {})",
        ms(worst),
        GOAL.as_millis(),
        if worst < GOAL { "met" } else { "MISSED" }
    );
    let _ = std::fs::remove_dir_all(&repo);
    Ok(())
}

/// `N` GETs of `path` (after a few unmeasured): latencies and body size.
fn timed(d: &Dashboard, path: &str) -> Result<(Latency, usize)> {
    let mut samples = Vec::with_capacity(N);
    let mut bytes = 0;
    for i in 0..N + 3 {
        let started = Instant::now();
        let (status, _, body) = d.get(path)?;
        let took = started.elapsed();
        ensure!(status == 200, "GET {path}: {status}");
        bytes = body.len();
        if i >= 3 {
            samples.push(took);
        }
    }
    Ok((percentiles(samples), bytes))
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = crate::util::out_dir().join("bench-dashboard-repo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bench/channels"))?;
    Ok(dir)
}

/// A channel pointer for 1.1.0 rolling out over two hours (unsigned: the
/// dashboard checks signatures only when given keys).
fn write_channel(repo: &std::path::Path, now: u64) -> Result<()> {
    let pointer = serde_json::json!({
        "format": 1,
        "image": "bench",
        "channel": "stable",
        "version": "1.1.0",
        "manifest": { "path": "bench/1.1.0/manifest.json", "size": 1, "sha256": "00" },
        "rollout": { "start": now - 1800, "duration_secs": 7200 },
        "issued": now - 1800,
        "expires": now + 86_400,
    });
    let envelope = serde_json::json!({ "signed": pointer.to_string(), "signatures": [] });
    std::fs::write(
        repo.join("bench/channels/stable.json"),
        serde_json::to_vec(&envelope)?,
    )?;
    Ok(())
}
