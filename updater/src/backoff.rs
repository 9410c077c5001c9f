//! Waits between retries, shared by the update engine (checks) and the
//! agent (etcd, FleetLock): exponential backoff with a cap, spread by a
//! random fraction so that a fleet does not retry in lockstep. The callers
//! keep their own first wait, cap and spread. Pure, apart from
//! [`random_unit`].

use std::time::Duration;

/// `first` doubled per failure after the first (`failures` 0 and 1 give
/// `first`), capped at `cap` (but never below `first`).
pub fn doubling(failures: u32, first: Duration, cap: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(cap.max(first))
}

/// `d` spread by ±`fraction` of itself: `r` in [-1, 1] picks where
/// (clamped into it).
pub fn spread(d: Duration, fraction: f64, r: f64) -> Duration {
    d.mul_f64(1.0 + fraction * r.clamp(-1.0, 1.0))
}

/// A random number in [-1, 1) for [`spread`].
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
    fn doubling_from_first_to_cap() {
        let s = Duration::from_secs;
        let waits: Vec<u64> = (0..9)
            .map(|n| doubling(n, s(30), s(3600)).as_secs())
            .collect();
        assert_eq!(waits, [30, 30, 60, 120, 240, 480, 960, 1920, 3600]);
        assert_eq!(doubling(u32::MAX, s(30), s(3600)), s(3600));
        // A cap below the first wait does not shorten it.
        assert_eq!(doubling(5, s(10), s(1)), s(10));
        assert_eq!(doubling(3, Duration::ZERO, s(1)), Duration::ZERO);
        assert_eq!(
            doubling(64, Duration::MAX, Duration::MAX),
            Duration::MAX,
            "saturates"
        );
    }

    #[test]
    fn spread_is_a_fraction_either_way() {
        let d = Duration::from_secs(1000);
        assert_eq!(spread(d, 0.1, -1.0), Duration::from_secs(900));
        assert_eq!(spread(d, 0.1, 0.0), d);
        assert_eq!(spread(d, 0.2, 1.0), Duration::from_secs(1200));
        assert_eq!(spread(d, 0.2, 7.0), Duration::from_secs(1200));
        assert_eq!(spread(d, 0.2, -0.5), Duration::from_secs(900));
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let xs: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(xs.iter().all(|r| (-1.0..1.0).contains(r)), "{xs:?}");
        assert!(xs.iter().any(|&r| r != xs[0]), "all the same");
        // (the agent's former `lock::jitter` test)
        assert!(xs.iter().any(|x| *x < -0.2) && xs.iter().any(|x| *x > 0.2));
    }
}
