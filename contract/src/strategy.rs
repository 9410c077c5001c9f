//! How a node reboots into an installed update: set in the image definition
//! (`[update] reboot-strategy`), the node's `update.toml`, and acted on by
//! the agent.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the agent does when an update waits for a reboot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebootStrategy {
    /// Reboot as soon as the update is installed.
    #[default]
    Reboot,
    /// Never reboot on its own; the new version runs after the next reboot.
    Off,
    /// Take a slot of the cluster's reboot semaphore in etcd first.
    EtcdLock,
    /// Ask a FleetLock server first.
    Fleetlock,
}

impl RebootStrategy {
    /// The name as written in configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            RebootStrategy::Reboot => "reboot",
            RebootStrategy::Off => "off",
            RebootStrategy::EtcdLock => "etcd-lock",
            RebootStrategy::Fleetlock => "fleetlock",
        }
    }
}

impl fmt::Display for RebootStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_serde() {
        for s in [
            RebootStrategy::Reboot,
            RebootStrategy::Off,
            RebootStrategy::EtcdLock,
            RebootStrategy::Fleetlock,
        ] {
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
