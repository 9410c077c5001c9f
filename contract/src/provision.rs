//! Provisioning: what the node's provisioning step (`tandem-provision`, run
//! by PID 1 at every boot) reads, writes and reports. The step finds the
//! platform's user-data (a cloud-config), checks it with the validator and
//! applies it; PID 1, `tandemctl`, the update engine and the agent read what
//! it left here.
//!
//! What the config owns is written under [`DIR`] (a tmpfs, rebuilt at every
//! boot): removing a key from the config removes its effect at the next
//! boot, and the administrator's files in `/etc` still win over it. Only
//! what must outlive a boot goes to ROOT: users (added, never changed or
//! removed) and `write_files` (written at every boot).

use serde::{Deserialize, Serialize};

use crate::node::state_enum;

/// The provisioning step's program (a role of `tandem-node`).
pub const PROGRAM: &str = "/usr/lib/tandem/tandem-provision";
/// Everything the config owns for this boot.
pub const DIR: &str = "/run/tandem/provisioned";
/// Services from `coreos.units` and `tandem.services`: a layer between the
/// image's (`/usr/lib/tandem/services`) and the administrator's
/// (`/etc/tandem/services`).
pub const SERVICES_DIR: &str = "/run/tandem/provisioned/services";
/// `update.toml` from `coreos.update`: a layer after the OEM partition's,
/// before the administrator's.
pub const UPDATE_CONFIG: &str = "/run/tandem/provisioned/update.toml";
/// `agent.toml` from `coreos.locksmith` and `coreos.etcd2`: a layer after
/// the OEM partition's, before the administrator's.
pub const AGENT_CONFIG: &str = "/run/tandem/provisioned/agent.toml";
/// SSH keys from the config, one file per user name. Tandem's sshd reads
/// `AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u
/// /run/tandem/provisioned/authorized_keys.d/%u`.
pub const AUTHORIZED_KEYS_DIR: &str = "/run/tandem/provisioned/authorized_keys.d";
/// The host name from the config (or the metadata), one line; PID 1 sets
/// it unless `/etc/hostname` names one.
pub const HOSTNAME_FILE: &str = "/run/tandem/provisioned/hostname";
/// The user-data as applied (after `$private_ipv4` and the like were
/// replaced), for `tandemctl config show`. Mode 0600: it may hold secrets.
pub const USER_DATA_COPY: &str = "/run/tandem/provisioned/user-data";
/// The step's result ([`Outcome`]).
pub const RESULT_FILE: &str = "/run/tandem/provision.json";

/// The user-data's name on the OEM partition.
pub const OEM_FILE: &str = "user-data";
/// The user-data's name in QEMU's fw_cfg (`-fw_cfg
/// name=opt/org.tandem/user-data,file=…`).
pub const FW_CFG_NAME: &str = "opt/org.tandem/user-data";
/// Kernel command line: fetch the user-data from this `http://` URL.
pub const CMDLINE_URL: &str = "tandem.config.url";
/// Kernel command line: the sha256 (hex) the fetched user-data must have.
pub const CMDLINE_SHA256: &str = "tandem.config.sha256";
/// Kernel command line: which datasources to try, comma-separated, in
/// order (`tandem.datasource=ec2`, `tandem.datasource=none`).
pub const CMDLINE_DATASOURCE: &str = "tandem.datasource";

/// Version of [`Outcome`]'s format.
pub const FORMAT: u32 = 1;

state_enum! {
    /// How provisioning ended on this boot.
    ProvisionState, "a provisioning state" {
        /// No datasource had user-data: nothing to apply (not an error).
        None = "none",
        /// The config was applied, every part of it.
        Applied = "applied",
        /// The config was valid but some part could not be applied (each
        /// named in [`Outcome::problems`]); the rest was.
        Partial = "partial",
        /// Nothing was applied: the config is invalid, could not be read,
        /// or the step failed.
        Failed = "failed",
    }
}

/// One problem, located where the file allows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `error` or `warning`.
    pub severity: String,
    /// Where: `user-data:4:1` (the datasource's file name, line, column),
    /// or the part of the config (`write_files[2]`).
    pub at: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// What the provisioning step did on this boot ([`RESULT_FILE`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// [`FORMAT`].
    pub format: u32,
    /// How it ended.
    pub state: ProvisionState,
    /// Where the user-data came from (`NoCloud volume /dev/vdb (cidata)`).
    pub datasource: Option<String>,
    /// sha256 of the user-data as fetched (hex).
    pub sha256: Option<String>,
    /// Each datasource tried and what it gave, in order (`fw_cfg: absent`).
    #[serde(default)]
    pub tried: Vec<String>,
    /// What was applied, one line each (`user core added`, `wrote
    /// /etc/motd`).
    #[serde(default)]
    pub applied: Vec<String>,
    /// Errors and warnings, with their place.
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// When the step started and ended (µs of `CLOCK_BOOTTIME`).
    pub started_us: u64,
    /// See `started_us`.
    pub finished_us: u64,
}

// state_enum! declares the enum, so `#[default]` cannot be put on a variant.
#[allow(clippy::derivable_impls)]
impl Default for ProvisionState {
    fn default() -> Self {
        ProvisionState::None
    }
}

impl Outcome {
    /// The errors, for the status and the console.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems.iter().filter(|p| p.severity == "error")
    }

    /// One line for the console and `tandemctl status`.
    pub fn summary(&self) -> String {
        let from = self.datasource.as_deref().unwrap_or("no datasource");
        let errors = self.errors().count();
        match self.state {
            ProvisionState::None => "no user-data found".to_string(),
            ProvisionState::Applied => format!("applied from {from}"),
            ProvisionState::Partial => format!("partly applied from {from}: {errors} errors"),
            ProvisionState::Failed => format!("failed ({from}): {errors} errors, nothing applied"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_run_tandem() {
        for p in [
            SERVICES_DIR,
            UPDATE_CONFIG,
            AGENT_CONFIG,
            AUTHORIZED_KEYS_DIR,
            HOSTNAME_FILE,
            USER_DATA_COPY,
        ] {
            assert!(p.starts_with(DIR), "{p}");
        }
        assert!(RESULT_FILE.starts_with(crate::run::RUN_DIR));
    }

    #[test]
    fn outcome_round_trips_and_summarises() {
        let o = Outcome {
            format: FORMAT,
            state: ProvisionState::Failed,
            datasource: Some("fw_cfg".into()),
            problems: vec![Problem {
                severity: "error".into(),
                at: "user-data:3:1".into(),
                message: "x".into(),
            }],
            ..Outcome::default()
        };
        let text = serde_json::to_string(&o).expect("json");
        assert!(text.contains("\"state\":\"failed\""), "{text}");
        let back: Outcome = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, o);
        assert_eq!(back.summary(), "failed (fw_cfg): 1 errors, nothing applied");
    }
}
