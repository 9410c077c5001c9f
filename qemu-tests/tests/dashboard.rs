//! The fleet dashboard (`tandem dashboard`) on a real etcd and a real
//! update repository, read by a real headless Chromium and the Prometheus
//! client's parser.
//!
//! The fleet is a recorded state played into etcd the way agents write it
//! (records on a lease through the agent's own `Presence`, the lock taken
//! and released through `Lock`, the failure recorded through
//! `fleet::record_failure`): a full three-node rollout costs minutes of CI
//! for each moment, and `cluster.rs` already shows the page on a real
//! one after a rollback. The moments:
//!
//! 1. mid-rollout: one node on trial holding the lock, one waiting for it,
//!    one downloading, one waiting for its turn, one not seen, one whose
//!    provisioning failed;
//! 2. after a rollback: the version recorded as failed, the others staying
//!    where they are, the silent node's record expired.
//!
//! And a fleet of 1,000 records renders, with metrics that add up.

use agent::etcd::Etcd;
use agent::fleet::{
    self, FailedRecord, NODES_PREFIX, NodeRecord, Presence, Progress, RollbackRecord,
};
use agent::lock::Lock;
use agent::semaphore;
use anyhow::{Context, Result, ensure};
use qemu_tests::Env;
use qemu_tests::dashboard::{self, Dashboard, parse_metrics, value};
use qemu_tests::etcd::EtcdCluster;
use qemu_tests::fixtures::{Build, Fixtures, IMAGE};
use tandem_contract::provision::ProvisionState;
use tandem_contract::{AgentState, BootHealthKind, Slot, UpdateStateKind, Version};

fn v(s: &str) -> Version {
    s.parse().expect("version")
}

fn now() -> u64 {
    updater::clock::now_unix()
}

/// A node as an agent on a confirmed 1.0.0 writes it.
fn node(i: usize) -> NodeRecord {
    NodeRecord {
        machine_id: format!("{i:032x}"),
        hostname: format!("worker-{i}"),
        group: semaphore::DEFAULT_GROUP.into(),
        version: Some(v("1.0.0")),
        slot: Some(Slot::A),
        update_state: Some(UpdateStateKind::Idle),
        agent_state: Some(AgentState::Idle),
        boot: Some(BootHealthKind::Confirmed),
        last_seen: now(),
        image: Some(IMAGE.into()),
        channel: Some("stable".into()),
        update_since: Some(now() - 3600),
        ..NodeRecord::default()
    }
}

/// The `<tr>` of a node in the DOM.
fn row<'a>(dom: &'a str, r: &NodeRecord) -> Result<&'a str> {
    let at = dom
        .find(&format!("data-machine-id=\"{}\"", r.machine_id))
        .with_context(|| format!("{} is not on the page", r.hostname))?;
    let end = dom[at..].find("</tr>").context("an unterminated row")?;
    Ok(&dom[at..at + end])
}

/// The text of the `class="…"` cell of a row.
fn cell<'a>(row: &'a str, class: &str) -> Result<&'a str> {
    let at = row
        .find(&format!("class=\"{class}\">"))
        .with_context(|| format!("no {class} cell in {row}"))?;
    let rest = &row[at + class.len() + 9..];
    Ok(&rest[..rest.find("</td>").context("an unterminated cell")?])
}

/// Checks a node's version and reason on the page.
fn shows(dom: &str, r: &NodeRecord, version: &str, reason: &[&str]) -> Result<()> {
    let row = row(dom, r)?;
    let shown = cell(row, "version")?;
    ensure!(
        shown == version,
        "{}: version {shown}, not {version}",
        r.hostname
    );
    let why = cell(row, "why")?;
    for part in reason {
        ensure!(
            why.contains(part),
            "{}: the reason {why:?} does not say {part:?}",
            r.hostname
        );
    }
    eprintln!("{:<9} {version:<6} {why}", r.hostname);
    Ok(())
}

/// Loads the page as a browser does (its script runs for 5 s of virtual
/// time, so it refreshes itself at least once), and keeps screenshots.
fn look(d: &Dashboard, moment: &str) -> Result<String> {
    let dom = dashboard::dom(&d.url("/"), 5000)?;
    for (suffix, w, h) in [("", 1280, 1100), ("-phone", 390, 2400)] {
        let png = dashboard::screenshot_path(&format!("dashboard-{moment}{suffix}"));
        dashboard::screenshot(&d.url("/"), &png, w, h)?;
        eprintln!("screenshot: {}", png.display());
    }
    Ok(dom)
}

struct Fleet {
    _etcd: EtcdCluster,
    client: Etcd,
    presences: Vec<Presence>,
}

impl Fleet {
    fn start(n: usize) -> Result<Fleet> {
        let etcd = EtcdCluster::start(1)?;
        let client = etcd.client()?;
        Lock::new(&client, semaphore::DEFAULT_GROUP).set_max(1)?;
        Ok(Fleet {
            _etcd: etcd,
            client,
            presences: (0..n).map(|_| Presence::default()).collect(),
        })
    }

    /// Writes `r` as node `i`'s agent does (on its lease).
    fn publish(&mut self, i: usize, r: &NodeRecord) -> Result<()> {
        self.presences[i].publish(&self.client, r)?;
        Ok(())
    }
}

#[test]
fn dashboard_says_why_each_node_is_where_it_is_at_two_moments_of_a_rollout() -> Result<()> {
    let env = Env::get()?;
    let fixtures = Fixtures::get(&env)?;
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    let key = fixtures.key.clone();
    fixtures.publish(&repo, "stable", Build::V1, &key, &[])?;
    // 1.1.0 rolls out over two hours from ten minutes ago.
    let start = (now() - 600).to_string();
    fixtures.publish(
        &repo,
        "stable",
        Build::V2,
        &key,
        &["--rollout-start", &start, "--rollout-duration", "2h"],
    )?;
    let trust = fixtures.dir.join("keys/test-release.pub");

    let mut fleet = Fleet::start(7)?;
    let d = Dashboard::start(
        &env.tandem,
        &[fleet.client.endpoint().to_string()],
        Some(&repo),
        Some(&trust),
        &["--refresh", "0s"],
    )?;

    // Moment 1: mid-rollout.
    let t = now();
    let mut holder = node(1);
    holder.version = Some(v("1.1.0"));
    holder.slot = Some(Slot::B);
    holder.boot = Some(BootHealthKind::Checking);
    holder.agent_state = Some(AgentState::HoldingLock);
    holder.lock = true;
    holder.lock_since = Some(t - 120);
    let mut waiter = node(2);
    waiter.update_state = Some(UpdateStateKind::UpdatedNeedReboot);
    waiter.pending_version = Some(v("1.1.0"));
    waiter.agent_state = Some(AgentState::WaitingForLock);
    waiter.update_since = Some(t - 90);
    let mut later = node(3);
    later.update_state = Some(UpdateStateKind::UpdateAvailable);
    later.available = Some(v("1.1.0"));
    later.eligible_at = Some(t + 3600);
    let mut downloading = node(4);
    downloading.update_state = Some(UpdateStateKind::Downloading);
    downloading.progress = Some(Progress::new(
        v("1.1.0"),
        UpdateStateKind::Downloading,
        47,
        100,
    ));
    let mut silent = node(5);
    silent.last_seen = t - 300;
    let mut unprovisioned = node(6);
    unprovisioned.config = Some(ProvisionState::Failed);
    unprovisioned.config_errors =
        vec!["user-data:3:1: unknown key `usrs` (did you mean `users`?)".into()];

    Lock::new(&fleet.client, semaphore::DEFAULT_GROUP).lock(&holder.machine_id)?;
    for (i, r) in [&holder, &waiter, &later, &downloading, &unprovisioned]
        .into_iter()
        .enumerate()
    {
        fleet.publish(i, r)?;
    }
    // The silent node's last record, written before it went quiet.
    fleet.client.put(
        &format!("{NODES_PREFIX}{}", silent.machine_id),
        &serde_json::to_vec(&silent)?,
        None,
    )?;

    let dom = look(&d, "mid-rollout")?;
    shows(
        &dom,
        &holder,
        "1.1.0",
        &[
            "running 1.1.0 on trial, holding the reboot lock since",
            "until its health is confirmed",
        ],
    )?;
    shows(
        &dom,
        &waiter,
        "1.0.0",
        &["1.1.0 installed; waiting for the reboot lock held by worker-1 since"],
    )?;
    shows(
        &dom,
        &later,
        "1.0.0",
        &["waiting for its rollout turn at", "UTC (1.1.0)"],
    )?;
    shows(&dom, &downloading, "1.0.0", &["downloading 1.1.0: 45 %"])?;
    shows(&dom, &silent, "1.0.0", &["not seen for 5 min"])?;
    shows(
        &dom,
        &unprovisioned,
        "1.0.0",
        &["provisioning failed at line 3 of its user-data: unknown key `usrs`"],
    )?;
    ensure!(
        dom.contains("1 of 1") && dom.contains("worker-1 since"),
        "the lock section does not show worker-1 holding it"
    );
    ensure!(
        dom.contains("1.1.0 <span class=\"muted\">(signature verified)</span>"),
        "the channel does not show its verified version"
    );
    // The page refreshed itself without a reload.
    let refreshes = dom
        .split("data-refreshes=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    ensure!(refreshes >= 1, "the page never refreshed itself");

    let (status, headers, text) = d.get("/metrics")?;
    ensure!(status == 200, "/metrics: {status}");
    ensure!(
        headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{headers:?}"
    );
    let (samples, types) = parse_metrics(&text)?;
    ensure!(
        types.values().all(|t| t == "gauge"),
        "families that are not gauges: {types:?}"
    );
    let state = |version: &str, state: &str| {
        value(
            &samples,
            "tandem_fleet_nodes",
            &[
                ("channel", "stable"),
                ("version", version),
                ("update_state", state),
            ],
        )
    };
    ensure!(state("1.1.0", "idle")? == 1.0);
    ensure!(state("1.0.0", "updated-need-reboot")? == 1.0);
    ensure!(state("1.0.0", "downloading")? == 1.0);
    ensure!(
        state("1.0.0", "idle")? == 2.0,
        "the silent and unprovisioned nodes"
    );
    let total: f64 = samples
        .iter()
        .filter(|s| s.name == "tandem_fleet_nodes")
        .map(|s| s.value)
        .sum();
    ensure!(total == 6.0, "tandem_fleet_nodes adds up to {total}, not 6");
    let phase = |p: &str| {
        value(
            &samples,
            "tandem_rollout_nodes",
            &[("channel", "stable"), ("version", "1.1.0"), ("phase", p)],
        )
    };
    ensure!(phase("nodes")? == 6.0);
    ensure!(phase("downloading")? == 1.0);
    ensure!(phase("installed")? == 1.0);
    ensure!(phase("rebooted")? == 1.0);
    ensure!(phase("confirmed")? == 0.0);
    let group = [("group", "default")];
    ensure!(value(&samples, "tandem_reboot_lock_max", &group)? == 1.0);
    ensure!(value(&samples, "tandem_reboot_lock_holders", &group)? == 1.0);
    ensure!(value(&samples, "tandem_reboot_lock_waiting_nodes", &group)? == 1.0);
    let wait = value(&samples, "tandem_reboot_lock_longest_wait_seconds", &group)?;
    ensure!((90.0..200.0).contains(&wait), "longest wait {wait}");
    let held = value(
        &samples,
        "tandem_reboot_lock_held_seconds",
        &[("hostname", "worker-1")],
    )?;
    ensure!((120.0..250.0).contains(&held), "held for {held}");
    ensure!(value(&samples, "tandem_fleet_nodes_not_seen", &[])? == 1.0);
    ensure!(value(&samples, "tandem_fleet_failed_versions", &[])? == 0.0);
    ensure!(
        value(
            &samples,
            "tandem_dashboard_source_up",
            &[("source", "repository")]
        )? == 1.0
    );

    // Moment 2: 1.1.0 did not come up on worker-1, which rolled back,
    // recorded it for the cluster and gave the lock back; worker-2 will not
    // reboot into it; the silent node's record expired.
    let t = now();
    let reason = "health check `app` failed: exit status 1";
    let mut rolled = node(1);
    rolled.update_state = Some(UpdateStateKind::RolledBack);
    rolled.rollback = Some(RollbackRecord {
        version: v("1.1.0"),
        reason: reason.into(),
        at: t - 30,
        evidence: None,
    });
    fleet::record_failure(
        &fleet.client,
        &FailedRecord {
            version: v("1.1.0"),
            machine_id: rolled.machine_id.clone(),
            hostname: rolled.hostname.clone(),
            reason: reason.into(),
            at: t - 25,
        },
    )?;
    Lock::new(&fleet.client, semaphore::DEFAULT_GROUP).unlock(&rolled.machine_id)?;
    let mut blocked = waiter.clone();
    blocked.agent_state = Some(AgentState::Blocked);
    let stays = node(3);
    let mut done_downloading = node(4);
    done_downloading.update_state = Some(UpdateStateKind::Idle);
    for (i, r) in [&rolled, &blocked, &stays, &done_downloading, &unprovisioned]
        .into_iter()
        .enumerate()
    {
        fleet.publish(i, r)?;
    }
    let key = format!("{NODES_PREFIX}{}", silent.machine_id);
    let kv = fleet
        .client
        .range(&key)?
        .context("the silent node's record")?;
    fleet
        .client
        .delete(&key, agent::etcd::Expect::ModRevision(kv.mod_revision))?;

    let dom = look(&d, "after-rollback")?;
    shows(&dom, &rolled, "1.0.0", &["rolled back 1.1.0 at", reason])?;
    shows(
        &dom,
        &blocked,
        "1.0.0",
        &[
            "stays on 1.0.0: 1.1.0 failed on worker-1",
            "forget-failed 1.1.0",
        ],
    )?;
    shows(
        &dom,
        &stays,
        "1.0.0",
        &["stays on 1.0.0: 1.1.0 failed on worker-1"],
    )?;
    shows(
        &dom,
        &silent,
        "1.0.0",
        &["not seen for", "its record expired"],
    )?;
    ensure!(
        dom.contains("data-version=\"1.1.0\"><td data-label=\"Version\"><strong>⚠ 1.1.0</strong>"),
        "the failed versions do not list 1.1.0"
    );
    ensure!(dom.contains("0 of 1"), "the lock is not shown free");
    ensure!(
        dom.contains("⚠ stopped: 1.1.0 failed on worker-1 at"),
        "the channel does not say its rollout stopped"
    );

    let (_, _, text) = d.get("/metrics")?;
    let (samples, _) = parse_metrics(&text)?;
    ensure!(value(&samples, "tandem_fleet_failed_versions", &[])? == 1.0);
    ensure!(
        value(
            &samples,
            "tandem_fleet_failed_version_timestamp_seconds",
            &[("version", "1.1.0"), ("hostname", "worker-1")]
        )? == (t - 25) as f64
    );
    ensure!(
        value(
            &samples,
            "tandem_fleet_rolled_back_nodes",
            &[("channel", "stable")]
        )? == 1.0
    );
    ensure!(value(&samples, "tandem_reboot_lock_holders", &group)? == 0.0);
    ensure!(value(&samples, "tandem_fleet_nodes_not_seen", &[])? == 1.0);

    // JSON for machines; and the page is read-only.
    let (status, _, json) = d.get("/api/fleet")?;
    ensure!(status == 200);
    let view: serde_json::Value = serde_json::from_str(&json)?;
    ensure!(view["nodes"].as_array().map(Vec::len) == Some(6), "{json}");
    ensure!(view["failed"][0]["version"] == "1.1.0", "{json}");
    Ok(())
}

#[test]
fn dashboard_renders_a_fleet_of_a_thousand_nodes_that_adds_up() -> Result<()> {
    const N: usize = 1000;
    let env = Env::get()?;
    let etcd = EtcdCluster::start(1)?;
    let client = etcd.client()?;
    let (records, on) = dashboard::large_fleet(N, IMAGE, now())?;
    dashboard::put_records(&client, &records)?;
    let d = Dashboard::start(
        &env.tandem,
        &[client.endpoint().to_string()],
        None,
        None,
        &["--refresh", "0s"],
    )?;
    let started = std::time::Instant::now();
    let (status, _, page) = d.get("/")?;
    eprintln!(
        "GET / with {N} nodes: {} KiB in {:.1} ms, etcd read included (`cargo xtask bench dashboard` measures it)",
        page.len() / 1024,
        started.elapsed().as_secs_f64() * 1000.0
    );
    ensure!(status == 200);
    let dom = dashboard::dom(&d.url("/"), 1000)?;
    let rows = dom.matches("data-machine-id=").count();
    ensure!(rows == N, "{rows} node rows rendered, not {N}");
    dashboard::screenshot(
        &d.url("/"),
        &dashboard::screenshot_path("dashboard-1000-nodes"),
        1280,
        1100,
    )?;
    let (_, _, text) = d.get("/metrics")?;
    let (samples, _) = parse_metrics(&text)?;
    for (version, n) in [("1.0.0", on[0]), ("1.1.0", on[1])] {
        let sum: f64 = samples
            .iter()
            .filter(|s| {
                s.name == "tandem_fleet_nodes"
                    && s.labels.get("version").map(String::as_str) == Some(version)
            })
            .map(|s| s.value)
            .sum();
        ensure!(
            sum == f64::from(n),
            "{version}: {sum} in /metrics, {n} in etcd"
        );
    }
    let waiting = value(
        &samples,
        "tandem_reboot_lock_waiting_nodes",
        &[("group", "default")],
    )?;
    let expected = records
        .iter()
        .filter(|r| r.agent_state == Some(AgentState::WaitingForLock))
        .count();
    ensure!(
        waiting == expected as f64,
        "{waiting} waiting in /metrics, {expected} in etcd"
    );
    ensure!(
        samples
            .iter()
            .filter(|s| s.name == "tandem_fleet_node_last_seen_timestamp_seconds")
            .count()
            == N
    );
    Ok(())
}
