//! Finding Tandem's partitions: the disk whose GPT holds the /usr partition
//! named on the command line, and its siblings (ROOT) by number.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tandem_contract::live;
use tandem_contract::partition::types;
use tandem_slot::{FileDisk, Gpt, Guid};

use crate::error::Error;

/// Block devices the kernel knows.
pub const SYS_BLOCK: &str = "/sys/block";

/// A disk and the partition that was looked for on it.
#[derive(Clone, Debug)]
pub struct Located {
    /// Kernel name of the disk (`vda`, `nvme0n1`).
    pub disk_name: String,
    /// The partition table as read.
    pub gpt: Gpt,
    /// Number of the partition that matched.
    pub number: u32,
}

impl Located {
    /// `/dev/<disk>`.
    pub fn disk_path(&self) -> PathBuf {
        Path::new("/dev").join(&self.disk_name)
    }

    /// `/dev/<partition n of this disk>`.
    pub fn partition_path(&self, number: u32) -> PathBuf {
        Path::new("/dev").join(partition_name(&self.disk_name, number))
    }
}

/// Kernel name of partition `number` of `disk`: `vda3`, but `nvme0n1p3` and
/// `mmcblk0p3` when the disk name ends in a digit.
pub fn partition_name(disk: &str, number: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{number}")
    } else {
        format!("{disk}{number}")
    }
}

/// Whether a /sys/block entry can hold Tandem's GPT (not a loop, RAM,
/// device-mapper, zram, optical or floppy device).
pub fn is_candidate(name: &str) -> bool {
    const SKIP: [&str; 7] = ["loop", "ram", "dm-", "zram", "sr", "fd", "md"];
    !SKIP.iter().any(|p| name.starts_with(p))
}

/// What one pass over the disks saw, for the error message if nothing matched.
#[derive(Debug, Default)]
pub struct Seen(BTreeMap<String, String>);

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no disks at all: is the disk driver in modules.load?");
        }
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(d, what)| format!("{d}: {what}"))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

/// What a scan looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// The partition with this PARTUUID (a slot's /usr).
    Partuuid(Guid),
    /// A Tandem ISO's live /usr partition: partition
    /// [`live::USR_PARTITION`] of type `LIVE_USR`, on a stick or a CD,
    /// whose table is read in 512-byte blocks whatever the device's are.
    LiveUsr,
}

impl Want {
    fn matches(self, number: u32, e: &tandem_slot::gpt::Entry) -> bool {
        match self {
            Want::Partuuid(g) => e.unique_guid == g,
            Want::LiveUsr => number == live::USR_PARTITION && e.type_guid == types::LIVE_USR,
        }
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Partuuid(g) => write!(f, "a partition with PARTUUID {g}"),
            Want::LiveUsr => f.write_str("a Tandem ISO's live /usr partition"),
        }
    }
}

/// One pass over /sys/block for what `want` names.
pub fn scan(want: Want, seen: &mut Seen) -> Result<Option<Located>, Error> {
    let mut names: Vec<String> = match std::fs::read_dir(SYS_BLOCK) {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(err) => {
            return Err(Error::Read {
                path: SYS_BLOCK.into(),
                err,
            });
        }
    };
    // A live ISO may be on a CD.
    names.retain(|n| is_candidate(n) || (want == Want::LiveUsr && n.starts_with("sr")));
    names.sort();
    let mut found: Option<Located> = None;
    for name in names {
        let dev = Path::new("/dev").join(&name);
        let opened = match want {
            Want::Partuuid(_) => FileDisk::open_read_only(&dev),
            Want::LiveUsr => FileDisk::open_read_only_as(&dev, 512),
        };
        let gpt = match opened.map(|mut d| Gpt::read(&mut d)) {
            Ok(Ok(gpt)) => gpt,
            Ok(Err(e)) => {
                seen.0.insert(name, e.to_string());
                continue;
            }
            Err(e) => {
                seen.0
                    .insert(name, format!("cannot open {}: {e}", dev.display()));
                continue;
            }
        };
        let hit = gpt
            .partitions()
            .find(|(n, e)| want.matches(*n, e))
            .map(|(n, _)| n);
        match (hit, &found, want) {
            // Two live media: the first by name, as the firmware has no say.
            (Some(_), Some(_), Want::LiveUsr) => {}
            (Some(_), Some(first), Want::Partuuid(partuuid)) => {
                // Two disks claim the same /usr: booting either could mount the
                // wrong slot's data, so refuse rather than guess.
                return Err(Error::DuplicatePartuuid {
                    partuuid,
                    first: first.disk_name.clone(),
                    second: name,
                });
            }
            (Some(number), None, _) => {
                found = Some(Located {
                    disk_name: name,
                    gpt,
                    number,
                })
            }
            (None, _, _) => {
                seen.0.insert(name, format!("GPT without {want}"));
            }
        }
    }
    Ok(found)
}

/// Polls until a disk with what `want` names appears (and, for a
/// PARTUUID, its partition node exists), or `timeout` passes.
pub fn wait_for(want: Want, timeout: Duration) -> Result<Located, Error> {
    let start = Instant::now();
    let mut seen = Seen::default();
    loop {
        seen.0.clear();
        if let Some(found) = scan(want, &mut seen)? {
            let node = found.partition_path(found.number);
            // The live /usr is mapped from the whole disk.
            if want == Want::LiveUsr || is_block_device(&node) {
                return Ok(found);
            }
            seen.0.insert(
                found.disk_name.clone(),
                format!("partition found but {} does not exist yet", node.display()),
            );
        }
        if start.elapsed() >= timeout {
            return Err(Error::PartitionNotFound {
                want: want.to_string(),
                waited: timeout,
                seen: seen.to_string(),
            });
        }
        crate::sys::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `timeout` for a block device node to appear.
pub fn wait_for_node(node: &Path, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if is_block_device(node) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        crate::sys::sleep(Duration::from_millis(5));
    }
}

fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// `major:minor` of a block device node.
pub fn dev_numbers(node: &Path) -> Result<(u32, u32), Error> {
    let meta = std::fs::metadata(node).map_err(|err| Error::Read {
        path: node.to_path_buf(),
        err,
    })?;
    Ok(crate::sys::dev_split(meta.rdev()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(partition_name("vda", 3), "vda3");
        assert_eq!(partition_name("sda", 9), "sda9");
        assert_eq!(partition_name("nvme0n1", 3), "nvme0n1p3");
        assert_eq!(partition_name("mmcblk0", 9), "mmcblk0p9");
    }

    #[test]
    fn candidates() {
        for yes in ["vda", "sda", "nvme0n1", "xvda", "mmcblk0"] {
            assert!(is_candidate(yes), "{yes}");
        }
        for no in ["loop0", "ram0", "dm-0", "zram0", "sr0", "fd0", "md127"] {
            assert!(!is_candidate(no), "{no}");
        }
    }

    #[test]
    fn seen_explains_an_empty_machine() {
        assert!(Seen::default().to_string().contains("modules.load"));
    }
}
