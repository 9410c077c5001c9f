//! When to check next: the interval with ±10 % jitter, and bounded
//! exponential backoff after failures ([`crate::backoff`]). Pure, apart
//! from [`random_unit`].

use std::time::Duration;

use crate::backoff;

/// Longest wait between retries after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// First wait after a failure (or the interval, if shorter).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// `d` spread by ±10 %: `r` in [-1, 1] picks where.
pub fn jitter(d: Duration, r: f64) -> Duration {
    backoff::spread(d, 0.1, r)
}

/// The wait before the next check: the interval after a success; after
/// `failures` failures in a row, `min(30 s, interval)` doubled per further
/// failure, capped at `min(interval, 1 h)` (but never below the first
/// step). Both ±10 % jitter, so a fleet does not check in lockstep.
pub fn next_delay(interval: Duration, failures: u32, r: f64) -> Duration {
    if failures == 0 {
        return jitter(interval, r);
    }
    let first = FIRST_BACKOFF.min(interval);
    jitter(
        backoff::doubling(failures, first, interval.min(MAX_BACKOFF)),
        r,
    )
}

pub use backoff::random_unit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let h = Duration::from_secs(3600);
        let s = Duration::from_secs;
        assert_eq!(next_delay(h, 0, 0.0), h);
        assert_eq!(next_delay(h, 1, 0.0), s(30));
        assert_eq!(next_delay(h, 2, 0.0), s(60));
        assert_eq!(next_delay(h, 5, 0.0), s(480));
        assert_eq!(next_delay(h, 8, 0.0), h);
        assert_eq!(next_delay(h, 1000, 0.0), h);
        // A short interval bounds the backoff too.
        assert_eq!(next_delay(s(10), 1, 0.0), s(10));
        assert_eq!(next_delay(s(10), 9, 0.0), s(10));
        // A long interval still retries errors at least hourly.
        assert_eq!(next_delay(s(86_400), 30, 0.0), h);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(1000);
        assert_eq!(jitter(d, -1.0), Duration::from_secs(900));
        assert_eq!(jitter(d, 1.0), Duration::from_secs(1100));
        assert_eq!(jitter(d, 7.0), Duration::from_secs(1100));
        for _ in 0..1000 {
            let r = random_unit();
            assert!((-1.0..1.0).contains(&r), "{r}");
        }
    }
}
