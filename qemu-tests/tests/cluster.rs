//! Reboot coordination end to end: three nodes booted in QEMU, each with
//! the `etcd-lock` strategy, and a real etcd on the host (10.0.2.2 from the
//! guests). What is checked comes from etcd's own history of the
//! semaphore and from the consoles, not from what the agents say.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent::etcd::Etcd;
use agent::fleet::{self, NodeRecord};
use agent::lock::Lock;
use agent::semaphore;
use anyhow::{Context, Result, bail, ensure};
use qemu_tests::dashboard::Dashboard;
use qemu_tests::etcd::EtcdCluster;
use qemu_tests::fixtures::{BROKEN_BOOT, Build};
use qemu_tests::lab::{Lab, NodeSetup};
use qemu_tests::vm::{Vm, VmConfig};
use tandem_contract::{AgentState, Version};

/// A version of the fixture builds.
fn v(text: &str) -> Version {
    text.parse().expect("a version")
}

/// Whether a fleet record says the node runs `version`.
fn runs(r: &NodeRecord, version: &str) -> bool {
    r.version == Some(v(version))
}

const BOOT: Duration = Duration::from_secs(240);
/// Three nodes rebooting one after the other under TCG.
const ROLL: Duration = Duration::from_secs(900);

/// The OEM agent.toml of a lab node: etcd on the host, maybe a window.
fn agent_toml(etcd_port: u16, window: Option<(String, &str)>) -> String {
    let mut t = format!("[etcd]\nendpoints = [\"http://10.0.2.2:{etcd_port}\"]\n");
    if let Some((start, length)) = window {
        t.push_str(&format!(
            "\n[window]\nstart = \"{start}\"\nlength = \"{length}\"\n"
        ));
    }
    t
}

/// `HH:MM` (UTC) of now plus `offset_secs`.
fn utc_hhmm(offset_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let t = (now + offset_secs).rem_euclid(86_400);
    format!("{:02}:{:02}", t / 3600, t % 3600 / 60)
}

struct Cluster {
    etcd: EtcdCluster,
    client: Etcd,
    port: u16,
}

impl Cluster {
    fn start() -> Result<Cluster> {
        let etcd = EtcdCluster::start(1)?;
        let port = etcd.client_port()?;
        let client = etcd.client()?;
        Lock::new(&client, semaphore::DEFAULT_GROUP).set_max(1)?;
        Ok(Cluster { etcd, client, port })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>> {
        Ok(fleet::nodes(&self.client)?.0)
    }

    fn holders(&self) -> Result<Vec<String>> {
        Ok(Lock::new(&self.client, semaphore::DEFAULT_GROUP)
            .status()?
            .semaphore
            .holders)
    }

    /// Waits until `f` holds for the fleet records.
    fn wait_nodes(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&[NodeRecord]) -> bool,
    ) -> Result<Vec<NodeRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let nodes = self.nodes()?;
            if f(&nodes) {
                return Ok(nodes);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}: {nodes:#?}");
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Every value the semaphore had, from etcd's history: never more than
    /// `max` holders; the set of all holders seen.
    fn check_history(&self, max: i64) -> Result<BTreeSet<String>> {
        let h = self.etcd.semaphore_history(semaphore::DEFAULT_KEY, max)?;
        eprintln!(
            "semaphore history: {} revisions, holders seen: {:?}",
            h.revisions,
            h.acquired.keys()
        );
        Ok(h.acquired.into_keys().collect())
    }
}

/// Boots the nodes together (their boots overlap) and waits for each.
fn boot_all(lab: &Lab, name: &str, setups: &[NodeSetup]) -> Result<Vec<(Vm, qemu_tests::Disk)>> {
    let mut out = Vec::new();
    for (i, setup) in setups.iter().enumerate() {
        let disk = lab.disk(setup)?;
        let vm = Vm::start(&VmConfig::new(&format!("{name}-{}", i + 1)), &disk)?;
        out.push((vm, disk));
    }
    for (vm, _) in &mut out {
        vm.wait_for("tandem: system ready", BOOT)?;
    }
    Ok(out)
}

#[test]
fn three_nodes_update_one_reboot_at_a_time() -> Result<()> {
    let cluster = Cluster::start()?;
    let lab = Lab::new("cluster-roll")?;
    // Node 3's window opens in 12 hours: it must wait, holding nothing.
    let closed = (utc_hhmm(12 * 3600), "1h");
    let setups: Vec<NodeSetup> = (0..3)
        .map(|i| NodeSetup {
            strategy: "etcd-lock",
            agent_toml: agent_toml(cluster.port, (i == 2).then(|| closed.clone())),
            ..NodeSetup::new(Build::V1)
        })
        .collect();
    let mut nodes = boot_all(&lab, "cluster-roll", &setups)?;
    lab.publish("stable", Build::V2, &[])?;

    // Nodes 1 and 2 go through, one at a time.
    for (vm, _) in nodes.iter_mut().take(2) {
        vm.wait_for("tandem: system ready (slot B, version 1.1.0)", ROLL)?;
    }
    let records = cluster.wait_nodes("nodes 1 and 2 confirmed on 1.1.0", ROLL, |n| {
        n.iter()
            .filter(|r| runs(r, "1.1.0") && r.agent_state == Some(AgentState::Idle) && !r.lock)
            .count()
            == 2
    })?;
    let waiting = records
        .iter()
        .find(|r| runs(r, "1.0.0"))
        .context("node 3 has no record")?
        .clone();
    // Node 3 has 1.1.0 installed, and waits for its window without the lock.
    let records = cluster.wait_nodes("node 3 waiting for its window", BOOT, |n| {
        n.iter().any(|r| {
            r.machine_id == waiting.machine_id
                && r.agent_state == Some(AgentState::WaitingForWindow)
                && r.pending_version == Some(v("1.1.0"))
        })
    })?;
    ensure!(
        cluster.holders()?.is_empty(),
        "a lock is held: {records:#?}"
    );
    ensure!(
        !nodes[2]
            .0
            .lines()
            .iter()
            .any(|l| l.text.contains("stopping services for reboot")),
        "node 3 rebooted outside its window"
    );

    // Its window opens (the administrator's layer): it goes through too.
    let open = format!(
        "mkdir -p /etc/tandem && printf '[window]\\nstart = \"{}\"\\nlength = \"2h\"\\n' > /etc/tandem/agent.toml",
        utc_hhmm(-60)
    );
    nodes[2].0.run(&open, Duration::from_secs(30))?;
    nodes[2]
        .0
        .wait_for("tandem: system ready (slot B, version 1.1.0)", ROLL)?;
    cluster.wait_nodes("all three confirmed on 1.1.0", ROLL, |n| {
        n.len() == 3
            && n.iter()
                .all(|r| runs(r, "1.1.0") && r.agent_state == Some(AgentState::Idle) && !r.lock)
    })?;
    ensure!(cluster.holders()?.is_empty(), "the lock was not released");

    // The fleet as a node's operator sees it.
    let text = nodes[0]
        .0
        .run("tandemctl cluster status", Duration::from_secs(30))?;
    ensure!(
        text.contains("nodes:    3 (3 on 1.1.0)") && text.contains("0 of 1 held"),
        "{text}"
    );
    let json = nodes[0]
        .0
        .run("tandemctl lock status --json", Duration::from_secs(30))?;
    ensure!(
        json.contains("\"max\": 1") && json.contains("\"holders\": []"),
        "{json}"
    );

    // etcd's history: never two holders, and every node held it once.
    let ids: BTreeSet<String> = cluster.nodes()?.into_iter().map(|r| r.machine_id).collect();
    let seen = cluster.check_history(1)?;
    ensure!(seen == ids, "holders {seen:?} are not the nodes {ids:?}");
    // The consoles: no two nodes down at the same time.
    let mut spans = Vec::new();
    for (vm, _) in &nodes {
        spans.push(vm.reboot_window("1.1.0")?);
    }
    spans.sort();
    for w in spans.windows(2) {
        ensure!(
            w[0].1 <= w[1].0,
            "two nodes were rebooting at once: {:?} overlaps {:?}",
            w[0],
            w[1]
        );
    }
    for (i, (down, up)) in spans.iter().enumerate() {
        eprintln!(
            "reboot {}: down for {:.1} s",
            i + 1,
            up.duration_since(*down).as_secs_f64()
        );
    }
    Ok(())
}

#[test]
fn a_version_that_rolls_back_stops_the_cluster() -> Result<()> {
    let cluster = Cluster::start()?;
    let lab = Lab::new("cluster-broken")?;
    let setups: Vec<NodeSetup> = (0..3)
        .map(|_| NodeSetup {
            strategy: "etcd-lock",
            agent_toml: agent_toml(cluster.port, None),
            ..NodeSetup::new(Build::V1)
        })
        .collect();
    let mut nodes = boot_all(&lab, "cluster-broken", &setups)?;
    lab.publish("stable", Build::V3Broken, &[])?;

    // One node takes the lock, reboots into 1.2.0, fails, rolls back.
    let deadline = Instant::now() + ROLL;
    let first = loop {
        if let Some(i) = nodes
            .iter()
            .position(|(vm, _)| vm.lines().iter().any(|l| l.text.contains(BROKEN_BOOT)))
        {
            break i;
        }
        ensure!(Instant::now() < deadline, "no node tried 1.2.0");
        std::thread::sleep(Duration::from_secs(2));
    };
    nodes[first]
        .0
        .wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    let failed = {
        let deadline = Instant::now() + BOOT;
        loop {
            let (f, _) = fleet::failed(&cluster.client)?;
            if let Some(r) = f.into_iter().find(|r| r.version == v("1.2.0")) {
                break r;
            }
            ensure!(Instant::now() < deadline, "the failure was not recorded");
            std::thread::sleep(Duration::from_secs(2));
        }
    };
    eprintln!("recorded: {failed:?}");
    // It released the lock; the others stay on 1.0.0, their 1.2.0 withdrawn.
    let records = cluster.wait_nodes("everyone on 1.0.0, lock free", BOOT, |n| {
        n.len() == 3 && n.iter().all(|r| runs(r, "1.0.0") && !r.lock)
    })?;
    ensure!(
        failed.machine_id
            == records
                .iter()
                .find(|r| r.hostname == failed.hostname)
                .map(|r| r.machine_id.clone())
                .unwrap_or_default(),
        "the record names another node: {failed:?}"
    );
    ensure!(cluster.holders()?.is_empty(), "the lock is still held");
    // Give the others time to (wrongly) take the lock and reboot.
    std::thread::sleep(Duration::from_secs(30));
    for (i, (vm, _)) in nodes.iter_mut().enumerate() {
        if i == first {
            continue;
        }
        ensure!(
            !vm.lines()
                .iter()
                .any(|l| l.text.contains("stopping services for reboot")),
            "node {} rebooted after the failure was recorded",
            i + 1
        );
        let s = vm.update_status()?;
        ensure!(s["running_version"] == "1.0.0", "{s:#}");
        ensure!(
            s.to_string().contains("1.2.0"),
            "node {} does not know 1.2.0 failed: {s:#}",
            i + 1
        );
    }
    let text = nodes[first]
        .0
        .run("tandemctl cluster status", Duration::from_secs(30))?;
    ensure!(
        text.contains(&format!("1.2.0 on {}", failed.hostname)),
        "{text}"
    );
    dashboard_after_rollback(&cluster, &lab, &records, &failed)?;
    cluster.check_history(1)?;
    // The operator clears the record: the cluster may take 1.2.0 again.
    let out = nodes[first].0.run(
        "tandemctl cluster forget-failed 1.2.0",
        Duration::from_secs(30),
    )?;
    ensure!(out.contains("failed record deleted"), "{out}");
    ensure!(
        fleet::failed(&cluster.client)?.0.is_empty(),
        "the record is still there"
    );
    Ok(())
}

/// The fleet dashboard on this real cluster after the rollback, in a real
/// headless Chromium: every node on 1.0.0, the one that tried 1.2.0 saying
/// it rolled back, the others that 1.2.0 failed there.
fn dashboard_after_rollback(
    cluster: &Cluster,
    lab: &Lab,
    records: &[NodeRecord],
    failed: &fleet::FailedRecord,
) -> Result<()> {
    let trust = lab.fixtures.dir.join("keys/test-release.pub");
    let d = Dashboard::start(
        &lab.env.tandem,
        &cluster.etcd.client_urls(),
        Some(&lab.repo),
        Some(&trust),
        &[],
    )?;
    let dom = qemu_tests::dashboard::dom(&d.url("/"), 1000)?;
    let png = qemu_tests::dashboard::screenshot_path("dashboard-cluster-after-rollback");
    qemu_tests::dashboard::screenshot(&d.url("/"), &png, 1280, 900)?;
    eprintln!("screenshot: {}", png.display());
    for r in records {
        let at = dom
            .find(&format!("data-machine-id=\"{}\"", r.machine_id))
            .with_context(|| format!("{} is not on the page", r.hostname))?;
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap_or(0)];
        ensure!(
            row.contains("class=\"version\">1.0.0<"),
            "{}: not shown on 1.0.0: {row}",
            r.hostname
        );
        let expected = if r.machine_id == failed.machine_id {
            "rolled back 1.2.0 at".to_string()
        } else {
            format!("stays on 1.0.0: 1.2.0 failed on {}", failed.hostname)
        };
        ensure!(
            row.contains(&expected),
            "{}: {expected:?} not in {row}",
            r.hostname
        );
    }
    ensure!(
        dom.contains("<strong>⚠ 1.2.0</strong>"),
        "1.2.0 is not among the failed versions"
    );
    Ok(())
}
