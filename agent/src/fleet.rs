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
use tandem_contract::node::{Evidence, empty_as_none};
use tandem_contract::provision::ProvisionState;
use tandem_contract::{AgentState, BootHealthKind, Slot, UpdateStateKind, Version};

use updater::status::{UpdateState, UpdateStatus};

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
    /// What the fleet view needs to say *why* a node is where it is. The
    /// fields below are left out when unknown, so records of older agents
    /// read as before (and say less).
    ///
    /// The image followed (`IMAGE_ID`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The channel followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When the updater entered `update_state` (Unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_since: Option<u64>,
    /// Whether this boot is confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootHealthKind>,
    /// The version offered, while `update-available`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<Version>,
    /// When this node's rollout turn comes (Unix seconds), while
    /// `update-available`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eligible_at: Option<u64>,
    /// What else an available update waits for (the updater's words).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The version being written and how far, in whole percent (in steps
    /// of [`PROGRESS_STEP`], so a download costs a few writes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The last rollback on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRecord>,
    /// The updater's error, while `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The reboot window (`Thu 04:00 +2h`), when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// When the window opens next (Unix seconds), while waiting for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_opens_at: Option<u64>,
    /// Corrupt blocks of the running /usr found at run time and what the
    /// node did (this boot: it stays up on them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usr_corruption: Option<String>,
    /// The latest incident of the last day (a failed early boot, corrupt
    /// /usr that made the node switch slots), in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

/// How long an incident stays in the node's record.
pub const INCIDENT_SHOWN_SECS: u64 = 24 * 3600;

/// Percent steps in which [`NodeRecord::progress`] moves.
pub const PROGRESS_STEP: u8 = 5;

/// An update being written: which version, which step, how far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The version.
    pub version: Version,
    /// `downloading`, `verifying` or `finalizing`.
    pub step: UpdateStateKind,
    /// Percent done, a multiple of [`PROGRESS_STEP`].
    pub percent: u8,
}

impl Progress {
    /// `done` of `total`, rounded down to a [`PROGRESS_STEP`].
    pub fn new(version: Version, step: UpdateStateKind, done: u64, total: u64) -> Progress {
        // Nothing to do is all done.
        let pct = match total {
            0 => 100,
            t => (u128::from(done.min(t)) * 100 / u128::from(t)) as u8,
        };
        Progress {
            version,
            step,
            percent: pct - pct % PROGRESS_STEP,
        }
    }
}

/// A rollback as the node's record carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// The version that did not come up.
    pub version: Version,
    /// Why (the updater's words: which health check, which boot step).
    pub reason: String,
    /// When it was noticed (Unix seconds).
    pub at: u64,
    /// What showed the failure (`none`: its trial boots were all cut short;
    /// not recorded for the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
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

/// The record's fields that come from the updater's status (the rest
/// left at their defaults for the agent to fill in).
pub fn update_fields(status: &UpdateStatus) -> NodeRecord {
    let mut rec = NodeRecord {
        version: status.running_version.clone(),
        slot: status.running_slot,
        update_state: Some(status.state.kind()),
        image: status.image.clone(),
        channel: status.channel.clone(),
        update_since: Some(status.since),
        boot: Some(status.boot.kind()),
        rollback: status.rollback.as_ref().map(|r| RollbackRecord {
            version: r.version.clone(),
            reason: r.reason.clone(),
            at: r.at,
            evidence: Some(r.evidence),
        }),
        incident: status
            .incidents
            .last()
            .filter(|i| i.at + INCIDENT_SHOWN_SECS > updater::clock::now_unix())
            .map(|i| {
                format!(
                    "slot {} {} at {}: {}; {}",
                    i.slot,
                    i.kind,
                    updater::clock::format_unix(i.at),
                    i.what,
                    i.action
                )
            }),
        ..NodeRecord::default()
    };
    match &status.state {
        UpdateState::UpdatedNeedReboot { version, .. } => {
            rec.pending_version = Some(version.clone());
        }
        UpdateState::UpdateAvailable {
            version,
            eligible_at,
            waiting_for,
        } => {
            rec.available = Some(version.clone());
            rec.eligible_at = Some(*eligible_at);
            rec.waiting_for = waiting_for.clone();
        }
        UpdateState::Downloading(t) => {
            rec.progress = Some(Progress::new(
                t.version.clone(),
                UpdateStateKind::Downloading,
                t.bytes_done,
                t.bytes_total,
            ));
        }
        UpdateState::Verifying {
            version,
            bytes_done,
            bytes_total,
            ..
        } => {
            rec.progress = Some(Progress::new(
                version.clone(),
                UpdateStateKind::Verifying,
                *bytes_done,
                *bytes_total,
            ));
        }
        UpdateState::Finalizing { version, .. } => {
            rec.progress = Some(Progress::new(
                version.clone(),
                UpdateStateKind::Finalizing,
                1,
                1,
            ));
        }
        UpdateState::Error { reason, .. } => rec.error = Some(reason.clone()),
        UpdateState::Idle | UpdateState::Checking | UpdateState::RolledBack { .. } => {}
    }
    rec
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
    fn records_carry_what_the_fleet_view_explains() {
        use updater::status::{BootHealth, Rollback, Transfer};
        let mut st = UpdateStatus {
            state: UpdateState::Downloading(Transfer {
                version: v("1.2.0"),
                slot: Slot::B,
                bytes_done: 47,
                bytes_total: 100,
                percent: 47.0,
                downloaded_bytes: 0,
                copied_bytes: 0,
                present_bytes: 0,
            }),
            since: 1000,
            running_version: Some(v("1.1.0")),
            running_slot: Some(Slot::A),
            boot: BootHealth::Confirmed,
            image: Some("img".into()),
            channel: Some("beta".into()),
            rollback: Some(Rollback {
                version: v("1.1.5"),
                reason: "health check `app` failed".into(),
                at: 900,
                evidence: Evidence::HealthChecks,
            }),
            ..UpdateStatus::default()
        };
        let r = update_fields(&st);
        assert_eq!(
            r.progress,
            Some(Progress {
                version: v("1.2.0"),
                step: UpdateStateKind::Downloading,
                percent: 45
            })
        );
        assert_eq!(
            (r.image.as_deref(), r.channel.as_deref(), r.update_since),
            (Some("img"), Some("beta"), Some(1000))
        );
        assert_eq!(r.boot, Some(BootHealthKind::Confirmed));
        assert_eq!(r.rollback.map(|b| b.version), Some(v("1.1.5")));
        st.state = UpdateState::UpdateAvailable {
            version: v("1.2.0"),
            eligible_at: 2000,
            waiting_for: None,
        };
        let r = update_fields(&st);
        assert_eq!((r.available, r.eligible_at), (Some(v("1.2.0")), Some(2000)));
        assert_eq!(r.progress, None);
        // Unknown fields are left out, so older readers see what they knew.
        let json = serde_json::to_string(&NodeRecord::default()).expect("json");
        assert!(
            !json.contains("progress") && !json.contains("rollback"),
            "{json}"
        );
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
