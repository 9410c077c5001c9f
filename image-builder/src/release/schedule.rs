//! Rollout schedules given on the command line.

#[allow(unused_imports)]
use super::*;

/// When a rollout starts: `now`, Unix seconds, or `+<duration>` from now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RolloutStart {
    /// When the pointer is signed.
    #[default]
    Now,
    /// At this Unix time.
    At(u64),
    /// This many seconds after signing.
    In(u64),
}

impl FromStr for RolloutStart {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "now" {
            Ok(RolloutStart::Now)
        } else if let Some(d) = s.strip_prefix('+') {
            clock::parse_duration(d).map(RolloutStart::In)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse()
                .map(RolloutStart::At)
                .map_err(|_| format!("{s:?} is too large for a Unix time"))
        } else {
            Err(format!(
                "{s:?} is not a start time: use `now`, Unix seconds (e.g. 1767225600) or `+` and a duration (e.g. +30m)"
            ))
        }
    }
}

impl RolloutStart {
    /// Unix seconds, given the signing time.
    pub fn resolve(self, now: u64) -> u64 {
        match self {
            RolloutStart::Now => now,
            RolloutStart::At(t) => t,
            RolloutStart::In(d) => now.saturating_add(d),
        }
    }
}

/// Rollout and validity of a new pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// When nodes start to become eligible.
    pub start: RolloutStart,
    /// Over how many seconds they do (0: all at the start).
    pub duration_secs: u64,
    /// Seconds from signing until nodes refuse the pointer.
    pub expires_in_secs: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            start: RolloutStart::Now,
            duration_secs: 0,
            expires_in_secs: DEFAULT_EXPIRES_IN,
        }
    }
}
