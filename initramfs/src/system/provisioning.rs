//! The provisioning step at boot: PID 1 runs `tandem-provision`
//! ([`PROGRAM`], a role of the node binary, which has the YAML parser and
//! the HTTP client PID 1 does without) as a child, waits for it within a
//! bound while keeping the watchdog fed, and reads its outcome
//! ([`RESULT_FILE`]). A step that fails, hangs or dies leaves a node that
//! still boots, with the failure in its status.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem_contract::provision::{
    FORMAT, HOSTNAME_FILE, Outcome, PROGRAM, Problem, ProvisionState, RESULT_FILE, Severity,
};

use crate::watchdog::Watchdog;

/// Longest the step may take: its datasources' own waits are bounded
/// (30 s for the network, a retry budget per request); this is the bound
/// for the step as a whole.
const TIMEOUT: Duration = Duration::from_secs(120);
/// How often the watchdog is fed while waiting.
const PET: Duration = Duration::from_secs(5);

/// The step, started.
#[derive(Debug)]
pub(super) struct Running {
    child: Result<Child, String>,
    started: Instant,
    started_us: u64,
}

/// Starts the step if the image has it; `None` if it does not. PID 1 goes
/// on with work that does not depend on it (modules, the network) and
/// [`Running::wait`]s before what does (`tmpfiles.d` and `sysctl.d`, which
/// the config's files may add to, the services).
pub(super) fn start() -> Option<Running> {
    if !Path::new(PROGRAM).exists() {
        return None;
    }
    let _ = std::fs::remove_file(RESULT_FILE);
    // Its standard error is the console: its problems show there as they
    // happen.
    let child = Command::new(PROGRAM)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"));
    Some(Running {
        child,
        started: Instant::now(),
        started_us: crate::sys::boottime_us(),
    })
}

impl Running {
    /// Waits for the step within [`TIMEOUT`], feeding the watchdog, and
    /// reads its outcome; a step that failed to start, hung, died or left
    /// no outcome is a failed outcome saying so.
    pub(super) fn wait(self, mut watchdog: Option<&mut Watchdog>) -> Outcome {
        let failed = |message: String| Outcome {
            format: FORMAT,
            state: ProvisionState::Failed,
            problems: vec![Problem {
                severity: Severity::Error,
                at: PROGRAM.into(),
                message,
            }],
            started_us: self.started_us,
            finished_us: crate::sys::boottime_us(),
            ..Outcome::default()
        };
        let mut child = match self.child {
            Ok(c) => c,
            Err(e) => return failed(e),
        };
        loop {
            if let Some(w) = watchdog.as_deref_mut() {
                let _ = w.pet();
            }
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => return failed(format!("waiting for it: {e}")),
            }
            let left = TIMEOUT.saturating_sub(self.started.elapsed());
            if left.is_zero() {
                let _ = child.kill();
                let _ = child.wait();
                return failed(format!(
                    "did not finish within {} s and was stopped; the node boots without its config",
                    TIMEOUT.as_secs()
                ));
            }
            wait_exit(&child, left.min(PET));
        }
        match std::fs::read(RESULT_FILE) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| failed(format!("{RESULT_FILE} is not an outcome: {e}"))),
            Err(e) => failed(format!("ended without writing {RESULT_FILE}: {e}")),
        }
    }
}

/// Sleeps until `child` exits or `max` passes (a pidfd, so the exit is seen
/// at once; a short sleep where there is none).
fn wait_exit(child: &Child, max: Duration) {
    // SAFETY: pidfd_open on our own child's pid; the result is a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) };
    if fd < 0 {
        std::thread::sleep(max.min(Duration::from_millis(20)));
        return;
    }
    // SAFETY: a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(max.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// The host name the config gave, if any (one line).
pub(super) fn hostname() -> Option<String> {
    let text = std::fs::read_to_string(HOSTNAME_FILE).ok()?;
    let name = text.trim();
    (!name.is_empty()).then(|| name.to_string())
}
