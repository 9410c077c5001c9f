//! [`Syscall`] over libc, with the descriptors PID 1's loop waits on: the
//! signalfd, the eventfd other threads wake it with, the control socket and
//! its clients, and the watchdog.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Conn, Ready, Reaped, Syscall};
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
    /// The control socket, non-blocking.
    control: Option<UnixListener>,
    /// Its accepted clients, non-blocking, by descriptor.
    conns: HashMap<RawFd, UnixStream>,
}

impl LinuxSyscall {
    /// The system with PID 1's signal descriptor (see [`signalfd`]), its
    /// wake-up descriptor if it has one, and the armed watchdog if any.
    pub fn new(signals: OwnedFd, wake: Option<Waker>, watchdog: Option<Watchdog>) -> LinuxSyscall {
        LinuxSyscall {
            signals,
            wake,
            watchdog,
            control: None,
            conns: HashMap::new(),
        }
    }

    /// With the control socket `listener` (non-blocking, see
    /// [`system::control::bind`](crate::system::control::bind)).
    pub fn with_control(mut self, listener: Option<UnixListener>) -> LinuxSyscall {
        self.control = listener;
        self
    }

    fn conn(&self, conn: Conn) -> io::Result<&UnixStream> {
        self.conns
            .get(&conn.0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
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

    fn spawn_stop(
        &mut self,
        def: &ServiceDef,
        main_pid: i32,
        console: &Path,
        cgroup: Option<&Path>,
    ) -> Result<i32, Error> {
        services::spawn_stop(def, main_pid, console, cgroup)
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

    fn poll(&mut self, timeout: Duration, watch: &[Conn]) -> Ready {
        let mut fds = vec![self.signals.as_raw_fd()];
        let wake = self.wake.as_ref().map(|w| {
            fds.push(w.as_raw_fd());
            fds.len() - 1
        });
        let control = self.control.as_ref().map(|l| {
            fds.push(l.as_raw_fd());
            fds.len() - 1
        });
        let first_conn = fds.len();
        let watched: Vec<Conn> = watch
            .iter()
            .copied()
            .filter(|c| self.conns.contains_key(&c.0))
            .collect();
        fds.extend(watched.iter().map(|c| c.0));
        let readable = poll_fds(&fds, timeout);
        let at = |i: Option<usize>| i.and_then(|i| readable.get(i).copied()).unwrap_or(false);
        Ready {
            signals: at(Some(0)),
            wake: at(wake),
            control: at(control),
            conns: watched
                .iter()
                .enumerate()
                .filter(|&(k, _)| at(Some(first_conn + k)))
                .map(|(_, &c)| c)
                .collect(),
        }
    }

    fn accept(&mut self) -> io::Result<Option<Conn>> {
        let Some(listener) = &self.control else {
            return Ok(None);
        };
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                let fd = stream.as_raw_fd();
                self.conns.insert(fd, stream);
                Ok(Some(Conn(fd)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv(&mut self, conn: Conn, buf: &mut [u8]) -> io::Result<usize> {
        let mut stream = self.conn(conn)?;
        stream.read(buf)
    }

    fn send(&mut self, conn: Conn, data: &[u8]) -> io::Result<usize> {
        let fd = self.conn(conn)?.as_raw_fd();
        // SAFETY: data is valid for data.len() bytes; fd is a socket this
        // system keeps open.
        let n = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    fn close(&mut self, conn: Conn) {
        self.conns.remove(&conn.0);
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

    fn usr_corruption(&mut self) -> Option<String> {
        crate::recovery::usr_corruption()
    }

    fn give_up_corrupt_usr(
        &mut self,
        disk: &Path,
        slot: tandem_slot::Slot,
        what: &str,
    ) -> crate::recovery::Outcome {
        use tandem_contract::incident::IncidentKind;
        let outcome = crate::recovery::decide(disk, slot, IncidentKind::UsrCorrupt);
        if let Err(e) = crate::recovery::record(
            Path::new("/"),
            slot,
            IncidentKind::UsrCorrupt,
            what,
            &outcome,
        ) {
            crate::system_log!("warning: {e}");
        }
        outcome
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
    // A closed or failed connection is "readable" too: its read says so.
    pfds.iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_control_socket_is_polled_accepted_read_and_answered_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/init.sock");
        let listener = crate::system::control::bind(&path).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "root's only");
        // SAFETY: an empty set for a signalfd that receives nothing.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        let signals = signalfd(&set).expect("signalfd");
        let mut sys = LinuxSyscall::new(signals, None, None).with_control(Some(listener));
        assert!(sys.accept().expect("accept").is_none(), "nobody yet");
        assert!(!sys.poll(Duration::ZERO, &[]).control);

        let mut client = UnixStream::connect(&path).expect("connect");
        assert!(sys.poll(Duration::from_secs(5), &[]).control);
        let conn = sys.accept().expect("accept").expect("a connection");
        let mut buf = [0u8; 64];
        let err = sys.recv(conn, &mut buf).expect_err("nothing sent yet");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "it does not block");
        assert!(sys.poll(Duration::ZERO, &[conn]).conns.is_empty());

        client.write_all(b"hello\n").expect("write");
        assert_eq!(sys.poll(Duration::from_secs(5), &[conn]).conns, [conn]);
        let n = sys.recv(conn, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"hello\n");
        assert_eq!(sys.send(conn, b"bye\n").expect("send"), 4);
        sys.close(conn);
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).expect("read");
        assert_eq!(answer, b"bye\n", "answered, then closed");
        assert!(sys.send(conn, b"x").is_err(), "closed");

        // A client that goes away is readable: its read says so.
        let gone = UnixStream::connect(&path).expect("connect");
        assert!(sys.poll(Duration::from_secs(5), &[]).control);
        let conn = sys.accept().expect("accept").expect("a connection");
        drop(gone);
        assert_eq!(sys.poll(Duration::from_secs(5), &[conn]).conns, [conn]);
        assert_eq!(sys.recv(conn, &mut buf).expect("eof"), 0);
        sys.close(conn);

        // While it listens, a second PID 1 cannot take the socket.
        let err = crate::system::control::bind(&path).expect_err("in use");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

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
