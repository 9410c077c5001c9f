//! Is this boot healthy? Decides when an unconfirmed slot (priority > 0,
//! not successful) is marked successful, or given up.
//!
//! Healthy means: the system init declared `system ready`, every enabled
//! service is `running` (or `exited` with status 0) and has stayed so for
//! the grace period, and then every administrator's `[[health-check]]`
//! exits 0 within its timeout. Not healthy by the deadline (counted from
//! kernel start) means the slot is given up. There is no fixed timer: the
//! slot is marked from real health, explicitly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::HealthCheck;
use crate::node;

/// How long to wait before running failed administrator checks again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Whether the system init's status shows a working system right now.
pub fn system_ok(status: Option<&node::Status>) -> Result<(), String> {
    let s = status.ok_or("the system init has not published /run/tandem/status.json yet")?;
    if s.boot.system_ready_us.is_none() {
        return Err("the system is not ready yet".into());
    }
    for svc in &s.services {
        if !svc.state.is_healthy() {
            let last = svc
                .last_exit
                .as_ref()
                .map(|l| format!(", last: {l}"))
                .unwrap_or_default();
            return Err(format!("service {} is {}{last}", svc.name, svc.state));
        }
    }
    Ok(())
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Not healthy yet; why.
    Wait(String),
    /// The system has been up for the grace period: run the admin checks.
    RunChecks,
    /// The deadline passed; why it was not healthy.
    GiveUp(String),
}

/// Tracks health over time (times are since boot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tracker {
    ok_since: Option<Duration>,
    checks_failed_at: Option<Duration>,
    reason: String,
}

impl Tracker {
    /// Folds in one observation of the system at `now` and says what to do.
    pub fn observe(
        &mut self,
        now: Duration,
        system: Result<(), String>,
        grace: Duration,
        deadline: Duration,
    ) -> Step {
        match system {
            Err(r) => {
                self.ok_since = None;
                self.reason = r;
            }
            Ok(()) => {
                let since = *self.ok_since.get_or_insert(now);
                if now.saturating_sub(since) < grace {
                    self.reason = format!(
                        "system ready and services running for {} s of the {} s grace period",
                        now.saturating_sub(since).as_secs(),
                        grace.as_secs()
                    );
                } else if self
                    .checks_failed_at
                    .is_none_or(|t| now.saturating_sub(t) >= RECHECK)
                {
                    if now >= deadline && self.checks_failed_at.is_some() {
                        return Step::GiveUp(self.reason.clone());
                    }
                    return Step::RunChecks;
                }
            }
        }
        if now >= deadline {
            Step::GiveUp(self.reason.clone())
        } else {
            Step::Wait(self.reason.clone())
        }
    }

    /// The admin checks failed at `now` because of `reason`.
    pub fn checks_failed(&mut self, now: Duration, reason: String) {
        self.checks_failed_at = Some(now);
        self.reason = reason;
    }
}

/// Runs one check: exit status 0 within its timeout passes.
pub fn run_check(check: &HealthCheck) -> Result<(), String> {
    let Some((program, args)) = check.exec.split_first() else {
        return Err(format!("health check {} has no program", check.name));
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "health check {} ({program}) could not start: {e}",
                check.name
            )
        })?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) if st.success() => return Ok(()),
            Ok(Some(st)) => return Err(format!("health check {} failed ({st})", check.name)),
            Ok(None) if start.elapsed() >= check.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "health check {} did not finish within {} s",
                    check.name,
                    check.timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("health check {}: waiting failed: {e}", check.name)),
        }
    }
}

/// Runs every check in order; the first failure is the answer.
pub fn run_checks(checks: &[HealthCheck]) -> Result<(), String> {
    checks.iter().try_for_each(run_check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{BootTimes, ServiceState, ServiceStatus, Status};

    fn status(ready: bool, services: &[(&str, ServiceState)]) -> Status {
        Status {
            boot: BootTimes {
                system_ready_us: ready.then_some(1),
                ..Default::default()
            },
            services: services
                .iter()
                .map(|(n, s)| ServiceStatus {
                    name: n.to_string(),
                    state: *s,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn system_health() {
        assert!(system_ok(None).is_err());
        assert!(
            system_ok(Some(&status(false, &[])))
                .unwrap_err()
                .contains("not ready")
        );
        assert!(
            system_ok(Some(&status(
                true,
                &[
                    ("a", ServiceState::Running),
                    ("b", ServiceState::Disabled),
                    ("c", ServiceState::Exited)
                ]
            )))
            .is_ok()
        );
        let e = system_ok(Some(&status(
            true,
            &[
                ("a", ServiceState::Running),
                ("web", ServiceState::WaitingToRestart),
            ],
        )))
        .unwrap_err();
        assert_eq!(e, "service web is waiting to restart");
    }

    #[test]
    fn grace_then_checks_then_deadline() {
        let s = Duration::from_secs;
        let (grace, deadline) = (s(10), s(300));
        let mut t = Tracker::default();
        assert!(
            matches!(t.observe(s(5), Err("not ready".into()), grace, deadline), Step::Wait(r) if r == "not ready")
        );
        assert!(matches!(
            t.observe(s(6), Ok(()), grace, deadline),
            Step::Wait(_)
        ));
        assert!(
            matches!(t.observe(s(15), Ok(()), grace, deadline), Step::Wait(_)),
            "only 9 s"
        );
        // A service flapping restarts the grace period.
        assert!(matches!(
            t.observe(s(15), Err("svc".into()), grace, deadline),
            Step::Wait(_)
        ));
        assert!(matches!(
            t.observe(s(16), Ok(()), grace, deadline),
            Step::Wait(_)
        ));
        assert_eq!(t.observe(s(26), Ok(()), grace, deadline), Step::RunChecks);
        t.checks_failed(s(27), "health check db failed".into());
        assert!(
            matches!(t.observe(s(28), Ok(()), grace, deadline), Step::Wait(r) if r.contains("db"))
        );
        assert_eq!(t.observe(s(33), Ok(()), grace, deadline), Step::RunChecks);
        t.checks_failed(s(299), "health check db failed".into());
        assert_eq!(
            t.observe(s(301), Ok(()), grace, deadline),
            Step::GiveUp("health check db failed".into())
        );
        let mut t = Tracker::default();
        assert_eq!(
            t.observe(s(400), Err("no".into()), grace, deadline),
            Step::GiveUp("no".into())
        );
    }

    #[test]
    fn checks_run_with_timeouts() {
        let check = |exec: &[&str], secs| HealthCheck {
            name: "t".into(),
            exec: exec.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(secs),
        };
        assert_eq!(run_check(&check(&["/bin/sh", "-c", "exit 0"], 5)), Ok(()));
        assert!(
            run_check(&check(&["/bin/sh", "-c", "exit 3"], 5))
                .unwrap_err()
                .contains("exit status: 3")
        );
        assert!(
            run_check(&check(&["/bin/sh", "-c", "sleep 5"], 0))
                .unwrap_err()
                .contains("did not finish")
        );
        assert!(
            run_check(&check(&["/nonexistent"], 1))
                .unwrap_err()
                .contains("could not start")
        );
    }
}
