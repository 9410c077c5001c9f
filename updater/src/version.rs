//! Image versions: dotted numbers, compared number by number
//! (`1.10.0 > 1.9.3`, `2 == 2.0`). Pre-release suffixes are not allowed, so
//! the order is never ambiguous.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dotted numeric version.
#[derive(Clone, Debug, Eq)]
pub struct Version {
    parts: Vec<u64>,
    text: String,
}

/// The text is not a dotted numeric version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a version: use dotted numbers such as 1.0.0")]
pub struct VersionError(pub String);

impl Version {
    /// The numbers.
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }
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
            Some(parts) if !s.is_empty() => Ok(Version {
                parts,
                text: s.to_string(),
            }),
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

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
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
}
