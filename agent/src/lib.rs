//! Tandem's reboot agent, `tandem-agent`: watches the updater's status over
//! its socket and, when an update waits for a reboot, does what the reboot
//! strategy (`reboot-strategy` in update.toml, as the updater reports it)
//! says:
//!
//! - `reboot`: reboot as soon as the update is installed (inside the
//!   reboot window, if one is set);
//! - `off`: never reboot by itself; report "reboot needed";
//! - `etcd-lock`: take a slot of the cluster's reboot semaphore in etcd
//!   (locksmith's key and value) before rebooting, keep it across the
//!   reboot, give it back once the new slot is confirmed healthy;
//! - `fleetlock`: the same through a FleetLock server (airlock).
//!
//! With etcd configured, each node also keeps a record of itself there (on
//! a lease) and the cluster shares the versions that rolled back
//! somewhere: `tandemctl cluster status` shows the fleet. The protocol and
//! keys: `docs/reboot-coordination.md`.
//!
//! Pure logic sits in [`semaphore`], [`window`] and [`decide`]; etcd and
//! HTTP in [`etcd`], [`lock`], [`fleet`] and [`fleetlock`]; the loop in
//! [`daemon`]; the operators' commands in [`cli`]; the agent's own
//! failures in [`error`].
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod daemon;
pub mod decide;
pub mod error;
pub mod etcd;
pub mod fleet;
pub mod fleetlock;
pub mod lock;
pub mod semaphore;
pub mod window;

/// Asks PID 1 to reboot, as `tandemctl reboot` and busybox's `reboot` do
/// ([`Shutdown::request`](tandem_contract::run::Shutdown::request)).
pub fn reboot_via_init() -> std::io::Result<()> {
    tandem_contract::run::Shutdown::Reboot.request()
}
