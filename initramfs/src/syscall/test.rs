//! A recording [`Syscall`] for host tests (youki's `TestHelperSyscall`):
//! every call is written down with the fake clock's time, and the answers
//! are scripted: how long each service's runs last and how they end, which
//! services ignore SIGTERM, which leave processes behind in their cgroup,
//! which signals reach PID 1 when, which clients connect to the control
//! socket when and what they send, the mount table and which unmounts fail.
//! Cgroups are directories that exist or not and the PIDs they hold. Time
//! only moves when the code under test sleeps or polls, so a test of a
//! minute of supervision takes microseconds.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tandem_contract::control::{Request, Response};

use super::{Conn, Ready, Reaped, Syscall};
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
        /// The cgroup it joined.
        cgroup: Option<PathBuf>,
    },
    /// A service's stop commands were started with this PID.
    SpawnStop {
        /// Service.
        name: String,
        /// PID given to the stop commands' process.
        pid: i32,
        /// The service's main PID handed to them.
        main_pid: i32,
    },
    /// A cgroup was created.
    CgroupCreate(PathBuf),
    /// A cgroup file was written: (cgroup, file, value).
    CgroupWrite(PathBuf, String, String),
    /// Whether a cgroup holds processes was asked.
    CgroupPopulated(PathBuf),
    /// `cgroup.kill` of a cgroup.
    CgroupKill(PathBuf),
    /// A cgroup was removed (or tried to be).
    CgroupRemove(PathBuf),
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
    /// Corrupt /usr of this slot acted on.
    GiveUpCorruptUsr(tandem_slot::Slot),
    /// A connection on the control socket was accepted.
    Accept(Conn),
    /// A read from a connection, with how much it got (`None`: nothing
    /// there yet, or an error).
    Recv(Conn, Option<usize>),
    /// A write to a connection, with what was written.
    Send(Conn, String),
    /// A connection was closed.
    Close(Conn),
}

/// A scripted client of the control socket: `Conn(n)` is the n-th one
/// scripted, from 1.
#[derive(Clone, Debug, Default)]
struct Client {
    /// When it connects.
    at: Duration,
    /// What it sends, and when (not before it connects).
    data: Vec<(Duration, Vec<u8>)>,
    /// When it closes its end, if it does.
    closes_at: Option<Duration>,
    accepted: bool,
    /// How many of the bytes sent were read.
    read: usize,
    /// What PID 1 wrote to it.
    received: Vec<u8>,
    /// PID 1 closed the connection.
    closed: bool,
}

impl Client {
    /// The bytes it has sent by `now`.
    fn sent_by(&self, now: Duration) -> Vec<u8> {
        self.data
            .iter()
            .filter(|(at, _)| *at <= now)
            .flat_map(|(_, d)| d.iter().copied())
            .collect()
    }

    fn readable(&self, now: Duration) -> bool {
        self.accepted
            && !self.closed
            && (self.read < self.sent_by(now).len() || self.closes_at.is_some_and(|t| t <= now))
    }
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
    /// Service → its runs in order; the last one repeats.
    runs: HashMap<String, Vec<(Duration, Exit)>>,
    /// Service → how many times it was started.
    started: HashMap<String, usize>,
    ignore_term: HashSet<String>,
    /// Service → how many processes each run leaves (in its cgroup, out of
    /// its process group, until killed).
    leaves: HashMap<String, usize>,
    next_helper: i32,
    /// Services whose left processes survive even SIGKILL (stuck in the
    /// kernel).
    stuck: HashSet<String>,
    /// Services whose program cannot be started (ENOENT).
    missing_programs: HashSet<String>,
    /// Service → how its stop commands run: they end after this long with
    /// this exit, and end the service's main process then if `true`.
    stop_commands: HashMap<String, (Duration, Exit, bool)>,
    /// Existing cgroups and the PIDs in them.
    cgroups: BTreeMap<PathBuf, BTreeSet<i32>>,
    /// Cgroup files that cannot be written (a controller the kernel lacks).
    missing_files: HashSet<String>,
    /// Cgroups that cannot be created.
    failing_cgroups: HashSet<PathBuf>,
    mounts: String,
    failing_umounts: HashSet<PathBuf>,
    /// The last status written.
    pub status: Option<Status>,
    /// Every status written, with its time.
    pub published: Vec<(Duration, Status)>,
    clients: Vec<Client>,
    /// From this time on, dm-verity reports this corruption.
    corrupt_from: Option<(Duration, String)>,
    /// Whether acting on corruption switches to the other slot.
    corrupt_switches: bool,
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
            started: HashMap::new(),
            ignore_term: HashSet::new(),
            leaves: HashMap::new(),
            next_helper: 1000,
            stuck: HashSet::new(),
            missing_programs: HashSet::new(),
            stop_commands: HashMap::new(),
            cgroups: BTreeMap::new(),
            missing_files: HashSet::new(),
            failing_cgroups: HashSet::new(),
            mounts: String::new(),
            failing_umounts: HashSet::new(),
            status: None,
            published: Vec::new(),
            clients: Vec::new(),
            corrupt_from: None,
            corrupt_switches: false,
        }
    }
}

impl TestSyscall {
    /// From `at` on, /usr reads `what` are corrupt; acting on it switches
    /// slots when `switches`.
    pub fn corrupt_usr(mut self, at: Duration, what: &str, switches: bool) -> TestSyscall {
        self.corrupt_from = Some((at, what.to_string()));
        self.corrupt_switches = switches;
        self
    }

    /// The next run of `name` ends `after` its start, with `exit`; the
    /// last run given is how every later one ends.
    pub fn runs(mut self, name: &str, after: Duration, exit: Exit) -> TestSyscall {
        self.runs
            .entry(name.to_string())
            .or_default()
            .push((after, exit));
        self
    }

    /// `name` ignores SIGTERM (and SIGHUP); only SIGKILL ends it.
    pub fn ignores_term(mut self, name: &str) -> TestSyscall {
        self.ignore_term.insert(name.to_string());
        self
    }

    /// Every run of `name` starts `n` more processes that stay in its cgroup
    /// but leave its process group (a daemon's children): only a kill of
    /// the cgroup, or of every process, ends them. PIDs from 1000.
    pub fn leaves(mut self, name: &str, n: usize) -> TestSyscall {
        self.leaves.insert(name.to_string(), n);
        self
    }

    /// The processes `name` leaves ([`TestSyscall::leaves`]) never end,
    /// not even on SIGKILL (uninterruptible sleep).
    pub fn stuck(mut self, name: &str) -> TestSyscall {
        self.stuck.insert(name.to_string());
        self
    }

    /// Starting `name` fails: its program is missing (ENOENT).
    pub fn missing_program(mut self, name: &str) -> TestSyscall {
        self.missing_programs.insert(name.to_string());
        self
    }

    /// `name`'s stop commands end `after` they start, with `exit`; with
    /// `ends_service` they end its main process then (`docker stop`), which
    /// exits with status 0. Unscripted, they exit at once with status 0.
    pub fn stop_command(
        mut self,
        name: &str,
        after: Duration,
        exit: Exit,
        ends_service: bool,
    ) -> TestSyscall {
        self.stop_commands
            .insert(name.to_string(), (after, exit, ends_service));
        self
    }

    /// Writing the cgroup file `file` fails with ENOENT (its controller is
    /// not enabled).
    pub fn no_cgroup_file(mut self, file: &str) -> TestSyscall {
        self.missing_files.insert(file.to_string());
        self
    }

    /// Creating the cgroup `dir` fails with EACCES.
    pub fn cgroup_create_fails(mut self, dir: &Path) -> TestSyscall {
        self.failing_cgroups.insert(dir.to_path_buf());
        self
    }

    /// The cgroups that exist now and the PIDs in them.
    pub fn cgroups(&self) -> &BTreeMap<PathBuf, BTreeSet<i32>> {
        &self.cgroups
    }

    /// The cgroup calls that change something, in order.
    pub fn cgroup_actions(&self) -> Vec<(Duration, Call)> {
        self.calls
            .iter()
            .filter(|r| {
                matches!(
                    r.call,
                    Call::CgroupCreate(_)
                        | Call::CgroupWrite(..)
                        | Call::CgroupKill(_)
                        | Call::CgroupRemove(_)
                )
            })
            .map(|r| (r.at, r.call.clone()))
            .collect()
    }

    /// `signal` reaches PID 1 at `at`.
    pub fn signal_at(mut self, at: Duration, signal: i32) -> TestSyscall {
        self.signals.push((at, signal));
        self
    }

    /// A client connects to the control socket at `at` and sends `request`
    /// at once; it waits for the answer.
    pub fn client(self, at: Duration, request: &Request) -> TestSyscall {
        self.client_script(at, vec![(at, request.to_line())], None)
    }

    /// A client connects at `at` and sends nothing, ever.
    pub fn silent_client(self, at: Duration) -> TestSyscall {
        self.client_script(at, Vec::new(), None)
    }

    /// A client connects at `at`, sends each piece of `data` at its time,
    /// and closes its end at `closes_at` if given.
    pub fn client_script(
        mut self,
        at: Duration,
        data: Vec<(Duration, Vec<u8>)>,
        closes_at: Option<Duration>,
    ) -> TestSyscall {
        self.clients.push(Client {
            at,
            data,
            closes_at,
            ..Client::default()
        });
        self
    }

    fn client_mut(&mut self, conn: Conn) -> io::Result<&mut Client> {
        usize::try_from(conn.0 - 1)
            .ok()
            .and_then(|i| self.clients.get_mut(i))
            .filter(|c| c.accepted && !c.closed)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// What PID 1 wrote to the `n`-th client (from 1).
    pub fn received(&self, n: i32) -> &[u8] {
        usize::try_from(n - 1)
            .ok()
            .and_then(|i| self.clients.get(i))
            .map_or(&[], |c| c.received.as_slice())
    }

    /// PID 1's answer to the `n`-th client, if it sent a valid one.
    pub fn response(&self, n: i32) -> Option<Response> {
        Response::parse(self.received(n)).ok()
    }

    /// When PID 1 wrote to the `n`-th client (first write).
    pub fn answered_at(&self, n: i32) -> Option<Duration> {
        self.calls.iter().find_map(|r| match &r.call {
            Call::Send(c, _) if c.0 == n => Some(r.at),
            _ => None,
        })
    }

    /// When PID 1 closed its connection to the `n`-th client.
    pub fn closed_at(&self, n: i32) -> Option<Duration> {
        self.calls.iter().find_map(|r| match &r.call {
            Call::Close(c) if c.0 == n => Some(r.at),
            _ => None,
        })
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

    /// The last status written at or before `at`.
    pub fn published_at(&self, at: Duration) -> Option<&Status> {
        self.published
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map(|(_, s)| s)
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
                Call::Spawn { name, pid, .. } => Some((r.at, name.clone(), *pid)),
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
                        | Call::CgroupPopulated(_)
                        | Call::Recv(..)
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

    /// A process a service left that nothing ends.
    fn is_stuck(&self, pid: i32) -> bool {
        pid >= 1000
            && self
                .children
                .get(&pid)
                .is_some_and(|name| self.stuck.contains(name))
    }

    /// A child ends now.
    fn end(&mut self, pid: i32, exit: Exit) {
        if self.children.remove(&pid).is_some() {
            self.zombies.push((pid, exit));
            self.pending_signals.push(libc::SIGCHLD);
        }
        for members in self.cgroups.values_mut() {
            members.remove(&pid);
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
        let now = self.clock;
        let clients = self.clients.iter().flat_map(|c| {
            let connects = (!c.accepted).then_some(c.at);
            let sends = c.data.iter().map(|d| d.0);
            connects.into_iter().chain(sends).chain(c.closes_at)
        });
        exits
            .chain(self.signals.iter().map(|s| s.0))
            .chain(clients.filter(|&t| t > now))
            .min()
    }

    /// A connection waits to be accepted.
    fn connection_waiting(&self) -> bool {
        self.clients
            .iter()
            .any(|c| !c.accepted && c.at <= self.clock)
    }

    fn readable(&self, watch: &[Conn]) -> Vec<Conn> {
        watch
            .iter()
            .copied()
            .filter(|c| {
                usize::try_from(c.0 - 1)
                    .ok()
                    .and_then(|i| self.clients.get(i))
                    .is_some_and(|client| client.readable(self.clock))
            })
            .collect()
    }
}

fn enoent() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOENT)
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

    fn spawn_service(
        &mut self,
        def: &ServiceDef,
        _console: &Path,
        cgroup: Option<&Path>,
    ) -> Result<i32, Error> {
        if let Some(dir) = cgroup
            && !self.cgroups.contains_key(dir)
        {
            return Err(Error::Cgroup {
                what: "joining",
                path: dir.to_path_buf(),
                err: enoent(),
            });
        }
        if self.missing_programs.contains(&def.name) {
            return Err(Error::Spawn {
                name: def.name.clone(),
                program: def.spec.exec.first().cloned().unwrap_or_default(),
                err: enoent(),
            });
        }
        let pid = self.next_pid;
        self.next_pid += 1;
        self.record(Call::Spawn {
            name: def.name.clone(),
            pid,
            cgroup: cgroup.map(Path::to_path_buf),
        });
        self.children.insert(pid, def.name.clone());
        let helpers = self.leaves.get(&def.name).copied().unwrap_or(0);
        let mut members = vec![pid];
        for _ in 0..helpers {
            let helper = self.next_helper;
            self.next_helper += 1;
            self.children.insert(helper, def.name.clone());
            members.push(helper);
        }
        if let Some(dir) = cgroup
            && let Some(set) = self.cgroups.get_mut(dir)
        {
            set.extend(members);
        }
        let run = self.started.entry(def.name.clone()).or_default();
        let nth = *run;
        *run += 1;
        if let Some(&(after, exit)) = self
            .runs
            .get(&def.name)
            .and_then(|runs| runs.get(nth.min(runs.len().saturating_sub(1))))
        {
            self.exits.push((self.clock + after, pid, exit));
        }
        Ok(pid)
    }

    fn spawn_stop(
        &mut self,
        def: &ServiceDef,
        main_pid: i32,
        _console: &Path,
        cgroup: Option<&Path>,
    ) -> Result<i32, Error> {
        let pid = self.next_pid;
        self.next_pid += 1;
        self.record(Call::SpawnStop {
            name: def.name.clone(),
            pid,
            main_pid,
        });
        self.children.insert(pid, format!("{}/stop", def.name));
        if let Some(set) = cgroup.and_then(|dir| self.cgroups.get_mut(dir)) {
            set.insert(pid);
        }
        let (after, exit, ends_service) = self.stop_commands.get(&def.name).copied().unwrap_or((
            Duration::ZERO,
            Exit::Code(0),
            false,
        ));
        if ends_service {
            self.exits
                .push((self.clock + after, main_pid, Exit::Code(0)));
        }
        self.exits.push((self.clock + after, pid, exit));
        Ok(pid)
    }

    fn cgroup_create(&mut self, dir: &Path) -> io::Result<()> {
        self.record(Call::CgroupCreate(dir.to_path_buf()));
        if self.failing_cgroups.contains(dir) {
            return Err(io::Error::from_raw_os_error(libc::EACCES));
        }
        self.cgroups.entry(dir.to_path_buf()).or_default();
        Ok(())
    }

    fn cgroup_write(&mut self, dir: &Path, file: &str, value: &str) -> io::Result<()> {
        self.record(Call::CgroupWrite(
            dir.to_path_buf(),
            file.to_string(),
            value.to_string(),
        ));
        if !self.cgroups.contains_key(dir) || self.missing_files.contains(file) {
            return Err(enoent());
        }
        Ok(())
    }

    fn cgroup_populated(&mut self, dir: &Path) -> io::Result<bool> {
        self.record(Call::CgroupPopulated(dir.to_path_buf()));
        Ok(self.cgroups.get(dir).is_some_and(|m| !m.is_empty()))
    }

    fn cgroup_kill(&mut self, dir: &Path) -> io::Result<()> {
        self.record(Call::CgroupKill(dir.to_path_buf()));
        let members: Vec<i32> = match self.cgroups.get(dir) {
            Some(m) => m.iter().copied().collect(),
            None => return Err(enoent()),
        };
        for pid in members {
            if !self.is_stuck(pid) {
                self.end(pid, Exit::Signal(libc::SIGKILL));
            }
        }
        Ok(())
    }

    fn cgroup_remove(&mut self, dir: &Path) -> io::Result<()> {
        self.record(Call::CgroupRemove(dir.to_path_buf()));
        match self.cgroups.get(dir) {
            None => Ok(()),
            Some(m) if !m.is_empty() => Err(io::Error::from_raw_os_error(libc::EBUSY)),
            Some(_) => {
                self.cgroups.remove(dir);
                Ok(())
            }
        }
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
            if self.is_stuck(child) {
                continue;
            }
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

    fn poll(&mut self, timeout: Duration, watch: &[Conn]) -> Ready {
        self.record(Call::Poll(timeout));
        if self.pending_signals.is_empty()
            && !self.connection_waiting()
            && self.readable(watch).is_empty()
        {
            let until = self.clock + timeout;
            match self.next_event() {
                Some(at) if at <= until => self.advance_to(at),
                _ => self.advance_to(until),
            }
        }
        Ready {
            signals: !self.pending_signals.is_empty(),
            wake: false,
            control: self.connection_waiting(),
            conns: self.readable(watch),
        }
    }

    fn accept(&mut self) -> io::Result<Option<Conn>> {
        let now = self.clock;
        let next = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.accepted && c.at <= now)
            .min_by_key(|(_, c)| c.at)
            .map(|(i, _)| i);
        let Some(i) = next else {
            return Ok(None);
        };
        if let Some(c) = self.clients.get_mut(i) {
            c.accepted = true;
        }
        let conn = Conn(i32::try_from(i + 1).unwrap_or(i32::MAX));
        self.record(Call::Accept(conn));
        Ok(Some(conn))
    }

    fn recv(&mut self, conn: Conn, buf: &mut [u8]) -> io::Result<usize> {
        let now = self.clock;
        let result = self.client_mut(conn).and_then(|c| {
            let sent = c.sent_by(now);
            let rest = sent.get(c.read..).unwrap_or_default();
            if rest.is_empty() {
                return if c.closes_at.is_some_and(|t| t <= now) {
                    Ok(0)
                } else {
                    Err(io::Error::from(io::ErrorKind::WouldBlock))
                };
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            c.read += n;
            Ok(n)
        });
        self.record(Call::Recv(conn, result.as_ref().ok().copied()));
        result
    }

    fn send(&mut self, conn: Conn, data: &[u8]) -> io::Result<usize> {
        self.record(Call::Send(conn, String::from_utf8_lossy(data).into_owned()));
        let c = self.client_mut(conn)?;
        c.received.extend_from_slice(data);
        Ok(data.len())
    }

    fn close(&mut self, conn: Conn) {
        self.record(Call::Close(conn));
        if let Ok(c) = self.client_mut(conn) {
            c.closed = true;
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
        self.published.push((self.clock, status.clone()));
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

    fn usr_corruption(&mut self) -> Option<String> {
        self.corrupt_from
            .as_ref()
            .filter(|(at, _)| *at <= self.clock)
            .map(|(_, what)| what.clone())
    }

    fn give_up_corrupt_usr(
        &mut self,
        _disk: &Path,
        slot: tandem_slot::Slot,
        _what: &str,
    ) -> crate::recovery::Outcome {
        self.record(Call::GiveUpCorruptUsr(slot));
        let other = slot.other();
        if self.corrupt_switches {
            crate::recovery::Outcome {
                action: format!("slot {slot} given up; slot {other} boots next"),
                switch_to: Some(other),
            }
        } else {
            crate::recovery::Outcome {
                action: format!(
                    "slot {slot} kept: the other slot holds no confirmed version to switch to"
                ),
                switch_to: None,
            }
        }
    }
}
