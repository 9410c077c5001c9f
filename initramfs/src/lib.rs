//! Tandem's PID 1, `tandem-init`: the initramfs `/init` (small: it is in
//! every initramfs), which goes on as the system init after the switch
//! root. It links no network client, TLS or signature code: the node's
//! tools and daemons are the `node-tools` crate (`tandem-node`), which uses
//! this library for the status files, the boot disk and PID 1's signals.
//!
//! - [`early`]: PID 1 in the initramfs: modules, watchdog, dm-verity /usr,
//!   ROOT, switch root ([`cmdline`], [`modules`], [`disk`], [`devmapper`],
//!   [`mount`], [`switch_root`], [`watchdog`], [`grow`], [`live`]);
//! - [`system`]: the same PID 1 after switch root: mounts, machine-id, hostname,
//!   network ([`net`] over the pure [`dhcp`] codec), services ([`services`])
//!   each in its cgroup ([`cgroup`]), status under /run/tandem ([`status`]),
//!   shutdown;
//!
//! Everything that decides something (command line, module lists, the verity
//! table and the device-mapper ioctl buffers, DHCP packets, service files and
//! restart policy) is pure and unit-tested on the host; system calls sit
//! behind small functions in [`sys`] and the I/O modules, and those of the
//! system init's loop and shutdown behind the [`syscall::Syscall`] trait, so
//! that supervision runs on the host against a recording double.
//!
//! ```
//! use initramfs::{role, Role};
//! assert_eq!(role("/init".as_ref()), Some(Role::Early));
//! assert_eq!(role("/usr/bin/tandemctl".as_ref()), None);
//! ```
#![warn(missing_docs)]

pub mod cgroup;
pub mod devmapper;
pub mod dhcp;
pub mod disk;
pub mod early;
pub mod error;
pub mod grow;
pub mod live;
pub mod log;
pub mod modules;
pub mod mount;
pub mod net;
pub mod recovery;
pub mod services;
pub mod status;
pub mod switch_root;
pub mod sys;
pub mod syscall;
pub mod system;
pub mod watchdog;

pub use error::Error;
/// The `tandem.*` kernel arguments (defined in `tandem-contract`).
pub use tandem_contract::cmdline;

use std::ffi::OsStr;
use std::path::Path;

/// What the binary does, chosen by the name it was started under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `/init` in the initramfs (then the system init, in the same process).
    Early,
}

/// The role for `argv[0]` (only its file name counts).
pub fn role(argv0: &OsStr) -> Option<Role> {
    match Path::new(argv0).file_name()?.to_str()? {
        "init" => Some(Role::Early),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_on_basename() {
        assert_eq!(role(OsStr::new("/init")), Some(Role::Early));
        assert_eq!(role(OsStr::new("init")), Some(Role::Early));
        assert_eq!(role(OsStr::new("/usr/lib/tandem/tandem-init")), None);
        assert_eq!(role(OsStr::new("tandemctl")), None);
        assert_eq!(role(OsStr::new("/sbin/busybox")), None);
        assert_eq!(role(OsStr::new("")), None);
    }
}
