//! locksmith's reboot semaphore as a value: parsing, and lock, unlock and
//! set-max as pure transformations. Nothing here talks to etcd
//! ([`crate::lock`] does, with compare-and-swap).
//!
//! The value is locksmith's, so locksmith and Tandem nodes can share a
//! cluster's semaphore:
//!
//! ```json
//! {"semaphore":1,"max":2,"holders":["69d27b356a94476da859461d3a3bc6fd"]}
//! ```
//!
//! `holders` is kept sorted and without duplicates, and `semaphore` is
//! always `max - holders` (it goes below zero when an operator lowers `max`
//! under the number of holders; they keep the lock, nobody new gets it).
//! A value that breaks these rules (another writer) is read as its holders
//! and its `max`, and written back correctly by the next change.
//!
//! The key is `coreos.com/updateengine/rebootlock/semaphore` for the
//! default group and `coreos.com/updateengine/rebootlock/groups/<group,
//! URL-query-escaped>/semaphore` for others ([`key`]).
//!
//! ```
//! use agent::semaphore::{Outcome, Semaphore};
//!
//! let s = Semaphore::new(1);
//! let Outcome::Changed(s) = s.lock("node-a")? else { unreachable!() };
//! assert_eq!(s.to_json(), r#"{"semaphore":0,"max":1,"holders":["node-a"]}"#);
//! assert_eq!(s.lock("node-a")?, Outcome::Unchanged); // a holder asking again: yes
//! assert_eq!(s.lock("node-b")?, Outcome::Full);
//! # Ok::<(), agent::semaphore::Error>(())
//! ```

use serde::{Deserialize, Deserializer, Serialize};

/// The default group's key (locksmith's).
pub const DEFAULT_KEY: &str = "coreos.com/updateengine/rebootlock/semaphore";
/// The prefix of every group's key.
pub const GROUPS_PREFIX: &str = "coreos.com/updateengine/rebootlock/groups/";
/// The default group's name (`""`, locksmith's default, means the same).
pub const DEFAULT_GROUP: &str = "default";
/// The longest holder id accepted.
pub const MAX_HOLDER_LEN: usize = 253;

/// A value or an argument that is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The stored value is not the semaphore's JSON.
    #[error("not a locksmith semaphore ({0})")]
    Format(#[source] crate::error::Shared<serde_json::Error>),
    /// A holder id that cannot be one.
    #[error(
        "holder id {0:?} is invalid: 1 to 253 characters, no spaces or control characters (a machine id)"
    )]
    Holder(String),
    /// A negative `max`.
    #[error("max {0} is negative: use 0 (nobody may reboot) or more")]
    NegativeMax(i64),
}

/// The semaphore's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Semaphore {
    /// Free slots: `max - holders.len()`.
    pub semaphore: i64,
    /// How many may hold it at once.
    pub max: i64,
    /// Who holds it, sorted (locksmith writes `null` for none).
    #[serde(default, deserialize_with = "null_is_empty")]
    pub holders: Vec<String>,
}

fn null_is_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// What an operation does to a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Write this value.
    Changed(Semaphore),
    /// Nothing to write: it is already so (a holder locking again, a
    /// non-holder unlocking, the same max).
    Unchanged,
    /// Refused: no free slot for a new holder.
    Full,
}

/// The key of `group`'s semaphore. `""` and `"default"` are the default
/// group; other names are escaped as Go's `url.QueryEscape` does (what
/// locksmith uses), so the keys match locksmith's.
pub fn key(group: &str) -> String {
    if group.is_empty() || group == DEFAULT_GROUP {
        DEFAULT_KEY.to_string()
    } else {
        format!("{GROUPS_PREFIX}{}/semaphore", query_escape(group))
    }
}

/// Go's `url.QueryEscape`: unreserved bytes stay, space becomes `+`,
/// every other byte `%XX` (upper-case hex).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether `id` can be a holder.
pub fn valid_holder(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_HOLDER_LEN
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_holder(id: &str) -> Result<(), Error> {
    if valid_holder(id) {
        Ok(())
    } else {
        Err(Error::Holder(id.to_string()))
    }
}

impl Semaphore {
    /// A semaphore nobody holds, with `max` slots (locksmith creates it
    /// with 1).
    pub fn new(max: i64) -> Semaphore {
        Semaphore {
            semaphore: max,
            max,
            holders: Vec::new(),
        }
    }

    /// Parses a stored value and puts it in order: holders sorted and
    /// unique, `semaphore = max - holders`. [`Semaphore::is_consistent`]
    /// on the value as stored says whether that changed anything.
    pub fn parse(bytes: &[u8]) -> Result<Semaphore, Error> {
        let raw: Semaphore = serde_json::from_slice(bytes).map_err(|e| Error::Format(e.into()))?;
        Ok(raw.normalized())
    }

    /// Parses a stored value as it is, without putting it in order.
    pub fn parse_raw(bytes: &[u8]) -> Result<Semaphore, Error> {
        serde_json::from_slice(bytes).map_err(|e| Error::Format(e.into()))
    }

    /// The same holders and max, in order.
    pub fn normalized(mut self) -> Semaphore {
        self.holders.sort();
        self.holders.dedup();
        self.semaphore = self.max - self.holders.len() as i64;
        self
    }

    /// Whether the value follows the rules (sorted unique holders,
    /// `semaphore = max - holders`).
    pub fn is_consistent(&self) -> bool {
        self.holders.windows(2).all(|w| w[0] < w[1])
            && self.semaphore == self.max - self.holders.len() as i64
    }

    /// The JSON written to etcd (locksmith's field order, no spaces).
    pub fn to_json(&self) -> String {
        // Serialising strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether `id` holds it.
    pub fn holds(&self, id: &str) -> bool {
        self.holders
            .binary_search_by(|h| h.as_str().cmp(id))
            .is_ok()
    }

    /// Free slots (`max - holders`; below zero after `max` was lowered
    /// under the number of holders).
    pub fn free(&self) -> i64 {
        self.max - self.holders.len() as i64
    }

    /// `id` takes a slot: [`Outcome::Unchanged`] if it holds one already
    /// (idempotent, unlike locksmith#58), [`Outcome::Full`] when no slot
    /// is free.
    pub fn lock(&self, id: &str) -> Result<Outcome, Error> {
        check_holder(id)?;
        let mut next = self.clone().normalized();
        match next.holders.binary_search_by(|h| h.as_str().cmp(id)) {
            Ok(_) => Ok(Outcome::Unchanged),
            Err(_) if next.free() <= 0 => Ok(Outcome::Full),
            Err(at) => {
                next.holders.insert(at, id.to_string());
                next.semaphore = next.free();
                Ok(Outcome::Changed(next))
            }
        }
    }

    /// `id` gives its slot back: [`Outcome::Unchanged`] if it holds none.
    pub fn unlock(&self, id: &str) -> Result<Outcome, Error> {
        check_holder(id)?;
        let mut next = self.clone().normalized();
        match next.holders.binary_search_by(|h| h.as_str().cmp(id)) {
            Err(_) => Ok(Outcome::Unchanged),
            Ok(at) => {
                next.holders.remove(at);
                next.semaphore = next.free();
                Ok(Outcome::Changed(next))
            }
        }
    }

    /// Sets how many may hold it. Lowering it under the number of holders
    /// is allowed (they keep their slots; nobody new gets one until enough
    /// have unlocked), as in locksmith.
    pub fn set_max(&self, max: i64) -> Result<Outcome, Error> {
        if max < 0 {
            return Err(Error::NegativeMax(max));
        }
        let mut next = self.clone().normalized();
        if next.max == max && self.is_consistent() {
            return Ok(Outcome::Unchanged);
        }
        next.max = max;
        next.semaphore = next.free();
        Ok(Outcome::Changed(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn keys_match_locksmith() {
        assert_eq!(key(""), "coreos.com/updateengine/rebootlock/semaphore");
        assert_eq!(key("default"), DEFAULT_KEY);
        assert_eq!(
            key("database"),
            "coreos.com/updateengine/rebootlock/groups/database/semaphore"
        );
        // locksmith's own test case.
        assert_eq!(
            key("prod/database"),
            "coreos.com/updateengine/rebootlock/groups/prod%2Fdatabase/semaphore"
        );
        assert_eq!(query_escape("a b+c~é"), "a+b%2Bc~%C3%A9");
    }

    #[test]
    fn locksmith_values_parse_and_print_alike() {
        // locksmith's newSemaphore() marshals a nil slice as null.
        let s = Semaphore::parse(br#"{"semaphore":1,"max":1,"holders":null}"#).unwrap();
        assert_eq!(s, Semaphore::new(1));
        assert_eq!(s.to_json(), r#"{"semaphore":1,"max":1,"holders":[]}"#);
        let text = r#"{"semaphore":0,"max":1,"holders":["69d27b356a94476da859461d3a3bc6fd"]}"#;
        let s = Semaphore::parse(text.as_bytes()).unwrap();
        assert!(s.holds("69d27b356a94476da859461d3a3bc6fd"));
        assert_eq!(s.to_json(), text);
        // Missing holders, extra fields (another version) are fine.
        let s = Semaphore::parse(br#"{"semaphore":2,"max":2,"index":7}"#).unwrap();
        assert_eq!(s, Semaphore::new(2));
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"semaphore":"1","max":1}"#,
            b"\xff",
        ] {
            assert!(
                matches!(Semaphore::parse(bad), Err(Error::Format(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn inconsistent_values_are_put_in_order() {
        let raw = br#"{"semaphore":5,"max":2,"holders":["b","a","b"]}"#;
        assert!(!Semaphore::parse_raw(raw).unwrap().is_consistent());
        let s = Semaphore::parse(raw).unwrap();
        assert!(s.is_consistent());
        assert_eq!(s.holders, ["a", "b"]);
        assert_eq!(s.semaphore, 0);
        assert_eq!(s.lock("c").unwrap(), Outcome::Full);
        // set-max to the same max still rewrites a disordered value.
        assert!(matches!(
            Semaphore::parse_raw(raw).unwrap().set_max(2).unwrap(),
            Outcome::Changed(_)
        ));
    }

    #[test]
    fn holder_ids_are_checked() {
        let s = Semaphore::new(3);
        for bad in ["", "a b", "a\nb", &"x".repeat(254)] {
            assert!(matches!(s.lock(bad), Err(Error::Holder(_))), "{bad:?}");
            assert!(matches!(s.unlock(bad), Err(Error::Holder(_))), "{bad:?}");
        }
        assert!(matches!(s.set_max(-1), Err(Error::NegativeMax(-1))));
    }

    #[test]
    fn max_zero_admits_nobody_and_lowering_keeps_holders() {
        let s = Semaphore::new(2);
        let Outcome::Changed(s) = s.lock("a").unwrap() else {
            panic!()
        };
        let Outcome::Changed(s) = s.lock("b").unwrap() else {
            panic!()
        };
        let Outcome::Changed(low) = s.set_max(0).unwrap() else {
            panic!()
        };
        assert_eq!(low.semaphore, -2);
        assert_eq!(low.holders, ["a", "b"]);
        assert_eq!(low.lock("c").unwrap(), Outcome::Full);
        assert_eq!(low.lock("a").unwrap(), Outcome::Unchanged);
        let Outcome::Changed(low) = low.unlock("a").unwrap() else {
            panic!()
        };
        assert_eq!(low.to_json(), r#"{"semaphore":-1,"max":0,"holders":["b"]}"#);
    }

    // ---- property checks over many sequences ----------------------------

    #[derive(Clone, Copy, Debug)]
    enum Op {
        Lock(usize),
        Unlock(usize),
        SetMax(i64),
    }

    const HOLDERS: [&str; 4] = ["m-0", "m-1", "m-2", "m-3"];

    /// The reference model: a set of holders and a max.
    #[derive(Clone, Debug)]
    struct Model {
        holders: BTreeSet<&'static str>,
        max: i64,
    }

    /// Applies `op` to both; checks every rule. `lowered` says whether a
    /// set-max has taken max below the holders since they last fitted.
    fn step(s: &Semaphore, m: &mut Model, op: Op, round_trip: bool) -> Semaphore {
        let before = s.clone();
        let out = match op {
            Op::Lock(h) => s.lock(HOLDERS[h]),
            Op::Unlock(h) => s.unlock(HOLDERS[h]),
            Op::SetMax(n) => s.set_max(n),
        }
        .expect("valid arguments");
        let next = match &out {
            Outcome::Changed(n) => n.clone(),
            Outcome::Unchanged | Outcome::Full => before.clone(),
        };
        match op {
            Op::Lock(h) => {
                let id = HOLDERS[h];
                if m.holders.contains(id) {
                    assert_eq!(out, Outcome::Unchanged, "a holder locking again: {op:?}");
                } else if (m.holders.len() as i64) < m.max {
                    assert!(matches!(out, Outcome::Changed(_)), "free slot: {op:?}");
                    m.holders.insert(id);
                } else {
                    assert_eq!(out, Outcome::Full, "no free slot: {op:?}");
                }
                // A lock never takes the holders above max.
                assert!(
                    next.holders.len() as i64 <= next.max
                        || next.holders.len() == before.holders.len(),
                    "{before:?} --{op:?}--> {next:?}"
                );
            }
            Op::Unlock(h) => {
                let id = HOLDERS[h];
                if m.holders.remove(id) {
                    assert!(matches!(out, Outcome::Changed(_)));
                } else {
                    assert_eq!(out, Outcome::Unchanged, "unlock by a non-holder");
                }
            }
            Op::SetMax(n) => {
                assert_eq!(out == Outcome::Unchanged, n == m.max);
                m.max = n;
            }
        }
        // The value is the model, in order, with semaphore = max - holders.
        assert!(next.is_consistent(), "{next:?}");
        assert_eq!(next.semaphore, next.max - next.holders.len() as i64);
        assert_eq!(next.max, m.max);
        assert_eq!(
            next.holders.iter().map(String::as_str).collect::<Vec<_>>(),
            m.holders.iter().copied().collect::<Vec<_>>()
        );
        // Only set-max makes holders exceed max.
        if !matches!(op, Op::SetMax(_)) && next.holders.len() as i64 > next.max {
            assert!(next.holders.len() <= before.holders.len(), "{op:?}");
        }
        if round_trip {
            assert_eq!(Semaphore::parse(next.to_json().as_bytes()).unwrap(), next);
        }
        next
    }

    fn all_ops() -> Vec<Op> {
        let mut ops = Vec::new();
        for h in 0..3 {
            ops.push(Op::Lock(h));
            ops.push(Op::Unlock(h));
        }
        for n in 0..=3 {
            ops.push(Op::SetMax(n));
        }
        ops
    }

    /// Every sequence of up to 5 operations (3 holders, max 0..3) from a
    /// fresh semaphore: 111 111 sequences.
    #[test]
    fn every_short_sequence_keeps_the_rules() {
        let ops = all_ops();
        let mut count = 0u64;
        fn walk(s: &Semaphore, m: &Model, depth: usize, ops: &[Op], count: &mut u64) {
            *count += 1;
            if depth == 0 {
                return;
            }
            for &op in ops {
                let mut m2 = m.clone();
                let next = step(s, &mut m2, op, false);
                walk(&next, &m2, depth - 1, ops, count);
            }
        }
        let start = Semaphore::new(1);
        let model = Model {
            holders: BTreeSet::new(),
            max: 1,
        };
        walk(&start, &model, 5, &ops, &mut count);
        assert_eq!(count, 111_111);
    }

    /// Long random sequences (4 holders, max 0..4), with a JSON round trip
    /// at every step; with max fixed, never more holders than max.
    #[test]
    fn long_random_sequences_keep_the_rules() {
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut rand = |n: u64| {
            // xorshift64*
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
        };
        for run in 0..2_000 {
            let fixed_max = run % 2 == 0;
            let mut s = Semaphore::new(1 + (rand(3) as i64));
            let mut m = Model {
                holders: BTreeSet::new(),
                max: s.max,
            };
            for _ in 0..200 {
                let op = match rand(if fixed_max { 2 } else { 3 }) {
                    0 => Op::Lock(rand(4) as usize),
                    1 => Op::Unlock(rand(4) as usize),
                    _ => Op::SetMax(rand(5) as i64),
                };
                s = step(&s, &mut m, op, true);
                if fixed_max {
                    assert!(s.holders.len() as i64 <= s.max, "{s:?}");
                    assert!(s.semaphore >= 0);
                }
            }
        }
    }
}
