//! The supervisor: the state of every service, started, restarted and
//! stopped through [`Syscall`], so that its bookkeeping is host-testable.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Exit, ServiceDef, StdioMode, console_tty, next_streak, restart_after};
use crate::error::Error;
use crate::status::{ServiceState, ServiceStatus};
use crate::syscall::Syscall;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Disabled,
    /// `after_network`, and the network is not settled yet.
    WaitingForNetwork,
    Due(Instant),
    Running {
        pid: i32,
        since: Instant,
    },
    Stopping {
        pid: i32,
    },
    Done,
}

#[derive(Debug)]
struct Unit {
    def: ServiceDef,
    state: State,
    restarts: u32,
    streak: u32,
    last_exit: Option<Exit>,
    last_error: Option<String>,
}

/// A change worth a console line.
#[derive(Debug)]
pub enum Event {
    /// Started.
    Started {
        /// Service.
        name: String,
        /// PID.
        pid: i32,
    },
    /// Could not start.
    SpawnFailed(Error),
    /// Exited; `restart_in` when it will be restarted.
    Exited {
        /// Service.
        name: String,
        /// How.
        exit: Exit,
        /// Delay before restart, if any.
        restart_in: Option<Duration>,
    },
}

/// The supervised services.
#[derive(Debug)]
pub struct Supervisor {
    units: Vec<Unit>,
    console: PathBuf,
}

impl Supervisor {
    /// Services from `defs`, enabled ones due now.
    pub fn new(defs: Vec<ServiceDef>, now: Instant) -> Supervisor {
        let units = defs
            .into_iter()
            .map(|def| Unit {
                state: match (def.spec.enabled, def.spec.after_network) {
                    (false, _) => State::Disabled,
                    (true, true) => State::WaitingForNetwork,
                    (true, false) => State::Due(now),
                },
                def,
                restarts: 0,
                streak: 0,
                last_exit: None,
                last_error: None,
            })
            .collect();
        Supervisor {
            units,
            console: console_tty(),
        }
    }

    /// Starts every service that is due.
    pub fn start_due(&mut self, sys: &mut dyn Syscall, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..self.units.len() {
            let State::Due(at) = self.units[i].state else {
                continue;
            };
            if at > now {
                continue;
            }
            match sys.spawn_service(&self.units[i].def, &self.console) {
                Ok(pid) => {
                    let u = &mut self.units[i];
                    u.state = State::Running { pid, since: now };
                    u.last_error = None;
                    events.push(Event::Started {
                        name: u.def.name.clone(),
                        pid,
                    });
                }
                Err(err) => {
                    let u = &mut self.units[i];
                    // A program that cannot start is a quick failure.
                    let exit = Exit::Code(127);
                    let delay = restart_after(
                        u.def.spec.restart,
                        exit,
                        Duration::ZERO,
                        u.streak,
                        base(&u.def),
                    );
                    u.streak = next_streak(u.streak, Duration::ZERO);
                    u.last_exit = Some(exit);
                    u.last_error = Some(err.to_string());
                    u.state = delay.map_or(State::Done, |d| State::Due(now + d));
                    events.push(Event::SpawnFailed(err));
                }
            }
        }
        events
    }

    /// The network is configured, or the boot stopped waiting for it: the
    /// `after_network` services are due now. Later restarts do not wait.
    pub fn network_settled(&mut self, now: Instant) {
        for u in &mut self.units {
            if u.state == State::WaitingForNetwork {
                u.state = State::Due(now);
            }
        }
    }

    /// Records the exit of `pid`; `None` if it is not a service (an orphan).
    pub fn on_exit(&mut self, pid: i32, exit: Exit, now: Instant) -> Option<Event> {
        let u = self.units.iter_mut().find(|u| match u.state {
            State::Running { pid: p, .. } | State::Stopping { pid: p } => p == pid,
            _ => false,
        })?;
        u.last_exit = Some(exit);
        let State::Running { since, .. } = u.state else {
            u.state = State::Done;
            return Some(Event::Exited {
                name: u.def.name.clone(),
                exit,
                restart_in: None,
            });
        };
        let ran_for = now.saturating_duration_since(since);
        let delay = restart_after(u.def.spec.restart, exit, ran_for, u.streak, base(&u.def));
        u.streak = next_streak(u.streak, ran_for);
        u.state = match delay {
            Some(d) => {
                u.restarts += 1;
                State::Due(now + d)
            }
            None => State::Done,
        };
        Some(Event::Exited {
            name: u.def.name.clone(),
            exit,
            restart_in: delay,
        })
    }

    /// When the next restart is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Due(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Sends SIGTERM to every running service's process group and returns
    /// the longest stop timeout among them. No service is restarted after.
    pub fn terminate_all(&mut self, sys: &mut dyn Syscall) -> Duration {
        let mut longest = Duration::ZERO;
        for u in &mut self.units {
            match u.state {
                State::Running { pid, .. } => {
                    let _ = sys.kill(-pid, libc::SIGTERM);
                    // An interactive shell ignores SIGTERM but not a hangup.
                    if u.def.spec.stdio == StdioMode::Tty {
                        let _ = sys.kill(-pid, libc::SIGHUP);
                    }
                    let _ = sys.kill(-pid, libc::SIGCONT);
                    longest = longest.max(Duration::from_secs(u.def.spec.stop_timeout_secs));
                    u.state = State::Stopping { pid };
                }
                State::Due(_) | State::WaitingForNetwork => u.state = State::Done,
                _ => {}
            }
        }
        longest
    }

    /// PIDs still stopping.
    pub fn stopping(&self) -> Vec<i32> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Stopping { pid } => Some(pid),
                _ => None,
            })
            .collect()
    }

    /// Names and PIDs of the services still stopping.
    pub fn stopping_names(&self) -> Vec<(String, i32)> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Stopping { pid } => Some((u.def.name.clone(), pid)),
                _ => None,
            })
            .collect()
    }

    /// Status for /run/tandem/status.json.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.units
            .iter()
            .map(|u| {
                let (state, pid) = match u.state {
                    State::Disabled => (ServiceState::Disabled, None),
                    State::Due(_) if u.last_exit.is_some() => {
                        (ServiceState::WaitingToRestart, None)
                    }
                    State::Due(_) => (ServiceState::Starting, None),
                    State::WaitingForNetwork => (ServiceState::WaitingForNetwork, None),
                    State::Running { pid, .. } => (ServiceState::Running, Some(pid)),
                    State::Stopping { pid } => (ServiceState::Stopping, Some(pid)),
                    State::Done if u.last_exit.is_some_and(Exit::success) => {
                        (ServiceState::Exited, None)
                    }
                    State::Done => (ServiceState::Failed, None),
                };
                let last_exit = match (&u.last_error, u.last_exit) {
                    (Some(e), _) => Some(e.clone()),
                    (None, e) => e.map(|e| e.to_string()),
                };
                ServiceStatus {
                    name: u.def.name.clone(),
                    source: u.def.source.clone(),
                    state,
                    pid,
                    restarts: u.restarts,
                    last_exit,
                }
            })
            .collect()
    }
}

fn base(def: &ServiceDef) -> Duration {
    Duration::from_millis(def.spec.restart_delay_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{Restart, test_def as def};
    use crate::syscall::test::TestSyscall;

    #[test]
    fn after_network_services_wait_until_the_network_settles() {
        let t0 = Instant::now();
        let mut net = def("agent", Restart::Always);
        net.spec.after_network = true;
        let mut off = def("off", Restart::Always);
        off.spec.enabled = false;
        off.spec.after_network = true;
        let mut s = Supervisor::new(vec![def("console", Restart::Always), net, off], t0);
        assert_eq!(s.next_due(), Some(t0), "the console is due at once");
        s.units[0].state = State::Running { pid: 10, since: t0 };
        assert_eq!(s.next_due(), None, "nothing else is due before the network");
        assert_eq!(s.status()[1].state, ServiceState::WaitingForNetwork);

        let t1 = t0 + Duration::from_millis(80);
        s.network_settled(t1);
        assert_eq!(s.next_due(), Some(t1));
        assert_eq!(s.status()[1].state, ServiceState::Starting);
        assert_eq!(
            s.status()[2].state,
            ServiceState::Disabled,
            "disabled stays disabled"
        );

        // A restart after the network settled does not wait again.
        s.units[1].state = State::Running { pid: 11, since: t1 };
        let t2 = t1 + Duration::from_secs(1);
        s.on_exit(11, Exit::Code(1), t2);
        assert_eq!(s.next_due(), Some(t2 + Duration::from_millis(500)));
    }

    #[test]
    fn shutdown_drops_services_still_waiting_for_the_network() {
        let t0 = Instant::now();
        let mut net = def("agent", Restart::Always);
        net.spec.after_network = true;
        let mut s = Supervisor::new(vec![net], t0);
        s.terminate_all(&mut TestSyscall::default());
        s.network_settled(t0);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn supervisor_restarts_by_policy() {
        let t0 = Instant::now();
        let defs = vec![def("a", Restart::Always), def("n", Restart::Never)];
        let mut s = Supervisor::new(defs, t0);
        // Pretend both started (spawning is not part of this test).
        s.units[0].state = State::Running { pid: 10, since: t0 };
        s.units[1].state = State::Running { pid: 11, since: t0 };
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(
            s.on_exit(10, Exit::Code(0), t1),
            Some(Event::Exited {
                restart_in: Some(_),
                ..
            })
        ));
        assert!(matches!(
            s.on_exit(11, Exit::Code(1), t1),
            Some(Event::Exited {
                restart_in: None,
                ..
            })
        ));
        assert!(
            s.on_exit(99, Exit::Code(0), t1).is_none(),
            "orphans are not services"
        );
        assert_eq!(s.next_due(), Some(t1 + Duration::from_millis(500)));
        let st = s.status();
        assert_eq!(st[0].state, ServiceState::WaitingToRestart);
        assert_eq!(st[0].restarts, 1);
        assert_eq!(st[1].state, ServiceState::Failed);
        assert_eq!(st[1].last_exit.as_deref(), Some("exit status 1"));
        // At shutdown nothing is restarted.
        s.terminate_all(&mut TestSyscall::default());
        assert_eq!(s.next_due(), None);
    }
}
