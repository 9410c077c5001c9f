//! The fleet view in etcd: each node's record on a lease (so departed
//! nodes disappear by themselves), and the cluster's failed versions.
//!
//! | key | value |
//! |---|---|
//! | `tandem/fleet/nodes/<machine-id>` | [`NodeRecord`], on a lease of [`LEASE_TTL`] |
//! | `tandem/fleet/failed/<version>` | [`FailedRecord`]: no node installs that version |
//!
//! A node's record is written only by that node (plain put); a failed
//! version is created once (compare-and-swap on "absent": the first node
//! to see it fail is the one named) and deleted only by an operator
//! (`tandemctl cluster forget-failed <version>`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::etcd::{self, Etcd, Expect};

/// Prefix of the node records.
pub const NODES_PREFIX: &str = "tandem/fleet/nodes/";
/// Prefix of the failed-version records.
pub const FAILED_PREFIX: &str = "tandem/fleet/failed/";
/// How long a node's record outlives its last keep-alive.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often the lease is renewed.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(20);

/// A node as the fleet sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeRecord {
    /// `/etc/machine-id`: the node's lock holder id.
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// The reboot group.
    pub group: String,
    /// The running version.
    pub version: String,
    /// The running slot (`A`/`B`).
    pub slot: String,
    /// The updater's state (`idle`, `downloading`, `updated-need-reboot`, …).
    pub update_state: String,
    /// The version waiting for a reboot, if any.
    pub pending_version: Option<String>,
    /// The agent's state (`idle`, `waiting-for-lock`, `holding-lock`, …).
    pub agent_state: String,
    /// Whether the node holds its group's lock.
    pub lock: bool,
    /// Since when (Unix seconds), if known.
    pub lock_since: Option<u64>,
    /// When the record was written (Unix seconds).
    pub last_seen: u64,
}

/// A version that rolled back somewhere in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedRecord {
    /// The version.
    pub version: String,
    /// The node where it failed first.
    pub machine_id: String,
    /// Its host name.
    pub hostname: String,
    /// The updater's reason.
    pub reason: String,
    /// When it was recorded (Unix seconds).
    pub at: u64,
}

/// The key of a failed version's record.
pub fn failed_key(version: &str) -> String {
    format!("{FAILED_PREFIX}{version}")
}

/// Every node record; records that do not parse are skipped and named.
pub fn nodes(etcd: &Etcd) -> Result<(Vec<NodeRecord>, Vec<String>), etcd::Error> {
    parse_all(etcd.range_prefix(NODES_PREFIX)?)
}

/// Every failed-version record.
pub fn failed(etcd: &Etcd) -> Result<(Vec<FailedRecord>, Vec<String>), etcd::Error> {
    parse_all(etcd.range_prefix(FAILED_PREFIX)?)
}

fn parse_all<T: for<'de> Deserialize<'de>>(
    kvs: Vec<etcd::Kv>,
) -> Result<(Vec<T>, Vec<String>), etcd::Error> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for kv in kvs {
        match serde_json::from_slice(&kv.value) {
            Ok(v) => good.push(v),
            Err(e) => bad.push(format!("{}: not a Tandem record ({e})", kv.key)),
        }
    }
    Ok((good, bad))
}

/// Records that `rec.version` failed; `true` if this call created the
/// record, `false` if the version was recorded already (by any node).
pub fn record_failure(etcd: &Etcd, rec: &FailedRecord) -> Result<bool, etcd::Error> {
    let value = serde_json::to_vec(rec).unwrap_or_default();
    Ok(etcd
        .cas(&failed_key(&rec.version), Expect::Absent, &value, None)?
        .is_some())
}

/// Whether `version` has a failed record.
pub fn is_failed(etcd: &Etcd, version: &str) -> Result<bool, etcd::Error> {
    Ok(etcd.range(&failed_key(version))?.is_some())
}

/// Deletes the failed record of `version`; `false` if there was none.
pub fn forget_failed(etcd: &Etcd, version: &str) -> Result<bool, etcd::Error> {
    let key = failed_key(version);
    loop {
        let Some(kv) = etcd.range(&key)? else {
            return Ok(false);
        };
        if etcd
            .delete(&key, Expect::ModRevision(kv.mod_revision))?
            .is_some()
        {
            return Ok(true);
        }
    }
}

/// This node's record in etcd, kept on a lease.
#[derive(Debug, Default)]
pub struct Presence {
    lease: Option<i64>,
    renewed: Option<Instant>,
    written: Option<NodeRecord>,
}

impl Presence {
    /// Writes `rec` if it changed (ignoring `last_seen`) or the lease
    /// needs renewing; grants a new lease when the old one expired (etcd
    /// was away longer than [`LEASE_TTL`]).
    pub fn publish(&mut self, etcd: &Etcd, rec: &NodeRecord) -> Result<(), etcd::Error> {
        let due = self.renewed.is_none_or(|t| t.elapsed() >= KEEPALIVE_EVERY);
        if due && let Some(lease) = self.lease {
            if etcd.lease_keepalive(lease)?.is_none() {
                self.lease = None;
                self.written = None;
            } else {
                self.renewed = Some(Instant::now());
            }
        }
        let lease = match self.lease {
            Some(l) => l,
            None => {
                let l = etcd.lease_grant(LEASE_TTL.as_secs())?;
                self.lease = Some(l);
                self.renewed = Some(Instant::now());
                self.written = None;
                l
            }
        };
        let same = self.written.as_ref().is_some_and(|w| {
            NodeRecord {
                last_seen: rec.last_seen,
                ..w.clone()
            } == *rec
        });
        if !same || due {
            let value = serde_json::to_vec(rec).unwrap_or_default();
            etcd.put(
                &format!("{NODES_PREFIX}{}", rec.machine_id),
                &value,
                Some(lease),
            )?;
            self.written = Some(rec.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_with_missing_fields() {
        let r: NodeRecord = serde_json::from_str(r#"{"machine_id":"m","version":"1.0.0"}"#)
            .expect("partial record");
        assert_eq!((r.machine_id.as_str(), r.lock), ("m", false));
        let f = FailedRecord {
            version: "1.1.0".into(),
            ..Default::default()
        };
        let back: FailedRecord =
            serde_json::from_slice(&serde_json::to_vec(&f).expect("json")).expect("parse");
        assert_eq!(back, f);
        assert_eq!(failed_key("1.1.0"), "tandem/fleet/failed/1.1.0");
    }
}
