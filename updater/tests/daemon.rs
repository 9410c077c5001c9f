//! The daemon over its socket, as `tandemctl update` and the agent use it:
//! configuration from the OEM partition, a staged rollout that waits,
//! `apply` overriding the wait, channel changes, configuration errors.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{NodeSpec, Repo, Server, blocks, now, slot_image};
use repository::repo::Rollout;
use updater::api::{self, Request, Response};
use updater::daemon::{self, Options};
use updater::node::Paths;
use updater::status::{UpdateState, UpdateStatus};

fn call(paths: &Paths, req: Request) -> Response {
    api::call(&paths.socket, &req).expect("call")
}

fn status(paths: &Paths) -> UpdateStatus {
    match call(paths, Request::Status) {
        Response::Status { status } => *status,
        other => panic!("{other:?}"),
    }
}

fn wait_for(paths: &Paths, what: &str, f: impl Fn(&UpdateStatus) -> bool) -> UpdateStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(paths);
        if f(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_daemon_serves_status_checks_and_applies() {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = Repo::new(&dir.path().join("repo"));
    let server = Server::start(&repo.dir);
    let v1 = slot_image(blocks(1, 300));
    // The server comes from the OEM partition only.
    let oem = format!("server = \"{}\"\ncheck-interval = \"1h\"\n", server.url);
    let node = common::node(
        dir.path(),
        NodeSpec {
            running: &v1,
            version: "1.0.0",
            server: None,
            oem_toml: Some(oem),
            admin_toml: None,
        },
    );
    // 1.1.0 rolls out tomorrow.
    let p = repo.publish("1.1.0", &slot_image(blocks(2, 300)));
    let mut ptr = repo.pointer("stable", &p, now() + 7200);
    ptr.rollout = Rollout {
        start: now() + 86_400,
        duration_secs: 0,
    };
    repo.write_pointer("stable", &Repo::signed(&ptr, &repo.key));

    let paths = node.paths.clone();
    let opts = Options {
        paths: paths.clone(),
        reboot: Arc::new(|_| panic!("no reboot expected")),
    };
    std::thread::spawn(move || daemon::run(opts));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&paths.socket).is_err() {
        assert!(Instant::now() < deadline, "socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }

    let s = status(&paths);
    assert_eq!(s.running_version, Some(v("1.0.0")));
    assert_eq!(s.running_slot, Some(tandem_slot::Slot::A));
    assert_eq!(
        s.server.as_deref(),
        Some(server.url.as_str()),
        "server from the OEM partition"
    );
    assert_eq!(s.channel.as_deref(), Some("stable"), "the image's channel");

    // A check finds 1.1.0 and waits for this node's turn.
    let Response::Done { message, status: s } = call(&paths, Request::Check) else {
        panic!("check")
    };
    assert!(message.contains("1.1.0 available"), "{message}");
    match &s.state {
        UpdateState::UpdateAvailable {
            version,
            eligible_at,
            waiting_for: None,
        } => {
            assert_eq!(*version, v("1.1.0"));
            assert_eq!(*eligible_at, ptr.rollout.start);
        }
        other => panic!("{other:?}"),
    }
    assert!(s.next_check.is_some());

    // `apply` does not wait.
    let Response::Done { message, .. } = call(&paths, Request::Apply) else {
        panic!("apply")
    };
    assert!(
        message.contains("installing 1.1.0 into slot B"),
        "{message}"
    );
    let s = wait_for(&paths, "the install", |s| {
        !s.state.busy() && !matches!(s.state, UpdateState::Checking)
    });
    assert_eq!(
        s.state,
        UpdateState::UpdatedNeedReboot {
            version: v("1.1.0"),
            slot: tandem_slot::Slot::B
        },
        "{s:#?}"
    );
    let report = s.last_apply.expect("report");
    assert_eq!(report.version, v("1.1.0"));
    assert!(report.downloaded_bytes > 0);

    // The agent reports; the status shows it.
    let report = updater::status::AgentReport {
        strategy: updater::config::RebootStrategy::Off,
        state: tandem_contract::AgentState::RebootNeeded,
        message: "reboot needed".into(),
        at: now(),
        cluster_failed: vec![],
    };
    assert!(matches!(
        call(
            &paths,
            Request::AgentReport {
                report: report.clone()
            }
        ),
        Response::Done { .. }
    ));
    assert_eq!(status(&paths).agent, Some(report));

    // Another channel: written to the admin file, other lines kept.
    std::fs::create_dir_all(paths.admin_config.parent().expect("etc")).expect("mkdir");
    replace_file(&paths.admin_config, "# mine\nallow-downgrade = false\n");
    let Response::Done { message, status: s } = call(
        &paths,
        Request::SetChannel {
            channel: "beta".into(),
        },
    ) else {
        panic!("channel")
    };
    assert!(message.starts_with("following channel beta"), "{message}");
    assert_eq!(
        std::fs::read_to_string(&paths.admin_config).expect("admin"),
        "# mine\nallow-downgrade = false\nchannel = \"beta\"\n"
    );
    assert_eq!(s.channel.as_deref(), Some("beta"));
    assert!(
        matches!(s.state, UpdateState::UpdatedNeedReboot { .. }),
        "a failed check does not hide the waiting reboot"
    );
    assert!(matches!(
        call(
            &paths,
            Request::SetChannel {
                channel: "../x".into()
            }
        ),
        Response::Refused { .. }
    ));

    // An unknown key is reported, and the last good configuration stays.
    replace_file(&paths.admin_config, "chanel = \"typo\"\n");
    let s = wait_for(&paths, "the config error", |s| !s.config_errors.is_empty());
    assert!(
        s.config_errors[0].contains("chanel"),
        "{:?}",
        s.config_errors
    );
    assert_eq!(s.channel.as_deref(), Some("beta"));
    assert_eq!(s.server.as_deref(), Some(server.url.as_str()));

    assert!(matches!(
        call(
            &paths,
            Request::ForgetFailed {
                version: "9.9".into()
            }
        ),
        Response::Refused { .. }
    ));
    let text = updater::status::render(&status(&paths), now());
    assert!(
        text.contains("updated-need-reboot") && text.contains("chanel"),
        "{text}"
    );

    // The agent says 1.1.0 rolled back elsewhere in the cluster: the
    // waiting update is withdrawn, its slot no longer bootable.
    assert!(node.slots().get(tandem_slot::Slot::B).priority() > 0);
    let report = updater::status::AgentReport {
        strategy: updater::config::RebootStrategy::EtcdLock,
        state: tandem_contract::AgentState::Blocked,
        message: "1.1.0 failed elsewhere".into(),
        at: now(),
        cluster_failed: vec![v("1.1.0")],
    };
    assert!(matches!(
        call(&paths, Request::AgentReport { report }),
        Response::Done { .. }
    ));
    match status(&paths).state {
        UpdateState::Error { reason, action } => {
            assert!(reason.contains("withdrawn from slot B"), "{reason}");
            assert!(action.contains("cluster forget-failed 1.1.0"), "{action}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.slots().get(tandem_slot::Slot::B).priority(), 0);
}

fn v(text: &str) -> updater::Version {
    text.parse().expect("a version")
}

/// Replaces a file the daemon watches in one step, as an editor's save
/// does: a plain write truncates first, and a reload that lands between the
/// truncation and the write would see an empty file.
fn replace_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}
