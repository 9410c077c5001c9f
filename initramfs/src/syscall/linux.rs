//! [`Syscall`] over libc, with the descriptors PID 1's loop waits on: the
//! signalfd, the eventfd other threads wake it with, and the watchdog.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Ready, Reaped, Syscall};
use crate::cgroup;
use crate::error::Error;
use crate::mount::MS_RDONLY;
use crate::services::{self, Exit, ServiceDef};
use crate::status::{self, Status};
use crate::sys;
use crate::system::Shutdown;
use crate::system::shutdown::Action;
use crate::watchdog::Watchdog;

/// The real system.
#[derive(Debug)]
pub struct LinuxSyscall {
    signals: OwnedFd,
    wake: Option<Waker>,
    watchdog: Option<Watchdog>,
}

impl LinuxSyscall {
    /// The system with PID 1's signal descriptor (see [`signalfd`]), its
    /// wake-up descriptor if it has one, and the armed watchdog if any.
    pub fn new(signals: OwnedFd, wake: Option<Waker>, watchdog: Option<Watchdog>) -> LinuxSyscall {
        LinuxSyscall {
            signals,
            wake,
            watchdog,
        }
    }
}

impl Syscall for LinuxSyscall {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn boottime_us(&self) -> u64 {
        sys::boottime_us()
    }

    fn sleep(&mut self, d: Duration) {
        sys::sleep(d);
    }

    fn spawn_service(
        &mut self,
        def: &ServiceDef,
        console: &Path,
        cgroup: Option<&Path>,
    ) -> Result<i32, Error> {
        services::spawn(def, console, cgroup)
    }

    fn cgroup_create(&mut self, dir: &Path) -> io::Result<()> {
        cgroup::create(dir)
    }

    fn cgroup_write(&mut self, dir: &Path, file: &str, value: &str) -> io::Result<()> {
        cgroup::write(dir, file, value)
    }

    fn cgroup_populated(&mut self, dir: &Path) -> io::Result<bool> {
        cgroup::populated(dir)
    }

    fn cgroup_kill(&mut self, dir: &Path) -> io::Result<()> {
        cgroup::kill(dir)
    }

    fn cgroup_remove(&mut self, dir: &Path) -> io::Result<()> {
        cgroup::remove(dir)
    }

    fn kill(&mut self, pid: i32, signal: i32) -> io::Result<()> {
        sys::kill(pid, signal)
    }

    fn reap(&mut self) -> Reaped {
        reap()
    }

    fn poll(&mut self, timeout: Duration) -> Ready {
        let mut fds = vec![self.signals.as_raw_fd()];
        if let Some(w) = &self.wake {
            fds.push(w.as_raw_fd());
        }
        let readable = poll_fds(&fds, timeout);
        Ready {
            signals: readable.first().copied().unwrap_or(false),
            wake: readable.get(1).copied().unwrap_or(false),
        }
    }

    fn read_signals(&mut self) -> Vec<i32> {
        read_signals(self.signals.as_raw_fd())
    }

    fn drain_wake(&mut self) {
        if let Some(w) = &self.wake {
            w.drain();
        }
    }

    fn pet_watchdog(&mut self) -> io::Result<()> {
        match self.watchdog.as_mut() {
            Some(w) => w.pet(),
            None => Ok(()),
        }
    }

    fn disarm_watchdog(&mut self) -> io::Result<()> {
        match self.watchdog.take() {
            Some(w) => w.disarm(),
            None => Ok(()),
        }
    }

    fn write_status(&mut self, status: &Status) -> Result<(), Error> {
        status::write_json(Path::new(status::STATUS_FILE), status)
    }

    fn sync(&mut self) {
        sys::sync();
    }

    fn mount_table(&mut self) -> io::Result<String> {
        std::fs::read_to_string("/proc/self/mounts")
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        sys::umount(target, 0)
    }

    fn remount_read_only(&mut self, target: &Path) -> io::Result<()> {
        sys::remount(target, MS_RDONLY)
    }

    fn reboot(&mut self, how: Shutdown) -> io::Error {
        sys::reboot(how.reboot_cmd())
    }
}

/// An eventfd another thread (the DHCP client) writes to wake PID 1's loop.
/// Shared, not borrowed by number: the descriptor stays open while any
/// clone exists, so a thread that outlives the loop never writes to a
/// number the kernel has since given to another file.
#[derive(Clone, Debug)]
pub struct Waker(Arc<OwnedFd>);

impl Waker {
    /// A new non-blocking, close-on-exec eventfd.
    pub fn new() -> Result<Waker, Error> {
        // SAFETY: plain eventfd(2).
        let fd = sys::check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
            .map_err(|err| Error::Sys {
                what: "eventfd",
                err,
            })?;
        // SAFETY: fd was just created and is owned by nobody else.
        Ok(Waker(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Wakes the loop.
    pub fn wake(&self) {
        // SAFETY: eventfd_write on the eventfd this Waker keeps open.
        unsafe { libc::eventfd_write(self.0.as_raw_fd(), 1) };
    }

    /// Resets the counter.
    fn drain(&self) {
        let mut v: libc::eventfd_t = 0;
        // SAFETY: reading the counter of the eventfd this Waker keeps open.
        unsafe { libc::eventfd_read(self.0.as_raw_fd(), &mut v) };
    }

    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A non-blocking, close-on-exec signalfd for the (blocked) signals in `set`.
pub fn signalfd(set: &libc::sigset_t) -> Result<OwnedFd, Error> {
    // SAFETY: set is a valid sigset_t; -1 asks for a new descriptor.
    let fd = sys::check(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })
        .map_err(|err| Error::Sys {
            what: "signalfd",
            err,
        })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_signals(fd: RawFd) -> Vec<i32> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain old data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: info is valid for `size` bytes.
        let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n != size as isize {
            return out;
        }
        out.push(info.ssi_signo as i32);
    }
}

/// Reaps every exited child; also says whether any child is left.
fn reap() -> Reaped {
    let mut exited = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: status is a valid int to write to.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => {
                return Reaped {
                    exited,
                    children_left: true,
                };
            }
            // ECHILD
            p if p < 0 => {
                return Reaped {
                    exited,
                    children_left: false,
                };
            }
            p => exited.push((p, Exit::from_wait_status(status))),
        }
    }
}

fn poll_fds(fds: &[RawFd], timeout: Duration) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r <= 0 {
        return vec![false; fds.len()];
    }
    pfds.iter().map(|p| p.revents & libc::POLLIN != 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waker_keeps_its_eventfd_open_while_a_clone_lives() {
        let waker = Waker::new().expect("eventfd");
        let fd = waker.as_raw_fd();
        let thread_copy = waker.clone();
        drop(waker);
        // The loop's copy is gone; the thread's still owns the descriptor.
        // SAFETY: F_GETFD on a descriptor number only reads its flags.
        assert_ne!(
            unsafe { libc::fcntl(fd, libc::F_GETFD) },
            -1,
            "closed early"
        );
        thread_copy.wake();
        let ready = poll_fds(&[thread_copy.as_raw_fd()], Duration::ZERO);
        assert_eq!(ready, [true], "the wake-up did not arrive");
        thread_copy.drain();
        assert_eq!(
            poll_fds(&[thread_copy.as_raw_fd()], Duration::ZERO),
            [false]
        );
    }
}
