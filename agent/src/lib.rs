//! Tandem's reboot agent, `tandem-agent`: watches the updater's status over
//! its socket and, when an update waits for a reboot, does what the reboot
//! strategy (`reboot-strategy` in update.toml, as the updater reports it)
//! says:
//!
//! - `reboot`: log why, then ask PID 1 to reboot (SIGTERM, as busybox's
//!   `reboot` does);
//! - `off`: never reboot; report "reboot needed";
//! - `etcd-lock`, `fleetlock`: not implemented in this version; reported as
//!   an error, and no reboot.
//!
//! The agent reports what it does back to the updater, so `tandemctl update
//! status` shows it. The decision is the pure [`decide`]; [`run`] is the loop.
//!
//! ```
//! use agent::{decide, Decision};
//! use updater::config::RebootStrategy;
//! use updater::status::{UpdateState, UpdateStatus};
//!
//! let mut s = UpdateStatus::default();
//! s.state = UpdateState::UpdatedNeedReboot { version: "1.1.0".into(), slot: "B".into() };
//! s.reboot_strategy = RebootStrategy::Off;
//! assert!(matches!(decide(&s, None), Decision::Report { state: "reboot-needed", .. }));
//! ```
#![warn(missing_docs)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use updater::api::{self, Request};
use updater::config::RebootStrategy;
use updater::status::{AgentReport, UpdateState, UpdateStatus};

/// How often the agent looks at the updater's status.
pub const POLL: Duration = Duration::from_secs(5);
/// A reboot asked for but not happening is asked for again after this long.
pub const REBOOT_RETRY: Duration = Duration::from_secs(600);

/// What the agent does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Report `state` with `message`; nothing else.
    Report {
        /// `idle`, `reboot-needed`, `rebooting`, `error`.
        state: &'static str,
        /// What and why.
        message: String,
    },
    /// Reboot now, for this reason.
    Reboot {
        /// Why.
        reason: String,
    },
}

/// Decides from the updater's status; `requested` is how long ago this
/// agent asked for a reboot, if it did.
pub fn decide(status: &UpdateStatus, requested: Option<Duration>) -> Decision {
    let strategy = status.reboot_strategy;
    let unsupported = matches!(
        strategy,
        RebootStrategy::EtcdLock | RebootStrategy::Fleetlock
    );
    let UpdateState::UpdatedNeedReboot { version, slot } = &status.state else {
        return if unsupported {
            Decision::Report {
                state: "error",
                message: format!(
                    "reboot strategy `{strategy}` is not implemented in this version: no reboot will be coordinated; set reboot-strategy = \"reboot\" or \"off\" in /etc/tandem/update.toml"
                ),
            }
        } else {
            Decision::Report {
                state: "idle",
                message: format!("no reboot needed (strategy {strategy})"),
            }
        };
    };
    match strategy {
        RebootStrategy::Reboot => match requested {
            Some(ago) if ago < REBOOT_RETRY => Decision::Report {
                state: "rebooting",
                message: format!(
                    "reboot into {version} (slot {slot}) requested {} s ago",
                    ago.as_secs()
                ),
            },
            _ => Decision::Reboot {
                reason: format!(
                    "{version} is installed in slot {slot} and the reboot strategy is `reboot`"
                ),
            },
        },
        RebootStrategy::Off => Decision::Report {
            state: "reboot-needed",
            message: format!(
                "reboot needed: {version} is installed in slot {slot}; the reboot strategy is `off`, reboot when convenient (`tandemctl reboot`)"
            ),
        },
        RebootStrategy::EtcdLock | RebootStrategy::Fleetlock => Decision::Report {
            state: "error",
            message: format!(
                "reboot needed for {version} (slot {slot}), but reboot strategy `{strategy}` is not implemented in this version: not rebooting; reboot by hand (`tandemctl reboot`) or set reboot-strategy = \"reboot\""
            ),
        },
    }
}

/// A line on standard output (the service log): `tandem-agent: …`.
fn log(message: &str) {
    let _ = std::io::stdout()
        .lock()
        .write_all(format!("tandem-agent: {message}\n").as_bytes());
}

/// Asks PID 1 to reboot, as busybox's `reboot` does.
pub fn reboot_via_init() -> std::io::Result<()> {
    // SAFETY: kill(2) with a constant pid and signal.
    if unsafe { libc::kill(1, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The agent's loop: never returns. `reboot` is called for a reboot.
pub fn run(socket: &Path, reboot: &dyn Fn() -> std::io::Result<()>) -> ! {
    log(&format!("started, watching {}", socket.display()));
    let mut requested: Option<Instant> = None;
    let mut last_report: Option<(String, String)> = None;
    let mut last_error = String::new();
    loop {
        match updater::cli::status(socket) {
            Err(e) => {
                let msg = e.to_string();
                if msg != last_error {
                    log(&format!(
                        "cannot read the updater's status: {msg}; retrying every {} s",
                        POLL.as_secs()
                    ));
                    last_error = msg;
                }
            }
            Ok(status) => {
                last_error.clear();
                let (state, message) = match decide(&status, requested.map(|t| t.elapsed())) {
                    Decision::Reboot { reason } => {
                        log(&format!("rebooting: {reason}"));
                        requested = Some(Instant::now());
                        if let Err(e) = reboot() {
                            log(&format!("asking init to reboot failed: {e}"));
                        }
                        ("rebooting", format!("rebooting: {reason}"))
                    }
                    Decision::Report { state, message } => (state, message),
                };
                let report = (state.to_string(), message.clone());
                if last_report.as_ref() != Some(&report) {
                    log(&format!("{state}: {message}"));
                    let req = Request::AgentReport {
                        report: AgentReport {
                            strategy: status.reboot_strategy,
                            state: state.to_string(),
                            message,
                            at: updater::clock::now_unix(),
                        },
                    };
                    if api::call(socket, &req).is_ok() {
                        last_report = Some(report);
                    }
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: UpdateState, strategy: RebootStrategy) -> UpdateStatus {
        UpdateStatus {
            state,
            reboot_strategy: strategy,
            ..Default::default()
        }
    }

    fn need() -> UpdateState {
        UpdateState::UpdatedNeedReboot {
            version: "1.1.0".into(),
            slot: "B".into(),
        }
    }

    #[test]
    fn reboot_strategy_reboots_once_per_retry_period() {
        let s = status(need(), RebootStrategy::Reboot);
        assert!(
            matches!(decide(&s, None), Decision::Reboot { reason } if reason.contains("1.1.0"))
        );
        assert!(matches!(
            decide(&s, Some(Duration::from_secs(3))),
            Decision::Report {
                state: "rebooting",
                ..
            }
        ));
        assert!(matches!(
            decide(&s, Some(REBOOT_RETRY)),
            Decision::Reboot { .. }
        ));
    }

    #[test]
    fn off_only_reports() {
        let s = status(need(), RebootStrategy::Off);
        assert!(
            matches!(decide(&s, None), Decision::Report { state: "reboot-needed", message } if message.contains("tandemctl reboot"))
        );
    }

    #[test]
    fn lock_strategies_are_reported_not_implemented() {
        for strategy in [RebootStrategy::EtcdLock, RebootStrategy::Fleetlock] {
            for state in [need(), UpdateState::Idle] {
                match decide(&status(state, strategy), None) {
                    Decision::Report {
                        state: "error",
                        message,
                    } => {
                        assert!(
                            message.contains("not implemented in this version"),
                            "{message}"
                        )
                    }
                    other => panic!("{strategy}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn nothing_to_do_without_an_update() {
        for state in [
            UpdateState::Idle,
            UpdateState::Checking,
            UpdateState::Error {
                reason: "x".into(),
                action: "y".into(),
            },
            UpdateState::RolledBack {
                version: "1.1".into(),
                reason: "z".into(),
            },
        ] {
            assert!(matches!(
                decide(&status(state, RebootStrategy::Reboot), None),
                Decision::Report { state: "idle", .. }
            ));
        }
    }
}
