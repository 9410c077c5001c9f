//! The fleet as Prometheus metrics (text exposition format 0.0.4), so an
//! alert on a stalled or failing rollout is one rule away:
//!
//! ```text
//! # a version rolled back somewhere
//! tandem_fleet_failed_versions > 0
//! # a rollout that stopped moving: eligible nodes not on the version for an hour
//! tandem_rollout_nodes{phase="eligible"} - tandem_rollout_nodes{phase="confirmed"} > 0
//! # a node waiting for the reboot lock for more than an hour
//! tandem_reboot_lock_longest_wait_seconds > 3600
//! # a node that stopped reporting
//! tandem_fleet_nodes_not_seen > 0
//! ```
//!
//! Naming follows Prometheus' conventions: a `tandem_` prefix, base units
//! (`_seconds`, `_ratio`), `_info` for labels-only series, `_timestamp_seconds`
//! for points in time; every value is a gauge (the dashboard reports the
//! fleet's state; counting events is what the nodes' own logs are for).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::view::{FleetView, LockView, Phase, Presence};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn family<'a>(out: &'a mut String, name: &'static str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    Family { out, name }
}

/// The per-group gauges of the reboot locks: name, help, value.
type LockGauge = (&'static str, &'static str, fn(&LockView) -> Option<f64>);

const LOCK_GAUGES: [LockGauge; 4] = [
    (
        "tandem_reboot_lock_max",
        "How many nodes of a reboot group may hold its lock at once.",
        |l| l.max.map(|m| m as f64),
    ),
    (
        "tandem_reboot_lock_holders",
        "Nodes holding a reboot group's lock.",
        |l| Some(l.holders.len() as f64),
    ),
    (
        "tandem_reboot_lock_waiting_nodes",
        "Nodes with an installed update waiting for their group's lock.",
        |l| Some(l.waiting.len() as f64),
    ),
    (
        "tandem_reboot_lock_longest_wait_seconds",
        "How long the longest waiting node of a group has waited for its lock (0: none waits).",
        |l| Some(l.longest_wait_secs.unwrap_or(0) as f64),
    ),
];

/// A version as a label value (`""` when unknown).
fn text(v: &Option<tandem_contract::Version>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the view.
pub fn render(v: &FleetView) -> String {
    let mut out = String::with_capacity(256 + 200 * v.nodes.len());
    let up = |b: bool| if b { 1.0 } else { 0.0 };

    let mut f = family(
        &mut out,
        "tandem_dashboard_source_up",
        "Whether the dashboard could read a source at the last refresh (1) or not (0).",
    );
    f.sample(&[("source", "etcd")], up(v.etcd_up));
    if let Some(r) = v.repository_up {
        f.sample(&[("source", "repository")], up(r));
    }

    // Nodes by channel, version and state (present ones).
    let mut by_state: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    let mut not_seen = 0u32;
    let mut oldest = 0u64;
    for n in &v.nodes {
        let age = v.now.saturating_sub(n.last_seen);
        if matches!(n.presence, Presence::Gone { .. }) {
            not_seen += 1;
            continue;
        }
        if matches!(n.presence, Presence::Stale { .. }) {
            not_seen += 1;
        }
        oldest = oldest.max(age);
        *by_state
            .entry((
                n.channel.clone().unwrap_or_default(),
                text(&n.version),
                n.update_state.map(|s| s.as_str()).unwrap_or("").to_string(),
            ))
            .or_default() += 1;
    }
    let mut f = family(
        &mut out,
        "tandem_fleet_nodes",
        "Nodes with a live record in etcd, by channel, running version and update state.",
    );
    for ((channel, version, state), n) in &by_state {
        f.sample(
            &[
                ("channel", channel),
                ("version", version),
                ("update_state", state),
            ],
            f64::from(*n),
        );
    }
    family(
        &mut out,
        "tandem_fleet_nodes_not_seen",
        "Nodes whose record is stale or expired (remembered by this dashboard for a day).",
    )
    .sample(&[], f64::from(not_seen));
    family(
        &mut out,
        "tandem_fleet_oldest_record_age_seconds",
        "Age of the oldest node record still in etcd.",
    )
    .sample(&[], oldest as f64);
    let mut f = family(
        &mut out,
        "tandem_fleet_node_last_seen_timestamp_seconds",
        "When each node last wrote its record (Unix time).",
    );
    for n in &v.nodes {
        f.sample(
            &[("machine_id", &n.machine_id), ("hostname", &n.hostname)],
            n.last_seen as f64,
        );
    }

    // Channels and their rollouts.
    let mut f = family(
        &mut out,
        "tandem_channel_info",
        "The version each channel serves (value 1).",
    );
    for c in &v.channels {
        let version = text(&c.version);
        f.sample(
            &[
                ("image", &c.image),
                ("channel", &c.channel),
                ("version", &version),
            ],
            1.0,
        );
    }
    let mut f = family(
        &mut out,
        "tandem_rollout_eligible_ratio",
        "Share of the channel's rollout window gone by (0-1): the share of nodes whose turn has come.",
    );
    for c in &v.channels {
        if let Some(share) = c.eligible_share {
            f.sample(&[("image", &c.image), ("channel", &c.channel)], share);
        }
    }
    let mut f = family(
        &mut out,
        "tandem_rollout_nodes",
        "Nodes of a channel by rollout phase: nodes (all), eligible (turn came), downloading, installed, rebooted (on trial), confirmed, rolled_back.",
    );
    for c in &v.channels {
        let version = text(&c.version);
        let p = &c.phases;
        for (phase, n) in [
            ("nodes", p.nodes),
            ("eligible", p.eligible),
            ("downloading", p.downloading),
            ("installed", p.installed),
            ("rebooted", p.rebooted),
            ("confirmed", p.confirmed),
            ("rolled_back", p.rolled_back),
        ] {
            f.sample(
                &[
                    ("image", &c.image),
                    ("channel", &c.channel),
                    ("version", &version),
                    ("phase", phase),
                ],
                f64::from(n),
            );
        }
    }

    // Rollbacks and failed versions.
    let mut rolled: BTreeMap<String, u32> = BTreeMap::new();
    for n in v.nodes.iter().filter(|n| n.phase == Phase::RolledBack) {
        *rolled
            .entry(n.channel.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let mut f = family(
        &mut out,
        "tandem_fleet_rolled_back_nodes",
        "Nodes where their channel's current version rolled back, by channel.",
    );
    for (channel, n) in &rolled {
        f.sample(&[("channel", channel)], f64::from(*n));
    }
    family(
        &mut out,
        "tandem_fleet_failed_versions",
        "Versions recorded as failed for the whole cluster (no node installs them).",
    )
    .sample(&[], v.failed.len() as f64);
    let mut f = family(
        &mut out,
        "tandem_fleet_failed_version_timestamp_seconds",
        "When each failed version was recorded, and on which node.",
    );
    for r in &v.failed {
        f.sample(
            &[
                ("version", &r.version.to_string()),
                ("machine_id", &r.machine_id),
                ("hostname", &r.hostname),
            ],
            r.at as f64,
        );
    }

    // The reboot locks.
    for (name, help, value) in LOCK_GAUGES {
        let mut f = family(&mut out, name, help);
        for l in &v.locks {
            if let Some(x) = value(l) {
                f.sample(&[("group", &l.group)], x);
            }
        }
    }
    let mut f = family(
        &mut out,
        "tandem_reboot_lock_held_seconds",
        "How long each holder has held its group's lock.",
    );
    for l in &v.locks {
        for h in &l.holders {
            if let Some(since) = h.since {
                f.sample(
                    &[
                        ("group", &l.group),
                        ("machine_id", &h.machine_id),
                        ("hostname", h.hostname.as_deref().unwrap_or("")),
                    ],
                    v.now.saturating_sub(since) as f64,
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }
}
