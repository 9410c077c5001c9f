//! The system calls that PID 1's event loop and the service supervisor
//! make, behind one trait (youki's `libcontainer::syscall` pattern):
//! [`LinuxSyscall`] does them over libc; a recording double
//! (`syscall::test::TestSyscall`, test builds only) writes each call down
//! and scripts what the system answers (children that exit, signals that
//! arrive, clients of the control socket, the passing of time), so the
//! loop's decisions (restarts, backoff, the order of a shutdown, the
//! watchdog, `tandemctl stop`) are tested on the host.
//!
//! The boot steps before the loop (mounts, machine id, modules) use the
//! thin wrappers in [`sys`](crate::sys) directly.

pub mod linux;
#[cfg(test)]
pub mod test;

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

pub use linux::{LinuxSyscall, Waker};

use crate::error::Error;
use crate::services::{Exit, ServiceDef};
use crate::status::Status;
use crate::system::Shutdown;

/// A client connection on PID 1's control socket
/// ([`INIT_SOCKET`](tandem_contract::run::INIT_SOCKET)), as
/// [`Syscall::accept`] hands it out: its descriptor on Linux, a number in
/// tests. Valid until [`Syscall::close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn(pub i32);

impl std::fmt::Display for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// Which of the loop's descriptors [`Syscall::poll`] found readable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// The signal descriptor: read it with [`Syscall::read_signals`].
    pub signals: bool,
    /// The wake-up descriptor (another thread has news): clear it with
    /// [`Syscall::drain_wake`].
    pub wake: bool,
    /// The control socket has a connection to [`Syscall::accept`].
    pub control: bool,
    /// The connections watched that have something to read, or were closed
    /// or failed ([`Syscall::recv`] says which).
    pub conns: Vec<Conn>,
}

/// What one [`Syscall::reap`] collected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// The children that ended, and how.
    pub exited: Vec<(i32, Exit)>,
    /// Whether any child is still running. PID 1 inherits every orphan, so
    /// `false` means no user process is left.
    pub children_left: bool,
}

/// What PID 1 asks of the system once it supervises services.
pub trait Syscall {
    /// The monotonic clock.
    fn now(&self) -> Instant;
    /// Microseconds of `CLOCK_BOOTTIME` (the status file's timestamps).
    fn boottime_us(&self) -> u64;
    /// Sleeps.
    fn sleep(&mut self, d: Duration);
    /// Starts a service's process (see [`services::spawn`](fn@crate::services::spawn)),
    /// in the cgroup `cgroup` if given, which it joins before exec; returns
    /// its PID, which is also its process group.
    fn spawn_service(
        &mut self,
        def: &ServiceDef,
        console: &Path,
        cgroup: Option<&Path>,
    ) -> Result<i32, Error>;
    /// Starts the process that runs service `def`'s stop commands for its
    /// main process `main_pid` (see [`services::spawn_stop`]), in `cgroup`
    /// if given; returns its PID.
    fn spawn_stop(
        &mut self,
        def: &ServiceDef,
        main_pid: i32,
        console: &Path,
        cgroup: Option<&Path>,
    ) -> Result<i32, Error>;
    /// Creates the cgroup `dir` (one that exists is fine).
    fn cgroup_create(&mut self, dir: &Path) -> io::Result<()>;
    /// Writes `value` to the interface file `file` of the cgroup `dir`
    /// (a limit: `memory.max`, `cpu.weight`, `pids.max`).
    fn cgroup_write(&mut self, dir: &Path, file: &str, value: &str) -> io::Result<()>;
    /// Whether the cgroup `dir` (or one below it) still holds a process; a
    /// cgroup that is gone holds none.
    fn cgroup_populated(&mut self, dir: &Path) -> io::Result<bool>;
    /// SIGKILLs every process in the cgroup `dir` (`cgroup.kill`).
    fn cgroup_kill(&mut self, dir: &Path) -> io::Result<()>;
    /// Removes the empty cgroup `dir` (EBUSY while a process is left).
    fn cgroup_remove(&mut self, dir: &Path) -> io::Result<()>;
    /// kill(2): `pid` as kill(2) takes it (negative: a process group; -1:
    /// every process but PID 1).
    fn kill(&mut self, pid: i32, signal: i32) -> io::Result<()>;
    /// Reaps every child that ended (waitpid(-1, WNOHANG) until none is left).
    fn reap(&mut self) -> Reaped;
    /// Waits up to `timeout` for a signal, a wake-up, a connection on the
    /// control socket, or something to read on one of the connections
    /// `watch`.
    fn poll(&mut self, timeout: Duration, watch: &[Conn]) -> Ready;
    /// Accepts a connection on the control socket without blocking: `None`
    /// when none waits (or the node has no control socket).
    fn accept(&mut self) -> io::Result<Option<Conn>>;
    /// Reads what `conn` sent, without blocking: `Ok(0)` when the client
    /// closed its end, `WouldBlock` when nothing is there yet.
    fn recv(&mut self, conn: Conn, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes to `conn` without blocking (and without SIGPIPE); returns how
    /// much was taken.
    fn send(&mut self, conn: Conn, data: &[u8]) -> io::Result<usize>;
    /// Closes `conn`.
    fn close(&mut self, conn: Conn);
    /// Reads the signals queued on the signal descriptor.
    fn read_signals(&mut self) -> Vec<i32>;
    /// Clears the wake-up descriptor.
    fn drain_wake(&mut self);
    /// Pets the watchdog (nothing if there is none).
    fn pet_watchdog(&mut self) -> io::Result<()>;
    /// Disarms the watchdog (magic close) before a clean reboot.
    fn disarm_watchdog(&mut self) -> io::Result<()>;
    /// Publishes /run/tandem/status.json.
    fn write_status(&mut self, status: &Status) -> Result<(), Error>;
    /// sync(2).
    fn sync(&mut self);
    /// The mount table (/proc/self/mounts).
    fn mount_table(&mut self) -> io::Result<String>;
    /// umount2(2) without flags.
    fn umount(&mut self, target: &Path) -> io::Result<()>;
    /// Remounts `target` read-only.
    fn remount_read_only(&mut self, target: &Path) -> io::Result<()>;
    /// reboot(2) as `how` asks; returns only on failure.
    fn reboot(&mut self, how: Shutdown) -> io::Error;
    /// Whether dm-verity found corrupt blocks of /usr, in the kernel's
    /// words ([`crate::recovery::usr_corruption`]).
    fn usr_corruption(&mut self) -> Option<String>;
    /// Acts on corrupt /usr of `slot` on `disk`: the slot rules decide,
    /// the table and an incident on ROOT record it
    /// ([`crate::recovery`]).
    fn give_up_corrupt_usr(
        &mut self,
        disk: &Path,
        slot: tandem_slot::Slot,
        what: &str,
    ) -> crate::recovery::Outcome;
}
