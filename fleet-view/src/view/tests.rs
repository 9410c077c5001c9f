use agent::fleet::{Progress, RollbackRecord};
use repository::repo::FileRef;
use tandem_contract::provision::ProvisionState;

use super::*;

// 2026-12-03 10:20 UTC, a Thursday.
const NOW: u64 = 1_796_293_200;

fn v(s: &str) -> Version {
    s.parse().expect("version")
}

fn pointer(version: &str, start: u64, duration_secs: u64) -> ChannelPointer {
    ChannelPointer {
        format: 1,
        image: "tandem".into(),
        channel: "stable".into(),
        version: v(version),
        manifest: FileRef {
            path: "m".into(),
            size: 1,
            sha256: String::new(),
        },
        rollout: Rollout {
            start,
            duration_secs,
        },
        issued: start,
        expires: start + 86_400 * 30,
    }
}

fn node(id: &str, host: &str, version: &str) -> NodeRecord {
    NodeRecord {
        machine_id: id.into(),
        hostname: host.into(),
        version: Some(v(version)),
        slot: Some(Slot::A),
        update_state: Some(UpdateStateKind::Idle),
        agent_state: Some(AgentState::Idle),
        boot: Some(BootHealthKind::Confirmed),
        last_seen: NOW - 5,
        image: Some("tandem".into()),
        channel: Some("stable".into()),
        ..NodeRecord::default()
    }
}

fn snapshot(nodes: Vec<NodeRecord>, p: ChannelPointer) -> Snapshot {
    Snapshot {
        now: NOW,
        nodes,
        channels: vec![ChannelInput {
            image: "tandem".into(),
            channel: "stable".into(),
            pointer: Ok(p),
            verified: Some(true),
        }],
        locks: vec![LockInput {
            group: "default".into(),
            key: agent::semaphore::DEFAULT_KEY.into(),
            semaphore: Ok(Semaphore {
                semaphore: 0,
                max: 1,
                holders: vec!["m3".into()],
            }),
        }],
        etcd_up: true,
        ..Snapshot::default()
    }
}

fn why<'a>(view: &'a FleetView, host: &str) -> &'a NodeView {
    view.nodes
        .iter()
        .find(|n| n.hostname == host)
        .expect("the node")
}

/// The issue's example moment: a holder rebooted into the new version, a
/// node waiting for the lock, one downloading, one waiting for its turn,
/// one for the window.
#[test]
fn mid_rollout_every_node_says_why() {
    let mut waiting = node("m1", "worker-1", "1.1.0");
    waiting.update_state = Some(UpdateStateKind::UpdatedNeedReboot);
    waiting.pending_version = Some(v("1.2.0"));
    waiting.agent_state = Some(AgentState::WaitingForLock);
    waiting.update_since = Some(NOW - 600);

    let mut downloading = node("m2", "worker-2", "1.1.0");
    downloading.update_state = Some(UpdateStateKind::Downloading);
    downloading.progress = Some(Progress::new(
        v("1.2.0"),
        UpdateStateKind::Downloading,
        42,
        100,
    ));

    let mut holder = node("m3", "worker-3", "1.2.0");
    holder.agent_state = Some(AgentState::HoldingLock);
    holder.boot = Some(BootHealthKind::Checking);
    holder.lock = true;
    holder.lock_since = Some(NOW - 18 * 60);

    let mut later = node("m4", "worker-4", "1.1.0");
    later.update_state = Some(UpdateStateKind::UpdateAvailable);
    later.available = Some(v("1.2.0"));
    later.eligible_at = Some(NOW + 4 * 3600);

    let mut window = node("m5", "worker-5", "1.1.0");
    window.update_state = Some(UpdateStateKind::UpdatedNeedReboot);
    window.pending_version = Some(v("1.2.0"));
    window.agent_state = Some(AgentState::WaitingForWindow);
    window.window_opens_at = Some(NOW + 18 * 3600 - 20 * 60);

    let view = build(&snapshot(
        vec![waiting, downloading, holder, later, window],
        pointer("1.2.0", NOW - 3600, 6 * 3600),
    ));
    assert_eq!(
        why(&view, "worker-1").reason,
        "1.2.0 installed; waiting for the reboot lock held by worker-3 since 10:02 UTC"
    );
    assert_eq!(why(&view, "worker-2").reason, "downloading 1.2.0: 40 %");
    assert_eq!(
        why(&view, "worker-3").reason,
        "running 1.2.0 on trial, holding the reboot lock since 10:02 UTC until its health is confirmed"
    );
    assert_eq!(
        why(&view, "worker-4").reason,
        "waiting for its rollout turn at 14:20 UTC (1.2.0)"
    );
    assert_eq!(
        why(&view, "worker-5").reason,
        "1.2.0 installed; waiting for the reboot window Fri 04:00 UTC"
    );
    let c = &view.channels[0];
    assert_eq!(
        c.schedule,
        "from 09:20 UTC over 6 h: 17 % of nodes eligible, all by 15:20 UTC"
    );
    assert_eq!(
        (
            c.phases.nodes,
            c.phases.downloading,
            c.phases.installed,
            c.phases.rebooted
        ),
        (5, 1, 2, 1)
    );
    let lock = &view.locks[0];
    assert_eq!(lock.holders[0].hostname.as_deref(), Some("worker-3"));
    assert_eq!(lock.waiting, vec!["worker-1".to_string()]);
    assert_eq!(lock.longest_wait_secs, Some(600));
}

#[test]
fn rollbacks_failures_and_provisioning_are_problems_first() {
    let mut rolled = node("m1", "worker-1", "1.1.0");
    rolled.update_state = Some(UpdateStateKind::RolledBack);
    rolled.rollback = Some(RollbackRecord {
        version: v("1.2.0"),
        reason: "health check `app` failed: exit status 1".into(),
        at: NOW - 300,
        evidence: None,
    });
    let blocked = node("m2", "worker-2", "1.1.0");
    // What a node's updater says when the channel serves a failed version.
    let mut refused = node("m5", "worker-5", "1.1.0");
    refused.update_state = Some(UpdateStateKind::Error);
    refused.error = Some("1.2.0 failed to come up on this node or elsewhere".into());
    let mut config = node("m3", "worker-3", "1.1.0");
    config.config = Some(ProvisionState::Failed);
    config.config_errors = vec!["user-data:12:3: unknown key `usrs`".into()];
    let mut failed_update = node("m4", "worker-4", "1.1.0");
    failed_update.update_state = Some(UpdateStateKind::Error);
    failed_update.error = Some("cannot reach http://repo: connection refused".into());
    let mut s = snapshot(
        vec![rolled, blocked, config, failed_update, refused],
        pointer("1.2.0", NOW - 3600, 0),
    );
    s.failed = vec![FailedRecord {
        version: v("1.2.0"),
        machine_id: "m1".into(),
        hostname: "worker-1".into(),
        reason: "health check `app` failed".into(),
        at: NOW - 290,
    }];
    let view = build(&s);
    assert_eq!(
        why(&view, "worker-1").reason,
        "rolled back 1.2.0 at 10:15 UTC: health check `app` failed: exit status 1"
    );
    assert_eq!(why(&view, "worker-1").attention, Attention::Problem);
    assert_eq!(
        why(&view, "worker-2").reason,
        "stays on 1.1.0: 1.2.0 failed on worker-1 (health check `app` failed)"
    );
    assert_eq!(
        why(&view, "worker-3").reason,
        "provisioning failed at line 12 of its user-data: unknown key `usrs`"
    );
    assert_eq!(
        why(&view, "worker-4").reason,
        "stays on 1.1.0: 1.2.0 failed on worker-1 (health check `app` failed)"
    );
    assert_eq!(why(&view, "worker-5").reason, why(&view, "worker-4").reason);
    assert_eq!(why(&view, "worker-5").attention, Attention::Waiting);
    // Problems come first on the page.
    assert_eq!(view.nodes[0].attention, Attention::Problem);
    assert_eq!(view.channels[0].phases.rolled_back, 1);
    assert_eq!(view.channels[0].schedule, "all nodes since 09:20 UTC");
    assert_eq!(
        view.channels[0].stopped.as_deref(),
        Some("stopped: 1.2.0 failed on worker-1 at 10:15 UTC")
    );
}

#[test]
fn nodes_that_stop_reporting_say_since_when() {
    let mut stale = node("m1", "worker-1", "1.2.0");
    stale.last_seen = NOW - 180;
    let gone = node("m2", "worker-2", "1.2.0");
    let mut s = snapshot(vec![stale], pointer("1.2.0", NOW - 3600, 0));
    s.departed = vec![(
        NodeRecord {
            last_seen: NOW - 3600,
            ..gone
        },
        NOW - 3500,
    )];
    let view = build(&s);
    assert_eq!(
        why(&view, "worker-1").reason,
        "not seen for 3 min (last at 10:17 UTC)"
    );
    assert_eq!(
        why(&view, "worker-2").reason,
        "not seen for 1 h (last at 09:20 UTC); its record expired"
    );
    // A departed node is not counted in its channel any more.
    assert_eq!(view.channels[0].phases.nodes, 1);
}

#[test]
fn phases_follow_the_served_version() {
    let target = v("1.2.0");
    let mut r = node("m", "h", "1.1.0");
    assert_eq!(phase(&r, &target, false), Phase::Waiting);
    assert_eq!(phase(&r, &target, true), Phase::Eligible);
    r.progress = Some(Progress::new(v("1.2.0"), UpdateStateKind::Verifying, 1, 2));
    assert_eq!(phase(&r, &target, true), Phase::Downloading);
    r.pending_version = Some(v("1.2"));
    assert_eq!(phase(&r, &target, true), Phase::Installed);
    r.rollback = Some(RollbackRecord {
        version: v("1.2.0"),
        reason: String::new(),
        at: 0,
        evidence: None,
    });
    assert_eq!(phase(&r, &target, true), Phase::RolledBack);
    r.version = Some(v("1.2.0"));
    r.boot = Some(BootHealthKind::Checking);
    assert_eq!(phase(&r, &target, true), Phase::Rebooted);
    r.boot = Some(BootHealthKind::Confirmed);
    assert_eq!(phase(&r, &target, true), Phase::Confirmed);
}

#[test]
fn up_to_date_and_not_yet_picked_up() {
    let done = node("m1", "worker-1", "1.2.0");
    let idle = node("m2", "worker-2", "1.1.0");
    let mut broken = node("m4", "worker-4", "1.1.0");
    broken.update_state = Some(UpdateStateKind::Error);
    broken.error = Some("cannot reach http://repo: connection refused".into());
    let view = build(&snapshot(
        vec![done, idle, broken],
        pointer("1.2.0", NOW - 60, 0),
    ));
    assert_eq!(
        why(&view, "worker-4").reason,
        "update failed: cannot reach http://repo: connection refused"
    );
    assert_eq!(why(&view, "worker-4").attention, Attention::Problem);
    assert_eq!(
        why(&view, "worker-1").reason,
        "up to date: 1.2.0, confirmed"
    );
    assert_eq!(
        why(&view, "worker-2").reason,
        "1.2.0 due since 10:19 UTC; not picked up yet (it checks periodically)"
    );
    let c = view.channels[0].phases;
    assert_eq!((c.nodes, c.eligible, c.confirmed), (3, 3, 1));
}

#[test]
fn progress_moves_in_steps() {
    let p = |d, t| Progress::new(v("1.0"), UpdateStateKind::Downloading, d, t).percent;
    assert_eq!(p(0, 100), 0);
    assert_eq!(p(44, 100), 40);
    assert_eq!(p(45, 100), 45);
    assert_eq!(p(100, 100), 100);
    assert_eq!(p(5, 0), 100);
}

#[test]
fn metrics_follow_prometheus_naming_and_count_the_fleet() {
    let mut waiting = node("m1", "worker-1", "1.1.0");
    waiting.agent_state = Some(AgentState::WaitingForLock);
    waiting.update_since = Some(NOW - 120);
    let mut holder = node("m3", "worker-3\"x", "1.2.0");
    holder.lock = true;
    holder.lock_since = Some(NOW - 60);
    let mut s = snapshot(vec![waiting, holder], pointer("1.2.0", NOW - 3600, 0));
    s.repository_up = Some(true);
    let text = crate::metrics::render(&build(&s));
    let mut helped = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap_or("").to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert!(rest.ends_with(" gauge"), "{line}");
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            assert!(helped.contains(name), "no HELP for {line}");
            assert!(
                name.starts_with("tandem_")
                    && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !name.ends_with("_total"),
                "{name}"
            );
        }
    }
    for expected in [
        r#"tandem_fleet_nodes{channel="stable",version="1.1.0",update_state="idle"} 1"#,
        r#"tandem_reboot_lock_waiting_nodes{group="default"} 1"#,
        r#"tandem_reboot_lock_longest_wait_seconds{group="default"} 120"#,
        r#"tandem_reboot_lock_held_seconds{group="default",machine_id="m3",hostname="worker-3\"x"} 60"#,
        r#"tandem_rollout_nodes{image="tandem",channel="stable",version="1.2.0",phase="confirmed"} 1"#,
        r#"tandem_dashboard_source_up{source="repository"} 1"#,
    ] {
        assert!(text.contains(expected), "{expected} not in\n{text}");
    }
}

#[test]
fn corrupt_usr_and_incidents_are_problems() {
    let mut corrupt = node("m1", "worker-1", "1.2.0");
    corrupt.usr_corruption = Some(
        "device-mapper: verity: 254:3: data block 7 is corrupted; slot A kept: the other slot holds no confirmed version to switch to; staying up".into(),
    );
    let mut switched = node("m2", "worker-2", "1.2.0");
    switched.incident = Some(
        "slot A usr-corrupt at 2026-12-04 10:00 UTC: data block 7 is corrupted; slot A given up; slot B boots next".into(),
    );
    let view = build(&snapshot(
        vec![corrupt, switched],
        pointer("1.2.0", NOW - 60, 0),
    ));
    let w1 = why(&view, "worker-1");
    assert!(
        w1.reason
            .starts_with("/usr corrupt on disk: device-mapper: verity"),
        "{}",
        w1.reason
    );
    assert_eq!(w1.attention, Attention::Problem);
    let w2 = why(&view, "worker-2");
    assert!(
        w2.reason
            .starts_with("up to date: 1.2.0, confirmed; after an incident: slot A usr-corrupt"),
        "{}",
        w2.reason
    );
    assert_eq!(w2.attention, Attention::Problem);
}
