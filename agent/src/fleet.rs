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
use tandem_contract::node::empty_as_none;
use tandem_contract::provision::ProvisionState;
use tandem_contract::{AgentState, Slot, UpdateStateKind, Version};

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
///
/// Unknown values (a node that cannot tell its version yet) are written as
/// `""`, as when these were plain strings; a value that is neither empty
/// nor valid makes the record unreadable (skipped and named, see
/// [`nodes`]).
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
    #[serde(with = "empty_as_none")]
    pub version: Option<Version>,
    /// The running slot (`A`/`B`).
    #[serde(with = "empty_as_none")]
    pub slot: Option<Slot>,
    /// The updater's state (`idle`, `downloading`, `updated-need-reboot`, …).
    #[serde(with = "empty_as_none")]
    pub update_state: Option<UpdateStateKind>,
    /// The version waiting for a reboot, if any.
    pub pending_version: Option<Version>,
    /// The agent's state (`idle`, `waiting-for-lock`, `holding-lock`, …).
    #[serde(with = "empty_as_none")]
    pub agent_state: Option<AgentState>,
    /// Whether the node holds its group's lock.
    pub lock: bool,
    /// Since when (Unix seconds), if known.
    pub lock_since: Option<u64>,
    /// When the record was written (Unix seconds).
    pub last_seen: u64,
    /// How this boot's provisioning ended (`applied`, `failed`, …), on a
    /// node that has the step. Left out when unknown, so records of nodes
    /// without it read as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ProvisionState>,
    /// The config's errors with their place (`user-data:3:1: …`), so an
    /// operator sees a broken config without logging in.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_errors: Vec<String>,
}

/// A version that rolled back somewhere in the cluster. Every field but
/// the version may be missing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRecord {
    /// The version.
    pub version: Version,
    /// The node where it failed first.
    #[serde(default)]
    pub machine_id: String,
    /// Its host name.
    #[serde(default)]
    pub hostname: String,
    /// The updater's reason.
    #[serde(default)]
    pub reason: String,
    /// When it was recorded (Unix seconds).
    #[serde(default)]
    pub at: u64,
}

/// The key of a failed version's record (the version as spelt).
pub fn failed_key(version: &Version) -> String {
    format!("{FAILED_PREFIX}{version}")
}

/// Every node record; records that do not parse (not JSON, or a version,
/// slot or state that is not one) are skipped and named with the reason.
pub fn nodes(etcd: &Etcd) -> Result<(Vec<NodeRecord>, Vec<String>), etcd::Error> {
    parse_all(etcd.range_prefix(NODES_PREFIX)?)
}

/// Every failed-version record; unreadable ones are skipped and named.
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
pub fn is_failed(etcd: &Etcd, version: &Version) -> Result<bool, etcd::Error> {
    Ok(etcd.range(&failed_key(version))?.is_some())
}

/// Deletes the failed record of `version`; `false` if there was none.
pub fn forget_failed(etcd: &Etcd, version: &Version) -> Result<bool, etcd::Error> {
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

    fn v(text: &str) -> Version {
        text.parse().expect("a version")
    }

    fn kv(key: &str, value: &str) -> etcd::Kv {
        etcd::Kv {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn records_read_back_with_missing_fields() {
        let r: NodeRecord = serde_json::from_str(r#"{"machine_id":"m","version":"1.0.0"}"#)
            .expect("partial record");
        assert_eq!((r.machine_id.as_str(), r.lock), ("m", false));
        assert_eq!(r.version, Some(v("1.0.0")));
        assert_eq!((r.update_state, r.agent_state), (None, None));
        let f = FailedRecord {
            version: v("1.1.0"),
            machine_id: String::new(),
            hostname: String::new(),
            reason: String::new(),
            at: 0,
        };
        let back: FailedRecord =
            serde_json::from_slice(&serde_json::to_vec(&f).expect("json")).expect("parse");
        assert_eq!(back, f);
        let partial: FailedRecord =
            serde_json::from_str(r#"{"version":"1.1.0"}"#).expect("partial failed record");
        assert_eq!(partial, f);
        assert_eq!(failed_key(&v("1.1.0")), "tandem/fleet/failed/1.1.0");
    }

    #[test]
    fn node_records_keep_their_json() {
        let text = r#"{"machine_id":"m","hostname":"node-1","group":"default","version":"1.0.0","slot":"A","update_state":"updated-need-reboot","pending_version":"1.1.0","agent_state":"waiting-for-lock","lock":false,"lock_since":null,"last_seen":7}"#;
        let r: NodeRecord = serde_json::from_str(text).expect("record");
        assert_eq!(r.slot, Some(Slot::A));
        assert_eq!(r.update_state, Some(UpdateStateKind::UpdatedNeedReboot));
        assert_eq!(r.agent_state, Some(AgentState::WaitingForLock));
        assert_eq!(r.pending_version, Some(v("1.1.0")));
        assert_eq!(serde_json::to_string(&r).expect("json"), text);
        // A node that cannot tell its version and slot writes them empty.
        let unknown = NodeRecord {
            machine_id: "m".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&unknown).expect("json");
        assert!(
            json.contains(r#""version":"","slot":"","update_state":"","pending_version":null,"agent_state":"""#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<NodeRecord>(&json).expect("parse"),
            unknown
        );
    }

    #[test]
    fn a_record_carries_the_config_state_and_errors() {
        let r = NodeRecord {
            machine_id: "m".into(),
            config: Some(ProvisionState::Failed),
            config_errors: vec!["user-data:3:1: units: misplaced".into()],
            ..Default::default()
        };
        let json = serde_json::to_string(&r).expect("json");
        assert!(
            json.ends_with(
                r#""config":"failed","config_errors":["user-data:3:1: units: misplaced"]}"#
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<NodeRecord>(&json).expect("parse"), r);
    }

    #[test]
    fn unreadable_records_are_skipped_and_named_with_the_reason() {
        let (good, bad) = parse_all::<NodeRecord>(vec![
            kv(
                "tandem/fleet/nodes/a",
                r#"{"machine_id":"a","agent_state":"idle"}"#,
            ),
            kv(
                "tandem/fleet/nodes/b",
                r#"{"machine_id":"b","agent_state":"dancing"}"#,
            ),
            kv(
                "tandem/fleet/nodes/c",
                r#"{"machine_id":"c","version":"v2"}"#,
            ),
            kv("tandem/fleet/nodes/d", r#"{"machine_id":"d","slot":"C"}"#),
            kv("tandem/fleet/nodes/e", "not json"),
        ])
        .expect("parse");
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].agent_state, Some(AgentState::Idle));
        assert_eq!(bad.len(), 4, "{bad:?}");
        assert!(
            bad[0].starts_with("tandem/fleet/nodes/b: not a Tandem record"),
            "{bad:?}"
        );
        assert!(
            bad[0].contains("\"dancing\" is not an agent state"),
            "{bad:?}"
        );
        assert!(bad[1].contains("\"v2\" is not a version"), "{bad:?}");
        assert!(bad[2].starts_with("tandem/fleet/nodes/d:"), "{bad:?}");
        let (failed, bad) = parse_all::<FailedRecord>(vec![
            kv("tandem/fleet/failed/1.1.0", r#"{"version":"1.1.0"}"#),
            kv("tandem/fleet/failed/x", r#"{"version":"x"}"#),
            kv("tandem/fleet/failed/y", r#"{"reason":"no version"}"#),
        ])
        .expect("parse");
        assert_eq!(failed.len(), 1);
        assert!(bad[0].contains("\"x\" is not a version"), "{bad:?}");
        assert!(bad[1].contains("missing field `version`"), "{bad:?}");
    }
}
