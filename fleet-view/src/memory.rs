//! Nodes the dashboard has seen. A node's record lives on a lease and
//! vanishes a minute after the node stops renewing it: without a memory,
//! a node that died would simply disappear from the page. The memory
//! keeps the last record of each node and says when it went missing, for
//! [`KEEP_SECS`]. It lives as long as the dashboard process (a restarted
//! dashboard only knows the nodes that are there).

use std::collections::BTreeMap;

use agent::fleet::NodeRecord;

/// How long a departed node stays on the page.
pub const KEEP_SECS: u64 = 24 * 3600;

/// The last record of every node seen.
#[derive(Debug, Default)]
pub struct Memory {
    seen: BTreeMap<String, (NodeRecord, Option<u64>)>,
}

impl Memory {
    /// Takes the records present now; returns the departed ones (their
    /// last record, and when they were first missed), oldest gone first.
    pub fn update(&mut self, now: u64, present: &[NodeRecord]) -> Vec<(NodeRecord, u64)> {
        for (_, gone) in self.seen.values_mut() {
            gone.get_or_insert(now);
        }
        for r in present {
            self.seen.insert(r.machine_id.clone(), (r.clone(), None));
        }
        self.seen
            .retain(|_, (_, gone)| gone.is_none_or(|g| now.saturating_sub(g) < KEEP_SECS));
        let mut departed: Vec<(NodeRecord, u64)> = self
            .seen
            .values()
            .filter_map(|(r, gone)| gone.map(|g| (r.clone(), g)))
            .collect();
        departed.sort_by_key(|(r, g)| (*g, r.last_seen));
        departed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, seen: u64) -> NodeRecord {
        NodeRecord {
            machine_id: id.into(),
            last_seen: seen,
            ..NodeRecord::default()
        }
    }

    #[test]
    fn a_vanished_record_is_remembered_then_forgotten() {
        let mut m = Memory::default();
        assert!(m.update(100, &[rec("a", 100), rec("b", 100)]).is_empty());
        let gone = m.update(200, &[rec("a", 190)]);
        assert_eq!(gone.len(), 1);
        assert_eq!((gone[0].0.machine_id.as_str(), gone[0].1), ("b", 200));
        // Still gone later: the time it was first missed stays.
        let gone = m.update(300, &[rec("a", 290)]);
        assert_eq!(gone[0].1, 200);
        // Back again: no longer departed.
        assert!(m.update(400, &[rec("a", 390), rec("b", 395)]).is_empty());
        // Gone for longer than KEEP_SECS: forgotten.
        m.update(500, &[rec("a", 490)]);
        assert!(
            m.update(500 + KEEP_SECS, &[rec("a", 500 + KEEP_SECS)])
                .is_empty()
        );
    }
}
