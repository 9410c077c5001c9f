//! The services' control groups (cgroup v2) on disk: enabling controllers,
//! creating a service's cgroup and writing its limits, asking whether it
//! still holds processes, killing them, removing it. The paths and file
//! names are the contract's ([`tandem_contract::cgroup`]); the system
//! init's loop calls these through [`Syscall`](crate::syscall::Syscall),
//! the boot step that mounts cgroup2 is `system::cgroups`.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use crate::error::Error;
pub use tandem_contract::cgroup::{CONTROLLERS, MOUNT, SERVICES, Usage, file, service};

/// Enables `wanted` controllers for the children of the cgroup at `dir`
/// (`+cpu +memory +pids` into its `cgroup.subtree_control`), those that its
/// `cgroup.controllers` offers; returns the ones it does not offer.
pub fn enable_controllers(dir: &Path, wanted: &[&str]) -> Result<Vec<String>, Error> {
    let available_path = dir.join(file::CONTROLLERS);
    let available = std::fs::read_to_string(&available_path).map_err(|err| Error::Cgroup {
        what: "reading",
        path: available_path,
        err,
    })?;
    let offered: Vec<&str> = available.split_whitespace().collect();
    let (on, missing): (Vec<&str>, Vec<&str>) = wanted.iter().partition(|c| offered.contains(c));
    if !on.is_empty() {
        let text: Vec<String> = on.iter().map(|c| format!("+{c}")).collect();
        write(dir, file::SUBTREE_CONTROL, &text.join(" ")).map_err(|err| Error::Cgroup {
            what: "writing",
            path: dir.join(file::SUBTREE_CONTROL),
            err,
        })?;
    }
    Ok(missing.into_iter().map(String::from).collect())
}

/// Creates the cgroup `dir`; one that exists already is fine.
pub fn create(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

/// Writes `value` to the interface file `name` of the cgroup `dir` (one
/// write, as the kernel wants it).
pub fn write(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(name), value)
}

/// `cgroup.procs` of `dir` opened for writing: a child writes `0` to it
/// between fork and exec to join the cgroup (close-on-exec).
pub fn open_procs(dir: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(dir.join(file::PROCS))
}

/// Whether the cgroup `dir` or a cgroup below it holds a process
/// (`populated` of `cgroup.events`). A cgroup that is gone holds none.
pub fn populated(dir: &Path) -> io::Result<bool> {
    match std::fs::read_to_string(dir.join(file::EVENTS)) {
        Ok(text) => Ok(tandem_contract::cgroup::stat_value(&text, "populated") != Some(0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// SIGKILLs every process of the cgroup `dir` and below (`cgroup.kill`;
/// before Linux 5.14, which lacks it, each PID of `cgroup.procs`).
pub fn kill(dir: &Path) -> io::Result<()> {
    match write(dir, file::KILL, "1") {
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir.is_dir() => kill_each(dir),
        r => r,
    }
}

fn kill_each(dir: &Path) -> io::Result<()> {
    let procs = std::fs::read_to_string(dir.join(file::PROCS))?;
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = crate::sys::kill(pid, libc::SIGKILL);
    }
    for sub in std::fs::read_dir(dir)?.flatten() {
        if sub.file_type().is_ok_and(|t| t.is_dir()) {
            kill_each(&sub.path())?;
        }
    }
    Ok(())
}

/// Removes the cgroup `dir` and any cgroups a service made below it,
/// deepest first; fails (EBUSY) while a process is left. A cgroup that is
/// gone already is fine.
pub fn remove(dir: &Path) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for sub in entries.flatten() {
        if sub.file_type().is_ok_and(|t| t.is_dir()) {
            remove(&sub.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A writable cgroup2 mount to try the real thing in (root on a host
    /// with cgroup v2), or `None`: the tests that need one then say so and
    /// pass.
    pub(crate) fn scratch_cgroup(name: &str) -> Option<PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        let base = crate::mount::parse_mounts(&mounts)
            .into_iter()
            .find(|m| m.fstype == "cgroup2")?
            .target;
        let dir = base.join(format!("tandem-test-{name}-{}", std::process::id()));
        match create(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                eprintln!("no writable cgroup2 ({e}): skipped");
                None
            }
        }
    }

    pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < end, "{what}: not within 5 s");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn controllers_are_enabled_as_offered() {
        let dir = std::env::temp_dir().join(format!("tandem-cg-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(file::CONTROLLERS), "cpuset cpu io pids\n").expect("write");
        let missing = enable_controllers(&dir, &CONTROLLERS).expect("enabled");
        let written = std::fs::read_to_string(dir.join(file::SUBTREE_CONTROL)).expect("read");
        std::fs::remove_file(dir.join(file::CONTROLLERS)).expect("rm");
        let err = enable_controllers(&dir, &CONTROLLERS).expect_err("no cgroup.controllers");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(written, "+cpu +pids");
        assert_eq!(missing, ["memory"]);
        assert!(err.to_string().starts_with("cgroup: reading "), "{err}");
    }

    #[test]
    fn a_gone_cgroup_holds_nothing_and_removes_quietly() {
        let gone = Path::new("/nonexistent/tandem/x.service");
        assert!(!populated(gone).expect("no error"));
        remove(gone).expect("nothing to remove");
    }

    #[test]
    fn create_join_kill_and_remove_a_real_cgroup() {
        let Some(dir) = scratch_cgroup("kill") else {
            return;
        };
        create(&dir).expect("exists already: fine");
        assert!(!populated(&dir).expect("events"));
        // A process that leaves a child behind (in its own session, out of
        // the parent's process group) and exits.
        let procs = open_procs(&dir).expect("cgroup.procs");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "setsid sleep 60 & exit 0"]);
        // SAFETY: one write(2) between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                if libc::write(fd, b"0".as_ptr().cast(), 1) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let status = cmd.status().expect("sh");
        assert!(status.success());
        assert!(populated(&dir).expect("events"), "the sleep is left");
        let err = remove(&dir).expect_err("busy");
        assert_eq!(err.raw_os_error(), Some(libc::EBUSY), "{err}");
        let sub = dir.join("made-by-the-service");
        create(&sub).expect("a cgroup below");
        kill(&dir).expect("cgroup.kill");
        wait_until("the cgroup empties", || !populated(&dir).unwrap_or(true));
        remove(&dir).expect("removed with the one below");
        assert!(!dir.exists());
    }
}
