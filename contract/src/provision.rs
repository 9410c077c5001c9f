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

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ipv4::Ipv4Cidr;
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
/// Static networking from `tandem.network` ([`NetworkConfig`], JSON),
/// which PID 1 applies after the step; absent when the config has none.
pub const NETWORK_FILE: &str = "/run/tandem/provisioned/network.json";
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

/// Static IPv4 networking ([`NETWORK_FILE`]): what PID 1 puts on the
/// interfaces besides DHCP's lease on the first one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// The interfaces, in the config's order.
    #[serde(default)]
    pub interfaces: Vec<StaticInterface>,
}

/// One interface's static settings. Exactly one of `name` and `mac` names
/// it (the validator makes sure).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticInterface {
    /// The kernel's name (`eth1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The MAC address, lower case (`52:54:00:12:34:57`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Addresses with their prefix lengths; at least one.
    pub addresses: Vec<Ipv4Cidr>,
    /// The default route's gateway (one interface at most has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Further routes.
    #[serde(default)]
    pub routes: Vec<StaticRoute>,
    /// Name servers, before DHCP's in resolv.conf.
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
}

impl StaticInterface {
    /// How the config names it, for messages: `eth1` or `mac 52:54:…`.
    pub fn label(&self) -> String {
        match (&self.name, &self.mac) {
            (Some(n), _) => n.clone(),
            (None, Some(m)) => format!("mac {m}"),
            (None, None) => "(unnamed)".into(),
        }
    }
}

/// A route: `to` (a network) via a gateway on the interface's subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// The destination network.
    pub to: Ipv4Cidr,
    /// The gateway.
    pub via: Ipv4Addr,
}

/// Version of [`Outcome`]'s format.
pub const FORMAT: u32 = 1;

state_enum! {
    /// How provisioning ended on this boot.
    #[derive(Default)]
    ProvisionState, "a provisioning state" {
        /// No datasource had user-data: nothing to apply (not an error).
        #[default]
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

state_enum! {
    /// How bad a [`Problem`] is.
    Severity, "a severity" {
        /// The part it names was not applied (or, for the config as a
        /// whole, nothing was).
        Error = "error",
        /// Applied, or left out on purpose; worth a look.
        Warning = "warning",
    }
}

/// One problem, located where the file allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
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

impl Outcome {
    /// The errors, for the status and the console.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
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
            NETWORK_FILE,
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
                severity: Severity::Error,
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

    #[test]
    fn network_config_round_trips() {
        let c = NetworkConfig {
            interfaces: vec![
                StaticInterface {
                    name: Some("eth1".into()),
                    addresses: vec!["10.99.0.11/24".parse().expect("cidr")],
                    gateway: Some(Ipv4Addr::new(10, 99, 0, 1)),
                    routes: vec![StaticRoute {
                        to: "10.100.0.0/16".parse().expect("cidr"),
                        via: Ipv4Addr::new(10, 99, 0, 1),
                    }],
                    dns: vec![Ipv4Addr::new(10, 99, 0, 1)],
                    ..StaticInterface::default()
                },
                StaticInterface {
                    mac: Some("52:54:00:12:34:57".into()),
                    addresses: vec!["192.168.5.2/24".parse().expect("cidr")],
                    ..StaticInterface::default()
                },
            ],
        };
        let text = serde_json::to_string(&c).expect("json");
        assert!(
            text.contains(r#""addresses":["10.99.0.11/24"],"gateway":"10.99.0.1""#),
            "{text}"
        );
        assert!(!text.contains(r#""mac":null"#), "{text}");
        let back: NetworkConfig = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, c);
        assert_eq!(back.interfaces[1].label(), "mac 52:54:00:12:34:57");
        let bad = r#"{"interfaces":[{"name":"eth1","addresses":["10.0.0.1"]}]}"#;
        assert!(serde_json::from_str::<NetworkConfig>(bad).is_err());
    }
}
