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

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; F_GETFD/F_SETFD take plain ints.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    let flags = if on {
        flags | libc::FD_CLOEXEC
    } else {
        flags & !libc::FD_CLOEXEC
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags) })?;
    Ok(())
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
