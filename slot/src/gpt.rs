//! The GPT on-disk format: protective MBR, primary and backup headers and
//! entry arrays, each with its CRC32.
//!
//! Reading validates both copies and falls back to the backup when the
//! primary is damaged; writing always writes both, primary first, so that an
//! interrupted write leaves at least one intact copy (the primary's CRCs fail
//! until its header is written, and the old backup is still whole).

extern crate alloc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::device::BlockDevice;
use crate::guid::Guid;

const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION_1_0: u32 = 0x0001_0000;
const HEADER_SIZE: u32 = 92;
/// Size of one partition entry; the only size Tandem reads or writes.
pub const ENTRY_SIZE: usize = 128;
/// Entries in a table Tandem creates (the usual 128, 16 KiB).
pub const DEFAULT_ENTRIES: u32 = 128;
/// Upper bound on entries accepted from disk, against absurd allocations.
const MAX_ENTRIES: u32 = 1024;
const NAME_UNITS: usize = 36;

/// One partition entry. Unused entries (nil type GUID) are kept so that
/// partition numbers (index + 1) never change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Partition type.
    pub type_guid: Guid,
    /// This partition's own GUID (its PARTUUID).
    pub unique_guid: Guid,
    /// First block, inclusive.
    pub first_lba: u64,
    /// Last block, inclusive.
    pub last_lba: u64,
    /// Attribute bits; bits 48–56 are the slot fields ([`crate::GptPrio`]).
    pub attributes: u64,
    /// Label, UTF-16LE, NUL-padded.
    pub name: [u16; NAME_UNITS],
}

impl Entry {
    /// An entry for a new partition.
    pub fn new(
        type_guid: Guid,
        unique_guid: Guid,
        first_lba: u64,
        last_lba: u64,
        label: &str,
    ) -> Self {
        let mut e = Entry {
            type_guid,
            unique_guid,
            first_lba,
            last_lba,
            attributes: 0,
            name: [0; NAME_UNITS],
        };
        e.set_name(label);
        e
    }

    /// An unused entry.
    pub const EMPTY: Entry = Entry {
        type_guid: Guid::NIL,
        unique_guid: Guid::NIL,
        first_lba: 0,
        last_lba: 0,
        attributes: 0,
        name: [0; NAME_UNITS],
    };

    /// Whether the entry describes a partition.
    pub fn is_used(&self) -> bool {
        !self.type_guid.is_nil()
    }

    /// The label as text (unpaired surrogates become U+FFFD).
    pub fn name(&self) -> String {
        let len = self.name.iter().position(|&u| u == 0).unwrap_or(NAME_UNITS);
        char::decode_utf16(self.name[..len].iter().copied())
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }

    /// Sets the label, truncated to 36 UTF-16 units.
    pub fn set_name(&mut self, label: &str) {
        self.name = [0; NAME_UNITS];
        for (slot, unit) in self.name.iter_mut().zip(label.encode_utf16()) {
            *slot = unit;
        }
    }

    /// Number of blocks the partition spans.
    pub fn num_blocks(&self) -> u64 {
        if self.is_used() && self.last_lba >= self.first_lba {
            self.last_lba - self.first_lba + 1
        } else {
            0
        }
    }

    fn parse(b: &[u8]) -> Entry {
        let mut name = [0u16; NAME_UNITS];
        for (i, unit) in name.iter_mut().enumerate() {
            *unit = u16::from_le_bytes([b[56 + 2 * i], b[57 + 2 * i]]);
        }
        Entry {
            type_guid: Guid(array16(&b[0..16])),
            unique_guid: Guid(array16(&b[16..32])),
            first_lba: le64(&b[32..40]),
            last_lba: le64(&b[40..48]),
            attributes: le64(&b[48..56]),
            name,
        }
    }

    fn serialize(&self, b: &mut [u8]) {
        b[0..16].copy_from_slice(&self.type_guid.0);
        b[16..32].copy_from_slice(&self.unique_guid.0);
        b[32..40].copy_from_slice(&self.first_lba.to_le_bytes());
        b[40..48].copy_from_slice(&self.last_lba.to_le_bytes());
        b[48..56].copy_from_slice(&self.attributes.to_le_bytes());
        for (i, unit) in self.name.iter().enumerate() {
            b[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name())
            .field("type", &self.type_guid)
            .field("guid", &self.unique_guid)
            .field("lba", &(self.first_lba..=self.last_lba))
            .field("attributes", &format_args!("{:#018x}", self.attributes))
            .finish()
    }
}

/// Which of the two table copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copy {
    /// Header at LBA 1, entries from LBA 2.
    Primary,
    /// Header in the last block, entries just before it.
    Backup,
}

impl fmt::Display for Copy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Copy::Primary => "primary",
            Copy::Backup => "backup",
        })
    }
}

/// What is wrong with one copy of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// No `EFI PART` signature: not a GPT, or overwritten.
    NoSignature,
    /// The header's own CRC32 does not match its contents.
    HeaderCrc,
    /// A header field is out of range or inconsistent.
    BadHeader(&'static str),
    /// The entry array's CRC32 does not match the header.
    EntriesCrc,
    /// Entries of a size other than 128 bytes.
    UnsupportedEntrySize(u32),
    /// Reading the copy failed.
    Unreadable(String),
    /// Intact, but holds an older state than the primary (an interrupted
    /// write); the next write repairs it.
    Stale,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::NoSignature => f.write_str("no GPT signature"),
            Damage::HeaderCrc => f.write_str("header CRC32 mismatch"),
            Damage::BadHeader(what) => write!(f, "invalid header: {what}"),
            Damage::EntriesCrc => f.write_str("partition entry array CRC32 mismatch"),
            Damage::UnsupportedEntrySize(n) => {
                write!(f, "unsupported entry size {n} (only 128 is supported)")
            }
            Damage::Unreadable(e) => write!(f, "unreadable: {e}"),
            Damage::Stale => f.write_str("intact but older than the primary copy"),
        }
    }
}

/// The state of both copies as found on read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// `None` when the primary copy is intact.
    pub primary: Option<Damage>,
    /// `None` when the backup copy is intact and matches the one used.
    pub backup: Option<Damage>,
}

impl Health {
    /// Both copies intact and identical.
    pub fn is_clean(&self) -> bool {
        self.primary.is_none() && self.backup.is_none()
    }
}

/// Errors reading or writing a GPT.
#[derive(Debug, thiserror::Error)]
pub enum GptError<E: fmt::Display + fmt::Debug> {
    /// The device failed.
    #[error("disk i/o failed: {0}")]
    Io(E),
    /// Neither copy of the table is usable.
    #[error("no valid GPT: primary copy: {primary}; backup copy: {backup}")]
    NoValidTable {
        /// What is wrong with the primary copy.
        primary: Damage,
        /// What is wrong with the backup copy.
        backup: Damage,
    },
    /// The disk's geometry cannot hold the table.
    #[error(transparent)]
    Geometry(#[from] GeometryError),
}

/// A disk whose geometry cannot hold a GPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    /// The block size is not a power of two from 512 to 64 KiB, or differs
    /// from the one the table was laid out for.
    #[error(
        "unsupported block size {0} (need 512 or a larger power of two, as the table was laid out)"
    )]
    BlockSize(u64),
    /// The disk is too small for the table and its backup.
    #[error("disk of {0} blocks is too small for a GPT")]
    TooSmall(u64),
}

/// A partition table as read from (or to be written to) a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    /// The disk's GUID.
    pub disk_guid: Guid,
    /// First block partitions may use.
    pub first_usable_lba: u64,
    /// Last block partitions may use.
    pub last_usable_lba: u64,
    /// Where the backup header lives (normally the disk's last block).
    pub backup_lba: u64,
    /// All entries, used or not; partition number = index + 1.
    pub entries: Vec<Entry>,
    /// Bytes per block the table was laid out for.
    pub block_size: u64,
    /// Which copy the table was read from.
    pub read_from: Copy,
    /// What was wrong with either copy on read.
    pub health: Health,
}

struct Header {
    my_lba: u64,
    alternate_lba: u64,
    first_usable_lba: u64,
    last_usable_lba: u64,
    disk_guid: Guid,
    entries_lba: u64,
    num_entries: u32,
    entries_crc: u32,
}

impl Gpt {
    /// An empty table for a disk of `num_blocks` blocks, with the backup in
    /// the last block and the usual 128 entries.
    pub fn new(num_blocks: u64, block_size: u64, disk_guid: Guid) -> Result<Gpt, GeometryError> {
        check_block_size(block_size)?;
        let entry_blocks = entry_array_blocks(DEFAULT_ENTRIES, block_size);
        // MBR + header + array at the front, array + header at the back.
        let overhead = 2 + 2 * entry_blocks + 1;
        if num_blocks <= overhead {
            return Err(GeometryError::TooSmall(num_blocks));
        }
        Ok(Gpt {
            disk_guid,
            first_usable_lba: 2 + entry_blocks,
            last_usable_lba: num_blocks - 2 - entry_blocks,
            backup_lba: num_blocks - 1,
            entries: vec![Entry::EMPTY; DEFAULT_ENTRIES as usize],
            block_size,
            read_from: Copy::Primary,
            health: Health {
                primary: None,
                backup: None,
            },
        })
    }

    /// Reads and validates both copies; uses the primary if intact, else the
    /// backup. [`Gpt::health`] says what was wrong with either.
    pub fn read<D: BlockDevice>(dev: &mut D) -> Result<Gpt, GptError<D::Error>> {
        let bs = dev.block_size();
        check_block_size(bs)?;
        let last = dev
            .num_blocks()
            .checked_sub(1)
            .ok_or(GeometryError::TooSmall(0))?;

        let primary = read_copy(dev, 1);
        let backup_lba = match &primary {
            Ok((h, _)) if h.alternate_lba <= last => h.alternate_lba,
            _ => last,
        };
        let mut backup = read_copy(dev, backup_lba);
        if backup_lba != last && backup.is_err() {
            // The primary may point at a stale location (e.g. a disk grown
            // after imaging): the end of the disk is where a backup belongs.
            backup = read_copy(dev, last);
        }

        let (chosen, read_from, health) = match (primary, backup) {
            (Ok(p), Ok(b)) => {
                let stale = (p.1 != b.1 || !same_layout(&p.0, &b.0)).then_some(Damage::Stale);
                (
                    p,
                    Copy::Primary,
                    Health {
                        primary: None,
                        backup: stale,
                    },
                )
            }
            (Ok(p), Err(b)) => (
                p,
                Copy::Primary,
                Health {
                    primary: None,
                    backup: Some(b),
                },
            ),
            (Err(p), Ok(b)) => (
                b,
                Copy::Backup,
                Health {
                    primary: Some(p),
                    backup: None,
                },
            ),
            (Err(primary), Err(backup)) => return Err(GptError::NoValidTable { primary, backup }),
        };
        let (header, entries) = chosen;
        let backup_lba = match read_from {
            Copy::Primary => header.alternate_lba,
            Copy::Backup => header.my_lba,
        };
        Ok(Gpt {
            disk_guid: header.disk_guid,
            first_usable_lba: header.first_usable_lba,
            last_usable_lba: header.last_usable_lba,
            backup_lba,
            entries,
            block_size: bs,
            read_from,
            health,
        })
    }

    /// Writes both copies with fresh CRCs: primary array and header, flush,
    /// backup array and header, flush. Repairs a damaged copy.
    pub fn write<D: BlockDevice>(&self, dev: &mut D) -> Result<(), GptError<D::Error>> {
        let bs = dev.block_size();
        check_block_size(bs)?;
        if bs != self.block_size {
            return Err(GeometryError::BlockSize(bs).into());
        }
        let num_entries = self.entries.len() as u32;
        let entry_blocks = entry_array_blocks(num_entries, bs);
        if self.backup_lba >= dev.num_blocks() || self.backup_lba < 2 + 2 * entry_blocks {
            return Err(GeometryError::TooSmall(dev.num_blocks()).into());
        }
        let mut array = vec![0u8; (entry_blocks * bs) as usize];
        for (entry, chunk) in self.entries.iter().zip(array.chunks_exact_mut(ENTRY_SIZE)) {
            entry.serialize(chunk);
        }
        let entries_crc = crc32(&array[..self.entries.len() * ENTRY_SIZE]);
        let backup_entries_lba = self.backup_lba - entry_blocks;

        let primary = self.header_block(1, self.backup_lba, 2, entries_crc, bs);
        let backup = self.header_block(self.backup_lba, 1, backup_entries_lba, entries_crc, bs);

        dev.write_blocks(2, &array).map_err(GptError::Io)?;
        dev.write_blocks(1, &primary).map_err(GptError::Io)?;
        dev.flush().map_err(GptError::Io)?;
        dev.write_blocks(backup_entries_lba, &array)
            .map_err(GptError::Io)?;
        dev.write_blocks(self.backup_lba, &backup)
            .map_err(GptError::Io)?;
        dev.flush().map_err(GptError::Io)?;
        Ok(())
    }

    /// The entry of partition `number` (1-based), if it is in use.
    pub fn partition(&self, number: u32) -> Option<&Entry> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.entries.get(index).filter(|e| e.is_used())
    }

    /// Mutable access to the entry of partition `number` (1-based), used or not.
    pub fn partition_mut(&mut self, number: u32) -> Option<&mut Entry> {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        self.entries.get_mut(index)
    }

    /// Used partitions as (number, entry).
    pub fn partitions(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_used())
            .map(|(i, e)| (i as u32 + 1, e))
    }

    /// Moves the backup copy to the last block of a disk of `num_blocks`
    /// blocks (after the disk grew) and extends the usable area with it.
    pub fn relocate_backup(&mut self, num_blocks: u64) {
        let entry_blocks = entry_array_blocks(self.entries.len() as u32, self.block_size);
        self.backup_lba = num_blocks - 1;
        self.last_usable_lba = num_blocks - 2 - entry_blocks;
    }

    fn header_block(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
        entries_crc: u32,
        bs: u64,
    ) -> Vec<u8> {
        let mut b = vec![0u8; bs as usize];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&REVISION_1_0.to_le_bytes());
        b[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        b[24..32].copy_from_slice(&my_lba.to_le_bytes());
        b[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_usable_lba.to_le_bytes());
        b[48..56].copy_from_slice(&self.last_usable_lba.to_le_bytes());
        b[56..72].copy_from_slice(&self.disk_guid.0);
        b[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        b[80..84].copy_from_slice(&(self.entries.len() as u32).to_le_bytes());
        b[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        b[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&b[..HEADER_SIZE as usize]);
        b[16..20].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// A protective MBR for a disk of `num_blocks` blocks: one partition of type
/// 0xEE covering the disk (capped at 2^32 − 1 sectors), as the UEFI spec asks.
pub fn protective_mbr(num_blocks: u64) -> [u8; 512] {
    let mut mbr = [0u8; 512];
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    p[4] = 0xEE;
    p[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let size = u32::try_from(num_blocks - 1).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    mbr
}

/// CRC32 (IEEE) as GPT uses it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

fn check_block_size(bs: u64) -> Result<(), GeometryError> {
    if bs < 512 || !bs.is_power_of_two() || bs > 65536 {
        return Err(GeometryError::BlockSize(bs));
    }
    Ok(())
}

fn entry_array_blocks(num_entries: u32, bs: u64) -> u64 {
    (u64::from(num_entries) * ENTRY_SIZE as u64).div_ceil(bs)
}

fn same_layout(a: &Header, b: &Header) -> bool {
    a.disk_guid == b.disk_guid
        && a.first_usable_lba == b.first_usable_lba
        && a.last_usable_lba == b.last_usable_lba
        && a.num_entries == b.num_entries
        && a.entries_crc == b.entries_crc
}

/// Reads and validates the header at `lba` and its entry array.
fn read_copy<D: BlockDevice>(dev: &mut D, lba: u64) -> Result<(Header, Vec<Entry>), Damage> {
    let bs = dev.block_size();
    let mut block = vec![0u8; bs as usize];
    dev.read_blocks(lba, &mut block)
        .map_err(|e| Damage::Unreadable(alloc::format!("block {lba}: {e}")))?;
    let header = parse_header(&block, lba, dev.num_blocks())?;

    let entry_blocks = entry_array_blocks(header.num_entries, bs);
    let mut array = vec![0u8; (entry_blocks * bs) as usize];
    dev.read_blocks(header.entries_lba, &mut array)
        .map_err(|e| {
            Damage::Unreadable(alloc::format!(
                "entries at block {}: {e}",
                header.entries_lba
            ))
        })?;
    let used = header.num_entries as usize * ENTRY_SIZE;
    if crc32(&array[..used]) != header.entries_crc {
        return Err(Damage::EntriesCrc);
    }
    let entries = array[..used]
        .chunks_exact(ENTRY_SIZE)
        .map(Entry::parse)
        .collect();
    Ok((header, entries))
}

fn parse_header(b: &[u8], lba: u64, num_blocks: u64) -> Result<Header, Damage> {
    if &b[0..8] != SIGNATURE {
        return Err(Damage::NoSignature);
    }
    let header_size = le32(&b[12..16]);
    if (header_size as usize) < HEADER_SIZE as usize || header_size as usize > b.len() {
        return Err(Damage::BadHeader("header size"));
    }
    let mut copy = b[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    if crc32(&copy) != le32(&b[16..20]) {
        return Err(Damage::HeaderCrc);
    }
    let entry_size = le32(&b[84..88]);
    if entry_size as usize != ENTRY_SIZE {
        return Err(Damage::UnsupportedEntrySize(entry_size));
    }
    let h = Header {
        my_lba: le64(&b[24..32]),
        alternate_lba: le64(&b[32..40]),
        first_usable_lba: le64(&b[40..48]),
        last_usable_lba: le64(&b[48..56]),
        disk_guid: Guid(array16(&b[56..72])),
        entries_lba: le64(&b[72..80]),
        num_entries: le32(&b[80..84]),
        entries_crc: le32(&b[88..92]),
    };
    if h.my_lba != lba {
        return Err(Damage::BadHeader("header does not point at its own block"));
    }
    if h.num_entries == 0 || h.num_entries > MAX_ENTRIES {
        return Err(Damage::BadHeader("number of entries"));
    }
    let entry_blocks = entry_array_blocks(h.num_entries, b.len() as u64);
    if h.entries_lba.saturating_add(entry_blocks) > num_blocks
        || h.first_usable_lba > h.last_usable_lba
        || h.last_usable_lba >= num_blocks
    {
        return Err(Damage::BadHeader("areas outside the disk"));
    }
    Ok(h)
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

fn array16(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDisk;
    use crate::guid::types;

    fn sample(blocks: u64, bs: u64) -> (MemDisk, Gpt) {
        let mut disk = MemDisk::new(blocks, bs);
        let mut gpt = Gpt::new(blocks, bs, Guid::from_hash([7; 16])).expect("fits");
        *gpt.partition_mut(3).expect("slot") =
            Entry::new(types::USR, Guid::from_hash([3; 16]), 2048, 4095, "USR-A");
        gpt.partition_mut(3).expect("slot").attributes = 0x0101_0000_0000_0001;
        *gpt.partition_mut(9).expect("slot") = Entry::new(
            types::ROOT,
            Guid::from_hash([9; 16]),
            4096,
            blocks - 40,
            "ROOT",
        );
        gpt.write(&mut disk).expect("write");
        (disk, gpt)
    }

    fn same_content(a: &Gpt, b: &Gpt) {
        assert_eq!(a.entries, b.entries);
        assert_eq!(a.disk_guid, b.disk_guid);
        assert_eq!(
            (a.first_usable_lba, a.last_usable_lba, a.backup_lba),
            (b.first_usable_lba, b.last_usable_lba, b.backup_lba)
        );
    }

    #[test]
    fn write_then_read_round_trips_for_both_block_sizes() {
        for bs in [512, 4096] {
            let (mut disk, gpt) = sample(10_000, bs);
            let back = Gpt::read(&mut disk).expect("read");
            same_content(&gpt, &back);
            assert!(back.health.is_clean(), "{:?}", back.health);
            assert_eq!(back.partition(3).map(Entry::name).as_deref(), Some("USR-A"));
            assert_eq!(back.partition(4), None);
            assert_eq!(
                back.partitions().map(|(n, _)| n).collect::<Vec<_>>(),
                [3, 9]
            );
        }
    }

    #[test]
    fn damaged_primary_falls_back_to_backup_and_write_repairs_it() {
        let (disk, gpt) = sample(10_000, 512);
        for (what, offset) in [
            ("header", 512 + 40),
            ("entries", 1024 + 300),
            ("signature", 512),
        ] {
            let mut d = disk.clone();
            d.data[offset] ^= 0x55;
            let back = Gpt::read(&mut d).expect("backup usable");
            same_content(&gpt, &back);
            assert_eq!(back.read_from, Copy::Backup, "{what}");
            assert!(back.health.primary.is_some(), "{what}");
            back.write(&mut d).expect("repair");
            let repaired = Gpt::read(&mut d).expect("read");
            assert!(repaired.health.is_clean(), "{what}: {:?}", repaired.health);
            assert_eq!(repaired.read_from, Copy::Primary);
        }
    }

    #[test]
    fn damaged_backup_is_reported_and_primary_used() {
        let (mut disk, gpt) = sample(10_000, 512);
        let last = disk.data.len() - 512;
        disk.data[last + 20] ^= 1;
        let back = Gpt::read(&mut disk).expect("primary usable");
        same_content(&gpt, &back);
        assert_eq!(back.health.backup, Some(Damage::HeaderCrc));
    }

    #[test]
    fn both_damaged_is_an_error_naming_both() {
        let (mut disk, _) = sample(10_000, 512);
        disk.data[512 + 40] ^= 1;
        let last = disk.data.len() - 512;
        disk.data[last] = 0;
        match Gpt::read(&mut disk) {
            Err(GptError::NoValidTable { primary, backup }) => {
                assert_eq!(primary, Damage::HeaderCrc);
                assert_eq!(backup, Damage::NoSignature);
            }
            other => panic!("expected NoValidTable, got {other:?}"),
        }
        let blank = &mut MemDisk::new(100, 512);
        assert!(matches!(
            Gpt::read(blank),
            Err(GptError::NoValidTable { .. })
        ));
    }

    #[test]
    fn interrupted_write_leaves_a_consistent_table() {
        // Simulate power loss after each block write of an update.
        let (disk, gpt) = sample(10_000, 512);
        let mut changed = gpt.clone();
        changed.partition_mut(3).expect("slot").attributes = 0x0002_0000_0000_0000;

        struct Cut<'a> {
            inner: &'a mut MemDisk,
            writes_left: usize,
        }
        impl BlockDevice for Cut<'_> {
            type Error = &'static str;
            fn block_size(&self) -> u64 {
                self.inner.block_size
            }
            fn num_blocks(&self) -> u64 {
                self.inner.num_blocks()
            }
            fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
                self.inner.read_blocks(lba, buf).map_err(|_| "range")
            }
            fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Self::Error> {
                // Block by block, so a cut can fall inside the entry array.
                for (i, block) in buf.chunks(512).enumerate() {
                    if self.writes_left == 0 {
                        return Err("power cut");
                    }
                    self.writes_left -= 1;
                    self.inner
                        .write_blocks(lba + i as u64, block)
                        .map_err(|_| "range")?;
                }
                Ok(())
            }
            fn flush(&mut self) -> Result<(), Self::Error> {
                Ok(())
            }
        }

        let total = 2 * (32 + 1);
        for cut_after in 0..=total {
            let mut d = disk.clone();
            let result = changed.write(&mut Cut {
                inner: &mut d,
                writes_left: cut_after,
            });
            assert_eq!(result.is_ok(), cut_after >= total);
            let seen = Gpt::read(&mut d).expect("one copy always intact");
            assert!(
                seen.entries == gpt.entries || seen.entries == changed.entries,
                "cut after {cut_after} writes gave a mixed table"
            );
        }
    }

    #[test]
    fn protective_mbr_covers_the_disk() {
        let mbr = protective_mbr(10_000);
        assert_eq!(mbr[450], 0xEE);
        assert_eq!(&mbr[510..], &[0x55, 0xAA]);
        assert_eq!(le32(&mbr[458..462]), 9_999);
    }

    #[test]
    fn relocate_backup_after_growth() {
        let (disk, mut gpt) = sample(10_000, 512);
        let mut bigger = MemDisk::new(20_000, 512);
        bigger.data[..disk.data.len()].copy_from_slice(&disk.data);
        // Primary still points at the old backup location, which is intact.
        let read = Gpt::read(&mut bigger).expect("read");
        assert_eq!(read.backup_lba, 9_999);
        gpt.relocate_backup(20_000);
        gpt.write(&mut bigger).expect("write");
        let read = Gpt::read(&mut bigger).expect("read");
        assert_eq!(read.backup_lba, 19_999);
        assert_eq!(read.last_usable_lba, 20_000 - 34);
        assert!(read.health.is_clean());
    }
}
