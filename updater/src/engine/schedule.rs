//! When to check next: the interval with ±10 % jitter, and bounded
//! exponential backoff after failures. Pure, apart from [`random_unit`].

use std::time::Duration;

/// Longest wait between retries after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// First wait after a failure (or the interval, if shorter).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// `d` spread by ±10 %: `r` in [-1, 1] picks where.
pub fn jitter(d: Duration, r: f64) -> Duration {
    d.mul_f64(1.0 + 0.1 * r.clamp(-1.0, 1.0))
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
    let cap = interval.min(MAX_BACKOFF).max(first);
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    jitter(first.saturating_mul(factor).min(cap), r)
}

/// A random number in [-1, 1) for [`jitter`].
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness, spread by the clock's nanoseconds.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return f64::from(n % 2_000_000) / 1_000_000.0 - 1.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

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
