//! Where every partition goes on the disk (pure arithmetic), and the GUIDs
//! and identifiers derived from the image identity so that builds are
//! reproducible.

use sha2::{Digest, Sha256};
use tandem_contract::Partition;
use tandem_slot::Guid;
use tandem_slot::gpt::Entry;

use crate::build::definition::PartitionSizes;

/// Bytes per logical block of the image.
pub const BLOCK: u64 = 512;
const MIB: u64 = 1024 * 1024;
const MIB_BLOCKS: u64 = MIB / BLOCK;

/// One partition's place on the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    /// Which partition of the layout.
    pub part: Partition,
    /// GPT partition number.
    pub number: u32,
    /// GPT label.
    pub label: &'static str,
    /// Definition key of its size.
    pub size_key: &'static str,
    /// Type GUID.
    pub type_guid: Guid,
    /// Partition GUID (PARTUUID).
    pub guid: Guid,
    /// First block.
    pub first_lba: u64,
    /// Last block, inclusive.
    pub last_lba: u64,
}

impl PartitionPlan {
    /// Offset in bytes.
    pub fn offset(&self) -> u64 {
        self.first_lba * BLOCK
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * BLOCK
    }
    /// The GPT entry.
    pub fn entry(&self) -> Entry {
        Entry::new(
            self.type_guid,
            self.guid,
            self.first_lba,
            self.last_lba,
            self.label,
        )
    }
}

/// The whole disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskPlan {
    /// Disk GUID.
    pub disk_guid: Guid,
    /// Total size in blocks.
    pub blocks: u64,
    /// Partitions in disk order: ESP, USR-A, USR-B, OEM, ROOT (last, so it
    /// can grow to the end of a larger disk).
    pub partitions: Vec<PartitionPlan>,
}

impl DiskPlan {
    /// Where partition `part` goes.
    pub fn partition(&self, part: Partition) -> Option<&PartitionPlan> {
        self.partitions.iter().find(|p| p.part == part)
    }
    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.blocks * BLOCK
    }
}

/// Lays out the disk: 1 MiB aligned partitions from 1 MiB on, 1 MiB left at
/// the end for the backup table.
pub fn plan(sizes: &PartitionSizes, ids: &Identity) -> DiskPlan {
    let table = Partition::ALL.map(|part| match part {
        Partition::Esp => (part, "esp", sizes.esp),
        Partition::UsrA | Partition::UsrB => (part, "usr", sizes.usr),
        Partition::Oem => (part, "oem", sizes.oem),
        Partition::Root => (part, "root", sizes.root),
    });
    let mut next = MIB_BLOCKS;
    let partitions = table
        .into_iter()
        .map(|(part, size_key, mib)| {
            let first = next;
            next += mib * MIB_BLOCKS;
            PartitionPlan {
                part,
                number: part.number(),
                label: part.label(),
                size_key,
                type_guid: part.type_guid(),
                guid: ids.guid(part.label()),
                first_lba: first,
                last_lba: next - 1,
            }
        })
        .collect();
    DiskPlan {
        disk_guid: ids.guid("disk"),
        blocks: next + MIB_BLOCKS,
        partitions,
    }
}

/// Identifiers derived from the image's name and version.
#[derive(Clone, Debug)]
pub struct Identity {
    seed: String,
    name: String,
}

impl Identity {
    /// Identity of image `name` at `version`.
    pub fn new(name: &str, version: &str) -> Self {
        Identity {
            seed: format!("tandem\0{name}\0{version}"),
            name: name.to_string(),
        }
    }

    fn hash(&self, purpose: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.seed.as_bytes())
            .chain_update(b"\0")
            .chain_update(purpose.as_bytes())
            .finalize()
            .into()
    }

    /// A GUID for `purpose` (a partition label, "disk", a file system).
    pub fn guid(&self, purpose: &str) -> Guid {
        let h = self.hash(purpose);
        let mut b = [0u8; 16];
        b.copy_from_slice(&h[..16]);
        Guid::from_hash(b)
    }

    /// A lower-case UUID string for `purpose` (file system UUIDs).
    pub fn uuid(&self, purpose: &str) -> String {
        self.guid(purpose).to_string().to_lowercase()
    }

    /// A 32-bit FAT volume ID for `purpose`.
    pub fn volume_id(&self, purpose: &str) -> u32 {
        let h = self.hash(purpose);
        u32::from_le_bytes([h[0], h[1], h[2], h[3]])
    }

    /// The dm-verity salt of the /usr image: the image's, the same for
    /// all its versions, so that the hash trees of two versions agree on
    /// every block they share and a node can compare them block by block.
    pub fn verity_salt(&self) -> [u8; 32] {
        Identity::new(&self.name, "").hash("verity-salt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_aligned_contiguous_and_numbered_as_designed() {
        let sizes = PartitionSizes {
            esp: 256,
            usr: 1024,
            oem: 64,
            root: 512,
        };
        let p = plan(&sizes, &Identity::new("x", "1"));
        let numbers: Vec<u32> = p.partitions.iter().map(|x| x.number).collect();
        assert_eq!(numbers, [1, 3, 4, 6, 9]);
        assert_eq!(p.partitions[0].first_lba, 2048);
        for w in p.partitions.windows(2) {
            assert_eq!(w[0].last_lba + 1, w[1].first_lba);
        }
        for part in &p.partitions {
            assert_eq!(part.first_lba % 2048, 0);
            assert_eq!(part.size() % MIB, 0);
        }
        assert_eq!(
            p.partition(Partition::UsrA).map(PartitionPlan::size),
            Some(1024 * MIB)
        );
        assert_eq!(p.size(), (1 + 256 + 2048 + 64 + 512 + 1) * MIB);
    }

    #[test]
    fn identity_is_stable_and_distinct() {
        let a = Identity::new("x", "1");
        assert_eq!(a.guid("USR-A"), Identity::new("x", "1").guid("USR-A"));
        assert_ne!(a.guid("USR-A"), a.guid("USR-B"));
        assert_ne!(a.guid("USR-A"), Identity::new("x", "2").guid("USR-A"));
        // One salt for every version of an image, another for each image.
        assert_eq!(a.verity_salt(), Identity::new("x", "2").verity_salt());
        assert_ne!(a.verity_salt(), Identity::new("y", "1").verity_salt());
    }
}
