//! Why a node is where it is, in one plain sentence: the answer to "why
//! isn't my node updating?". The first rule that applies wins; they go
//! from what needs an operator (the node is gone, its config failed, a
//! version rolled back) to what is simply under way or done.

use std::collections::BTreeMap;

use agent::fleet::{FailedRecord, NodeRecord};
use tandem_contract::provision::ProvisionState;
use tandem_contract::{AgentState, BootHealthKind, UpdateStateKind, Version};

use crate::view::{Attention, LockView, Presence};
use crate::when;

/// What a sentence may refer to besides the node's own record.
#[derive(Debug)]
pub struct Context<'a> {
    /// Unix seconds.
    pub now: u64,
    /// Whether the node still writes its record.
    pub presence: Presence,
    /// The version its channel serves and when this node's turn comes.
    pub target: Option<(&'a Version, u64)>,
    /// The cluster's failed versions.
    pub failed: &'a [FailedRecord],
    /// Its group's lock.
    pub lock: Option<&'a LockView>,
    /// Every node by machine id (lock holders' names).
    pub names: &'a BTreeMap<&'a str, &'a NodeRecord>,
}

/// The sentence and how much it needs an eye.
pub fn explain(r: &NodeRecord, c: &Context<'_>) -> (String, Attention) {
    use Attention::*;
    let now = c.now;
    let expired = match c.presence {
        Presence::Gone { age_secs } => Some((age_secs, "; its record expired")),
        Presence::Stale { age_secs } => Some((age_secs, "")),
        Presence::Live => None,
    };
    if let Some((age, expired)) = expired {
        return (
            format!(
                "not seen for {} (last at {}){expired}",
                when::age(age),
                when::at(r.last_seen, now)
            ),
            Problem,
        );
    }
    if let Some(c) = &r.usr_corruption {
        return (format!("/usr corrupt on disk: {c}"), Problem);
    }
    if r.config == Some(ProvisionState::Failed) {
        return (provisioning_failed(&r.config_errors), Problem);
    }
    let same = |a: &Version, b: &Version| a.canonical() == b.canonical();
    let target = c.target.map(|(v, _)| v);
    if let Some(b) = &r.rollback
        && (r.update_state == Some(UpdateStateKind::RolledBack)
            || target.is_some_and(|t| same(t, &b.version)))
    {
        return (
            format!(
                "rolled back {} at {}: {}",
                b.version,
                when::at(b.at, now),
                b.reason
            ),
            Problem,
        );
    }
    if r.agent_state == Some(AgentState::Blocked)
        && let Some(v) = &r.pending_version
    {
        return (
            format!(
                "stays on {}: {v} {}; `tandem cluster forget-failed {v}` allows it again",
                running(r),
                failed_where(c.failed, v)
            ),
            Problem,
        );
    }
    // The channel's version failed in the cluster: the node stays where
    // it is, whatever its updater says about refusing it.
    if let Some(target) = target
        && c.failed.iter().any(|f| same(&f.version, target))
        && !r.version.as_ref().is_some_and(|v| same(v, target))
    {
        return (
            format!(
                "stays on {}: {target} {}",
                running(r),
                failed_where(c.failed, target)
            ),
            Waiting,
        );
    }
    if r.update_state == Some(UpdateStateKind::Error) {
        return (
            format!(
                "update failed: {}",
                r.error.as_deref().unwrap_or("no reason recorded")
            ),
            Problem,
        );
    }
    if let Some(p) = &r.progress {
        let text = match p.step {
            UpdateStateKind::Finalizing => format!("finalizing {} (kernel, slot flip)", p.version),
            step => format!("{step} {}: {} %", p.version, p.percent),
        };
        return (text, Busy);
    }
    if let Some(v) = &r.pending_version {
        return installed(r, v, c);
    }
    if r.agent_state == Some(AgentState::HoldingLock) {
        let since = r
            .lock_since
            .map(|t| format!(" since {}", when::at(t, now)))
            .unwrap_or_default();
        return (
            format!(
                "running {} on trial, holding the reboot lock{since} until its health is confirmed",
                running(r)
            ),
            Busy,
        );
    }
    if r.boot == Some(BootHealthKind::Checking) {
        return (
            format!("running {} on trial: health checks running", running(r)),
            Busy,
        );
    }
    if let (Some(v), Some(at)) = (&r.available, r.eligible_at) {
        if let Some(w) = &r.waiting_for {
            return (format!("{v} available, waiting for {w}"), Waiting);
        }
        if at > now {
            return (
                format!(
                    "waiting for its rollout turn at {} ({v})",
                    when::at(at, now)
                ),
                Waiting,
            );
        }
        return (format!("{v} available, installing"), Busy);
    }
    if r.update_state == Some(UpdateStateKind::Checking) {
        return ("checking for updates".into(), Busy);
    }
    let Some((target, turn)) = c.target else {
        return (
            match &r.channel {
                Some(ch) => format!("runs {}; channel {ch} is not readable", running(r)),
                None => format!("runs {}; its channel is unknown", running(r)),
            },
            Fine,
        );
    };
    if r.version.as_ref().is_some_and(|v| same(v, target)) {
        return match &r.incident {
            Some(i) => (
                format!("up to date: {target}, confirmed; after an incident: {i}"),
                Problem,
            ),
            None => (format!("up to date: {target}, confirmed"), Fine),
        };
    }
    if turn > now {
        return (
            format!(
                "waiting for its rollout turn at {} ({target})",
                when::at(turn, now)
            ),
            Waiting,
        );
    }
    (
        format!(
            "{target} due since {}; not picked up yet (it checks periodically)",
            when::at(turn, now)
        ),
        Waiting,
    )
}

/// An installed version waiting for its reboot: what it waits for.
fn installed(r: &NodeRecord, v: &Version, c: &Context<'_>) -> (String, Attention) {
    let now = c.now;
    match r.agent_state {
        Some(AgentState::WaitingForLock) => {
            let holders = c
                .lock
                .map(|l| {
                    l.holders
                        .iter()
                        .filter(|h| h.machine_id != r.machine_id)
                        .map(|h| {
                            let name = c
                                .names
                                .get(h.machine_id.as_str())
                                .map_or_else(|| h.name(), |n| n.hostname.clone());
                            match h.since {
                                Some(t) => format!("{name} since {}", when::at(t, now)),
                                None => name,
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let text = if holders.is_empty() {
                format!("{v} installed; waiting for the reboot lock")
            } else {
                format!(
                    "{v} installed; waiting for the reboot lock held by {}",
                    holders.join(", ")
                )
            };
            (text, Attention::Waiting)
        }
        Some(AgentState::WaitingForWindow) => {
            let opens = r
                .window_opens_at
                .map(|t| format!(" {}", when::at(t, now)))
                .unwrap_or_default();
            (
                format!("{v} installed; waiting for the reboot window{opens}"),
                Attention::Waiting,
            )
        }
        Some(AgentState::RebootNeeded) => (
            format!("{v} installed; needs a reboot (reboot strategy off)"),
            Attention::Waiting,
        ),
        Some(AgentState::Rebooting) => (format!("rebooting into {v}"), Attention::Busy),
        Some(AgentState::HoldingLock) => (
            format!("holding the reboot lock; rebooting into {v}"),
            Attention::Busy,
        ),
        Some(AgentState::Error) => (
            format!("{v} installed; the reboot agent reports an error"),
            Attention::Problem,
        ),
        _ => (
            format!("{v} installed, waiting for a reboot"),
            Attention::Waiting,
        ),
    }
}

/// `failed on worker-2 (health check app failed)`.
fn failed_where(failed: &[FailedRecord], v: &Version) -> String {
    match failed
        .iter()
        .find(|f| f.version.canonical() == v.canonical())
    {
        Some(f) => {
            let host = if f.hostname.is_empty() {
                "another node".to_string()
            } else {
                f.hostname.clone()
            };
            if f.reason.is_empty() {
                format!("failed on {host}")
            } else {
                format!("failed on {host} ({})", f.reason)
            }
        }
        None => "failed elsewhere in the cluster".into(),
    }
}

fn running(r: &NodeRecord) -> String {
    r.version
        .as_ref()
        .map_or_else(|| "an unknown version".into(), ToString::to_string)
}

/// `provisioning failed at line 12 of its user-data: …` from the first
/// error (`user-data:12:3: …`).
fn provisioning_failed(errors: &[String]) -> String {
    let Some(first) = errors.first() else {
        return "provisioning failed (no error recorded)".into();
    };
    let mut parts = first.splitn(4, ':');
    if let (Some(file), Some(line), Some(_col), Some(msg)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
        && line.parse::<u32>().is_ok()
    {
        return format!(
            "provisioning failed at line {line} of its {file}:{}",
            msg.trim_end()
        );
    }
    format!("provisioning failed: {first}")
}
