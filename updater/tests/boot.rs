//! After an install: the new slot confirmed from real health, given up when
//! unhealthy, and a rollback noticed, recorded and never repeated until an
//! administrator forgets it.

mod common;

use std::sync::{Arc, Mutex};

use common::{NodeSpec, Repo, Server, blocks, set_running, slot_image};
use repository::policy::Refusal;
use tandem_contract::incident::{self, Incident, IncidentKind};
use tandem_contract::node::Evidence;
use tandem_slot::{GptPrio, Recovery, Slot, SlotPair, TRIAL_BOOTS};
use updater::engine::{self, BootOutcome, CheckOutcome, Engine};
use updater::error::Error;
use updater::http::Http;
use updater::node::{BootTimes, ServiceState, ServiceStatus, Status};
use updater::state::State;
use updater::status::{BootHealth, TrialBoot, UpdateState};

struct World {
    _dir: tempfile::TempDir,
    server: Server,
    node: common::Node,
}

/// 1.1.0 installed into B from 1.0.0 in A, not rebooted yet.
fn installed(admin_toml: &str) -> World {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = Repo::new(&dir.path().join("repo"));
    let server = Server::start(&repo.dir);
    let v1 = slot_image(blocks(1, 300));
    let node = common::node(
        dir.path(),
        NodeSpec {
            running: &v1,
            version: "1.0.0",
            server: Some(server.url.clone()),
            oem_toml: None,
            admin_toml: Some(admin_toml.to_string()),
        },
    );
    let p = repo.publish("1.1.0", &slot_image(blocks(2, 300)));
    repo.point("stable", &p);
    let mut engine = Engine::new(node.paths.clone());
    let mut http = Http::new(&server.url, &updater::transport::Transport::direct());
    let CheckOutcome::Available(offer) = engine.check(&mut http).expect("check") else {
        panic!("no update")
    };
    engine::install(
        &engine.install_context().expect("ctx"),
        &offer,
        &mut http,
        &engine.status,
    )
    .expect("install");
    World {
        _dir: dir,
        server,
        node,
    }
}

/// What the bootloader does on the next boot, and the early init's record.
fn reboot(w: &World) -> Slot {
    let mut pair = w.node.slots();
    let d = pair.boot().expect("bootable");
    w.node.set_slots(pair);
    set_running(&w.node.paths, &w.node.disk, d.slot);
    // The new slot's os-release.
    let v = if d.slot == Slot::B { "1.1.0" } else { "1.0.0" };
    let text = std::fs::read_to_string(&w.node.paths.os_release).expect("os-release");
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("VERSION_ID=") {
                format!("VERSION_ID={v}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&w.node.paths.os_release, text).expect("write");
    d.slot
}

fn system_status(w: &World, services: &[(&str, ServiceState)]) {
    let s = Status {
        format: 1,
        boot: BootTimes {
            system_ready_us: Some(3_000_000),
            ..Default::default()
        },
        services: services
            .iter()
            .map(|(n, st)| ServiceStatus {
                name: n.to_string(),
                state: *st,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    std::fs::write(&w.node.paths.status, serde_json::to_vec(&s).expect("json")).expect("write");
}

fn recorder() -> (Arc<Mutex<Vec<String>>>, impl Fn(&str) + Send + Sync) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    (log, move |why: &str| {
        l.lock().expect("log").push(why.to_string())
    })
}

#[test]
fn before_the_reboot_the_update_waits_for_it() {
    let w = installed("");
    let mut e = Engine::new(w.node.paths.clone());
    assert_eq!(
        e.boot_outcome().expect("outcome"),
        BootOutcome::WaitingForReboot
    );
    assert_eq!(
        e.status.get().state,
        UpdateState::UpdatedNeedReboot {
            version: v("1.1.0"),
            slot: tandem_slot::Slot::B
        }
    );
}

#[test]
fn a_healthy_new_slot_is_marked_successful() {
    let w = installed(
        "health-grace = \"0s\"\n[[health-check]]\nname = \"ok\"\nexec = [\"/bin/sh\", \"-c\", \"exit 0\"]\n",
    );
    assert_eq!(reboot(&w), Slot::B);
    assert_eq!(
        w.node.slots().b,
        GptPrio::new(2, TRIAL_BOOTS - 1, false),
        "the bootloader spent a try"
    );
    system_status(
        &w,
        &[
            ("console", ServiceState::Running),
            ("web", ServiceState::Running),
            ("old", ServiceState::Disabled),
        ],
    );
    let mut e = Engine::new(w.node.paths.clone());
    assert_eq!(e.boot_outcome().expect("outcome"), BootOutcome::BootedNew);
    let (reboots, reboot_fn) = recorder();
    assert!(
        e.health_tick(&reboot_fn).expect("tick"),
        "healthy at once with no grace"
    );
    assert_eq!(w.node.slots().b, GptPrio::new(2, 0, true));
    assert_eq!(e.status.get().boot, BootHealth::Confirmed);
    assert!(
        State::load(&w.node.paths.state_file())
            .expect("state")
            .pending
            .is_none(),
        "pending record cleared"
    );
    assert!(reboots.lock().expect("log").is_empty());
    // And the next boot stays on B.
    assert_eq!(w.node.slots().next_boot(), Some(Slot::B));
}

#[test]
fn a_failing_service_keeps_the_slot_on_trial() {
    let w = installed("health-grace = \"0s\"\nhealth-deadline = \"1000d\"\n");
    reboot(&w);
    system_status(
        &w,
        &[
            ("console", ServiceState::Running),
            ("web", ServiceState::WaitingToRestart),
        ],
    );
    let mut e = Engine::new(w.node.paths.clone());
    e.boot_outcome().expect("outcome");
    let (_, reboot_fn) = recorder();
    assert!(!e.health_tick(&reboot_fn).expect("tick"));
    assert!(
        matches!(e.status.get().boot, BootHealth::Checking { detail, .. } if detail.contains("web is waiting to restart"))
    );
    assert!(!w.node.slots().b.successful());
}

#[test]
fn an_unhealthy_new_slot_is_given_up_and_the_rollback_is_recorded() {
    // The deadline has long passed on the host (counted from kernel start).
    let w = installed(
        "health-grace = \"0s\"\nhealth-deadline = \"1s\"\n[[health-check]]\nname = \"db\"\nexec = [\"/bin/sh\", \"-c\", \"exit 3\"]\n",
    );
    reboot(&w);
    system_status(&w, &[("console", ServiceState::Running)]);
    let mut e = Engine::new(w.node.paths.clone());
    let (reboots, reboot_fn) = recorder();
    assert!(!e.health_tick(&reboot_fn).expect("checks run and fail"));
    assert!(e.health_tick(&reboot_fn).expect("gives up"));
    assert_eq!(w.node.slots().b, GptPrio::new(2, 0, false), "B unbootable");
    let asked = reboots.lock().expect("log").clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].contains("health check db failed"), "{asked:?}");

    // The bootloader goes back to A; A's updater notices and records it.
    assert_eq!(reboot(&w), Slot::A);
    let mut e = Engine::new(w.node.paths.clone());
    assert_eq!(e.boot_outcome().expect("outcome"), BootOutcome::RolledBack);
    let st = e.status.get();
    match &st.state {
        UpdateState::RolledBack { version, reason } => {
            assert_eq!(*version, v("1.1.0"));
            assert!(reason.contains("health check db failed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(st.failed_versions, [v("1.1.0")]);

    // The channel still serves 1.1.0: refused, and the rollback stays shown.
    let err = e
        .check(&mut Http::new(
            &w.server.url,
            &updater::transport::Transport::direct(),
        ))
        .expect_err("failed before");
    assert!(
        matches!(&err, Error::Refused(Refusal::FailedBefore { .. })),
        "{err}"
    );
    e.record_error(&err, std::time::Duration::from_secs(60));
    assert!(matches!(
        e.status.get().state,
        UpdateState::RolledBack { .. }
    ));

    // Until the administrator forgets it.
    assert!(
        e.forget_failed(&"1.1.0".parse().expect("v"))
            .expect("forget")
    );
    assert_eq!(e.status.get().state, UpdateState::Idle);
    assert!(matches!(
        e.check(&mut Http::new(
            &w.server.url,
            &updater::transport::Transport::direct()
        ))
        .expect("check"),
        CheckOutcome::Available(_)
    ));
}

#[test]
fn a_new_slot_that_never_confirms_rolls_back_by_its_tries() {
    let w = installed("");
    // Every trial boot of B is cut short before anything confirms it.
    for boot in 1..=TRIAL_BOOTS {
        assert_eq!(reboot(&w), Slot::B);
        let mut e = Engine::new(w.node.paths.clone());
        assert_eq!(e.boot_outcome().expect("outcome"), BootOutcome::BootedNew);
        assert_eq!(
            e.status.get().trial,
            Some(TrialBoot {
                boot,
                of: TRIAL_BOOTS
            })
        );
    }
    // Then the bootloader falls back.
    assert_eq!(reboot(&w), Slot::A);
    let mut e = Engine::new(w.node.paths.clone());
    assert_eq!(e.boot_outcome().expect("outcome"), BootOutcome::RolledBack);
    let failed = State::load(&w.node.paths.state_file())
        .expect("state")
        .failed;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].reason.contains("none of them recorded a failure"),
        "{}",
        failed[0].reason
    );
    let rb = e.status.get().rollback.expect("rollback");
    assert_eq!(rb.evidence, Evidence::None, "not evidence for the cluster");
}

#[test]
fn a_trial_cut_short_goes_on_and_is_confirmed() {
    let w = installed(
        "health-grace = \"0s\"\n[[health-check]]\nname = \"ok\"\nexec = [\"/bin/sh\", \"-c\", \"exit 0\"]\n",
    );
    // The first trial boot is cut (power) before confirming.
    assert_eq!(reboot(&w), Slot::B);
    assert_eq!(reboot(&w), Slot::B, "B boots again: no fallback yet");
    system_status(&w, &[("web", ServiceState::Running)]);
    let mut e = Engine::new(w.node.paths.clone());
    assert_eq!(e.boot_outcome().expect("outcome"), BootOutcome::BootedNew);
    assert_eq!(e.status.get().trial.map(|t| t.boot), Some(2));
    let (reboots, reboot_fn) = recorder();
    assert!(e.health_tick(&reboot_fn).expect("tick"));
    assert!(reboots.lock().expect("log").is_empty());
    assert!(w.node.slots().b.successful());
    let state = State::load(&w.node.paths.state_file()).expect("state");
    assert!(state.failed.is_empty() && state.pending.is_none());
    assert_eq!(e.status.get().trial, None);
}

#[test]
fn a_failed_early_boot_is_evidence_in_one_trial() {
    let w = installed("");
    assert_eq!(reboot(&w), Slot::B);
    // What the early init of B does when it fails: the rules give B up and
    // it leaves an incident on ROOT.
    let mut pair = w.node.slots();
    assert_eq!(
        pair.after_boot_failure(Slot::B),
        Recovery::SwitchTo(Slot::A)
    );
    w.node.set_slots(pair);
    let incident = Incident {
        format: incident::FORMAT,
        slot: Slot::B,
        kind: IncidentKind::BootFailed,
        what: "mounting /dev/dm-0 on /sysroot/usr (erofs) failed: No such device".into(),
        action: "slot B given up; slot A boots next".into(),
        at: 1000,
    };
    let file = incident.write(&w.node.paths.root).expect("incident");
    assert_eq!(reboot(&w), Slot::A, "one trial");
    let mut e = Engine::new(w.node.paths.clone());
    assert_eq!(e.boot_outcome().expect("outcome"), BootOutcome::RolledBack);
    let s = e.status.get();
    let rb = s.rollback.expect("rollback");
    assert_eq!(rb.evidence, Evidence::EarlyBoot);
    assert!(
        rb.reason
            .contains("the early boot of slot B failed: mounting"),
        "{}",
        rb.reason
    );
    assert_eq!(s.incidents, vec![incident.clone()]);
    assert!(!file.exists(), "taken in");
    // Kept across restarts of the engine, not taken twice.
    let e = Engine::new(w.node.paths.clone());
    let state = State::load(&w.node.paths.state_file()).expect("state");
    assert_eq!(state.incidents, vec![incident]);
    drop(e);
}

#[test]
fn without_a_fallback_an_unhealthy_slot_is_kept() {
    let w = installed("health-grace = \"0s\"\nhealth-deadline = \"1s\"\n");
    reboot(&w);
    // A is gone meanwhile.
    w.node
        .set_slots(SlotPair::new(GptPrio::new(1, 0, false), w.node.slots().b));
    system_status(&w, &[("web", ServiceState::Failed)]);
    let mut e = Engine::new(w.node.paths.clone());
    let (reboots, reboot_fn) = recorder();
    assert!(e.health_tick(&reboot_fn).expect("tick"));
    assert!(
        reboots.lock().expect("log").is_empty(),
        "no reboot into nothing"
    );
    assert_eq!(
        w.node.slots().b,
        GptPrio::new(2, TRIAL_BOOTS - 1, false),
        "not marked unbootable"
    );
    assert!(
        matches!(e.status.get().boot, BootHealth::Failed { reason } if reason.contains("mark-good"))
    );
}

fn v(text: &str) -> updater::Version {
    text.parse().expect("a version")
}
