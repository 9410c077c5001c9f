//! Restart policy: whether a service that exited starts again, and after
//! how long (exponential backoff for crash loops). Pure.

use std::time::Duration;

use super::Restart;

/// A service that ran at least this long before exiting restarts without
/// backoff: it was not crash-looping.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Longest delay between restarts.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// Decodes a waitpid(2) status.
    pub fn from_wait_status(status: libc::c_int) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    /// Exit status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The restart decision after an exit: `Some(delay)` to restart.
///
/// `streak` counts the quick exits before this one; the delay doubles per
/// quick exit from `base` up to 60 s. A run of 10 s or more resets it.
pub fn restart_after(
    policy: Restart,
    exit: Exit,
    ran_for: Duration,
    streak: u32,
    base: Duration,
) -> Option<Duration> {
    let restart = match policy {
        Restart::Always => true,
        Restart::OnFailure => !exit.success(),
        Restart::Never => false,
    };
    if !restart {
        return None;
    }
    let streak = if ran_for >= STABLE_AFTER { 0 } else { streak };
    let factor = 1u32 << streak.min(16);
    Some(base.saturating_mul(factor).min(MAX_DELAY))
}

/// The next streak value after a run of `ran_for`.
pub fn next_streak(streak: u32, ran_for: Duration) -> u32 {
    if ran_for >= STABLE_AFTER {
        0
    } else {
        streak.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy() {
        let base = Duration::from_millis(500);
        let quick = Duration::from_secs(1);
        let ok = Exit::Code(0);
        let bad = Exit::Code(1);
        let killed = Exit::Signal(9);
        assert_eq!(restart_after(Restart::Never, bad, quick, 0, base), None);
        assert_eq!(restart_after(Restart::OnFailure, ok, quick, 0, base), None);
        assert_eq!(
            restart_after(Restart::OnFailure, bad, quick, 0, base),
            Some(base)
        );
        assert_eq!(
            restart_after(Restart::OnFailure, killed, quick, 0, base),
            Some(base)
        );
        assert_eq!(
            restart_after(Restart::Always, ok, quick, 0, base),
            Some(base)
        );
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let base = Duration::from_millis(500);
        let quick = Duration::from_millis(100);
        let mut streak = 0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            delays.push(
                restart_after(Restart::Always, Exit::Code(1), quick, streak, base)
                    .expect("restarts"),
            );
            streak = next_streak(streak, quick);
        }
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[3], Duration::from_secs(4));
        assert_eq!(delays[9], MAX_DELAY);
        // A long run resets the streak.
        let long = Duration::from_secs(600);
        assert_eq!(
            restart_after(Restart::Always, Exit::Code(1), long, streak, base),
            Some(base)
        );
        assert_eq!(next_streak(streak, long), 0);
        // Huge streaks do not overflow.
        assert_eq!(
            restart_after(
                Restart::Always,
                Exit::Code(1),
                quick,
                u32::MAX,
                Duration::from_secs(u64::MAX)
            ),
            Some(MAX_DELAY)
        );
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(Exit::from_wait_status(0), Exit::Code(0));
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_wait_status(9), Exit::Signal(9));
        assert_eq!(Exit::Signal(15).to_string(), "killed by signal 15");
    }
}
