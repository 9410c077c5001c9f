//! The fleet as one value: built from a [`Snapshot`] of etcd and the
//! repository by [`build`], serialised as `/api/fleet`, rendered by
//! [`crate::page`] and [`crate::metrics`]. Pure: the caller passes `now`.

use std::collections::BTreeMap;

use agent::fleet::{FailedRecord, KEEPALIVE_EVERY, NodeRecord};
use agent::semaphore::Semaphore;
use repository::repo::{ChannelPointer, Rollout};
use repository::rollout;
use serde::Serialize;
use tandem_contract::{AgentState, BootHealthKind, Slot, UpdateStateKind, Version};

use crate::reason::{self, Context};
use crate::when;

/// A record older than this (two missed keep-alives) is stale: the node
/// stopped writing it.
pub const STALE_AFTER_SECS: u64 = 2 * KEEPALIVE_EVERY.as_secs() + 5;

/// Everything read at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Unix seconds.
    pub now: u64,
    /// The node records in etcd.
    pub nodes: Vec<NodeRecord>,
    /// Nodes seen before whose record is gone (its lease expired), with
    /// when it was noticed ([`crate::memory`]).
    pub departed: Vec<(NodeRecord, u64)>,
    /// The cluster's failed versions.
    pub failed: Vec<FailedRecord>,
    /// The reboot semaphores of the groups in use.
    pub locks: Vec<LockInput>,
    /// The channels the repository serves or the nodes follow.
    pub channels: Vec<ChannelInput>,
    /// Sources that could not be read, unreadable records.
    pub problems: Vec<String>,
    /// Whether etcd answered.
    pub etcd_up: bool,
    /// Whether the repository answered (`None`: none given).
    pub repository_up: Option<bool>,
}

/// One group's reboot semaphore as read.
#[derive(Clone, Debug)]
pub struct LockInput {
    /// The group.
    pub group: String,
    /// Its etcd key.
    pub key: String,
    /// The value (locksmith's default, max 1 and nobody, when absent), or
    /// why it could not be read.
    pub semaphore: Result<Semaphore, String>,
}

/// One channel as read from the repository.
#[derive(Clone, Debug)]
pub struct ChannelInput {
    /// The image.
    pub image: String,
    /// The channel.
    pub channel: String,
    /// Its pointer, or why it could not be read.
    pub pointer: Result<ChannelPointer, String>,
    /// Whether a trusted key's signature verifies (`None`: no keys given).
    pub verified: Option<bool>,
}

/// What the dashboard shows.
#[derive(Clone, Debug, Serialize)]
pub struct FleetView {
    /// When it was read (Unix seconds).
    pub now: u64,
    /// Per channel.
    pub channels: Vec<ChannelView>,
    /// Per node, those that need attention first.
    pub nodes: Vec<NodeView>,
    /// Per reboot group.
    pub locks: Vec<LockView>,
    /// The cluster's failed versions.
    pub failed: Vec<FailedRecord>,
    /// What could not be read.
    pub problems: Vec<String>,
    /// Whether etcd answered.
    pub etcd_up: bool,
    /// Whether the repository answered (`None`: none given).
    pub repository_up: Option<bool>,
}

/// A channel and its rollout.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelView {
    /// The image.
    pub image: String,
    /// The channel.
    pub channel: String,
    /// The version served.
    pub version: Option<Version>,
    /// Its rollout.
    pub rollout: Option<Rollout>,
    /// The rollout in words (`from 10:00 UTC over 2 h: 40 % of nodes eligible`).
    pub schedule: String,
    /// Share of the window gone by, 0–1.
    pub eligible_share: Option<f64>,
    /// How far the channel's nodes have come.
    pub phases: Phases,
    /// Whether its signature verified (`None`: not checked).
    pub verified: Option<bool>,
    /// The version it serves is recorded as failed in the cluster: the
    /// rollout stopped (where and why).
    pub stopped: Option<String>,
    /// Why the pointer could not be read.
    pub problem: Option<String>,
}

/// How many of a channel's nodes are where. `eligible` counts every node
/// whose turn has come or that took the version (whatever it did since);
/// the others count each node once, in the phase it is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Phases {
    /// Nodes following the channel.
    pub nodes: u32,
    /// Nodes whose rollout turn has come.
    pub eligible: u32,
    /// Writing the version.
    pub downloading: u32,
    /// Installed, waiting for the reboot.
    pub installed: u32,
    /// Running it, on trial.
    pub rebooted: u32,
    /// Running it, confirmed healthy.
    pub confirmed: u32,
    /// It did not come up there.
    pub rolled_back: u32,
}

/// Where a node is in its channel's rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Its turn has not come.
    Waiting,
    /// Its turn has come; not started.
    Eligible,
    /// Writing the version.
    Downloading,
    /// Installed, waiting for the reboot.
    Installed,
    /// Running it, on trial.
    Rebooted,
    /// Running it, confirmed.
    Confirmed,
    /// It did not come up.
    RolledBack,
    /// No channel (or its pointer) to compare with.
    Unknown,
}

/// How much a node needs an operator's eye: the page's order and marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attention {
    /// Something is wrong.
    Problem,
    /// Working on an update.
    Busy,
    /// Waiting for something (its turn, the window, the lock).
    Waiting,
    /// Nothing to do.
    Fine,
}

impl Attention {
    /// A mark that reads without colour.
    pub fn mark(self) -> &'static str {
        match self {
            Attention::Problem => "⚠",
            Attention::Busy => "↻",
            Attention::Waiting => "…",
            Attention::Fine => "✓",
        }
    }

    /// The word for it.
    pub fn word(self) -> &'static str {
        match self {
            Attention::Problem => "problem",
            Attention::Busy => "busy",
            Attention::Waiting => "waiting",
            Attention::Fine => "fine",
        }
    }
}

/// Whether the node still writes its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Presence {
    /// Written within [`STALE_AFTER_SECS`].
    Live,
    /// The record is there but old.
    Stale {
        /// Seconds since it was written.
        age_secs: u64,
    },
    /// The record expired (noticed at `since`).
    Gone {
        /// Seconds since it was last written.
        age_secs: u64,
    },
}

/// A node.
#[derive(Clone, Debug, Serialize)]
pub struct NodeView {
    /// Machine id.
    pub machine_id: String,
    /// Host name.
    pub hostname: String,
    /// Reboot group.
    pub group: String,
    /// Channel followed.
    pub channel: Option<String>,
    /// Running version.
    pub version: Option<Version>,
    /// Running slot.
    pub slot: Option<Slot>,
    /// Updater state.
    pub update_state: Option<UpdateStateKind>,
    /// Agent state.
    pub agent_state: Option<AgentState>,
    /// Whether this boot is confirmed.
    pub boot: Option<BootHealthKind>,
    /// Holds its group's reboot lock.
    pub lock: bool,
    /// Since when (Unix seconds).
    pub lock_since: Option<u64>,
    /// When the record was written (Unix seconds).
    pub last_seen: u64,
    /// Whether it still writes it.
    pub presence: Presence,
    /// Where it is in its channel's rollout.
    pub phase: Phase,
    /// Why it is where it is, in one sentence.
    pub reason: String,
    /// How much it needs an eye.
    pub attention: Attention,
}

/// A reboot group's lock.
#[derive(Clone, Debug, Serialize)]
pub struct LockView {
    /// The group.
    pub group: String,
    /// The etcd key.
    pub key: String,
    /// How many may hold it at once.
    pub max: Option<i64>,
    /// Who holds it.
    pub holders: Vec<Holder>,
    /// Host names of the nodes waiting for it, longest wait first.
    pub waiting: Vec<String>,
    /// The longest wait so far, in seconds.
    pub longest_wait_secs: Option<u64>,
    /// Why it could not be read.
    pub problem: Option<String>,
}

/// A holder of a lock.
#[derive(Clone, Debug, Serialize)]
pub struct Holder {
    /// Its id (machine id).
    pub machine_id: String,
    /// Its host name, when a record names it.
    pub hostname: Option<String>,
    /// Since when it holds the lock (Unix seconds), when known.
    pub since: Option<u64>,
}

impl Holder {
    /// The host name, or the id's first 12 characters.
    pub fn name(&self) -> String {
        self.hostname
            .clone()
            .unwrap_or_else(|| self.machine_id.chars().take(12).collect())
    }
}

/// Builds the view.
pub fn build(s: &Snapshot) -> FleetView {
    let now = s.now;
    let records: Vec<(&NodeRecord, Presence)> = s
        .nodes
        .iter()
        .map(|r| {
            let age = now.saturating_sub(r.last_seen);
            let p = if age > STALE_AFTER_SECS {
                Presence::Stale { age_secs: age }
            } else {
                Presence::Live
            };
            (r, p)
        })
        .chain(s.departed.iter().map(|(r, _)| {
            (
                r,
                Presence::Gone {
                    age_secs: now.saturating_sub(r.last_seen),
                },
            )
        }))
        .collect();
    let by_id: BTreeMap<&str, &NodeRecord> = records
        .iter()
        .map(|(r, _)| (r.machine_id.as_str(), *r))
        .collect();
    let locks: Vec<LockView> = s
        .locks
        .iter()
        .map(|l| lock_view(l, &records, now))
        .collect();

    let mut channels: Vec<ChannelView> = s
        .channels
        .iter()
        .map(|c| channel_view(c, &s.failed, now))
        .collect();
    let mut nodes = Vec::with_capacity(records.len());
    for (r, presence) in &records {
        let ch = channel_of(r, &s.channels);
        let target = ch.and_then(|c| c.pointer.as_ref().ok());
        let turn = target.map(|p| {
            rollout::eligible_at(&p.rollout, rollout::position(&r.machine_id, &p.version))
        });
        let phase = match target {
            Some(p) => phase(r, &p.version, turn.is_some_and(|t| t <= now)),
            None => Phase::Unknown,
        };
        let lock = locks.iter().find(|l| l.group == group_name(&r.group));
        let ctx = Context {
            now,
            presence: *presence,
            target: target.map(|p| (&p.version, turn.unwrap_or(0))),
            failed: &s.failed,
            lock,
            names: &by_id,
        };
        let (reason, attention) = reason::explain(r, &ctx);
        if let Some(cv) = ch.and_then(|c| {
            channels
                .iter_mut()
                .find(|v| v.image == c.image && v.channel == c.channel)
        }) && !matches!(presence, Presence::Gone { .. })
        {
            count(&mut cv.phases, phase, turn.is_some_and(|t| t <= now));
        }
        nodes.push(NodeView {
            machine_id: r.machine_id.clone(),
            hostname: r.hostname.clone(),
            group: group_name(&r.group).to_string(),
            channel: r.channel.clone(),
            version: r.version.clone(),
            slot: r.slot,
            update_state: r.update_state,
            agent_state: r.agent_state,
            boot: r.boot,
            lock: r.lock,
            lock_since: r.lock_since,
            last_seen: r.last_seen,
            presence: *presence,
            phase,
            reason,
            attention,
        });
    }
    nodes.sort_by(|a, b| {
        (a.attention, &a.hostname, &a.machine_id).cmp(&(b.attention, &b.hostname, &b.machine_id))
    });
    channels.sort_by(|a, b| (&a.image, &a.channel).cmp(&(&b.image, &b.channel)));
    let mut failed = s.failed.clone();
    failed.sort_by_key(|f| std::cmp::Reverse(f.at));
    FleetView {
        now,
        channels,
        nodes,
        locks,
        failed,
        problems: s.problems.clone(),
        etcd_up: s.etcd_up,
        repository_up: s.repository_up,
    }
}

/// The group's name as shown (`""` is the default group).
fn group_name(group: &str) -> &str {
    if group.is_empty() {
        agent::semaphore::DEFAULT_GROUP
    } else {
        group
    }
}

/// The channel a node follows: by image and channel; by channel alone for
/// records that do not name their image, when only one image has it.
fn channel_of<'a>(r: &NodeRecord, channels: &'a [ChannelInput]) -> Option<&'a ChannelInput> {
    let name = r.channel.as_deref()?;
    match r.image.as_deref() {
        Some(image) => channels
            .iter()
            .find(|c| c.image == image && c.channel == name),
        None => {
            let mut it = channels.iter().filter(|c| c.channel == name);
            let first = it.next();
            if it.next().is_some() { None } else { first }
        }
    }
}

/// Where a node is relative to the version its channel serves.
pub fn phase(r: &NodeRecord, target: &Version, turn_came: bool) -> Phase {
    let is_target = |v: Option<&Version>| v.is_some_and(|v| v.canonical() == target.canonical());
    if is_target(r.version.as_ref()) {
        return match r.boot {
            Some(BootHealthKind::Confirmed) => Phase::Confirmed,
            _ => Phase::Rebooted,
        };
    }
    if is_target(r.rollback.as_ref().map(|b| &b.version)) {
        return Phase::RolledBack;
    }
    if is_target(r.pending_version.as_ref()) {
        return Phase::Installed;
    }
    if is_target(r.progress.as_ref().map(|p| &p.version)) {
        return Phase::Downloading;
    }
    if turn_came {
        Phase::Eligible
    } else {
        Phase::Waiting
    }
}

fn count(p: &mut Phases, phase: Phase, turn_came: bool) {
    p.nodes += 1;
    // A node that took the version was eligible, whatever the schedule
    // says now (an earlier pointer's, a node's clock).
    if turn_came || !matches!(phase, Phase::Waiting | Phase::Unknown) {
        p.eligible += 1;
    }
    match phase {
        Phase::Downloading => p.downloading += 1,
        Phase::Installed => p.installed += 1,
        Phase::Rebooted => p.rebooted += 1,
        Phase::Confirmed => p.confirmed += 1,
        Phase::RolledBack => p.rolled_back += 1,
        Phase::Waiting | Phase::Eligible | Phase::Unknown => {}
    }
}

fn channel_view(c: &ChannelInput, failed: &[FailedRecord], now: u64) -> ChannelView {
    let (version, rollout, problem) = match &c.pointer {
        Ok(p) => (Some(p.version.clone()), Some(p.rollout), None),
        Err(e) => (None, None, Some(e.clone())),
    };
    let share = rollout.map(|r| {
        let end = r.start.saturating_add(r.duration_secs);
        if now < r.start {
            0.0
        } else if now >= end {
            1.0
        } else {
            (now - r.start) as f64 / r.duration_secs as f64
        }
    });
    let schedule = match (rollout, share) {
        (Some(r), Some(share)) => schedule(&r, share, now),
        _ => "unknown".into(),
    };
    ChannelView {
        image: c.image.clone(),
        channel: c.channel.clone(),
        rollout,
        schedule,
        eligible_share: share,
        phases: Phases::default(),
        verified: c.verified,
        stopped: version.as_ref().and_then(|v| {
            failed
                .iter()
                .find(|f| f.version.canonical() == v.canonical())
                .map(|f| {
                    format!(
                        "stopped: {v} failed on {} at {}",
                        if f.hostname.is_empty() {
                            &f.machine_id
                        } else {
                            &f.hostname
                        },
                        when::at(f.at, now)
                    )
                })
        }),
        version,
        problem,
    }
}

/// The rollout in words.
pub fn schedule(r: &Rollout, share: f64, now: u64) -> String {
    let start = when::at(r.start, now);
    if r.duration_secs == 0 {
        return if now < r.start {
            format!("all nodes at {start}")
        } else {
            format!("all nodes since {start}")
        };
    }
    let over = when::age(r.duration_secs);
    let end = when::at(r.start.saturating_add(r.duration_secs), now);
    if now < r.start {
        format!(
            "from {start} over {over}: starts in {}",
            when::age(r.start - now)
        )
    } else if share >= 1.0 {
        format!("from {start} over {over}: complete since {end}")
    } else {
        format!(
            "from {start} over {over}: {:.0} % of nodes eligible, all by {end}",
            share * 100.0
        )
    }
}

fn lock_view(l: &LockInput, records: &[(&NodeRecord, Presence)], now: u64) -> LockView {
    let in_group = |r: &NodeRecord| group_name(&r.group) == l.group;
    let mut waiting: Vec<(&NodeRecord, u64)> = records
        .iter()
        .filter(|(r, p)| {
            in_group(r)
                && r.agent_state == Some(AgentState::WaitingForLock)
                && !matches!(p, Presence::Gone { .. })
        })
        .map(|(r, _)| (*r, now.saturating_sub(r.update_since.unwrap_or(now))))
        .collect();
    waiting.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.hostname.cmp(&b.0.hostname)));
    let (max, holders, problem) = match &l.semaphore {
        Ok(s) => (
            Some(s.max),
            s.holders
                .iter()
                .map(|id| {
                    let rec = records.iter().find(|(r, _)| &r.machine_id == id);
                    Holder {
                        machine_id: id.clone(),
                        hostname: rec.map(|(r, _)| r.hostname.clone()),
                        since: rec.and_then(|(r, _)| r.lock_since),
                    }
                })
                .collect(),
            None,
        ),
        Err(e) => (None, Vec::new(), Some(e.clone())),
    };
    LockView {
        group: l.group.clone(),
        key: l.key.clone(),
        max,
        holders,
        longest_wait_secs: waiting.first().map(|w| w.1),
        waiting: waiting
            .into_iter()
            .map(|(r, _)| r.hostname.clone())
            .collect(),
        problem,
    }
}

#[cfg(test)]
mod tests;
