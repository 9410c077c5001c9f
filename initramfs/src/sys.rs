//! Thin wrappers over the libc calls the init needs. Each one converts paths
//! to C strings and a `-1` into an [`io::Error`] and does nothing else, so the
//! logic around them stays in safe Rust.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// A path as a C string; a NUL byte inside is an `InvalidInput` error.
pub fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Text as a C string; a NUL byte inside is an `InvalidInput` error.
pub fn cstr(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `Ok(ret)` unless the call returned -1.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// mount(2).
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = cstr(source)?;
    let target = cpath(target)?;
    let fstype = cstr(fstype)?;
    let data = data.map(cstr).transpose()?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast());
    // SAFETY: all pointers are valid NUL-terminated strings (or null for data).
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    })?;
    Ok(())
}

/// mount(2) with `MS_MOVE`: moves the mount at `from` to `to`.
pub fn mount_move(from: &Path, to: &Path) -> io::Result<()> {
    let from = cpath(from)?;
    let to = cpath(to)?;
    // SAFETY: valid C strings; fstype and data may be null for MS_MOVE.
    check(unsafe {
        libc::mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

/// mount(2) with `MS_REMOUNT`: changes the flags of the mount at `target`.
pub fn remount(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: valid C string; source, fstype and data may be null for a remount.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | flags,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

/// umount2(2).
pub fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cpath(target)?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })?;
    Ok(())
}

/// chroot(2).
pub fn chroot(path: &Path) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: valid C string.
    check(unsafe { libc::chroot(path.as_ptr()) })?;
    Ok(())
}

/// mknod(2) for a block device node.
pub fn mknod_block(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: valid C string; makedev is a pure computation.
    check(unsafe {
        libc::mknod(
            path.as_ptr(),
            libc::S_IFBLK | 0o600,
            libc::makedev(major, minor),
        )
    })?;
    Ok(())
}

/// Major and minor number of a device number.
pub fn dev_split(dev: u64) -> (u32, u32) {
    (
        libc::major(dev as libc::dev_t),
        libc::minor(dev as libc::dev_t),
    )
}

fn clock_us(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to; the clocks used always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// Microseconds since boot, counting suspend (`CLOCK_BOOTTIME`): the clock
/// the kernel's own log timestamps are comparable with.
pub fn boottime_us() -> u64 {
    clock_us(libc::CLOCK_BOOTTIME)
}

/// Microseconds of `CLOCK_MONOTONIC` (not counting suspend).
pub fn monotonic_us() -> u64 {
    clock_us(libc::CLOCK_MONOTONIC)
}

/// sync(2).
pub fn sync() {
    // SAFETY: no arguments.
    unsafe { libc::sync() };
}

/// reboot(2). Returns only on failure.
pub fn reboot(how: libc::c_int) -> io::Error {
    // SAFETY: plain system call; on success it does not return.
    unsafe { libc::reboot(how) };
    io::Error::last_os_error()
}

/// Asks the kernel to send SIGINT to init on Ctrl-Alt-Del instead of
/// rebooting at once, so that it is a clean reboot.
pub fn disable_ctrl_alt_del() {
    // SAFETY: plain system call.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) };
}

/// kill(2).
pub fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system call.
    check(unsafe { libc::kill(pid, signal) })?;
    Ok(())
}

/// The PID of this process.
pub fn getpid() -> libc::pid_t {
    // SAFETY: always succeeds.
    unsafe { libc::getpid() }
}

/// Sleeps; used where a plain delay is what is meant (polling devices).
pub fn sleep(d: Duration) {
    std::thread::sleep(d);
}

/// Fills `buf` from the kernel's random pool, blocking until it is seeded.
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: rest is a valid writable buffer of the given length.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        done += n as usize;
    }
    Ok(())
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe the bytes of `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })?;
    Ok(())
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain old data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is a valid utsname to write to.
    check(unsafe { libc::uname(&mut uts) })?;
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// ioctl(2) with a pointer argument.
///
/// # Safety
/// `arg` must point to memory of the size and layout `request` expects.
pub unsafe fn ioctl_ptr<T>(fd: RawFd, request: u64, arg: *mut T) -> io::Result<libc::c_int> {
    // SAFETY: the caller guarantees arg matches the request.
    check(unsafe { libc::ioctl(fd, request as libc::Ioctl, arg) })
}

/// ioctl(2) with an integer argument.
pub fn ioctl_int(file: &File, request: u64, arg: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the request takes its argument by value; no memory is touched.
    check(unsafe { libc::ioctl(file.as_raw_fd(), request as libc::Ioctl, arg) })
}

/// statfs(2) `f_type` of the filesystem holding `path`.
pub fn fs_type(path: &Path) -> io::Result<i64> {
    let p = cpath(path)?;
    // SAFETY: statfs is plain old data; the call fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a valid statfs to write to.
    check(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between libcs
    Ok(st.f_type as i64)
}

/// Blocks `signals` for this thread (and the threads it creates later).
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    // SAFETY: valid set; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(set)
}

/// Unblocks every signal; used in a child between fork and exec.
pub fn unblock_all_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid set; async-signal-safe calls only.
    let r = unsafe {
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Raises the calling thread's CPU weight to `nice` (negative) while every
/// thread or process it creates starts at nice 0 (`SCHED_RESET_ON_FORK`).
pub fn raise_priority_not_inherited(nice: libc::c_int) -> io::Result<()> {
    // SAFETY: sched_param is plain old data; all zero is priority 0 (the
    // only one SCHED_OTHER takes; musl's has more fields than glibc's).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // The raw system call: musl's sched_setscheduler() always fails with
    // ENOSYS (POSIX makes it per process, Linux's call is per thread).
    // SAFETY: plain syscalls on the calling thread with a valid sched_param.
    unsafe {
        let policy = libc::SCHED_OTHER | libc::SCHED_RESET_ON_FORK;
        if libc::syscall(libc::SYS_sched_setscheduler, 0, policy, &param) == -1 {
            return Err(io::Error::last_os_error());
        }
        check(libc::setpriority(libc::PRIO_PROCESS, 0, nice))?;
    }
    Ok(())
}

/// What [`spawn`] starts.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    /// Absolute path of the program.
    pub program: &'a str,
    /// Arguments including argv[0].
    pub argv: &'a [String],
    /// The whole environment, `KEY=value`.
    pub env: &'a [String],
    /// Working directory.
    pub cwd: &'a Path,
    /// Standard input, output and error.
    pub stdio: ChildIo<'a>,
}

/// Where a spawned program's standard input, output and error go.
#[derive(Debug)]
pub enum ChildIo<'a> {
    /// These descriptors, in order.
    Fds([RawFd; 3]),
    /// This terminal, opened by the child after it became a session leader,
    /// so that it becomes the child's controlling terminal (as getty does).
    Terminal(&'a Path),
}

/// Starts a program with posix_spawn(3) in a session of its own, with an
/// empty signal mask and default signal dispositions (PID 1 blocks the
/// signals it reads through signalfd, and Rust ignores SIGPIPE; both would
/// otherwise be inherited). musl's posix_spawn uses `CLONE_VM|CLONE_VFORK`:
/// no copy of the parent's page tables, which is what makes it much cheaper
/// than fork + exec. Returns the PID.
pub fn spawn(req: &SpawnRequest) -> io::Result<libc::pid_t> {
    let program = cstr(req.program)?;
    let argv: Vec<CString> = req
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = req.env.iter().map(|e| cstr(e)).collect::<io::Result<_>>()?;
    let cwd = cpath(req.cwd)?;
    enum Io {
        Fds([RawFd; 3]),
        Terminal(CString),
    }
    let stdio = match req.stdio {
        ChildIo::Fds(fds) => Io::Fds(fds),
        ChildIo::Terminal(path) => Io::Terminal(cpath(path)?),
    };
    let mut argv_ptrs: Vec<*mut libc::c_char> = argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut env_ptrs: Vec<*mut libc::c_char> = env.iter().map(|e| e.as_ptr() as *mut _).collect();
    env_ptrs.push(std::ptr::null_mut());

    let err = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(r))
        }
    };
    // SAFETY: the attribute and file-action objects are initialised before
    // use and destroyed on every path; every pointer handed to posix_spawn
    // (program, argv, envp, cwd) outlives the call and the arrays are
    // NULL-terminated.
    unsafe {
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        err(libc::posix_spawnattr_init(&mut attr))?;
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        if let Err(e) = err(libc::posix_spawn_file_actions_init(&mut actions)) {
            libc::posix_spawnattr_destroy(&mut attr);
            return Err(e);
        }
        let result = (|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            err(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            err(libc::posix_spawnattr_setsigdefault(&mut attr, &all))?;
            let flags = libc::POSIX_SPAWN_SETSID
                | (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
            err(libc::posix_spawnattr_setflags(&mut attr, flags))?;
            match &stdio {
                Io::Fds(fds) => {
                    for (target, fd) in fds.iter().enumerate() {
                        err(libc::posix_spawn_file_actions_adddup2(
                            &mut actions,
                            *fd,
                            target as libc::c_int,
                        ))?;
                    }
                }
                Io::Terminal(tty) => {
                    err(libc::posix_spawn_file_actions_addopen(
                        &mut actions,
                        0,
                        tty.as_ptr(),
                        libc::O_RDWR,
                        0,
                    ))?;
                    for target in [1, 2] {
                        err(libc::posix_spawn_file_actions_adddup2(
                            &mut actions,
                            0,
                            target,
                        ))?;
                    }
                }
            }
            err(libc::posix_spawn_file_actions_addchdir_np(
                &mut actions,
                cwd.as_ptr(),
            ))?;
            let mut pid: libc::pid_t = 0;
            err(libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &actions,
                &attr,
                argv_ptrs.as_ptr(),
                env_ptrs.as_ptr(),
            ))?;
            Ok(pid)
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn spawn_sets_up_the_child_as_asked() {
        let dir = std::env::temp_dir().join(format!("tandem-spawn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let out_path = dir.join("out");
        let out = File::create(&out_path).expect("create");
        let null = File::open("/dev/null").expect("/dev/null");
        // The parent blocks a signal, as PID 1 does; the child must not.
        // SAFETY: sigset_t is plain old data; this thread's mask is restored below.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        }
        let script = "echo \"$GREETING $(pwd)\"; grep -E '^SigBlk' /proc/self/status; \
                      [ \"$(ps -o sid= -p $$ | tr -d ' ')\" = \"$$\" ] && echo leader";
        let pid = spawn(&SpawnRequest {
            program: "/bin/sh",
            argv: &["sh".into(), "-c".into(), script.into()],
            env: &["GREETING=hello".into(), "PATH=/usr/bin:/bin".into()],
            cwd: &dir,
            stdio: ChildIo::Fds([null.as_raw_fd(), out.as_raw_fd(), out.as_raw_fd()]),
        });
        // SAFETY: restoring the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
        let pid = pid.expect("spawn");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let text = std::fs::read_to_string(&out_path).expect("output");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(text.contains(&format!("hello {}", dir.display())), "{text}");
        assert!(text.contains("SigBlk:\t0000000000000000"), "{text}");
        assert!(text.contains("leader"), "not a session leader: {text}");
    }

    #[test]
    fn spawn_on_a_terminal_makes_it_the_controlling_terminal() {
        // SAFETY: standard pty set-up on a descriptor we own.
        let (master, slave) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0, "posix_openpt");
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let name = std::ffi::CStr::from_ptr(libc::ptsname(m));
            (m, PathBuf::from(name.to_string_lossy().into_owned()))
        };
        // Field 7 of /proc/<pid>/stat is the controlling terminal (0: none).
        let pid = spawn(&SpawnRequest {
            program: "/bin/sh",
            argv: &[
                "sh".into(),
                "-c".into(),
                "read -r a b c d e f tty rest < /proc/self/stat; echo \"ctty=$tty\"".into(),
            ],
            env: &[],
            cwd: Path::new("/"),
            stdio: ChildIo::Terminal(&slave),
        })
        .expect("spawn");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let mut buf = [0u8; 256];
        // SAFETY: reading into a buffer we own from the pty master.
        let n = unsafe { libc::read(master, buf.as_mut_ptr().cast(), buf.len()) };
        // SAFETY: closing the master we opened.
        unsafe { libc::close(master) };
        let text = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
        assert!(text.contains("ctty="), "{text}");
        assert!(!text.contains("ctty=0"), "no controlling terminal: {text}");
    }

    #[test]
    fn raised_priority_is_not_inherited() {
        // A precondition, not a skip: a test that passes without checking
        // anything hides a regression. CI runs the tests as root.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "raised_priority_is_not_inherited needs root (a negative nice value needs CAP_SYS_NICE): run the tests as root, as CI does"
        );
        // In a thread of its own: nice is per thread on Linux.
        let (own, child) = std::thread::spawn(|| {
            raise_priority_not_inherited(-5).expect("raise");
            // SAFETY: reading this thread's nice value.
            let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", "read -r a b c d e f g h i j k l m n o p q r nice rest < /proc/self/stat; echo $nice"])
                .output()
                .expect("sh");
            (own, String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .join()
        .expect("thread");
        assert_eq!(own, -5);
        assert_eq!(child, "0", "the child inherited the raised priority");
    }

    #[test]
    fn spawn_reports_a_missing_program() {
        let err = spawn(&SpawnRequest {
            program: "/nonexistent/program",
            argv: &["program".into()],
            env: &[],
            cwd: Path::new("/"),
            stdio: ChildIo::Fds([0, 1, 2]),
        })
        .expect_err("missing");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
