//! Staged rollouts: each node derives a stable number in [0, 1) from
//! sha256(machine id, canonical version) and becomes eligible at
//! `start + number × duration`. The number is spread evenly over the whole
//! window (Bottlerocket's wave code bunches hosts at a wave's end by
//! interpolating with the absolute seed), and differs per version, so the
//! same node is not always first.

use sha2::{Digest, Sha256};

use crate::repo::Rollout;
use tandem_contract::version::Version;

/// The node's stable position in [0, 1) for `version`. The version enters
/// the hash in its [canonical form](Version::canonical), so equal versions
/// (`1.1`, `1.01`, `1.1.0`) give the same position.
pub fn position(machine_id: &str, version: &Version) -> f64 {
    let h = Sha256::new()
        .chain_update(machine_id.trim().as_bytes())
        .chain_update(b"\0")
        .chain_update(version.canonical().as_bytes())
        .finalize();
    let mut top = [0u8; 8];
    top.copy_from_slice(&h[..8]);
    // 53 bits: exactly representable, strictly below 1.
    (u64::from_be_bytes(top) >> 11) as f64 / (1u64 << 53) as f64
}

/// When a node at `position` becomes eligible (Unix seconds).
pub fn eligible_at(rollout: &Rollout, position: f64) -> u64 {
    let offset = (rollout.duration_secs as f64 * position.clamp(0.0, 1.0)).floor() as u64;
    rollout
        .start
        .saturating_add(offset.min(rollout.duration_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().expect("v")
    }

    #[test]
    fn positions_are_stable_and_in_range() {
        let p = position("0123456789abcdef0123456789abcdef", &v("1.2.0"));
        assert_eq!(
            p,
            position("0123456789abcdef0123456789abcdef\n", &v("1.2.0"))
        );
        assert!((0.0..1.0).contains(&p));
        assert_ne!(p, position("0123456789abcdef0123456789abcdef", &v("1.3.0")));
    }

    #[test]
    fn equal_versions_have_one_position() {
        let id = "0123456789abcdef0123456789abcdef";
        let p = position(id, &v("1.1"));
        for same in ["1.01", "1.1.0", "01.001.0.0"] {
            assert_eq!(p, position(id, &v(same)), "{same}");
        }
        assert_ne!(p, position(id, &v("1.10")));
    }

    #[test]
    fn positions_spread_evenly_over_the_window() {
        // 10 000 machine ids: each tenth of the window gets about a tenth.
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let p = position(&format!("{i:032x}"), &v("2.0"));
            buckets[(p * 10.0) as usize] += 1;
        }
        for (i, b) in buckets.iter().enumerate() {
            assert!((900..1100).contains(b), "bucket {i} has {b}: {buckets:?}");
        }
    }

    #[test]
    fn eligibility_arithmetic() {
        let r = Rollout {
            start: 1000,
            duration_secs: 3600,
        };
        assert_eq!(eligible_at(&r, 0.0), 1000);
        assert_eq!(eligible_at(&r, 0.5), 2800);
        assert_eq!(eligible_at(&r, 0.999_999), 4599);
        assert_eq!(
            eligible_at(
                &Rollout {
                    start: 5,
                    duration_secs: 0
                },
                0.7
            ),
            5
        );
        assert_eq!(
            eligible_at(
                &Rollout {
                    start: u64::MAX,
                    duration_secs: 10
                },
                0.5
            ),
            u64::MAX
        );
    }
}
