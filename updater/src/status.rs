//! The updater's status: what the daemon answers to `status` requests, what
//! `tandemctl update status` and the agent read. Every state says what is
//! happening, and every error what to do.

use serde::{Deserialize, Serialize};
use tandem_contract::incident::Incident;
use tandem_contract::node::Evidence;
use tandem_contract::{AgentState, BootHealthKind, Slot, UpdateStateKind, Version};

use crate::clock::{format_duration, format_unix};
use crate::config::RebootStrategy;

/// Format of [`UpdateStatus`].
pub const FORMAT: u32 = 1;

/// Where the update engine is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum UpdateState {
    /// Nothing to do (see `last_result`).
    #[default]
    Idle,
    /// Fetching and checking the channel pointer and manifest.
    Checking,
    /// A verified update waits for this node's turn (or for this boot to be
    /// confirmed).
    UpdateAvailable {
        /// The version offered.
        version: Version,
        /// When this node's turn in the rollout comes (Unix seconds).
        eligible_at: u64,
        /// Why it is not being installed yet, if it is not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waiting_for: Option<String>,
    },
    /// Writing the inactive slot.
    Downloading(Transfer),
    /// Re-reading the written slot against the verity root hash.
    Verifying {
        /// The version.
        version: Version,
        /// The slot.
        slot: Slot,
        /// Bytes hashed.
        bytes_done: u64,
        /// Bytes to hash.
        bytes_total: u64,
    },
    /// Kernel, initramfs and slot file to the ESP, then the slot flip.
    Finalizing {
        /// The version.
        version: Version,
        /// The slot.
        slot: Slot,
        /// What is being done.
        step: String,
    },
    /// Installed and activated; the next boot runs it.
    UpdatedNeedReboot {
        /// The version.
        version: Version,
        /// The slot that boots next.
        slot: Slot,
    },
    /// The installed version did not come up; the node runs the old one.
    RolledBack {
        /// The version that failed.
        version: Version,
        /// Why.
        reason: String,
    },
    /// Something failed.
    Error {
        /// What failed and why.
        reason: String,
        /// What happens next and what to do.
        action: String,
    },
}

/// Progress of writing the inactive slot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// The version.
    pub version: Version,
    /// The slot written.
    pub slot: Slot,
    /// Image bytes done (downloaded, copied or already in place).
    pub bytes_done: u64,
    /// Image bytes in total.
    pub bytes_total: u64,
    /// `bytes_done` in percent.
    pub percent: f64,
    /// Payload bytes received over HTTP (compressed).
    pub downloaded_bytes: u64,
    /// Image bytes copied from the running slot.
    pub copied_bytes: u64,
    /// Image bytes already in the inactive slot (earlier attempt).
    pub present_bytes: u64,
}

/// Whether this boot is confirmed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum BootHealth {
    /// Not looked at yet (or the slot table is unreadable).
    #[default]
    Unknown,
    /// The running slot is marked successful.
    Confirmed,
    /// The running slot is on trial; health is being checked.
    Checking {
        /// What is still missing.
        detail: String,
        /// Seconds since boot when it is given up.
        deadline_secs: u64,
    },
    /// Health failed: the slot was given up.
    Failed {
        /// Why.
        reason: String,
    },
}

impl BootHealth {
    /// Which state this is, without its details (`boot` of the fleet record).
    pub fn kind(&self) -> BootHealthKind {
        match self {
            BootHealth::Unknown => BootHealthKind::Unknown,
            BootHealth::Confirmed => BootHealthKind::Confirmed,
            BootHealth::Checking { .. } => BootHealthKind::Checking,
            BootHealth::Failed { .. } => BootHealthKind::Failed,
        }
    }
}

/// A rollback noticed at boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    /// The version that failed.
    pub version: Version,
    /// Why.
    pub reason: String,
    /// When it was noticed (Unix seconds).
    pub at: u64,
    /// What shows the failure; only a failure with evidence is recorded
    /// for the cluster.
    pub evidence: Evidence,
}

/// A boot of a slot on trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialBoot {
    /// Which boot of the trial this is (1 for the first).
    pub boot: u8,
    /// Boots the trial has in all ([`tandem_slot::TRIAL_BOOTS`]).
    pub of: u8,
}

/// What the last completed update cost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The version installed.
    pub version: Version,
    /// The slot written.
    pub slot: Slot,
    /// Slot image bytes.
    pub image_bytes: u64,
    /// Bytes received over HTTP: payload ranges, kernel, initramfs.
    pub downloaded_bytes: u64,
    /// Image bytes copied from the running slot.
    pub copied_bytes: u64,
    /// Image bytes already in place from an earlier attempt.
    pub present_bytes: u64,
    /// Chunks downloaded (whole, or some of their blocks), copied, already
    /// present.
    pub chunks: [usize; 3],
    /// HTTP range requests for the payload, blocks and resumed files.
    pub range_requests: usize,
    /// 4 KiB blocks fetched from the uncompressed image.
    #[serde(default)]
    pub blocks_fetched: u64,
    /// Seconds the whole apply took.
    pub seconds: u64,
}

/// The reboot agent's view, reported to the updater.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReport {
    /// The strategy it follows.
    pub strategy: RebootStrategy,
    /// What it is doing (`idle`, `waiting-for-lock`, …).
    pub state: AgentState,
    /// What it is doing and why.
    pub message: String,
    /// When (Unix seconds).
    pub at: u64,
    /// Versions that rolled back elsewhere in the cluster (from etcd):
    /// refused like this node's own failed versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_failed: Vec<Version>,
}

/// Everything `tandemctl update status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// [`FORMAT`].
    pub format: u32,
    /// The state and its details (`"state": "downloading", …`).
    #[serde(flatten)]
    pub state: UpdateState,
    /// When the state was entered (Unix seconds).
    pub since: u64,
    /// The version this node runs.
    pub running_version: Option<Version>,
    /// The slot it runs from.
    pub running_slot: Option<Slot>,
    /// Whether this boot is confirmed.
    pub boot: BootHealth,
    /// The image name.
    pub image: Option<String>,
    /// The channel followed.
    pub channel: Option<String>,
    /// The update server.
    pub server: Option<String>,
    /// The agent's reboot strategy.
    pub reboot_strategy: RebootStrategy,
    /// Seconds between checks.
    pub check_interval_secs: u64,
    /// When the last check finished (Unix seconds).
    pub last_check: Option<u64>,
    /// What it found (`up to date`, `1.1.0 available`, an error).
    pub last_result: Option<String>,
    /// When the next check is due (Unix seconds).
    pub next_check: Option<u64>,
    /// Failed checks or applies in a row (backoff).
    pub failures: u32,
    /// Invalid configuration (the last good configuration is in force).
    #[serde(default)]
    pub config_errors: Vec<String>,
    /// Other problems (unreadable key files, …).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Versions never installed again automatically.
    #[serde(default)]
    pub failed_versions: Vec<Version>,
    /// The last rollback noticed.
    pub rollback: Option<Rollback>,
    /// The running slot's trial, while it is unconfirmed.
    #[serde(default)]
    pub trial: Option<TrialBoot>,
    /// The last incidents (failed early boots, corrupt /usr), oldest first.
    #[serde(default)]
    pub incidents: Vec<Incident>,
    /// What the check of the ESP at start repaired (a power cut during an
    /// earlier write), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esp_repair: Option<String>,
    /// The last completed update.
    pub last_apply: Option<ApplyReport>,
    /// The reboot agent.
    pub agent: Option<AgentReport>,
}

impl UpdateState {
    /// Which state this is, without its details (the `state` tag in JSON,
    /// `update_state` of the fleet record).
    pub fn kind(&self) -> UpdateStateKind {
        match self {
            UpdateState::Idle => UpdateStateKind::Idle,
            UpdateState::Checking => UpdateStateKind::Checking,
            UpdateState::UpdateAvailable { .. } => UpdateStateKind::UpdateAvailable,
            UpdateState::Downloading(_) => UpdateStateKind::Downloading,
            UpdateState::Verifying { .. } => UpdateStateKind::Verifying,
            UpdateState::Finalizing { .. } => UpdateStateKind::Finalizing,
            UpdateState::UpdatedNeedReboot { .. } => UpdateStateKind::UpdatedNeedReboot,
            UpdateState::RolledBack { .. } => UpdateStateKind::RolledBack,
            UpdateState::Error { .. } => UpdateStateKind::Error,
        }
    }

    /// The state's name as in JSON (`update-available`).
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Whether an update is being written.
    pub fn busy(&self) -> bool {
        matches!(
            self,
            UpdateState::Downloading(_)
                | UpdateState::Verifying { .. }
                | UpdateState::Finalizing { .. }
        )
    }
}

/// Bytes for people: `812 B`, `3.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn when(at: u64, now: u64) -> String {
    if at <= now {
        format!(
            "{} ({} ago)",
            format_unix(at),
            format_duration(std::time::Duration::from_secs(now - at))
        )
    } else {
        format!(
            "{} (in {})",
            format_unix(at),
            format_duration(std::time::Duration::from_secs(at - now))
        )
    }
}

/// One line for `tandemctl status`: the state and its most useful detail.
pub fn summary_line(s: &UpdateStatus, now: u64) -> String {
    match &s.state {
        UpdateState::Idle => match &s.last_result {
            Some(r) => format!("idle, {r}"),
            None => "idle, not checked yet".into(),
        },
        UpdateState::Checking => format!("checking {}", s.server.as_deref().unwrap_or("")),
        UpdateState::UpdateAvailable {
            version,
            eligible_at,
            waiting_for,
        } => match waiting_for {
            Some(w) => format!("{version} available, waiting for {w}"),
            None if *eligible_at > now => {
                format!(
                    "{version} available, this node's turn in the rollout comes {}",
                    when(*eligible_at, now)
                )
            }
            None => format!("{version} available, installing"),
        },
        UpdateState::Downloading(t) => format!(
            "writing {} to slot {}: {:.1} % ({} of {}; {} downloaded, {} copied from the running slot, {} already in place)",
            t.version,
            t.slot,
            t.percent,
            bytes(t.bytes_done),
            bytes(t.bytes_total),
            bytes(t.downloaded_bytes),
            bytes(t.copied_bytes),
            bytes(t.present_bytes)
        ),
        UpdateState::Verifying {
            version,
            slot,
            bytes_done,
            bytes_total,
        } => format!(
            "verifying {version} in slot {slot} against its verity root hash: {:.0} %",
            100.0 * *bytes_done as f64 / (*bytes_total).max(1) as f64
        ),
        UpdateState::Finalizing {
            version,
            slot,
            step,
        } => format!("finalizing {version} in slot {slot}: {step}"),
        UpdateState::UpdatedNeedReboot { version, slot } => {
            format!(
                "{version} installed in slot {slot}; reboot needed (reboot strategy: {})",
                s.reboot_strategy
            )
        }
        UpdateState::RolledBack { version, reason } => format!(
            "{version} rolled back: {reason}; it is not installed again automatically (`tandemctl update forget-failed {version}` allows it)"
        ),
        UpdateState::Error { reason, .. } => format!("error: {reason}"),
    }
}

/// The full text of `tandemctl update status`.
pub fn render(s: &UpdateStatus, now: u64) -> String {
    let mut out = String::new();
    let line =
        |out: &mut String, label: &str, text: &str| out.push_str(&format!("{label:<10} {text}\n"));
    line(
        &mut out,
        "state:",
        &format!("{} (since {})", s.state.name(), when(s.since, now)),
    );
    line(&mut out, "", &summary_line(s, now));
    if let UpdateState::Error { action, .. } = &s.state {
        line(&mut out, "to do:", action);
    }
    let running = format!(
        "{} (slot {})",
        s.running_version
            .as_ref()
            .map_or("unknown".into(), Version::to_string),
        s.running_slot.map_or("?".into(), |slot| slot.to_string())
    );
    line(&mut out, "running:", &running);
    let boot = match &s.boot {
        BootHealth::Unknown => "unknown".to_string(),
        BootHealth::Confirmed => "confirmed (slot marked successful)".to_string(),
        BootHealth::Checking {
            detail,
            deadline_secs,
        } => {
            let boot = s
                .trial
                .map(|t| format!(", trial boot {} of {}", t.boot, t.of))
                .unwrap_or_default();
            format!("on trial{boot}: {detail} (given up {deadline_secs} s after boot)")
        }
        BootHealth::Failed { reason } => format!("failed: {reason}"),
    };
    line(&mut out, "boot:", &boot);
    line(
        &mut out,
        "channel:",
        &format!(
            "{} of {} at {}",
            s.channel.as_deref().unwrap_or("?"),
            s.image.as_deref().unwrap_or("?"),
            s.server.as_deref().unwrap_or("(no server configured)")
        ),
    );
    let mut checks = format!(
        "every {}",
        format_duration(std::time::Duration::from_secs(s.check_interval_secs))
    );
    if let Some(t) = s.last_check {
        checks.push_str(&format!("; last {}", when(t, now)));
    }
    if let Some(t) = s.next_check {
        checks.push_str(&format!("; next {}", when(t, now)));
    }
    if s.failures > 0 {
        checks.push_str(&format!("; {} failure(s) in a row", s.failures));
    }
    line(&mut out, "checks:", &checks);
    if let Some(r) = &s.last_result {
        line(&mut out, "result:", r);
    }
    line(
        &mut out,
        "reboot:",
        &format!("strategy {}", s.reboot_strategy),
    );
    if let Some(a) = &s.agent {
        line(&mut out, "agent:", &format!("{}: {}", a.state, a.message));
    }
    if let Some(a) = &s.last_apply {
        line(
            &mut out,
            "last:",
            &format!(
                "{} to slot {} in {} s: {} image, {} downloaded, {} copied locally, {} already in place ({} range requests)",
                a.version,
                a.slot,
                a.seconds,
                bytes(a.image_bytes),
                bytes(a.downloaded_bytes),
                bytes(a.copied_bytes),
                bytes(a.present_bytes),
                a.range_requests
            ),
        );
    }
    if let Some(r) = &s.rollback {
        line(
            &mut out,
            "rollback:",
            &format!(
                "{} at {}: {} ({})",
                r.version,
                format_unix(r.at),
                r.reason,
                if r.evidence.is_failure() {
                    format!("evidence: {}", r.evidence)
                } else {
                    "no evidence of a failure: not reported to the cluster".into()
                }
            ),
        );
    }
    if let Some(r) = &s.esp_repair {
        line(&mut out, "esp:", r);
    }
    for i in &s.incidents {
        line(
            &mut out,
            "incident:",
            &format!(
                "slot {} {} at {}: {}; {}",
                i.slot,
                i.kind,
                format_unix(i.at),
                i.what,
                i.action
            ),
        );
    }
    if !s.failed_versions.is_empty() {
        let failed: Vec<String> = s.failed_versions.iter().map(Version::to_string).collect();
        line(&mut out, "failed:", &failed.join(", "));
    }
    for e in &s.config_errors {
        line(
            &mut out,
            "config:",
            &format!("{e} (the last good configuration is in force)"),
        );
    }
    for w in &s.warnings {
        line(&mut out, "warning:", w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().expect("a version")
    }

    #[test]
    fn json_is_flat_and_round_trips() {
        let s = UpdateStatus {
            format: FORMAT,
            state: UpdateState::Downloading(Transfer {
                version: v("1.1.0"),
                slot: Slot::B,
                bytes_done: 1 << 20,
                bytes_total: 4 << 20,
                percent: 25.0,
                downloaded_bytes: 1000,
                copied_bytes: 0,
                present_bytes: 0,
            }),
            running_version: Some(v("1.0.0")),
            boot: BootHealth::Confirmed,
            ..Default::default()
        };
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["state"], "downloading");
        assert_eq!(v["bytes_total"], 4 << 20);
        assert_eq!(v["boot"]["state"], "confirmed");
        let back: UpdateStatus = serde_json::from_value(v).expect("parse");
        assert_eq!(back, s);
        let idle = serde_json::to_value(UpdateStatus::default()).expect("json");
        assert_eq!(idle["state"], "idle");
    }

    #[test]
    fn lines_say_what_happens() {
        let mut s = UpdateStatus {
            reboot_strategy: RebootStrategy::Off,
            ..Default::default()
        };
        s.state = UpdateState::UpdateAvailable {
            version: v("1.1"),
            eligible_at: 4600,
            waiting_for: None,
        };
        let l = summary_line(&s, 1000);
        assert!(
            l.contains("turn in the rollout comes") && l.contains("in 1h"),
            "{l}"
        );
        s.state = UpdateState::UpdatedNeedReboot {
            version: v("1.1"),
            slot: Slot::B,
        };
        assert!(summary_line(&s, 0).contains("reboot needed (reboot strategy: off)"));
        s.state = UpdateState::RolledBack {
            version: v("1.1"),
            reason: "no".into(),
        };
        assert!(summary_line(&s, 0).contains("forget-failed 1.1"));
        s.state = UpdateState::Error {
            reason: "bad".into(),
            action: "retrying".into(),
        };
        let text = render(&s, 10);
        assert!(text.contains("to do:     retrying"), "{text}");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
