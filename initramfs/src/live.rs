//! A live boot: `tandem.live` on the command line, put there by the
//! bootloader of a Tandem ISO ([`tandem_contract::live`]).
//!
//! - /usr is the ISO's live /usr partition, verified by dm-verity with the
//!   root hash on the command line, as on a disk. A CD has no partition
//!   devices, so a read-only linear device maps the partition's range of
//!   the whole disk first: the same code for a CD and a stick.
//! - ROOT is a tmpfs with ROOT's skeleton ([`tandem_contract::root`]): the
//!   node's state lives in RAM and is gone at the next boot. PID 1 fills
//!   `/etc` from the factory copy and the image's users, as it does on a
//!   disk whose `/etc` lacks them.

use std::path::{Path, PathBuf};

use crate::devmapper;
use crate::disk::{self, Located};
use crate::error::Error;
use crate::mount;

/// Device-mapper name of the linear map over the live /usr partition.
pub const DM_LINEAR: &str = "usr-live";

/// A read-only device of the live /usr partition's bytes.
pub fn usr_device(found: &Located) -> Result<PathBuf, Error> {
    let entry = found
        .gpt
        .partition(found.number)
        .ok_or_else(|| Error::LiveMedia {
            what: format!("partition {} of {} vanished", found.number, found.disk_name),
        })?;
    let (major, minor) = disk::dev_numbers(&found.disk_path())?;
    // The table is read in 512-byte blocks: its LBAs are sectors.
    let params = format!("{major}:{minor} {}", entry.first_lba);
    devmapper::create_readonly(
        DM_LINEAR,
        "TANDEM-USR-LIVE",
        entry.num_blocks(),
        "linear",
        &params,
    )
}

/// ROOT in RAM: a tmpfs on `sysroot` with ROOT's directories and links.
pub fn mount_root(sysroot: &Path) -> Result<(), Error> {
    mount::mount("tmpfs", sysroot, "tmpfs", 0, Some("mode=0755"))?;
    tandem_contract::root::populate(sysroot).map_err(|err| Error::Write {
        path: sysroot.to_path_buf(),
        err,
    })
}
