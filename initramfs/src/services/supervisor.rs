//! The supervisor: the state of every service, started in order, restarted
//! and stopped through [`Syscall`], each in its own cgroup when the node has
//! cgroups, so that its bookkeeping is host-testable.
//!
//! A service's cgroup ([`tandem_contract::cgroup::service`]) is created,
//! with its limits, before its first start and kept across restarts; what
//! its main process leaves behind there is killed when it ends; the cgroup
//! is removed once the service ended for good and the cgroup is empty.
//!
//! A service is stopped on request (`tandemctl stop`, [`Supervisor::stop`])
//! the way the shutdown stops it, and is then `stopped` until started again
//! ([`Supervisor::start_now`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tandem_contract::control::{ControlError, StopOutcome, StopReport};

use super::order::{Gate, Node, Order, OrderWarning, Progress};
use super::{
    ADMIN_DIR, Exit, ServiceDef, ServiceType, StdioMode, console_tty, next_streak, restart_after,
};
use crate::error::Error;
use crate::status::{ServiceState, ServiceStatus};
use crate::syscall::Syscall;

/// How long the processes of a service get to end after they were killed
/// (`cgroup.kill` or SIGKILL) before PID 1 stops waiting for them, and how
/// long an emptied cgroup's removal is retried.
pub const KILL_WAIT: Duration = Duration::from_secs(2);
/// Time between attempts to remove a cgroup that still held a process.
const REMOVE_RETRY: Duration = Duration::from_millis(50);
/// Time between looks at a stopping service's cgroup once its main process
/// ended (nothing signals that a cgroup emptied).
pub const STOP_POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Disabled,
    /// Not started yet: waits for the network (`after_network`) or for
    /// services it starts after (`after`).
    Waiting,
    /// A service it starts after failed (these): it does not start.
    Blocked(Vec<usize>),
    Due(Instant),
    Running {
        pid: i32,
        since: Instant,
    },
    /// Asked to stop: `stopper` while its stop commands run (the main
    /// process gets SIGTERM once they ended), `pid` until the main process
    /// ended, then until its cgroup is empty. Past `deadline` what is left
    /// is killed (`killed`; `timed_out` when it was its stop timeout that
    /// passed), and waited for until [`KILL_WAIT`] later.
    Stopping {
        pid: Option<i32>,
        stopper: Option<i32>,
        deadline: Instant,
        killed: bool,
        timed_out: bool,
        /// Stopped on request: [`State::Stopped`] afterwards; else (the
        /// shutdown) [`State::Done`].
        request: Option<StopRequest>,
    },
    Done,
    /// Stopped on request; not started again until asked.
    Stopped,
}

/// A stop asked for by a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct StopRequest {
    /// When.
    at: Instant,
    /// The service's state then.
    was: ServiceState,
}

/// What [`Supervisor::start_now`] did.
#[derive(Debug)]
pub enum StartNow {
    /// Spawned with this PID.
    Started(i32),
    /// It runs already (this PID).
    AlreadyRunning(i32),
    /// It is being stopped: start it once it stopped.
    Stopping,
    /// It could not be started (its restart policy applies).
    Failed(String),
}

/// A service's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cgroup {
    /// No cgroup: the node has none, the service has not started yet, or
    /// its cgroup was removed (or could not be made).
    None,
    /// Exists; kept across restarts.
    Live,
    /// The service ended for good: the cgroup goes once it is empty, tried
    /// at `next`, given up at `until`.
    Removing { next: Instant, until: Instant },
}

#[derive(Debug)]
struct Unit {
    def: ServiceDef,
    state: State,
    restarts: u32,
    streak: u32,
    last_exit: Option<Exit>,
    last_error: Option<String>,
    /// Spawned at least once in this boot.
    started: bool,
    /// A run ended with status 0 (a oneshot is done).
    succeeded: bool,
    cgroup: Cgroup,
    /// Its cgroup's path.
    dir: PathBuf,
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
    /// Its stop commands ended.
    StopCommandsEnded {
        /// Service.
        name: String,
        /// How.
        exit: Exit,
        /// The main process that got SIGTERM then (`None`: it had ended).
        terminated: Option<i32>,
    },
    /// Exited; `restart_in` when it will be restarted.
    Exited {
        /// Service.
        name: String,
        /// How.
        exit: Exit,
        /// Delay before restart, if any.
        restart_in: Option<Duration>,
        /// Processes it left in its cgroup were killed.
        killed_left: bool,
    },
    /// Will not start in this boot: services it starts after failed.
    Blocked {
        /// Service.
        name: String,
        /// The services that failed.
        by: Vec<String>,
    },
    /// Something about a service that does not keep it from running: a
    /// limit not written, a cgroup not made or left behind.
    Warning(Error),
}

/// What one [`Supervisor::stop_step`] or [`Supervisor::stop_progress`] did.
#[derive(Debug, Default)]
pub struct StopStep {
    /// Services stopped on request that are stopped now (index, report).
    pub stopped: Vec<(usize, StopReport)>,
    /// Services (and their main PID if it still ran) whose processes were
    /// killed because their stop timeout passed.
    pub killed: Vec<(String, Option<i32>)>,
    /// Services whose processes did not end even when killed; no longer
    /// waited for.
    pub gave_up: Vec<String>,
    /// Cgroups left behind.
    pub warnings: Vec<Error>,
    /// Whether anything is still stopping (or a cgroup still to remove;
    /// [`Supervisor::stop_step`] only).
    pub left: bool,
}

/// The supervised services.
#[derive(Debug)]
pub struct Supervisor {
    units: Vec<Unit>,
    order: Order,
    warnings: Vec<OrderWarning>,
    /// Events of changes made outside [`Supervisor::start_due`] (a service
    /// blocked by another's exit), handed out by its next call.
    pending: Vec<Event>,
    console: PathBuf,
    cgroups: bool,
    network_settled: bool,
    stopping: bool,
    /// Stop commands that could not be started, for the next
    /// [`Supervisor::stop_progress`].
    stop_failures: Vec<Error>,
}

impl Supervisor {
    /// Services from `defs` (without cgroups until [`Supervisor::with_cgroups`]);
    /// enabled ones that wait for nothing are due now. Problems with their
    /// `after` are kept for [`Supervisor::take_warnings`].
    pub fn new(defs: Vec<ServiceDef>, now: Instant) -> Supervisor {
        let nodes: Vec<Node> = defs
            .iter()
            .map(|d| Node {
                name: &d.name,
                enabled: d.spec.enabled,
                after: &d.spec.after,
            })
            .collect();
        let (order, warnings) = Order::new(&nodes);
        let units = defs
            .into_iter()
            .map(|def| Unit {
                state: if def.spec.enabled {
                    State::Waiting
                } else {
                    State::Disabled
                },
                dir: tandem_contract::cgroup::service(&def.name),
                def,
                restarts: 0,
                streak: 0,
                last_exit: None,
                last_error: None,
                started: false,
                succeeded: false,
                cgroup: Cgroup::None,
            })
            .collect();
        let mut s = Supervisor {
            units,
            order,
            warnings,
            pending: Vec::new(),
            console: console_tty(),
            cgroups: false,
            network_settled: false,
            stopping: false,
            stop_failures: Vec::new(),
        };
        s.promote(now);
        s
    }

    /// Whether each service runs in a cgroup of its own (cgroup2 is
    /// mounted and the services' cgroup exists).
    pub fn with_cgroups(mut self, on: bool) -> Supervisor {
        self.cgroups = on;
        self
    }

    /// The problems found in the services' `after` (once).
    pub fn take_warnings(&mut self) -> Vec<OrderWarning> {
        std::mem::take(&mut self.warnings)
    }

    /// What service `i` is for those that start after it.
    fn progress(&self, i: usize) -> Progress {
        let u = &self.units[i];
        let done = match u.def.spec.kind {
            ServiceType::Simple => u.started,
            ServiceType::Oneshot => u.succeeded,
        };
        if done {
            Progress::Started
        } else if matches!(u.state, State::Done | State::Blocked(_) | State::Disabled) {
            Progress::Failed
        } else {
            Progress::Pending
        }
    }

    /// Service `i`, if waiting, becomes due (the network and the services it
    /// starts after are there) or blocked (one of those failed).
    fn promote_one(&mut self, i: usize, now: Instant) {
        if self.stopping || self.units[i].state != State::Waiting {
            return;
        }
        match self.order.gate(i, |j| self.progress(j)) {
            Gate::Blocked(by) => {
                let names = self.names(&by);
                let u = &mut self.units[i];
                u.state = State::Blocked(by);
                self.pending.push(Event::Blocked {
                    name: u.def.name.clone(),
                    by: names,
                });
            }
            Gate::Waiting(_) => {}
            Gate::Open => {
                let u = &mut self.units[i];
                if !u.def.spec.after_network || self.network_settled {
                    u.state = State::Due(now);
                }
            }
        }
    }

    /// Every waiting service whose turn came is due (in start order, so a
    /// chain of blocked services is blocked at once).
    fn promote(&mut self, now: Instant) {
        for k in 0..self.order.topo().len() {
            let i = self.order.topo()[k];
            self.promote_one(i, now);
        }
    }

    fn names(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .filter_map(|&j| self.units.get(j).map(|u| u.def.name.clone()))
            .collect()
    }

    /// Starts every service that is due, in start order: a service due
    /// once another started starts in the same call.
    pub fn start_due(&mut self, sys: &mut dyn Syscall, now: Instant) -> Vec<Event> {
        let mut events = std::mem::take(&mut self.pending);
        for k in 0..self.order.topo().len() {
            let i = self.order.topo()[k];
            self.promote_one(i, now);
            events.append(&mut self.pending);
            match self.units[i].state {
                State::Due(at) if at <= now && !self.stopping => {
                    self.start(i, sys, now, &mut events)
                }
                _ => {}
            }
        }
        events
    }

    /// The cgroup for service `i`'s next run: made (with its limits) before
    /// the first, emptied of anything left before a restart. `None` without
    /// cgroups or when it cannot be made (the service runs anyway).
    fn prepare_cgroup(
        &mut self,
        i: usize,
        sys: &mut dyn Syscall,
        events: &mut Vec<Event>,
    ) -> Option<PathBuf> {
        if !self.cgroups {
            return None;
        }
        let u = &mut self.units[i];
        if u.cgroup == Cgroup::Live {
            if sys.cgroup_populated(&u.dir).unwrap_or(false) {
                let _ = sys.cgroup_kill(&u.dir);
            }
            return Some(u.dir.clone());
        }
        if let Err(err) = sys.cgroup_create(&u.dir) {
            events.push(Event::Warning(Error::Cgroup {
                what: "creating",
                path: u.dir.clone(),
                err,
            }));
            return None;
        }
        u.cgroup = Cgroup::Live;
        for (file, value) in u.def.spec.limits.files() {
            if let Err(err) = sys.cgroup_write(&u.dir, file, &value.to_string()) {
                events.push(Event::Warning(Error::Cgroup {
                    what: "writing",
                    path: u.dir.join(file),
                    err,
                }));
            }
        }
        Some(u.dir.clone())
    }

    fn start(&mut self, i: usize, sys: &mut dyn Syscall, now: Instant, events: &mut Vec<Event>) {
        let cgroup = self.prepare_cgroup(i, sys, events);
        match sys.spawn_service(&self.units[i].def, &self.console, cgroup.as_deref()) {
            Ok(pid) => {
                let u = &mut self.units[i];
                u.state = State::Running { pid, since: now };
                u.started = true;
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
                if matches!(err, Error::Cgroup { .. }) {
                    // Its cgroup went away: made again for the next try.
                    u.cgroup = Cgroup::None;
                }
                events.push(Event::SpawnFailed(err));
                match delay {
                    Some(d) => u.state = State::Due(now + d),
                    None => self.finish(i, now),
                }
            }
        }
    }

    /// Service `i` ended for good: its cgroup goes once empty.
    fn finish(&mut self, i: usize, now: Instant) {
        let u = &mut self.units[i];
        u.state = State::Done;
        if u.cgroup == Cgroup::Live {
            u.cgroup = Cgroup::Removing {
                next: now,
                until: now + KILL_WAIT,
            };
        }
    }

    /// The network is configured, or the boot stopped waiting for it: the
    /// `after_network` services are due now (those with nothing else to
    /// wait for). Later restarts do not wait.
    pub fn network_settled(&mut self, now: Instant) {
        self.network_settled = true;
        self.promote(now);
    }

    /// Records the exit of `pid`; `None` if it is not a service (an orphan).
    /// What the service left in its cgroup is killed (before a restart, or
    /// for good).
    pub fn on_exit(
        &mut self,
        sys: &mut dyn Syscall,
        pid: i32,
        exit: Exit,
        now: Instant,
    ) -> Option<Event> {
        if let Some(i) = self
            .units
            .iter()
            .position(|u| matches!(u.state, State::Stopping { stopper: Some(p), .. } if p == pid))
        {
            return Some(self.stop_commands_ended(i, sys, exit, now));
        }
        let i = self.units.iter().position(|u| match u.state {
            State::Running { pid: p, .. } | State::Stopping { pid: Some(p), .. } => p == pid,
            _ => false,
        })?;
        let u = &mut self.units[i];
        u.last_exit = Some(exit);
        u.succeeded |= exit.success();
        let name = u.def.name.clone();
        // Its main process is what a service is: what it leaves behind in
        // its cgroup is killed (before a restart, or for good; once).
        // Not while its stop commands run there: they end it.
        let keep = matches!(
            u.state,
            State::Stopping { killed: true, .. }
                | State::Stopping {
                    stopper: Some(_),
                    ..
                }
        );
        let killed_left = !keep
            && u.cgroup == Cgroup::Live
            && sys.cgroup_populated(&u.dir).unwrap_or(false)
            && sys.cgroup_kill(&u.dir).is_ok();
        let since = match u.state {
            State::Running { since, .. } => since,
            State::Stopping {
                stopper,
                deadline,
                killed,
                timed_out,
                request,
                ..
            } => {
                // Stopping: [`stop_progress`] waits for the cgroup to empty.
                u.state = if killed_left {
                    State::Stopping {
                        pid: None,
                        stopper,
                        deadline: now + KILL_WAIT,
                        killed: true,
                        timed_out,
                        request,
                    }
                } else {
                    State::Stopping {
                        pid: None,
                        stopper,
                        deadline,
                        killed,
                        timed_out,
                        request,
                    }
                };
                return Some(Event::Exited {
                    name,
                    exit,
                    restart_in: None,
                    killed_left,
                });
            }
            _ => return None,
        };
        let ran_for = now.saturating_duration_since(since);
        let delay = restart_after(u.def.spec.restart, exit, ran_for, u.streak, base(&u.def));
        u.streak = next_streak(u.streak, ran_for);
        match delay {
            Some(d) => {
                u.restarts += 1;
                u.state = State::Due(now + d);
            }
            None => self.finish(i, now),
        }
        self.promote(now);
        Some(Event::Exited {
            name,
            exit,
            restart_in: delay,
            killed_left,
        })
    }

    /// The stop commands of service `i` ended with `exit`: its main process
    /// gets SIGTERM now; if it ended already, what is left in its cgroup
    /// is killed, as after any main process.
    fn stop_commands_ended(
        &mut self,
        i: usize,
        sys: &mut dyn Syscall,
        exit: Exit,
        now: Instant,
    ) -> Event {
        let u = &mut self.units[i];
        let name = u.def.name.clone();
        let State::Stopping {
            pid,
            stopper,
            deadline,
            killed,
            ..
        } = &mut u.state
        else {
            return Event::StopCommandsEnded {
                name,
                exit,
                terminated: None,
            };
        };
        *stopper = None;
        let mut terminated = None;
        match *pid {
            _ if *killed => {}
            Some(main) => {
                send_stop_signals(sys, main, u.def.spec.stdio);
                terminated = Some(main);
            }
            None => {
                if u.cgroup == Cgroup::Live
                    && sys.cgroup_populated(&u.dir).unwrap_or(false)
                    && sys.cgroup_kill(&u.dir).is_ok()
                {
                    *killed = true;
                    *deadline = now + KILL_WAIT;
                }
            }
        }
        Event::StopCommandsEnded {
            name,
            exit,
            terminated,
        }
    }

    /// Removes the cgroups of services that ended for good, once empty;
    /// one still not empty [`KILL_WAIT`] after is left (a warning).
    pub fn sweep(&mut self, sys: &mut dyn Syscall, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for u in &mut self.units {
            let Cgroup::Removing { next, until } = u.cgroup else {
                continue;
            };
            if next > now {
                continue;
            }
            u.cgroup = match sys.cgroup_remove(&u.dir) {
                Ok(()) => Cgroup::None,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && now < until => {
                    Cgroup::Removing {
                        next: now + REMOVE_RETRY,
                        until,
                    }
                }
                Err(err) => {
                    events.push(Event::Warning(Error::Cgroup {
                        what: "removing",
                        path: u.dir.clone(),
                        err,
                    }));
                    Cgroup::None
                }
            };
        }
        events
    }

    /// When a service being stopped is next due a look
    /// ([`Supervisor::stop_progress`]): its stop timeout, or soon once its
    /// main process ended and its cgroup is to empty.
    pub fn next_stop_check(&self, now: Instant) -> Option<Instant> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                // A process's end is a SIGCHLD; a cgroup's is polled.
                State::Stopping {
                    pid,
                    stopper,
                    deadline,
                    ..
                } if pid.is_some() || stopper.is_some() => Some(deadline),
                State::Stopping { deadline, .. } => Some(deadline.min(now + STOP_POLL)),
                _ => None,
            })
            .min()
    }

    /// Whether a service is being stopped.
    pub fn any_stopping(&self) -> bool {
        self.units
            .iter()
            .any(|u| matches!(u.state, State::Stopping { .. }))
    }

    /// When the next restart or cgroup removal is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.units
            .iter()
            .filter_map(|u| match (&u.state, u.cgroup) {
                (State::Due(at), _) => Some(*at),
                (_, Cgroup::Removing { next, .. }) => Some(next),
                _ => None,
            })
            .min()
    }

    /// Stops running service `i`: starts its stop commands if it has any
    /// (in its cgroup), else sends its process group the stop signals
    /// ([`send_stop_signals`]); it has its stop timeout from now.
    fn terminate(
        &mut self,
        i: usize,
        sys: &mut dyn Syscall,
        now: Instant,
        request: Option<StopRequest>,
    ) {
        let u = &mut self.units[i];
        let State::Running { pid, .. } = u.state else {
            return;
        };
        let mut stopper = None;
        if !u.def.spec.exec_stop.is_empty() {
            let cgroup = (u.cgroup == Cgroup::Live).then_some(u.dir.as_path());
            match sys.spawn_stop(&u.def, pid, &self.console, cgroup) {
                Ok(p) => stopper = Some(p),
                Err(e) => self.stop_failures.push(e),
            }
        }
        if stopper.is_none() {
            send_stop_signals(sys, pid, u.def.spec.stdio);
        }
        u.state = State::Stopping {
            pid: Some(pid),
            stopper,
            deadline: now + Duration::from_secs(u.def.spec.stop_timeout_secs),
            killed: false,
            timed_out: false,
            request,
        };
    }

    /// Stops every running service ([`Supervisor::terminate`]); each has
    /// its own stop timeout from now. Nothing starts or restarts after.
    pub fn terminate_all(&mut self, sys: &mut dyn Syscall, now: Instant) {
        self.stopping = true;
        for i in 0..self.units.len() {
            match self.units[i].state {
                State::Running { .. } => self.terminate(i, sys, now, None),
                State::Due(_) | State::Waiting => self.finish(i, now),
                _ => {}
            }
        }
    }

    /// The service called `name`, for a request: an error naming the known
    /// services if there is none, or saying how to enable it if it is
    /// disabled.
    pub fn lookup(&self, name: &str) -> Result<usize, ControlError> {
        let Some(i) = self.units.iter().position(|u| u.def.name == name) else {
            return Err(ControlError::UnknownService {
                service: name.to_string(),
                known: self.units.iter().map(|u| u.def.name.clone()).collect(),
            });
        };
        let u = &self.units[i];
        if u.state == State::Disabled {
            return Err(ControlError::Disabled {
                service: u.def.name.clone(),
                file: u.def.source.clone(),
                admin_file: Path::new(ADMIN_DIR)
                    .join(format!("{}.toml", u.def.name))
                    .display()
                    .to_string(),
            });
        }
        Ok(i)
    }

    /// The name of service `i`.
    pub fn name(&self, i: usize) -> &str {
        self.units.get(i).map_or("", |u| u.def.name.as_str())
    }

    /// Stops service `i` on request, as the shutdown does: its stop
    /// commands, else SIGTERM, now; its cgroup killed after its stop timeout; [`Supervisor::stop_progress`]
    /// reports it stopped once its cgroup is empty, and it stays stopped.
    /// `None` when that is under way; a report at once when it was not
    /// running: one waiting to start (or restart) is stopped (it will not
    /// start), one that ended for good or is blocked is left as it is.
    pub fn stop(&mut self, sys: &mut dyn Syscall, i: usize, now: Instant) -> Option<StopReport> {
        let (was, _) = self.state_of(i);
        let u = self.units.get_mut(i)?;
        match u.state {
            State::Running { .. } => {
                self.terminate(i, sys, now, Some(StopRequest { at: now, was }));
                return None;
            }
            State::Stopping { .. } => return None,
            State::Waiting | State::Due(_) => {
                u.state = State::Stopped;
                if u.cgroup == Cgroup::Live {
                    u.cgroup = Cgroup::Removing {
                        next: now,
                        until: now + KILL_WAIT,
                    };
                }
            }
            State::Disabled | State::Blocked(_) | State::Done | State::Stopped => {}
        }
        Some(StopReport {
            outcome: StopOutcome::NotRunning,
            was,
            exit: None,
            took_ms: 0,
        })
    }

    /// Starts service `i` now, whatever it waited for (the services it
    /// starts after, the network, its restart delay), its restart backoff
    /// reset; the events say what happened. Not while it is being stopped
    /// ([`StartNow::Stopping`]: start it once it stopped) or running.
    pub fn start_now(
        &mut self,
        sys: &mut dyn Syscall,
        i: usize,
        now: Instant,
    ) -> (StartNow, Vec<Event>) {
        let mut events = Vec::new();
        let Some(u) = self.units.get_mut(i) else {
            return (StartNow::Failed("no such service".into()), events);
        };
        match u.state {
            State::Running { pid, .. } => return (StartNow::AlreadyRunning(pid), events),
            State::Stopping { .. } => return (StartNow::Stopping, events),
            _ if self.stopping => {
                return (
                    StartNow::Failed("the system is shutting down".into()),
                    events,
                );
            }
            _ => {}
        }
        u.streak = 0;
        self.start(i, sys, now, &mut events);
        let u = &self.units[i];
        let result = match u.state {
            State::Running { pid, .. } => StartNow::Started(pid),
            _ => StartNow::Failed(
                u.last_error
                    .clone()
                    .unwrap_or_else(|| format!("starting {} failed", u.def.name)),
            ),
        };
        (result, events)
    }

    /// Service `i`, stopping, has stopped: `outcome` for a request.
    fn stopped(&mut self, i: usize, now: Instant, outcome: StopOutcome, step: &mut StopStep) {
        let u = &mut self.units[i];
        let State::Stopping { request, .. } = u.state else {
            return;
        };
        let Some(request) = request else {
            self.finish(i, now);
            return;
        };
        u.state = State::Stopped;
        // Given up: processes are left in it, and it is kept (a start
        // kills what is left first); else it goes.
        if outcome != StopOutcome::GaveUp && u.cgroup == Cgroup::Live {
            u.cgroup = Cgroup::Removing {
                next: now,
                until: now + KILL_WAIT,
            };
        }
        step.stopped.push((
            i,
            StopReport {
                outcome,
                was: request.was,
                exit: u.last_exit.map(|e| e.to_string()),
                took_ms: u64::try_from(now.saturating_duration_since(request.at).as_millis())
                    .unwrap_or(u64::MAX),
            },
        ));
    }

    /// One round of the stops under way (on request, or of the shutdown):
    /// a service whose main process ended and whose cgroup is empty is
    /// stopped; one past its stop timeout is killed (its whole cgroup, or
    /// its process group without cgroups) and given up [`KILL_WAIT`] later.
    pub fn stop_progress(&mut self, sys: &mut dyn Syscall, now: Instant) -> StopStep {
        let mut step = StopStep {
            warnings: std::mem::take(&mut self.stop_failures),
            ..StopStep::default()
        };
        for i in 0..self.units.len() {
            let u = &mut self.units[i];
            let State::Stopping {
                pid,
                stopper,
                deadline,
                killed,
                timed_out,
                request,
            } = u.state
            else {
                continue;
            };
            let live = u.cgroup == Cgroup::Live;
            let empty = pid.is_none()
                && stopper.is_none()
                && !(live && sys.cgroup_populated(&u.dir).unwrap_or(false));
            if empty {
                let outcome = if timed_out {
                    StopOutcome::Killed
                } else {
                    StopOutcome::Stopped
                };
                self.stopped(i, now, outcome, &mut step);
                continue;
            }
            if now < deadline {
                continue;
            }
            if killed {
                step.gave_up.push(u.def.name.clone());
                if request.is_some() {
                    self.stopped(i, now, StopOutcome::GaveUp, &mut step);
                } else {
                    u.state = State::Done;
                    u.cgroup = Cgroup::None;
                }
                continue;
            }
            let by_cgroup = live && sys.cgroup_kill(&u.dir).is_ok();
            if !by_cgroup {
                for group in pid.iter().chain(stopper.iter()) {
                    let _ = sys.kill(-group, libc::SIGKILL);
                }
            }
            step.killed.push((u.def.name.clone(), pid));
            u.state = State::Stopping {
                pid,
                stopper,
                deadline: now + KILL_WAIT,
                killed: true,
                timed_out: true,
                request,
            };
        }
        step
    }

    /// One round of stopping (after [`Supervisor::terminate_all`]):
    /// [`Supervisor::stop_progress`], then the emptied cgroups are removed
    /// ([`Supervisor::sweep`]).
    pub fn stop_step(&mut self, sys: &mut dyn Syscall, now: Instant) -> StopStep {
        let mut step = self.stop_progress(sys, now);
        for ev in self.sweep(sys, now) {
            if let Event::Warning(e) = ev {
                step.warnings.push(e);
            }
        }
        step.left = self.units.iter().any(|u| {
            matches!(u.state, State::Stopping { .. }) || matches!(u.cgroup, Cgroup::Removing { .. })
        });
        step
    }

    /// The state and PID of service `i`.
    pub fn state_of(&self, i: usize) -> (ServiceState, Option<i32>) {
        self.units.get(i).map_or((ServiceState::Failed, None), |u| {
            self.unit_state(i, u, &mut Vec::new(), &mut Vec::new())
        })
    }

    /// The state and PID of `u` (index `i`), and what it waits for or is
    /// blocked by.
    fn unit_state(
        &self,
        i: usize,
        u: &Unit,
        waiting_for: &mut Vec<String>,
        blocked_by: &mut Vec<String>,
    ) -> (ServiceState, Option<i32>) {
        match &u.state {
            State::Disabled => (ServiceState::Disabled, None),
            State::Waiting => {
                if let Gate::Waiting(on) = self.order.gate(i, |j| self.progress(j)) {
                    *waiting_for = self.names(&on);
                }
                if u.def.spec.after_network && !self.network_settled {
                    (ServiceState::WaitingForNetwork, None)
                } else {
                    (ServiceState::WaitingForServices, None)
                }
            }
            State::Blocked(by) => {
                *blocked_by = self.names(by);
                (ServiceState::Blocked, None)
            }
            State::Due(_) if u.last_exit.is_some() => (ServiceState::WaitingToRestart, None),
            State::Due(_) => (ServiceState::Starting, None),
            State::Running { pid, .. } => (ServiceState::Running, Some(*pid)),
            State::Stopping { pid, .. } => (ServiceState::Stopping, *pid),
            State::Done if u.last_exit.is_some_and(Exit::success) => (ServiceState::Exited, None),
            State::Done => (ServiceState::Failed, None),
            State::Stopped => (ServiceState::Stopped, None),
        }
    }

    /// Status for /run/tandem/status.json.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut waiting_for = Vec::new();
                let mut blocked_by = Vec::new();
                let (state, pid) = self.unit_state(i, u, &mut waiting_for, &mut blocked_by);
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
                    kind: u.def.spec.kind,
                    waiting_for,
                    blocked_by,
                    cgroup: (u.cgroup != Cgroup::None).then(|| u.dir.display().to_string()),
                    usage: None,
                }
            })
            .collect()
    }
}

/// Sends SIGTERM to the process group `pid` (SIGHUP too for a `tty`
/// service: an interactive shell ignores SIGTERM but not a hangup), then
/// SIGCONT so that a stopped process sees them.
fn send_stop_signals(sys: &mut dyn Syscall, pid: i32, stdio: StdioMode) {
    let _ = sys.kill(-pid, libc::SIGTERM);
    if stdio == StdioMode::Tty {
        let _ = sys.kill(-pid, libc::SIGHUP);
    }
    let _ = sys.kill(-pid, libc::SIGCONT);
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
        s.on_exit(&mut TestSyscall::default(), 11, Exit::Code(1), t2);
        assert_eq!(s.next_due(), Some(t2 + Duration::from_millis(500)));
    }

    #[test]
    fn shutdown_drops_services_still_waiting_for_the_network() {
        let t0 = Instant::now();
        let mut net = def("agent", Restart::Always);
        net.spec.after_network = true;
        let mut s = Supervisor::new(vec![net], t0);
        s.terminate_all(&mut TestSyscall::default(), t0);
        s.network_settled(t0);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn supervisor_restarts_by_policy() {
        let t0 = Instant::now();
        let defs = vec![def("a", Restart::Always), def("n", Restart::Never)];
        let mut s = Supervisor::new(defs, t0);
        let sys = &mut TestSyscall::default();
        // Pretend both started (spawning is not part of this test).
        s.units[0].state = State::Running { pid: 10, since: t0 };
        s.units[1].state = State::Running { pid: 11, since: t0 };
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(
            s.on_exit(sys, 10, Exit::Code(0), t1),
            Some(Event::Exited {
                restart_in: Some(_),
                ..
            })
        ));
        assert!(matches!(
            s.on_exit(sys, 11, Exit::Code(1), t1),
            Some(Event::Exited {
                restart_in: None,
                ..
            })
        ));
        assert!(
            s.on_exit(sys, 99, Exit::Code(0), t1).is_none(),
            "orphans are not services"
        );
        assert_eq!(s.next_due(), Some(t1 + Duration::from_millis(500)));
        let st = s.status();
        assert_eq!(st[0].state, ServiceState::WaitingToRestart);
        assert_eq!(st[0].restarts, 1);
        assert_eq!(st[1].state, ServiceState::Failed);
        assert_eq!(st[1].last_exit.as_deref(), Some("exit status 1"));
        // At shutdown nothing is restarted.
        s.terminate_all(sys, t1);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_cgroup_removed_behind_its_back_is_made_again() {
        use crate::syscall::test::Call;
        let t0 = Instant::now();
        let sys = &mut TestSyscall::default();
        let mut s = Supervisor::new(vec![def("a", Restart::Always)], t0).with_cgroups(true);
        let dir = tandem_contract::cgroup::service("a");
        s.start_due(sys, t0);
        let _ = sys.kill(100, libc::SIGKILL);
        for (pid, exit) in sys.reap().exited {
            s.on_exit(sys, pid, exit, t0);
        }
        sys.cgroup_remove(&dir).expect("empty: removed");
        let t1 = t0 + Duration::from_millis(500);
        let events = s.start_due(sys, t1);
        assert!(
            matches!(&events[..], [Event::SpawnFailed(Error::Cgroup { .. })]),
            "{events:?}"
        );
        let t2 = t1 + Duration::from_secs(1);
        assert_eq!(s.next_due(), Some(t2));
        let events = s.start_due(sys, t2);
        assert!(matches!(&events[..], [Event::Started { .. }]), "{events:?}");
        let creates = sys
            .calls
            .iter()
            .filter(|r| r.call == Call::CgroupCreate(dir.clone()))
            .count();
        assert_eq!(creates, 2);
        assert_eq!(s.status()[0].cgroup.as_deref(), dir.to_str());
    }

    /// Service `web` (restart always, stop timeout 10 s) with one stop
    /// command, started at once; returns the supervisor and its PID.
    fn web_with_stop_command(sys: &mut TestSyscall, cgroups: bool) -> (Supervisor, i32) {
        let mut web = def("web", Restart::Always);
        web.spec.exec_stop = vec![tandem_contract::service::ExtraCommand {
            exec: vec!["/usr/bin/docker".into(), "stop".into(), "web".into()],
            ignore_failure: false,
        }];
        web.spec.stop_timeout_secs = 10;
        let t0 = sys.now();
        let mut s = Supervisor::new(vec![web], t0).with_cgroups(cgroups);
        let events = s.start_due(sys, t0);
        let Some(Event::Started { pid, .. }) = events.first() else {
            panic!("{events:?}");
        };
        let pid = *pid;
        (s, pid)
    }

    /// Lets `d` of fake time pass and hands the supervisor what ended.
    fn after(s: &mut Supervisor, sys: &mut TestSyscall, d: Duration) -> Vec<Event> {
        sys.sleep(d);
        let now = sys.now();
        let mut events = Vec::new();
        for (pid, exit) in sys.reap().exited {
            events.extend(s.on_exit(sys, pid, exit, now));
        }
        events
    }

    #[test]
    fn stop_commands_run_before_sigterm_and_may_end_the_service() {
        let sys = &mut TestSyscall::default().stop_command(
            "web",
            Duration::from_secs(3),
            Exit::Code(0),
            true,
        );
        let (mut s, main) = web_with_stop_command(sys, true);
        let t0 = sys.now();
        assert!(s.stop(sys, 0, t0).is_none(), "under way");
        let stopper = sys
            .calls
            .iter()
            .find_map(|r| match r.call {
                crate::syscall::test::Call::SpawnStop { pid, main_pid, .. } => {
                    assert_eq!(main_pid, main);
                    Some(pid)
                }
                _ => None,
            })
            .expect("the stop commands were started");
        assert!(
            sys.cgroups()[&tandem_contract::cgroup::service("web")].contains(&stopper),
            "in the service's cgroup"
        );
        assert!(sys.kills().is_empty(), "no signal while they run");
        assert_eq!(s.status()[0].state, ServiceState::Stopping);
        assert_eq!(s.next_stop_check(t0), Some(t0 + Duration::from_secs(10)));

        let events = after(&mut s, sys, Duration::from_secs(3));
        assert!(
            matches!(
                &events[..],
                [
                    Event::Exited {
                        killed_left: false,
                        ..
                    },
                    Event::StopCommandsEnded {
                        terminated: None,
                        ..
                    }
                ]
            ),
            "the main process ended first; nothing left to signal: {events:?}"
        );
        let step = {
            let now = sys.now();
            s.stop_progress(sys, now)
        };
        assert_eq!(step.stopped.len(), 1);
        assert_eq!(step.stopped[0].1.outcome, StopOutcome::Stopped);
        assert_eq!(step.stopped[0].1.took_ms, 3000);
        assert!(sys.kills().is_empty(), "{:?}", sys.kills());
    }

    #[test]
    fn the_main_process_gets_sigterm_once_the_stop_commands_ended() {
        let sys = &mut TestSyscall::default().stop_command(
            "web",
            Duration::from_secs(1),
            Exit::Code(2),
            false,
        );
        let (mut s, main) = web_with_stop_command(sys, true);
        {
            let now = sys.now();
            s.terminate_all(sys, now)
        };
        let events = after(&mut s, sys, Duration::from_secs(1));
        assert!(
            matches!(
                &events[..],
                [Event::StopCommandsEnded { exit: Exit::Code(2), terminated: Some(p), .. }] if *p == main
            ),
            "a failure does not keep the service from stopping: {events:?}"
        );
        assert_eq!(
            sys.kills()[0],
            (Duration::from_secs(1), -main, libc::SIGTERM)
        );
        let events = after(&mut s, sys, Duration::ZERO);
        assert!(matches!(&events[..], [Event::Exited { .. }]), "{events:?}");
        let step = {
            let now = sys.now();
            s.stop_step(sys, now)
        };
        assert!(!step.left, "{step:?}");
    }

    #[test]
    fn stop_commands_that_hang_are_killed_with_the_service_at_the_timeout() {
        for cgroups in [true, false] {
            let sys = &mut TestSyscall::default().stop_command(
                "web",
                Duration::from_secs(3600),
                Exit::Code(0),
                false,
            );
            let (mut s, main) = web_with_stop_command(sys, cgroups);
            let t0 = sys.now();
            s.stop(sys, 0, t0);
            assert!(after(&mut s, sys, Duration::from_secs(9)).is_empty());
            assert!(
                {
                    let now = sys.now();
                    s.stop_progress(sys, now)
                }
                .killed
                .is_empty()
            );
            let events = after(&mut s, sys, Duration::from_secs(1));
            assert!(events.is_empty(), "{events:?}");
            let step = {
                let now = sys.now();
                s.stop_progress(sys, now)
            };
            assert_eq!(step.killed, [("web".to_string(), Some(main))]);
            if !cgroups {
                let kills: Vec<i32> = sys.kills().iter().map(|k| k.1).collect();
                assert_eq!(kills, [-main, -(main + 1)], "both process groups");
            }
            let events = after(&mut s, sys, Duration::ZERO);
            assert_eq!(events.len(), 2, "{events:?}");
            let step = {
                let now = sys.now();
                s.stop_progress(sys, now)
            };
            assert_eq!(step.stopped[0].1.outcome, StopOutcome::Killed);
        }
    }
}
