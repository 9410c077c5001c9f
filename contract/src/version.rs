//! Image versions: dotted numbers, compared number by number
//! (`1.10.0 > 1.9.3`, `2 == 2.0`). Pre-release suffixes are not allowed, so
//! the order is never ambiguous.
//!
//! A version has one spelling and one identity, whatever text it was parsed
//! from (see [`Version`]): `1.01` is written `1.1` everywhere, and anything
//! that keys or hashes a version uses [`Version::canonical`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dotted numeric version.
///
/// Each number is read as a decimal number, so leading zeros carry no
/// meaning: `1.01` is the version `1.1` (date-like versions such as
/// `2024.01.15` are accepted as `2024.1.15`). Trailing zero numbers do not
/// change the version either: `2 == 2.0 == 2.0.0`.
///
/// - [`Display`](fmt::Display) and serialisation give the *spelling*: the
///   numbers without leading zeros, as many as were written (`1.01.0` →
///   `1.1.0`). Repository paths (`repository::repo::version_dir`), state and
///   status files use it, so `1.01` and `1.1` can never name two
///   directories. The original text is not kept.
/// - [`Version::canonical`] is the *identity*: the spelling without
///   trailing zero numbers (`1.1.0` → `1.1`). Equal versions, and only
///   those, have the same canonical form; every hash or key derived from a
///   version (the rollout position, [`Hash`]) uses it.
///
/// ```
/// use tandem_contract::Version;
/// let a: Version = "1.01".parse().unwrap();
/// let b: Version = "1.1.0".parse().unwrap();
/// assert_eq!(a, b);
/// assert_eq!(a.to_string(), "1.1");
/// assert_eq!(b.to_string(), "1.1.0");
/// assert_eq!(a.canonical(), b.canonical());
/// assert_eq!(b.canonical(), "1.1");
/// ```
#[derive(Clone, Debug, Eq)]
pub struct Version {
    parts: Vec<u64>,
}

/// The text is not a dotted numeric version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version: use dotted numbers such as 1.0.0")]
pub struct VersionError(pub String);

impl Version {
    /// The numbers, as many as were written.
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }

    /// The numbers without trailing zeros (at least one number).
    fn significant(&self) -> &[u64] {
        let n = self
            .parts
            .iter()
            .rposition(|&p| p != 0)
            .map_or(1, |i| i + 1);
        &self.parts[..n.min(self.parts.len())]
    }

    /// The identity of the version, for keys and hashes: the numbers in
    /// plain decimal without trailing zero numbers (`1.01.0` → `1.1`,
    /// `2.0` → `2`, `0.0` → `0`). `a == b` exactly when
    /// `a.canonical() == b.canonical()`.
    pub fn canonical(&self) -> String {
        join(self.significant())
    }
}

/// `1.2.3`.
fn join(parts: &[u64]) -> String {
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

impl FromStr for Version {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Option<Vec<u64>> = s
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    p.parse().ok()
                }
            })
            .collect();
        match parts {
            Some(parts) if !s.is_empty() => Ok(Version { parts }),
            _ => Err(VersionError(s.to_string())),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.parts.len().max(other.parts.len());
        for i in 0..n {
            let a = self.parts.get(i).copied().unwrap_or(0);
            let b = other.parts.get(i).copied().unwrap_or(0);
            match a.cmp(&b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Consistent with `Eq`: trailing zeros do not count.
        self.significant().hash(state);
    }
}

/// The spelling: the numbers without leading zeros, as many as written.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&join(&self.parts))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().expect("valid")
    }

    #[test]
    fn numeric_order() {
        assert!(v("1.10.0") > v("1.9.3"));
        assert!(v("2") > v("1.99.99"));
        assert_eq!(v("2"), v("2.0.0"));
        assert!(v("3815.2.1") < v("3815.2.10"));
    }

    #[test]
    fn rejects_non_numeric() {
        for bad in ["", "1..2", "1.0-rc1", "v1", "1.0.", " 1"] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn leading_zeros_do_not_make_another_version() {
        assert_eq!(v("1.1"), v("1.01"));
        assert_eq!(v("1.01").to_string(), "1.1");
        assert_eq!(v("1.01").to_string(), v("1.1").to_string());
        assert_eq!(v("2024.01.05").to_string(), "2024.1.5");
        assert_eq!(v("007").to_string(), "7");
        assert_eq!(v("0.0").to_string(), "0.0");
        assert_eq!(
            v("1.01.0").to_string(),
            "1.1.0",
            "as many numbers as written"
        );
        let json = serde_json::to_string(&v("1.01")).expect("json");
        assert_eq!(json, "\"1.1\"");
        let back: Version = serde_json::from_str("\"01.010\"").expect("json");
        assert_eq!(back.to_string(), "1.10");
    }

    #[test]
    fn equal_versions_have_one_canonical_form_and_hash() {
        use std::collections::HashSet;
        let hash = |x: &Version| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            x.hash(&mut h);
            h.finish()
        };
        let same = ["1.1", "1.01", "1.1.0", "01.1.00.0", "1.0001"];
        for a in same {
            for b in same {
                assert_eq!(v(a), v(b), "{a} {b}");
                assert_eq!(v(a).canonical(), v(b).canonical(), "{a} {b}");
                assert_eq!(hash(&v(a)), hash(&v(b)), "{a} {b}");
            }
        }
        assert_eq!(v("1.01").canonical(), "1.1");
        assert_eq!(v("2.0.0").canonical(), "2");
        assert_eq!(v("0.0").canonical(), "0");
        assert_eq!(v("1.10").canonical(), "1.10");
        assert_ne!(v("1.1").canonical(), v("1.10").canonical());
        assert_ne!(v("1.1").canonical(), v("1.0.1").canonical());
        let set: HashSet<Version> = same.iter().map(|s| v(s)).collect();
        assert_eq!(set.len(), 1);
    }
}
