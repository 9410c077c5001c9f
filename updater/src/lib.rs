//! Tandem's update engine, the node side: the `tandem-updated` daemon and
//! `tandemctl update`. The repository's formats and trust (layout, signed
//! pointer, manifest, payload chunks, keys, what a node accepts, staged
//! rollout) are the `repository` crate, shared with the release tooling.
//!
//! Modules:
//! - [`config`]: `update.toml` in three layers (image, OEM, admin);
//! - [`node`]: facts the init publishes (`/run/tandem`), os-release, [`node::Paths`];
//! - [`disk`]: the boot disk, its partitions as byte regions, slot attributes;
//! - [`apply`]: writing a slot chunk by chunk (plan, resume, verify);
//! - [`esp`]: the slots' kernel, initramfs and slot file on the ESP; the OEM file;
//! - [`http`]: fetching from the repository (one server, or several in order);
//! - [`transport`]: CA roots for `https://` servers and the proxy;
//! - [`local`]: repositories on local media (a directory, a FAT stick);
//! - [`install`]: writing a Tandem ISO's disk image onto a bare disk;
//! - [`health`]: when a new boot is confirmed or given up;
//! - [`engine`]: check, install, boot outcome, scheduling;
//! - [`state`]: `state.json` and `progress.json`;
//! - [`status`], [`api`]: the status and the socket protocol shared by the
//!   daemon ([`daemon`]) and its clients ([`cli`], the agent).
//!
//! ```
//! use std::time::Duration;
//! // After three failed checks in a row, wait 2 min (±10 %) before the next.
//! let d = updater::engine::next_delay(Duration::from_secs(3600), 3, 0.0);
//! assert_eq!(d, Duration::from_secs(120));
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod apply;
pub mod backoff;
pub mod blocks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod disk;
pub mod engine;
pub mod error;
pub mod esp;
pub mod health;
pub mod http;
pub mod install;
pub mod local;
pub mod node;
pub mod state;
pub mod status;
pub mod transport;
/// Release versions (defined in `tandem-contract`: the node's status,
/// the fleet records and the repository all use them).
pub mod version {
    pub use tandem_contract::version::*;
}

pub use error::Error;
pub use version::Version;

/// A line on standard output (the service log): `tandem-updated: …`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log_line(format_args!($($arg)*))
    };
}

/// What [`log!`] does: a `tandem-updated: …` line
/// ([`tandem_contract::log::line`]).
#[doc(hidden)]
pub fn log_line(message: std::fmt::Arguments<'_>) {
    tandem_contract::log::line(tandem_contract::log::UPDATER, message);
}
