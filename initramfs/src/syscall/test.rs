//! A recording [`Syscall`] for host tests (youki's `TestHelperSyscall`):
//! every call is written down with the fake clock's time, and the answers
//! are scripted: how long each service's runs last and how they end, which
//! services ignore SIGTERM, which signals reach PID 1 when, the mount table
//! and which unmounts fail. Time only moves when the code under test sleeps
//! or polls, so a test of a minute of supervision takes microseconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Ready, Reaped, Syscall};
use crate::error::Error;
use crate::services::{Exit, ServiceDef};
use crate::status::Status;
use crate::system::Shutdown;

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A service was started with this PID.
    Spawn {
        /// Service.
        name: String,
        /// PID given to it.
        pid: i32,
    },
    /// kill(2).
    Kill {
        /// Target as kill(2) takes it.
        pid: i32,
        /// Signal.
        signal: i32,
    },
    /// A reap, with what it collected.
    Reap(Vec<(i32, Exit)>),
    /// A poll with this timeout.
    Poll(Duration),
    /// The signals read.
    ReadSignals(Vec<i32>),
    /// The wake-up descriptor was cleared.
    DrainWake,
    /// The watchdog was petted.
    PetWatchdog,
    /// The watchdog was disarmed.
    DisarmWatchdog,
    /// The status file was written.
    WriteStatus,
    /// A sleep.
    Sleep(Duration),
    /// sync(2).
    Sync,
    /// The mount table was read.
    MountTable,
    /// umount2(2).
    Umount(PathBuf),
    /// A read-only remount.
    RemountReadOnly(PathBuf),
    /// reboot(2).
    Reboot(Shutdown),
}

/// A call and when it happened (time since the double was made).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Fake time of the call.
    pub at: Duration,
    /// The call.
    pub call: Call,
}

/// The recording double.
#[derive(Debug)]
pub struct TestSyscall {
    start: Instant,
    clock: Duration,
    /// Past this much fake time a test is stuck in a loop: panic.
    limit: Duration,
    /// Everything called, in order.
    pub calls: Vec<Record>,
    next_pid: i32,
    /// Running children: PID → service.
    children: BTreeMap<i32, String>,
    /// Children that ended and were not reaped yet.
    zombies: Vec<(i32, Exit)>,
    pending_signals: Vec<i32>,
    exits: Vec<(Duration, i32, Exit)>,
    signals: Vec<(Duration, i32)>,
    runs: HashMap<String, (Duration, Exit)>,
    ignore_term: HashSet<String>,
    mounts: String,
    failing_umounts: HashSet<PathBuf>,
    /// The last status written.
    pub status: Option<Status>,
}

impl Default for TestSyscall {
    fn default() -> TestSyscall {
        TestSyscall {
            start: Instant::now(),
            clock: Duration::ZERO,
            limit: Duration::from_secs(3600),
            calls: Vec::new(),
            next_pid: 100,
            children: BTreeMap::new(),
            zombies: Vec::new(),
            pending_signals: Vec::new(),
            exits: Vec::new(),
            signals: Vec::new(),
            runs: HashMap::new(),
            ignore_term: HashSet::new(),
            mounts: String::new(),
            failing_umounts: HashSet::new(),
            status: None,
        }
    }
}

impl TestSyscall {
    /// Every run of `name` ends `after` its start, with `exit`.
    pub fn runs(mut self, name: &str, after: Duration, exit: Exit) -> TestSyscall {
        self.runs.insert(name.to_string(), (after, exit));
        self
    }

    /// `name` ignores SIGTERM (and SIGHUP); only SIGKILL ends it.
    pub fn ignores_term(mut self, name: &str) -> TestSyscall {
        self.ignore_term.insert(name.to_string());
        self
    }

    /// `signal` reaches PID 1 at `at`.
    pub fn signal_at(mut self, at: Duration, signal: i32) -> TestSyscall {
        self.signals.push((at, signal));
        self
    }

    /// The mount table [`Syscall::mount_table`] answers.
    pub fn mounts(mut self, table: &str) -> TestSyscall {
        self.mounts = table.to_string();
        self
    }

    /// umount2 of `target` fails with EBUSY.
    pub fn umount_fails(mut self, target: &str) -> TestSyscall {
        self.failing_umounts.insert(PathBuf::from(target));
        self
    }

    /// The fake time now.
    pub fn elapsed(&self) -> Duration {
        self.clock
    }

    /// (time, service, PID) of every start.
    pub fn spawns(&self) -> Vec<(Duration, String, i32)> {
        self.calls
            .iter()
            .filter_map(|r| match &r.call {
                Call::Spawn { name, pid } => Some((r.at, name.clone(), *pid)),
                _ => None,
            })
            .collect()
    }

    /// Times of the starts of `name`.
    pub fn spawn_times(&self, name: &str) -> Vec<Duration> {
        self.spawns()
            .into_iter()
            .filter(|(_, n, _)| n == name)
            .map(|(at, _, _)| at)
            .collect()
    }

    /// (time, target, signal) of every kill.
    pub fn kills(&self) -> Vec<(Duration, i32, i32)> {
        self.calls
            .iter()
            .filter_map(|r| match r.call {
                Call::Kill { pid, signal } => Some((r.at, pid, signal)),
                _ => None,
            })
            .collect()
    }

    /// Times the watchdog was petted.
    pub fn pets(&self) -> Vec<Duration> {
        self.calls
            .iter()
            .filter(|r| r.call == Call::PetWatchdog)
            .map(|r| r.at)
            .collect()
    }

    /// The calls that change the system (no reaps, polls, sleeps, reads).
    pub fn actions(&self) -> Vec<Call> {
        self.calls
            .iter()
            .filter(|r| {
                !matches!(
                    r.call,
                    Call::Reap(_)
                        | Call::Poll(_)
                        | Call::Sleep(_)
                        | Call::ReadSignals(_)
                        | Call::DrainWake
                        | Call::MountTable
                        | Call::WriteStatus
                        | Call::PetWatchdog
                )
            })
            .map(|r| r.call.clone())
            .collect()
    }

    fn record(&mut self, call: Call) {
        assert!(
            self.calls.len() < 1_000_000,
            "a million system calls: the code under test is spinning"
        );
        self.calls.push(Record {
            at: self.clock,
            call,
        });
    }

    /// A child ends now.
    fn end(&mut self, pid: i32, exit: Exit) {
        if self.children.remove(&pid).is_some() {
            self.zombies.push((pid, exit));
            self.pending_signals.push(libc::SIGCHLD);
        }
    }

    /// Moves the clock to `to` and lets what was scripted until then happen.
    fn advance_to(&mut self, to: Duration) {
        assert!(
            to <= self.limit,
            "fake time passed {:?}: the code under test does not stop",
            self.limit
        );
        self.clock = self.clock.max(to);
        let now = self.clock;
        let mut due: Vec<(Duration, i32, Exit)> = Vec::new();
        self.exits.retain(|&e| {
            if e.0 <= now {
                due.push(e);
                false
            } else {
                true
            }
        });
        due.sort_by_key(|e| e.0);
        for (_, pid, exit) in due {
            self.end(pid, exit);
        }
        let mut signals: Vec<(Duration, i32)> = Vec::new();
        self.signals.retain(|&s| {
            if s.0 <= now {
                signals.push(s);
                false
            } else {
                true
            }
        });
        signals.sort_by_key(|s| s.0);
        self.pending_signals
            .extend(signals.into_iter().map(|(_, s)| s));
    }

    /// When the next scripted thing happens.
    fn next_event(&self) -> Option<Duration> {
        let exits = self
            .exits
            .iter()
            .filter(|e| self.children.contains_key(&e.1))
            .map(|e| e.0);
        exits.chain(self.signals.iter().map(|s| s.0)).min()
    }
}

impl Syscall for TestSyscall {
    fn now(&self) -> Instant {
        self.start + self.clock
    }

    fn boottime_us(&self) -> u64 {
        u64::try_from(self.clock.as_micros()).unwrap_or(u64::MAX)
    }

    fn sleep(&mut self, d: Duration) {
        self.record(Call::Sleep(d));
        self.advance_to(self.clock + d);
    }

    fn spawn_service(&mut self, def: &ServiceDef, _console: &Path) -> Result<i32, Error> {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.record(Call::Spawn {
            name: def.name.clone(),
            pid,
        });
        self.children.insert(pid, def.name.clone());
        if let Some(&(after, exit)) = self.runs.get(&def.name) {
            self.exits.push((self.clock + after, pid, exit));
        }
        Ok(pid)
    }

    fn kill(&mut self, pid: i32, signal: i32) -> io::Result<()> {
        self.record(Call::Kill { pid, signal });
        let targets: Vec<i32> = match pid {
            -1 => self.children.keys().copied().collect(),
            p if p < 0 => self.children.keys().copied().filter(|&c| c == -p).collect(),
            p => self.children.keys().copied().filter(|&c| c == p).collect(),
        };
        if targets.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        for child in targets {
            let ignores = self
                .children
                .get(&child)
                .is_some_and(|name| self.ignore_term.contains(name));
            match signal {
                libc::SIGKILL => self.end(child, Exit::Signal(libc::SIGKILL)),
                libc::SIGTERM | libc::SIGHUP if !ignores => self.end(child, Exit::Signal(signal)),
                _ => {}
            }
        }
        Ok(())
    }

    fn reap(&mut self) -> Reaped {
        let exited = std::mem::take(&mut self.zombies);
        self.record(Call::Reap(exited.clone()));
        Reaped {
            exited,
            children_left: !self.children.is_empty(),
        }
    }

    fn poll(&mut self, timeout: Duration) -> Ready {
        self.record(Call::Poll(timeout));
        if self.pending_signals.is_empty() {
            let until = self.clock + timeout;
            match self.next_event() {
                Some(at) if at <= until => self.advance_to(at),
                _ => self.advance_to(until),
            }
        }
        Ready {
            signals: !self.pending_signals.is_empty(),
            wake: false,
        }
    }

    fn read_signals(&mut self) -> Vec<i32> {
        let signals = std::mem::take(&mut self.pending_signals);
        self.record(Call::ReadSignals(signals.clone()));
        signals
    }

    fn drain_wake(&mut self) {
        self.record(Call::DrainWake);
    }

    fn pet_watchdog(&mut self) -> io::Result<()> {
        self.record(Call::PetWatchdog);
        Ok(())
    }

    fn disarm_watchdog(&mut self) -> io::Result<()> {
        self.record(Call::DisarmWatchdog);
        Ok(())
    }

    fn write_status(&mut self, status: &Status) -> Result<(), Error> {
        self.record(Call::WriteStatus);
        self.status = Some(status.clone());
        Ok(())
    }

    fn sync(&mut self) {
        self.record(Call::Sync);
    }

    fn mount_table(&mut self) -> io::Result<String> {
        self.record(Call::MountTable);
        Ok(self.mounts.clone())
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::Umount(target.to_path_buf()));
        if self.failing_umounts.contains(target) {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        Ok(())
    }

    fn remount_read_only(&mut self, target: &Path) -> io::Result<()> {
        self.record(Call::RemountReadOnly(target.to_path_buf()));
        Ok(())
    }

    fn reboot(&mut self, how: Shutdown) -> io::Error {
        self.record(Call::Reboot(how));
        io::Error::other("reboot(2) is not called in tests")
    }
}
