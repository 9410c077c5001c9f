//! What Tandem's components agree on, defined once: the image builder
//! writes it, the bootloader and the init read it, the node tools and the
//! release tooling read and write it (docs/architecture.md).
//!
//! - [`partition`]: partition numbers, labels and type GUIDs;
//! - [`slot`]: the two /usr slots;
//! - [`esp`]: the files on the ESP and OEM partitions, with the one writer
//!   and the one parser of `loader.conf` and `slot-<x>.conf`;
//! - [`cmdline`]: the `tandem.*` kernel arguments;
//! - `cgroup` (feature `std`): the services' cgroups, their files and the
//!   usage read from them;
//! - `control` (feature `std`): PID 1's control socket (`tandemctl
//!   stop|start|restart`): its requests and responses, and the client;
//! - [`os_release`]: what an image says about itself;
//! - `etc` (feature `std`): how a node's `/etc` is filled: factory copies,
//!   `tmpfiles.d` directories, per-node secrets an image must not carry;
//! - `sysctl` (feature `std`): kernel settings (`sysctl.d`) an image
//!   declares and the system init applies;
//! - `sysusers` (feature `std`): `sysusers.d` lines (read and written), the
//!   image's resolved users file and the stable id allocation;
//! - `accounts` (feature `std`): `/etc/passwd`, `group`, `shadow`,
//!   `gshadow`, and the add-only merge of declared users into them;
//! - `incident` (feature `std`): what went wrong with a slot (a failed
//!   early boot, corrupt /usr), written on ROOT for the next boot's update
//!   engine;
//! - `ipv4` (feature `std`): IPv4 addresses with a prefix length, for
//!   static networking;
//! - `live` (feature `std`): the ISO's partitions, its install data
//!   header and the embedded unattended-install settings;
//! - `log` (feature `std`): the programs' log lines and their prefixes;
//! - `node` (feature `std`): the update engine's and the reboot agent's
//!   states, as the socket, the fleet records and the CLIs carry them;
//! - `root` (feature `std`): the directories and links of a new ROOT;
//! - `run` (feature `std`): the `/run/tandem` status files and service
//!   states;
//! - `service` (feature `std`): the service file format (read, checked and
//!   written), environment files, `${VAR}` expansion, and the launcher's
//!   plan and credentials;
//! - `strategy` (feature `std`): reboot strategies;
//! - `time` (feature `std`): the duration syntax of config files, read and
//!   written, and UTC dates;
//! - `version` (feature `std`): release versions, their order and spelling;
//! - `window` (feature `std`): reboot windows (`"Thu 23:00"`, `"2h"`,
//!   `"+02:00"`), parsed and placed on the clock, for the agent and the
//!   cloud-config validator.
//!
//! Without the `std` feature it builds for the UEFI bootloader (`alloc`
//! only).
//!
//! ```
//! use tandem_contract::esp::{self, SlotConf, SlotFiles, Writer};
//! use tandem_contract::cmdline::UsrVerity;
//! use tandem_contract::Slot;
//!
//! let verity = UsrVerity { root_hash: "ab".repeat(32), salt: "-".into(), data_blocks: 7 };
//! let text = SlotConf::new("1.2.0", &verity).render(Writer::Builder);
//! let back = esp::parse_slot_conf(text.as_bytes()).value;
//! assert_eq!(back.usr_verity(), Some(verity));
//! assert_eq!(SlotFiles::of(Slot::B).conf, "EFI/tandem/slot-b.conf");
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

#[cfg(feature = "std")]
pub mod accounts;
#[cfg(feature = "std")]
pub mod cgroup;
pub mod cmdline;
#[cfg(feature = "std")]
pub mod control;
pub mod esp;
#[cfg(feature = "std")]
pub mod etc;
pub mod guid;
#[cfg(feature = "std")]
pub mod incident;
#[cfg(feature = "std")]
pub mod ipv4;
#[cfg(feature = "std")]
pub mod live;
#[cfg(feature = "std")]
pub mod log;
#[cfg(feature = "std")]
pub mod node;
pub mod os_release;
pub mod partition;
#[cfg(feature = "std")]
pub mod provision;
#[cfg(feature = "std")]
pub mod root;
#[cfg(feature = "std")]
pub mod run;
#[cfg(feature = "std")]
pub mod service;
pub mod slot;
#[cfg(feature = "std")]
pub mod strategy;
#[cfg(feature = "std")]
pub mod sysctl;
#[cfg(feature = "std")]
pub mod sysusers;
#[cfg(feature = "std")]
pub mod time;
#[cfg(feature = "std")]
pub mod version;
#[cfg(feature = "std")]
pub mod window;

pub use guid::Guid;
#[cfg(feature = "std")]
pub use node::{AgentState, BootHealthKind, UpdateStateKind};
pub use partition::Partition;
pub use slot::Slot;
#[cfg(feature = "std")]
pub use strategy::RebootStrategy;
#[cfg(feature = "std")]
pub use version::Version;
