//! What the agent does, as one pure function: [`decide`] takes the reboot
//! strategy, the updater's status, what the agent knows about its lock,
//! the reboot window and the time, and returns one [`Decision`]. The daemon
//! carries it out and asks again (a lock taken is followed by the reboot in
//! the same round). Nothing here reads a clock or a socket.
//!
//! The rules, in order (first match wins):
//!
//! | # | situation | decision |
//! |---|---|---|
//! | 1 | a rollback seen at this boot with evidence of a failure (not only trial boots cut short), not yet recorded in etcd (etcd configured) | record the failed version |
//! | 2 | strategy `etcd-lock`/`fleetlock` without its `[etcd]`/`[fleetlock]` settings | report `error`; no lock, no reboot |
//! | 3 | lock held (or maybe held) and this boot failed its health checks | keep the lock (stop the line), report `holding-lock` |
//! | 4 | an update waits for a reboot, its version failed elsewhere in the cluster | release a held lock once confirmed, else report `blocked`; no reboot |
//! | 5 | update waits, strategy `off` | release a held lock, else report `reboot-needed` |
//! | 6 | update waits, this agent asked for the reboot less than [`REBOOT_RETRY`] ago | report `rebooting` |
//! | 7 | update waits, outside the window | release a held lock (not held while waiting), else report `waiting-for-window` |
//! | 8 | update waits, strategy `reboot` | reboot |
//! | 9 | update waits, lock held | reboot |
//! | 10 | update waits, lock not held | take the lock |
//! | 11 | no update waits, lock held or maybe held, boot confirmed | release the lock (whatever the window) |
//! | 12 | no update waits, lock held or maybe held, boot not confirmed yet | keep the lock until it is, report `holding-lock` |
//! | 13 | otherwise | report `idle` |
//!
//! "Maybe held" ([`LockState::Unknown`]) is what an agent knows after a
//! restart before it could ask (etcd unreachable) or for FleetLock, which
//! has no way to ask: releasing is idempotent, so it releases to be sure.
//!
//! ```
//! use agent::decide::{decide, Decision, Inputs, LockState};
//! use updater::config::RebootStrategy;
//! use updater::status::{BootHealth, UpdateState, UpdateStatus};
//!
//! let mut status = UpdateStatus::default();
//! status.state = UpdateState::UpdatedNeedReboot {
//!     version: "1.1.0".parse().expect("a version"),
//!     slot: tandem_contract::Slot::B,
//! };
//! status.boot = BootHealth::Confirmed;
//! let mut inputs = Inputs::new(RebootStrategy::EtcdLock, &status, 0);
//! inputs.lock = LockState::Free;
//! assert!(matches!(decide(&inputs), Decision::TakeLock { .. }));
//! inputs.lock = LockState::Held { since: Some(0) };
//! assert!(matches!(decide(&inputs), Decision::Reboot { .. }));
//! ```

use std::time::Duration;

use tandem_contract::{AgentState, Version};
use updater::clock::{format_duration, format_unix};
use updater::config::RebootStrategy;
use updater::status::{BootHealth, Rollback, UpdateState, UpdateStatus};

use crate::window::{Position, Window};

/// A reboot asked for but not happening is asked for again after this long.
pub const REBOOT_RETRY: Duration = Duration::from_secs(600);

/// What the agent knows about its hold on the cluster's lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockState {
    /// It holds it; since when, if known (Unix seconds).
    Held {
        /// When it was taken.
        since: Option<u64>,
    },
    /// It does not hold it.
    Free,
    /// It may hold it (after a restart, before it could ask; FleetLock,
    /// which cannot be asked).
    Unknown,
}

impl LockState {
    fn maybe_held(self) -> bool {
        !matches!(self, LockState::Free)
    }
}

/// Everything a decision depends on.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// The strategy (update.toml, as the updater reports it).
    pub strategy: RebootStrategy,
    /// The updater's status.
    pub status: &'a UpdateStatus,
    /// The agent's lock.
    pub lock: LockState,
    /// Why the strategy's lock service cannot be used (`[etcd]` or
    /// `[fleetlock]` missing from agent.toml), if it cannot.
    pub backend_missing: Option<String>,
    /// The reboot window, if any.
    pub window: Option<&'a Window>,
    /// Now (Unix seconds).
    pub now: u64,
    /// When this agent asked for a reboot during this boot, if it did.
    pub reboot_requested_at: Option<u64>,
    /// A rollback seen at this boot that is not recorded in etcd yet
    /// (`None` when recorded, when there was none, or without etcd).
    pub unrecorded_rollback: Option<&'a Rollback>,
    /// Versions that failed elsewhere in the cluster.
    pub cluster_failed: &'a [Version],
}

impl<'a> Inputs<'a> {
    /// Inputs with no lock, no window, no rollback, nothing failed.
    pub fn new(strategy: RebootStrategy, status: &'a UpdateStatus, now: u64) -> Inputs<'a> {
        Inputs {
            strategy,
            status,
            lock: LockState::Free,
            backend_missing: None,
            window: None,
            now,
            reboot_requested_at: None,
            unrecorded_rollback: None,
            cluster_failed: &[],
        }
    }
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing but say what is going on.
    Report {
        /// What the agent is doing.
        state: AgentState,
        /// What and why, and what to do if anything.
        message: String,
    },
    /// Take the cluster's lock (semaphore slot, FleetLock pre-reboot).
    TakeLock {
        /// Why.
        reason: String,
    },
    /// Reboot now.
    Reboot {
        /// Why.
        reason: String,
    },
    /// Give the lock back.
    ReleaseLock {
        /// Why.
        reason: String,
    },
    /// Record in etcd that `version` rolled back here, so no other node
    /// installs it.
    RecordFailure {
        /// The version.
        version: Version,
        /// Why it failed (the updater's reason).
        reason: String,
    },
}

fn report(state: AgentState, message: String) -> Decision {
    Decision::Report { state, message }
}

/// Whether `version` is in `list` (as versions: `1.1` is `1.1.0`).
pub fn version_listed(version: &Version, list: &[Version]) -> bool {
    list.contains(version)
}

/// "at 2026-03-05 23:00:00 UTC (in 3 h 10 min)".
pub fn when(at: u64, now: u64) -> String {
    if at >= now {
        format!(
            "at {} (in {})",
            format_unix(at),
            format_duration(Duration::from_secs(at - now))
        )
    } else {
        format!(
            "at {} ({} ago)",
            format_unix(at),
            format_duration(Duration::from_secs(now - at))
        )
    }
}

fn lock_word(strategy: RebootStrategy) -> &'static str {
    match strategy {
        RebootStrategy::Fleetlock => "FleetLock reboot slot",
        _ => "cluster reboot lock",
    }
}

/// Decides what to do now.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let s = i.status;
    let strategy = i.strategy;
    let lock_based = matches!(
        strategy,
        RebootStrategy::EtcdLock | RebootStrategy::Fleetlock
    );
    let pending = match &s.state {
        UpdateState::UpdatedNeedReboot { version, slot } => Some((version, slot)),
        _ => None,
    };
    let confirmed = s.boot == BootHealth::Confirmed;
    let lw = lock_word(strategy);

    // 1. A rollback of this boot goes into etcd before anything else, so no
    //    other node installs that version.
    if let Some(rb) = i.unrecorded_rollback
        && rb.evidence.is_failure()
    {
        return Decision::RecordFailure {
            version: rb.version.clone(),
            reason: rb.reason.clone(),
        };
    }

    // 2. A lock strategy without its service: say so, do nothing.
    if lock_based && let Some(why) = &i.backend_missing {
        let what = match pending {
            Some((v, slot)) => format!(
                "{v} is installed in slot {slot}, but strategy `{strategy}` cannot work: {why}; not rebooting"
            ),
            None => format!("strategy `{strategy}` cannot work: {why}"),
        };
        return report(AgentState::Error, what);
    }

    // 3. Stop the line: a boot that failed keeps the lock.
    if i.lock.maybe_held()
        && let BootHealth::Failed { reason } = &s.boot
    {
        return report(
            AgentState::HoldingLock,
            format!(
                "this boot failed its health checks ({reason}): keeping the {lw} so the rollout stops here; fix the node (or let it roll back), then the lock is released once a boot is confirmed"
            ),
        );
    }

    let release_or = |why: String, otherwise: Decision| {
        if i.lock.maybe_held() && confirmed {
            Decision::ReleaseLock { reason: why }
        } else {
            otherwise
        }
    };

    if let Some((version, slot)) = pending {
        // 4. Never into a version the cluster saw fail.
        if version_listed(version, i.cluster_failed) {
            return release_or(
                format!("{version} failed elsewhere in the cluster: not rebooting into it"),
                report(
                    AgentState::Blocked,
                    format!(
                        "{version} is installed in slot {slot} but rolled back on another node of the cluster: not rebooting into it (`tandemctl cluster status` shows where and why; `tandemctl cluster forget-failed {version}` allows it again)"
                    ),
                ),
            );
        }
        // 5. Strategy off: somebody else reboots.
        if strategy == RebootStrategy::Off {
            return release_or(
                "the reboot strategy is `off`".into(),
                report(
                    AgentState::RebootNeeded,
                    format!(
                        "reboot needed: {version} is installed in slot {slot}; the reboot strategy is `off`, reboot when convenient (`tandemctl reboot`)"
                    ),
                ),
            );
        }
        // 6. Asked already: give it time.
        if let Some(at) = i.reboot_requested_at
            && i.now.saturating_sub(at) < REBOOT_RETRY.as_secs()
        {
            return report(
                AgentState::Rebooting,
                format!(
                    "reboot into {version} (slot {slot}) requested {}",
                    when(at, i.now)
                ),
            );
        }
        // 7. Outside the window: wait, holding nothing.
        if let Some(w) = i.window
            && let Position::Closed { opens_at } = w.at(i.now)
        {
            return release_or(
                format!(
                    "outside the reboot window ({w}): not holding the lock while waiting for it"
                ),
                report(
                    AgentState::WaitingForWindow,
                    format!(
                        "{version} is installed in slot {slot}; waiting for the reboot window ({w}), which opens {}",
                        when(opens_at, i.now)
                    ),
                ),
            );
        }
        let in_window = i
            .window
            .map(|w| format!(" inside the reboot window ({w})"))
            .unwrap_or_default();
        return match (strategy, i.lock) {
            // 8.
            (RebootStrategy::Reboot, _) => Decision::Reboot {
                reason: format!(
                    "{version} is installed in slot {slot} and the reboot strategy is `reboot`{in_window}"
                ),
            },
            // 9.
            (_, LockState::Held { .. }) => Decision::Reboot {
                reason: format!(
                    "{version} is installed in slot {slot} and this node holds the {lw}{in_window}"
                ),
            },
            // 10.
            _ => Decision::TakeLock {
                reason: format!(
                    "{version} is installed in slot {slot}{in_window}: taking the {lw} before rebooting"
                ),
            },
        };
    }

    // 11, 12. After the reboot: release once confirmed, whatever the window.
    if i.lock.maybe_held() {
        let running = s
            .running_version
            .as_ref()
            .map_or("?".into(), Version::to_string);
        if confirmed {
            let why = match &s.rollback {
                Some(rb) => format!(
                    "back on {running} after {} rolled back; this boot is confirmed",
                    rb.version
                ),
                None => format!("running {running}, this boot is confirmed healthy"),
            };
            return Decision::ReleaseLock { reason: why };
        }
        let detail = match &s.boot {
            BootHealth::Checking { detail, .. } => detail.clone(),
            _ => "the updater has not confirmed it yet".into(),
        };
        return report(
            AgentState::HoldingLock,
            format!(
                "running {running}; holding the {lw} until this boot is confirmed healthy ({detail})"
            ),
        );
    }

    // 13.
    report(
        AgentState::Idle,
        format!("no reboot needed (strategy {strategy})"),
    )
}

/// The wait after `failures` failures in a row of etcd or the FleetLock
/// server: `first` doubled per further failure, capped at `cap`, spread by
/// ±20 % (`r` in [-1, 1]) but never below `first` nor above `cap`. Never
/// zero: no busy loop.
pub fn backoff(failures: u32, first: Duration, cap: Duration, r: f64) -> Duration {
    let first = first.max(Duration::from_millis(10));
    let cap = cap.max(first);
    let d = updater::backoff::doubling(failures, first, cap);
    updater::backoff::spread(d, 0.2, r).clamp(first, cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_contract::node::Evidence;

    fn v(text: &str) -> Version {
        text.parse().expect("a version")
    }
    use crate::window::Window;

    const NOW: u64 = 1_772_751_600; // 2026-03-05 23:00 UTC, a Thursday

    fn need() -> UpdateState {
        UpdateState::UpdatedNeedReboot {
            version: v("1.1.0"),
            slot: tandem_contract::Slot::B,
        }
    }

    fn status(state: UpdateState, boot: BootHealth) -> UpdateStatus {
        UpdateStatus {
            state,
            boot,
            running_version: Some(v("1.0.0")),
            ..Default::default()
        }
    }

    fn checking() -> BootHealth {
        BootHealth::Checking {
            detail: "services starting".into(),
            deadline_secs: 300,
        }
    }

    fn failed() -> BootHealth {
        BootHealth::Failed {
            reason: "web failed".into(),
        }
    }

    fn kind(d: &Decision) -> String {
        match d {
            Decision::Report { state, .. } => (*state).to_string(),
            Decision::TakeLock { .. } => "take-lock".into(),
            Decision::Reboot { .. } => "reboot".into(),
            Decision::ReleaseLock { .. } => "release".into(),
            Decision::RecordFailure { .. } => "record-failure".into(),
        }
    }

    fn rollback() -> Rollback {
        Rollback {
            version: v("1.1.0"),
            reason: "health check app failed".into(),
            at: NOW - 60,
            evidence: Evidence::HealthChecks,
        }
    }

    #[test]
    fn a_rollback_without_evidence_is_not_recorded_for_the_cluster() {
        let rb = Rollback {
            evidence: Evidence::None,
            ..rollback()
        };
        let status = UpdateStatus {
            state: UpdateState::RolledBack {
                version: rb.version.clone(),
                reason: rb.reason.clone(),
            },
            boot: BootHealth::Confirmed,
            rollback: Some(rb.clone()),
            ..UpdateStatus::default()
        };
        let mut i = Inputs::new(RebootStrategy::EtcdLock, &status, NOW);
        i.unrecorded_rollback = Some(&rb);
        assert!(!matches!(decide(&i), Decision::RecordFailure { .. }));
        let with_evidence = Rollback {
            evidence: Evidence::EarlyBoot,
            ..rb.clone()
        };
        i.unrecorded_rollback = Some(&with_evidence);
        assert!(matches!(decide(&i), Decision::RecordFailure { .. }));
    }

    #[test]
    fn the_rules_in_a_table() {
        use BootHealth::Confirmed;
        use LockState::*;
        use RebootStrategy::*;
        let open = Window::parse("Thu 22:00", "2h", None).expect("w");
        let closed = Window::parse("Mon 02:00", "1h", None).expect("w");
        let held = Held {
            since: Some(NOW - 5),
        };
        let rb = rollback();
        let cf = [v("1.1")];
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            &str,
            RebootStrategy,
            UpdateState,
            BootHealth,
            LockState,
            Option<&Window>,
            Option<u64>,
            bool,
            bool,
            bool,
            &str,
        )> = vec![
            // name, strategy, state, boot, lock, window, requested, backend missing, unrecorded rollback, cluster failed => decision
            (
                "2 no etcd",
                EtcdLock,
                need(),
                Confirmed,
                Free,
                None,
                None,
                true,
                false,
                false,
                "error",
            ),
            (
                "1 record even without the lock service",
                EtcdLock,
                need(),
                Confirmed,
                Free,
                None,
                None,
                true,
                true,
                false,
                "record-failure",
            ),
            (
                "2 no etcd, idle",
                EtcdLock,
                UpdateState::Idle,
                Confirmed,
                Free,
                None,
                None,
                true,
                false,
                false,
                "error",
            ),
            (
                "2 reboot needs no service",
                Reboot,
                need(),
                Confirmed,
                Free,
                None,
                None,
                true,
                false,
                false,
                "reboot",
            ),
            (
                "1 record first",
                EtcdLock,
                UpdateState::Idle,
                Confirmed,
                held,
                None,
                None,
                false,
                true,
                false,
                "record-failure",
            ),
            (
                "1 record, any strategy",
                Off,
                UpdateState::Idle,
                Confirmed,
                Free,
                None,
                None,
                false,
                true,
                false,
                "record-failure",
            ),
            (
                "3 stop the line",
                EtcdLock,
                UpdateState::Idle,
                failed(),
                held,
                None,
                None,
                false,
                false,
                false,
                "holding-lock",
            ),
            (
                "3 stop the line, maybe held",
                Fleetlock,
                UpdateState::Idle,
                failed(),
                Unknown,
                None,
                None,
                false,
                false,
                false,
                "holding-lock",
            ),
            (
                "3 failed, not held",
                EtcdLock,
                UpdateState::Idle,
                failed(),
                Free,
                None,
                None,
                false,
                false,
                false,
                "idle",
            ),
            (
                "4 blocked",
                EtcdLock,
                need(),
                Confirmed,
                Free,
                None,
                None,
                false,
                false,
                true,
                "blocked",
            ),
            (
                "4 blocked, release",
                EtcdLock,
                need(),
                Confirmed,
                held,
                None,
                None,
                false,
                false,
                true,
                "release",
            ),
            (
                "4 blocked, reboot strategy",
                Reboot,
                need(),
                Confirmed,
                Free,
                None,
                None,
                false,
                false,
                true,
                "blocked",
            ),
            (
                "5 off",
                Off,
                need(),
                Confirmed,
                Free,
                None,
                None,
                false,
                false,
                false,
                "reboot-needed",
            ),
            (
                "5 off, stale lock",
                Off,
                need(),
                Confirmed,
                held,
                None,
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "6 asked recently",
                EtcdLock,
                need(),
                Confirmed,
                held,
                Some(&open),
                Some(NOW - 30),
                false,
                false,
                false,
                "rebooting",
            ),
            (
                "6 asked recently, window closed meanwhile",
                EtcdLock,
                need(),
                Confirmed,
                held,
                Some(&closed),
                Some(NOW - 30),
                false,
                false,
                false,
                "rebooting",
            ),
            (
                "6 asked long ago",
                EtcdLock,
                need(),
                Confirmed,
                held,
                None,
                Some(NOW - 601),
                false,
                false,
                false,
                "reboot",
            ),
            (
                "6 reboot strategy asked",
                Reboot,
                need(),
                Confirmed,
                Free,
                None,
                Some(NOW - 3),
                false,
                false,
                false,
                "rebooting",
            ),
            (
                "7 closed",
                EtcdLock,
                need(),
                Confirmed,
                Free,
                Some(&closed),
                None,
                false,
                false,
                false,
                "waiting-for-window",
            ),
            (
                "7 closed, release",
                EtcdLock,
                need(),
                Confirmed,
                held,
                Some(&closed),
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "7 closed, maybe held",
                Fleetlock,
                need(),
                Confirmed,
                Unknown,
                Some(&closed),
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "7 closed, reboot strategy",
                Reboot,
                need(),
                Confirmed,
                Free,
                Some(&closed),
                None,
                false,
                false,
                false,
                "waiting-for-window",
            ),
            (
                "8 reboot",
                Reboot,
                need(),
                Confirmed,
                Free,
                Some(&open),
                None,
                false,
                false,
                false,
                "reboot",
            ),
            (
                "9 held",
                EtcdLock,
                need(),
                Confirmed,
                held,
                Some(&open),
                None,
                false,
                false,
                false,
                "reboot",
            ),
            (
                "9 held, fleetlock",
                Fleetlock,
                need(),
                Confirmed,
                held,
                None,
                None,
                false,
                false,
                false,
                "reboot",
            ),
            (
                "10 take",
                EtcdLock,
                need(),
                Confirmed,
                Free,
                Some(&open),
                None,
                false,
                false,
                false,
                "take-lock",
            ),
            (
                "10 take, unknown",
                EtcdLock,
                need(),
                Confirmed,
                Unknown,
                None,
                None,
                false,
                false,
                false,
                "take-lock",
            ),
            (
                "10 take, fleetlock",
                Fleetlock,
                need(),
                Confirmed,
                Free,
                None,
                None,
                false,
                false,
                false,
                "take-lock",
            ),
            (
                "11 release after reboot",
                EtcdLock,
                UpdateState::Idle,
                Confirmed,
                held,
                None,
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "11 release outside the window",
                EtcdLock,
                UpdateState::Idle,
                Confirmed,
                held,
                Some(&closed),
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "11 release, maybe held",
                Fleetlock,
                UpdateState::Idle,
                Confirmed,
                Unknown,
                None,
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "11 release after a recorded rollback",
                EtcdLock,
                UpdateState::RolledBack {
                    version: v("1.1.0"),
                    reason: "x".into(),
                },
                Confirmed,
                held,
                None,
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "11 release, strategy changed",
                Reboot,
                UpdateState::Idle,
                Confirmed,
                held,
                None,
                None,
                false,
                false,
                false,
                "release",
            ),
            (
                "12 on trial",
                EtcdLock,
                UpdateState::Idle,
                checking(),
                held,
                None,
                None,
                false,
                false,
                false,
                "holding-lock",
            ),
            (
                "12 unknown boot",
                EtcdLock,
                UpdateState::Idle,
                BootHealth::Unknown,
                held,
                None,
                None,
                false,
                false,
                false,
                "holding-lock",
            ),
            (
                "12 on trial, downloading the next",
                EtcdLock,
                UpdateState::Checking,
                checking(),
                Unknown,
                None,
                None,
                false,
                false,
                false,
                "holding-lock",
            ),
            (
                "13 idle",
                EtcdLock,
                UpdateState::Idle,
                Confirmed,
                Free,
                None,
                None,
                false,
                false,
                false,
                "idle",
            ),
            (
                "13 idle, off",
                Off,
                UpdateState::Idle,
                Confirmed,
                Free,
                None,
                None,
                false,
                false,
                false,
                "idle",
            ),
        ];
        for (name, strategy, st, boot, lock, window, requested, missing, rolled, cfailed, want) in
            rows
        {
            let s = status(st, boot);
            let i = Inputs {
                strategy,
                status: &s,
                lock,
                backend_missing: missing.then(|| "no [etcd] endpoints in agent.toml".into()),
                window,
                now: NOW,
                reboot_requested_at: requested,
                unrecorded_rollback: rolled.then_some(&rb),
                cluster_failed: if cfailed { &cf } else { &[] },
            };
            let d = decide(&i);
            assert_eq!(kind(&d), want, "{name}: {d:?}");
        }
    }

    /// Every combination of the inputs, checked against the safety rules.
    #[test]
    fn safety_over_all_combinations() {
        let open = Window::parse("Thu 22:00", "2h", None).expect("w");
        let closed = Window::parse("Mon 02:00", "1h", None).expect("w");
        let rb = rollback();
        let cf = [v("1.1.0")];
        let strategies = [
            RebootStrategy::Reboot,
            RebootStrategy::Off,
            RebootStrategy::EtcdLock,
            RebootStrategy::Fleetlock,
        ];
        let states = [
            UpdateState::Idle,
            UpdateState::Checking,
            need(),
            UpdateState::RolledBack {
                version: v("1.1.0"),
                reason: "x".into(),
            },
            UpdateState::Error {
                reason: "r".into(),
                action: "a".into(),
            },
        ];
        let boots = [
            BootHealth::Confirmed,
            BootHealth::Unknown,
            checking(),
            failed(),
        ];
        let locks = [
            LockState::Free,
            LockState::Unknown,
            LockState::Held { since: None },
        ];
        let windows = [None, Some(&open), Some(&closed)];
        let requested = [None, Some(NOW - 10), Some(NOW - 3600)];
        let mut n = 0;
        for strategy in strategies {
            for st in &states {
                for boot in &boots {
                    for lock in locks {
                        for window in windows {
                            for req in requested {
                                for missing in [false, true] {
                                    for rolled in [false, true] {
                                        for cfailed in [false, true] {
                                            n += 1;
                                            let s = status(st.clone(), boot.clone());
                                            let i = Inputs {
                                                strategy,
                                                status: &s,
                                                lock,
                                                backend_missing: missing.then(|| "missing".into()),
                                                window,
                                                now: NOW,
                                                reboot_requested_at: req,
                                                unrecorded_rollback: rolled.then_some(&rb),
                                                cluster_failed: if cfailed { &cf } else { &[] },
                                            };
                                            check_safety(&i, &decide(&i));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(n, 4 * 5 * 4 * 3 * 3 * 3 * 2 * 2 * 2);
    }

    fn check_safety(i: &Inputs<'_>, d: &Decision) {
        let ctx = format!("{i:?} => {d:?}");
        let pending = matches!(i.status.state, UpdateState::UpdatedNeedReboot { .. });
        let window_open = i.window.is_none_or(|w| w.contains(i.now));
        let lock_based = matches!(
            i.strategy,
            RebootStrategy::EtcdLock | RebootStrategy::Fleetlock
        );
        match d {
            Decision::Reboot { .. } => {
                assert!(pending, "reboot without an update: {ctx}");
                assert!(window_open, "reboot outside the window: {ctx}");
                assert!(
                    i.cluster_failed.is_empty(),
                    "reboot into a failed version: {ctx}"
                );
                assert!(i.strategy != RebootStrategy::Off, "off rebooted: {ctx}");
                if lock_based {
                    assert!(
                        matches!(i.lock, LockState::Held { .. }),
                        "reboot without the lock: {ctx}"
                    );
                    assert!(i.backend_missing.is_none(), "{ctx}");
                }
                assert!(i.unrecorded_rollback.is_none(), "{ctx}");
            }
            Decision::TakeLock { .. } => {
                assert!(lock_based && pending && window_open, "{ctx}");
                assert!(i.cluster_failed.is_empty(), "{ctx}");
            }
            Decision::ReleaseLock { .. } => {
                assert!(i.lock != LockState::Free, "release of nothing: {ctx}");
                assert!(
                    i.status.boot == BootHealth::Confirmed,
                    "release before the boot is confirmed: {ctx}"
                );
                assert!(
                    i.unrecorded_rollback.is_none(),
                    "release before recording: {ctx}"
                );
                if pending && window_open && i.cluster_failed.is_empty() {
                    assert!(!lock_based, "released a lock it should reboot with: {ctx}");
                }
            }
            Decision::RecordFailure { .. } => {
                assert!(i.unrecorded_rollback.is_some(), "{ctx}");
            }
            Decision::Report { state, message } => {
                assert!(!message.is_empty(), "{ctx}");
                if *state == AgentState::Idle {
                    assert!(!pending && i.lock == LockState::Free, "{ctx}");
                }
            }
        }
        // A failed boot never gives the lock away.
        if matches!(i.status.boot, BootHealth::Failed { .. }) {
            assert!(!matches!(d, Decision::ReleaseLock { .. }), "{ctx}");
        }
    }

    #[test]
    fn messages_say_what_and_when() {
        let s = status(need(), BootHealth::Confirmed);
        let w = Window::parse("Fri 01:00", "1h", None).expect("w");
        let mut i = Inputs::new(RebootStrategy::EtcdLock, &s, NOW);
        i.window = Some(&w);
        match decide(&i) {
            Decision::Report { state, message } => {
                assert_eq!(state, AgentState::WaitingForWindow);
                assert!(
                    message.contains("opens at 2026-03-06 01:00:00 UTC (in 2h)"),
                    "{message}"
                );
            }
            d => panic!("{d:?}"),
        }
        let cf = [v("1.1")];
        i.window = None;
        i.cluster_failed = &cf;
        match decide(&i) {
            Decision::Report { message, .. } => {
                assert!(message.contains("forget-failed 1.1.0"), "{message}")
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn versions_compare_as_versions() {
        let list = [v("1.1"), v("2")];
        assert!(version_listed(&v("1.1.0"), &list));
        assert!(version_listed(&v("2.0"), &list));
        assert!(!version_listed(&v("1.1.1"), &list));
        // What is not a version never reaches the list: it fails where it
        // is read (etcd, the socket).
        assert!("x".parse::<Version>().is_err());
    }

    #[test]
    fn backoff_is_bounded_and_never_zero() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1), s(60), 0.0), s(1));
        assert_eq!(backoff(2, s(1), s(60), 0.0), s(2));
        assert_eq!(backoff(6, s(1), s(60), 0.0), s(32));
        assert_eq!(backoff(7, s(1), s(60), 0.0), s(60));
        assert_eq!(backoff(u32::MAX, s(1), s(60), 1.0), s(60));
        assert_eq!(backoff(0, s(1), s(60), -1.0), s(1));
        assert_eq!(backoff(3, s(1), s(60), 1.0), Duration::from_millis(4800));
        assert_eq!(backoff(3, s(1), s(60), -1.0), Duration::from_millis(3200));
        assert!(backoff(1, Duration::ZERO, Duration::ZERO, -1.0) >= Duration::from_millis(10));
    }
}
