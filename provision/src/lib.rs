//! The node's provisioning step, `tandem-provision`, run by PID 1 at every
//! boot before it reads the service files: it finds the platform's
//! user-data ([`datasource`]), replaces `$private_ipv4` and the like, checks
//! it with the cloud-config validator, applies it ([`apply`]) and writes
//! what happened ([`step`]) for PID 1 to write to
//! [`tandem_contract::provision::RESULT_FILE`].
//!
//! Paths and formats shared with PID 1, `tandemctl`, the update engine and
//! the agent are in [`tandem_contract::provision`].

#![warn(missing_docs)]

pub mod apply;
pub mod datasource;
pub mod step;

use cloud_config::substitute::Values;

/// What the platform says about the node besides the user-data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The platform's name for the node (`local-hostname`, EC2's
    /// `hostname`); the config's `hostname` wins over it.
    pub hostname: Option<String>,
    /// SSH public keys the platform gives for the user `core` (EC2 key
    /// pairs, a config drive's `public_keys`).
    pub ssh_keys: Vec<String>,
    /// The addresses for `$private_ipv4` and the like, where known.
    pub addresses: Values,
    /// The platform's instance id, where it has one.
    pub instance_id: Option<String>,
}
