//! Check and repair of the ESP's FAT32 file system after a power cut.
//!
//! Only the updater writes the ESP, with `fatfs`, directly on the
//! partition. A cut in the middle of that leaves what a cut FAT always
//! leaves: the dirty flag set (fatfs never clears a flag it found set, so
//! it stays set for good), FAT #2 one entry behind FAT #1, clusters
//! allocated but not yet (or no longer) referenced by any entry, a
//! half-removed file whose entry points at freed clusters, a stale FSInfo
//! free count, a `<name>.new` that was never renamed. Nothing mounts the
//! ESP, so nothing ever repairs it but this.
//!
//! The check reads the boot sector, FSInfo, the FATs and the whole
//! directory tree ([`scan`]), works out the fixes from that alone
//! ([`plan`], no I/O), then writes them in an order that keeps the volume
//! usable if the repair itself is cut: directory entries are marked deleted
//! before their clusters are freed, a truncated chain gets its end mark
//! before its tail is freed, FAT #1 before FAT #2, the clusters before the
//! FSInfo count, the dirty flag last but the backup. Data clusters of live
//! files are never written, and a clean volume is not written at all.
//!
//! Only FAT32 is handled (the ESP is made with `mkfs.vfat -F 32`); anything
//! else is an error before the first write.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};

use crate::error::Error;

/// The 28 bits of a FAT32 entry that hold the cluster number.
const MASK: u32 = 0x0FFF_FFFF;
/// Smallest end-of-chain mark.
const EOC_MIN: u32 = 0x0FFF_FFF8;
/// The end-of-chain mark the repair writes.
const EOC: u32 = 0x0FFF_FFFF;
/// A bad cluster: neither free nor part of a file.
const BAD: u32 = 0x0FFF_FFF7;
/// FAT[1] bit: set when the volume was cleanly unmounted.
const CLEAN_SHUTDOWN: u32 = 0x0800_0000;
/// FAT[1] bit: set when no disk I/O error was met.
const NO_HARD_ERROR: u32 = 0x0400_0000;
/// The BPB status byte on FAT32 (Linux and fatfs: bit 0 dirty, bit 1 I/O error).
const BPB_STATUS: usize = 0x41;
/// FSInfo signatures and fields.
const FSI_LEAD: u32 = 0x4161_5252;
const FSI_STRUCT: u32 = 0x6141_7272;
const FSI_TRAIL: u32 = 0xAA55_0000;
const FSI_FREE: usize = 488;
const FSI_NEXT: usize = 492;
/// "Not known" in FSInfo.
const UNKNOWN: u32 = 0xFFFF_FFFF;
/// Directory entries.
const ENTRY: usize = 32;
const DELETED: u8 = 0xE5;
const ATTR_LFN: u8 = 0x0F;
const ATTR_DIR: u8 = 0x10;
const ATTR_VOLUME: u8 = 0x08;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The layout of a FAT32 volume, from its boot sector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Bytes per sector.
    pub sector: u32,
    /// Bytes per cluster.
    pub cluster: u32,
    /// Reserved sectors (boot sector, FSInfo, backup) before FAT #1.
    pub reserved: u32,
    /// Number of FATs.
    pub fats: u32,
    /// Sectors per FAT.
    pub fat_sectors: u32,
    /// Data clusters (numbered from 2).
    pub clusters: u32,
    /// Total sectors of the volume.
    pub total_sectors: u32,
    /// First cluster of the root directory.
    pub root: u32,
    /// Sector of FSInfo.
    pub fsinfo: u32,
    /// Sector of the backup boot sector, if any.
    pub backup: Option<u32>,
}

impl Geometry {
    /// Reads the BPB of `boot` (the first sector); the message says why it
    /// is not a FAT32 volume this code can check.
    pub fn parse(boot: &[u8]) -> Result<Geometry, String> {
        if boot.len() < 512 {
            return Err("the boot sector is short".into());
        }
        if boot[510] != 0x55 || boot[511] != 0xAA {
            return Err("no boot sector signature 55 AA".into());
        }
        let sector = u32::from(u16_at(boot, 11));
        if !matches!(sector, 512 | 1024 | 2048 | 4096) {
            return Err(format!("{sector} bytes per sector"));
        }
        let spc = u32::from(boot[13]);
        if !spc.is_power_of_two() {
            return Err(format!("{spc} sectors per cluster"));
        }
        let reserved = u32::from(u16_at(boot, 14));
        let fats = u32::from(boot[16]);
        if reserved == 0 || fats == 0 {
            return Err(format!("{reserved} reserved sectors, {fats} FATs"));
        }
        if u16_at(boot, 17) != 0 || u16_at(boot, 22) != 0 {
            return Err("a FAT12/FAT16 boot sector (fixed root directory, 16-bit FAT size)".into());
        }
        let total_sectors = match u16_at(boot, 19) {
            0 => u32_at(boot, 32),
            n => u32::from(n),
        };
        let fat_sectors = u32_at(boot, 36);
        let ext_flags = u16_at(boot, 40);
        if ext_flags & 0x80 != 0 && ext_flags & 0x0F != 0 {
            return Err(format!(
                "FAT mirroring is off and FAT #{} is the active one",
                (ext_flags & 0x0F) + 1
            ));
        }
        if u16_at(boot, 42) != 0 {
            return Err(format!("FAT32 version {:#06x}", u16_at(boot, 42)));
        }
        let meta = u64::from(reserved) + u64::from(fats) * u64::from(fat_sectors);
        if fat_sectors == 0 || meta >= u64::from(total_sectors) {
            return Err(format!(
                "{fat_sectors} sectors per FAT, {reserved} reserved, {total_sectors} in all"
            ));
        }
        let clusters = (u64::from(total_sectors) - meta) / u64::from(spc);
        if clusters < 65525 {
            return Err(format!("{clusters} clusters: FAT12 or FAT16, not FAT32"));
        }
        if clusters > u64::from(0x0FFF_FFF5u32 - 2) {
            return Err(format!("{clusters} clusters"));
        }
        let clusters = clusters as u32;
        if u64::from(fat_sectors) * u64::from(sector) / 4 < u64::from(clusters) + 2 {
            return Err(format!(
                "a FAT of {fat_sectors} sectors cannot hold {clusters} clusters"
            ));
        }
        let root = u32_at(boot, 44);
        if root < 2 || root >= clusters + 2 {
            return Err(format!("root directory cluster {root}"));
        }
        let fsinfo = u32::from(u16_at(boot, 48));
        if fsinfo == 0 || fsinfo >= reserved {
            return Err(format!("FSInfo sector {fsinfo}"));
        }
        let backup = match u32::from(u16_at(boot, 50)) {
            0 | 0xFFFF => None,
            b if b < reserved && b != fsinfo => Some(b),
            b => return Err(format!("backup boot sector {b}")),
        };
        Ok(Geometry {
            sector,
            cluster: sector * spc,
            reserved,
            fats,
            fat_sectors,
            clusters,
            total_sectors,
            root,
            fsinfo,
            backup,
        })
    }

    /// Number of FAT entries in use (clusters 0 and 1, then the data clusters).
    fn entries(&self) -> usize {
        self.clusters as usize + 2
    }

    fn sector_offset(&self, sector: u32) -> u64 {
        u64::from(sector) * u64::from(self.sector)
    }

    fn fat_offset(&self, copy: u32) -> u64 {
        self.sector_offset(self.reserved) + u64::from(copy) * self.fat_bytes()
    }

    fn fat_bytes(&self) -> u64 {
        self.sector_offset(self.fat_sectors)
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        let data = self.sector_offset(self.reserved) + u64::from(self.fats) * self.fat_bytes();
        data + u64::from(cluster - 2) * u64::from(self.cluster)
    }

    /// The backup FSInfo sector, if the reserved area has room for it.
    fn backup_fsinfo(&self) -> Option<u32> {
        self.backup
            .map(|b| b + 1)
            .filter(|&s| s < self.reserved && s != self.fsinfo)
    }
}

/// Where a FAT entry leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// The next cluster of the chain.
    Next(u32),
    /// End of chain.
    End,
    /// The cluster is free: no chain goes through it.
    Free,
    /// Marked bad.
    Bad,
    /// A value that is no cluster (1, past the end, reserved).
    OutOfRange(u32),
}

/// What FAT entry `cluster` says (`fat` has one entry per cluster, from 0).
pub fn link(fat: &[u32], cluster: u32) -> Link {
    let v = fat.get(cluster as usize).map_or(0, |v| v & MASK);
    match v {
        0 => Link::Free,
        BAD => Link::Bad,
        v if v >= EOC_MIN => Link::End,
        v if v >= 2 && (v as usize) < fat.len() => Link::Next(v),
        v => Link::OutOfRange(v),
    }
}

/// A directory entry as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index of its directory in [`Scan::dirs`].
    pub dir: usize,
    /// Which cluster of its directory's chain holds the short entry.
    pub pos: usize,
    /// Byte offsets of its slots on the volume: the long-name entries in
    /// order, the short entry last.
    pub slots: Vec<u64>,
    /// `EFI/tandem/vmlinuz-a` (long name if it has a valid one).
    pub path: String,
    /// Attribute byte.
    pub attr: u8,
    /// First cluster (0: none).
    pub first: u32,
    /// Size in bytes (files).
    pub size: u32,
    /// The directory it is, in [`Scan::dirs`].
    pub subdir: Option<usize>,
}

/// A directory: its cluster chain as far as it can be followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dir {
    /// `""` for the root, else `EFI/tandem`.
    pub path: String,
    /// The clusters read, in order.
    pub chain: Vec<u32>,
    /// Whether the chain ended with an end mark (else it went somewhere
    /// invalid, or into another directory's clusters).
    pub complete: bool,
    /// Whether it starts with `.` and `..` (subdirectories; an entry with
    /// the directory bit in old file data does not).
    pub dots: bool,
}

/// Everything read from the directory tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Directories, the root first, each before its subdirectories.
    pub dirs: Vec<Dir>,
    /// Entries (not `.`, `..` or the volume label), grouped by directory in
    /// the order of `dirs`.
    pub entries: Vec<Entry>,
    /// Long-name entries with no short entry of theirs, and entries that
    /// are no valid short entry: marked deleted.
    pub stray: Vec<u64>,
    /// Entries after a directory's end mark that are not empty (fsck.vfat
    /// reads past the mark): zeroed.
    pub stale: Vec<u64>,
}

/// One directory cluster's parsed slots (pure part of the scan).
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    /// (slot indices: long names then short, name, attr, first, size).
    entries: Vec<(Vec<usize>, String, u8, u32, u32)>,
    stray: Vec<usize>,
    stale: Vec<usize>,
}

/// The long-name checksum of a short name.
fn lfn_checksum(short: &[u8]) -> u8 {
    short[..11]
        .iter()
        .fold(0u8, |s, &c| s.rotate_right(1).wrapping_add(c))
}

/// Whether a short entry is plausible (a directory cluster fatfs linked
/// but had not zeroed yet holds old file data, not entries).
fn valid_short(e: &[u8]) -> bool {
    if e[11] & 0xC0 != 0 {
        return false;
    }
    let name = &e[..11];
    if name == b".          " || name == b"..         " {
        return true;
    }
    if name[0] == b' ' {
        return false;
    }
    name.iter().enumerate().all(|(i, &c)| {
        (c >= 0x20 || (i == 0 && c == 0x05)) && c != 0x7F && !b"\"*+,./:;<=>?[\\]|".contains(&c)
    })
}

/// `NAME.EXT` of a short entry, in the case its flags say.
fn short_name(e: &[u8]) -> String {
    let text = |b: &[u8], lower: bool| -> String {
        let s: String = b.iter().map(|&c| c as char).collect::<String>();
        let s = s.trim_end().to_string();
        if lower { s.to_ascii_lowercase() } else { s }
    };
    let mut base = e[..8].to_vec();
    if base[0] == 0x05 {
        base[0] = DELETED;
    }
    let base = text(&base, e[12] & 0x08 != 0);
    let ext = text(&e[8..11], e[12] & 0x10 != 0);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The 13 UTF-16 units of a long-name slot.
fn lfn_units(e: &[u8]) -> impl Iterator<Item = u16> + '_ {
    (1..11)
        .step_by(2)
        .chain((14..26).step_by(2))
        .chain((28..32).step_by(2))
        .map(move |i| u16_at(e, i))
}

/// Splits a directory's slots (in chain order) into entries, stray slots
/// and stale slots after the end mark.
fn parse_dir(slots: &[[u8; ENTRY]]) -> Parsed {
    let mut out = Parsed::default();
    // The long-name run being read: slot indices, next order, checksum.
    let mut run: Vec<usize> = Vec::new();
    let mut expect = 0u8;
    let mut sum = 0u8;
    let mut ended = false;
    for (i, e) in slots.iter().enumerate() {
        if ended {
            if e[0] != 0 {
                out.stale.push(i);
            }
            continue;
        }
        if e[0] == 0 || e[0] == DELETED {
            out.stray.append(&mut run);
            ended = e[0] == 0;
            continue;
        }
        if e[11] == ATTR_LFN {
            let ord = e[0];
            let sane = e[12] == 0 && u16_at(e, 26) == 0;
            if ord & 0x40 != 0 {
                out.stray.append(&mut run);
                let n = ord & 0x1F;
                if sane && (1..=20).contains(&n) && ord & 0x80 == 0 {
                    run.push(i);
                    expect = n - 1;
                    sum = e[13];
                } else {
                    out.stray.push(i);
                }
            } else if !run.is_empty() && sane && expect > 0 && ord == expect && e[13] == sum {
                run.push(i);
                expect -= 1;
            } else {
                out.stray.append(&mut run);
                out.stray.push(i);
            }
            continue;
        }
        if !valid_short(e) {
            out.stray.append(&mut run);
            out.stray.push(i);
            continue;
        }
        let named = !run.is_empty() && expect == 0 && lfn_checksum(e) == sum;
        if !named {
            out.stray.append(&mut run);
        }
        let name = if named {
            let units: Vec<u16> = run
                .iter()
                .rev()
                .flat_map(|&j| lfn_units(&slots[j]))
                .take_while(|&u| u != 0)
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            short_name(e)
        };
        let first = (u32::from(u16_at(e, 20)) << 16) | u32::from(u16_at(e, 26));
        let mut idx = std::mem::take(&mut run);
        idx.push(i);
        out.entries
            .push((idx, name, e[11], first & MASK, u32_at(e, 28)));
    }
    out.stray.append(&mut run);
    out
}

/// Follows a directory's chain from `first`, stopping at anything invalid
/// or at a cluster of a directory already read (`seen`).
fn dir_chain(fat: &[u32], first: u32, seen: &mut HashSet<u32>) -> Dir {
    let mut chain = Vec::new();
    let mut c = first;
    let complete = loop {
        if c < 2 || c as usize >= fat.len() || !seen.insert(c) {
            break false;
        }
        chain.push(c);
        match link(fat, c) {
            Link::Next(n) => c = n,
            Link::End => break true,
            Link::OutOfRange(_) => break false,
            Link::Free | Link::Bad => {
                // The cluster itself is not part of any chain.
                chain.pop();
                seen.remove(&c);
                break false;
            }
        }
    };
    Dir {
        path: String::new(),
        chain,
        complete,
        dots: false,
    }
}

/// A removed directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// Its path.
    pub path: String,
    /// Its slots, the short entry first (so that the file is gone with the
    /// first write).
    pub slots: Vec<u64>,
    /// Why, if it is not a leftover temporary file.
    pub broken: Option<String>,
}

/// The fixes, worked out from what was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// FAT #1 as it must be.
    pub fat: Vec<u32>,
    /// Entries to mark deleted.
    pub removals: Vec<Removal>,
    /// Short entries of empty files whose first cluster is to be cleared.
    pub clear_start: Vec<(u64, String)>,
    /// Clusters that become the end of a (truncated) chain: written first.
    pub ends: Vec<u32>,
    /// Files whose chain was longer than their size, and the clusters cut.
    pub truncated: Vec<(String, u32)>,
    /// Directories whose chain was cut where it went wrong.
    pub dirs_truncated: Vec<String>,
    /// Clusters freed that belonged to no entry at all (leaked).
    pub leaked: u32,
    /// All clusters freed.
    pub freed: u32,
    /// FAT[1]'s clean-shutdown or no-error bit was cleared.
    pub fat_dirty: bool,
}

/// Works out the fixes: which entries stay (and claim their clusters, in
/// directory order: on a cross-link the first one keeps them), which go,
/// which chains are cut, and which allocated clusters nobody claims.
/// `temp` picks the leftover temporary files (by path).
pub fn plan(
    geo: &Geometry,
    fat: &[u32],
    scan: &Scan,
    temp: &dyn Fn(&str) -> bool,
) -> Result<Plan, String> {
    let mut p = Plan {
        fat: fat.to_vec(),
        ..Plan::default()
    };
    let end = fat.len();
    // Who holds each cluster: 0 nobody, 1 the root, 2 + i entry i.
    let mut owner = vec![0u32; end];
    let name_of = |id: u32| match id {
        1 => "the root directory".to_string(),
        id => scan
            .entries
            .get(id as usize - 2)
            .map_or_else(String::new, |e| e.path.clone()),
    };
    let mut kept = vec![0usize; scan.dirs.len()];
    let root = scan.dirs.first().ok_or("no root directory")?;
    if root.chain.is_empty() {
        return Err(format!(
            "the root directory's first cluster {} is {:?}",
            geo.root,
            link(fat, geo.root)
        ));
    }
    for &c in &root.chain {
        owner[c as usize] = 1;
    }
    kept[0] = root.chain.len();
    if !root.complete {
        end_chain(&mut p, root.chain[root.chain.len() - 1]);
        p.dirs_truncated.push("/".into());
    }
    // Chains freed with a removed entry or cut off a file: (first cluster,
    // index in `truncated` for a cut tail).
    let mut set_aside: Vec<(u32, Option<usize>)> = Vec::new();
    for (i, e) in scan.entries.iter().enumerate() {
        if e.pos >= kept[e.dir] {
            // Its directory (or that part of it) is gone: its clusters leak.
            continue;
        }
        let id = i as u32 + 2;
        let mut slots = e.slots.clone();
        slots.rotate_right(1);
        let remove = |p: &mut Plan, broken: Option<String>| {
            p.removals.push(Removal {
                path: e.path.clone(),
                slots: slots.clone(),
                broken,
            })
        };
        if let Some(sd) = e.subdir {
            let d = &scan.dirs[sd];
            if !d.chain.is_empty() && !d.dots {
                remove(&mut p, Some("a directory without . and .. entries".into()));
                set_aside.push((e.first, None));
                continue;
            }
            let mut n = 0;
            for &c in &d.chain {
                if owner[c as usize] != 0 {
                    break;
                }
                owner[c as usize] = id;
                n += 1;
            }
            if n == 0 {
                let why = match d.chain.first() {
                    Some(&c) => {
                        format!("its cluster {c} belongs to {}", name_of(owner[c as usize]))
                    }
                    None if e.first < 2 || e.first as usize >= end => {
                        format!("its first cluster {} is out of range", e.first)
                    }
                    None => match link(fat, e.first) {
                        Link::Free => format!("its first cluster {} is free", e.first),
                        Link::Bad => format!("its first cluster {} is marked bad", e.first),
                        _ => format!("its first cluster {} belongs to another directory", e.first),
                    },
                };
                remove(&mut p, Some(why));
                set_aside.push((e.first, None));
                continue;
            }
            kept[sd] = n;
            if n < d.chain.len() || !d.complete {
                end_chain(&mut p, d.chain[n - 1]);
                p.dirs_truncated.push(e.path.clone());
            }
            continue;
        }
        if e.attr & ATTR_DIR != 0 {
            continue;
        }
        if temp(&e.path) {
            remove(&mut p, None);
            set_aside.push((e.first, None));
            continue;
        }
        let need = e.size.div_ceil(geo.cluster) as usize;
        if e.first == 0 {
            if need > 0 {
                remove(&mut p, Some(format!("{} bytes but no cluster", e.size)));
            }
            continue;
        }
        if need == 0 {
            p.clear_start
                .push((e.slots[e.slots.len() - 1], e.path.clone()));
            set_aside.push((e.first, None));
            continue;
        }
        let mut claimed = Vec::with_capacity(need);
        let mut c = e.first;
        let broken = loop {
            if c < 2 || c as usize >= end {
                break Some(format!("cluster {c} is out of range"));
            }
            match owner[c as usize] {
                0 => {}
                o if o == id => break Some(format!("its chain loops at cluster {c}")),
                o => break Some(format!("cluster {c} also belongs to {}", name_of(o))),
            }
            match link(fat, c) {
                Link::Free => break Some(format!("cluster {c} is free")),
                Link::Bad => break Some(format!("cluster {c} is marked bad")),
                l => {
                    owner[c as usize] = id;
                    claimed.push(c);
                    if claimed.len() == need {
                        if l != Link::End {
                            end_chain(&mut p, c);
                            if let Link::Next(n) = l {
                                set_aside.push((n, Some(p.truncated.len())));
                            }
                            p.truncated.push((e.path.clone(), 0));
                        }
                        break None;
                    }
                    match l {
                        Link::Next(n) => c = n,
                        Link::End => {
                            break Some(format!(
                                "its chain has {} clusters, its size needs {need}",
                                claimed.len()
                            ));
                        }
                        _ => break Some(format!("cluster {c} links out of range")),
                    }
                }
            }
        };
        if let Some(why) = broken {
            for c in claimed {
                owner[c as usize] = 0;
            }
            remove(&mut p, Some(why));
            set_aside.push((e.first, None));
        }
    }
    // Everything allocated that nobody holds is freed.
    let mut freed = HashSet::new();
    for (c, (v, &o)) in p.fat.iter_mut().zip(&owner).enumerate().skip(2) {
        if *v & MASK != 0 && *v & MASK != BAD && o == 0 {
            *v &= !MASK;
            freed.insert(c as u32);
        }
    }
    p.freed = freed.len() as u32;
    // Which of those went with a removed entry or a cut tail (walked in
    // the FAT as it was), for the report; the rest had leaked.
    let mut attributed = HashSet::new();
    for (first, tail) in set_aside {
        let mut c = first;
        let mut n = 0;
        while freed.contains(&c) && attributed.insert(c) {
            n += 1;
            match link(fat, c) {
                Link::Next(next) => c = next,
                _ => break,
            }
        }
        if let Some(t) = tail {
            p.truncated[t].1 = n;
        }
    }
    p.leaked = (freed.len() - attributed.len()) as u32;
    if let Some(f1) = p.fat.get_mut(1)
        && *f1 & (CLEAN_SHUTDOWN | NO_HARD_ERROR) != CLEAN_SHUTDOWN | NO_HARD_ERROR
    {
        *f1 |= CLEAN_SHUTDOWN | NO_HARD_ERROR;
        p.fat_dirty = true;
    }
    Ok(p)
}

fn end_chain(p: &mut Plan, c: u32) {
    let v = &mut p.fat[c as usize];
    *v = (*v & !MASK) | EOC;
    p.ends.push(c);
}

/// The FSInfo sector as it must be for `fat`; `None` if it is right.
pub fn fsinfo_fix(fsinfo: &[u8], fat: &[u32], force_hint: bool) -> Option<Vec<u8>> {
    let mut s = fsinfo.to_vec();
    let free = fat.iter().skip(2).filter(|&&v| v & MASK == 0).count() as u32;
    let mut changed = false;
    for (at, sig) in [(0, FSI_LEAD), (484, FSI_STRUCT), (508, FSI_TRAIL)] {
        if u32_at(&s, at) != sig {
            put_u32(&mut s, at, sig);
            changed = true;
        }
    }
    if u32_at(&s, FSI_FREE) != free {
        put_u32(&mut s, FSI_FREE, free);
        changed = true;
    }
    let next = u32_at(&s, FSI_NEXT);
    let valid = next == UNKNOWN || (next >= 2 && (next as usize) < fat.len());
    if !valid || changed || force_hint {
        let from = if valid && next != UNKNOWN {
            next as usize
        } else {
            2
        };
        let hint = (from..fat.len())
            .chain(2..from)
            .find(|&c| fat[c] & MASK == 0)
            .map_or(UNKNOWN, |c| c as u32);
        if hint != next {
            put_u32(&mut s, FSI_NEXT, hint);
            changed = true;
        }
    }
    changed.then_some(s)
}

/// What a check found and fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repair {
    /// Bytes per cluster.
    pub cluster_bytes: u32,
    /// Clusters allocated but held by no entry, freed.
    pub leaked_clusters: u32,
    /// All clusters freed (leaked, removed files', cut tails).
    pub freed_clusters: u32,
    /// The dirty flag (boot sector or FAT[1]) was set and is cleared.
    pub dirty_flag_cleared: bool,
    /// FAT #2 (or a further copy) differed from FAT #1 before the repair.
    pub fat_copies_differed: bool,
    /// Sectors of FAT #2 (and further copies) rewritten from FAT #1 (the
    /// repair's own fixes included).
    pub fat_copy_sectors: u32,
    /// The FSInfo free count, next-free hint or signatures were rewritten.
    pub fsinfo_fixed: bool,
    /// The backup boot sector was rewritten from the primary.
    pub backup_boot_rewritten: bool,
    /// The backup FSInfo was rewritten from the primary.
    pub backup_fsinfo_rewritten: bool,
    /// Leftover temporary files removed.
    pub temp_removed: Vec<String>,
    /// Entries removed because their chain was broken, and why.
    pub broken_removed: Vec<(String, String)>,
    /// Files whose chain was longer than their size, and clusters cut.
    pub truncated: Vec<(String, u32)>,
    /// Directories whose chain was cut where it went wrong.
    pub dirs_truncated: Vec<String>,
    /// Stray directory slots cleared (orphaned long names, garbage, stale
    /// slots after the end mark).
    pub stray_slots: u32,
    /// Writes made.
    pub writes: u32,
    /// Bytes written.
    pub bytes_written: u64,
}

impl Repair {
    /// Whether the volume was clean (nothing was written).
    pub fn is_clean(&self) -> bool {
        self.writes == 0
    }
}

/// `1710` as `1,710`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1000 => format!("{b} bytes"),
        b if b < 1_000_000 => format!("{} KB", b / 1000),
        b => format!("{:.1} MB", b as f64 / 1e6),
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_clean() {
            return write!(f, "ESP clean");
        }
        let mut parts = Vec::new();
        if self.leaked_clusters > 0 {
            let n = self.leaked_clusters;
            parts.push(format!(
                "{} leaked cluster{} ({}) freed",
                thousands(n.into()),
                if n == 1 { "" } else { "s" },
                size(u64::from(n) * u64::from(self.cluster_bytes))
            ));
        }
        if self.dirty_flag_cleared {
            parts.push("dirty flag cleared".into());
        }
        if self.fat_copies_differed {
            parts.push("FAT #2 brought in line with FAT #1".into());
        }
        if self.fsinfo_fixed {
            parts.push("free-cluster summary corrected".into());
        }
        if self.backup_boot_rewritten {
            parts.push("backup boot sector rewritten".into());
        }
        for (path, why) in &self.broken_removed {
            parts.push(format!("BROKEN {path} removed ({why})"));
        }
        for path in &self.dirs_truncated {
            parts.push(format!("BROKEN directory {path} cut short"));
        }
        for (path, n) in &self.truncated {
            parts.push(format!("{path} cut to its size ({n} clusters freed)"));
        }
        for path in &self.temp_removed {
            parts.push(format!("{path} removed"));
        }
        if self.stray_slots > 0 {
            parts.push(format!(
                "{} stray directory slots cleared",
                self.stray_slots
            ));
        }
        if parts.is_empty() {
            parts.push(format!("{} writes", self.writes));
        }
        write!(f, "ESP repaired: {}", parts.join(", "))
    }
}

/// The device with the volume's name for errors, counting writes.
struct Dev<'a, D> {
    dev: &'a mut D,
    volume: &'a str,
    writes: u32,
    bytes: u64,
}

impl<D: Read + Write + Seek> Dev<'_, D> {
    fn fail(&self, what: String, err: std::io::Error) -> Error {
        Error::FatRepair {
            volume: self.volume.to_string(),
            what,
            err,
        }
    }

    fn read(&mut self, pos: u64, buf: &mut [u8], what: &str) -> Result<(), Error> {
        self.dev
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.dev.read_exact(buf))
            .map_err(|e| self.fail(format!("reading {what}"), e))
    }

    fn write(&mut self, pos: u64, buf: &[u8], what: &str) -> Result<(), Error> {
        self.dev
            .seek(SeekFrom::Start(pos))
            .and_then(|_| self.dev.write_all(buf))
            .map_err(|e| self.fail(format!("writing {what}"), e))?;
        self.writes += 1;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    /// Makes what was written so far durable before the next step
    /// (`flush`: the production device syncs there).
    fn barrier(&mut self) -> Result<(), Error> {
        self.dev.flush().map_err(|e| self.fail("syncing".into(), e))
    }
}

/// Reads the directory tree: every directory's chain and entries.
fn scan<D: Read + Write + Seek>(
    dev: &mut Dev<'_, D>,
    geo: &Geometry,
    fat: &[u32],
) -> Result<Scan, Error> {
    let mut out = Scan::default();
    let mut seen = HashSet::new();
    out.dirs.push(dir_chain(fat, geo.root, &mut seen));
    let mut queue = VecDeque::from([0usize]);
    let mut buf = vec![0u8; geo.cluster as usize];
    while let Some(d) = queue.pop_front() {
        let mut slots: Vec<[u8; ENTRY]> = Vec::new();
        let mut offsets = Vec::new();
        for (pos, &c) in out.dirs[d].chain.clone().iter().enumerate() {
            let at = geo.cluster_offset(c);
            dev.read(at, &mut buf, &format!("directory cluster {c}"))?;
            for (k, s) in buf.chunks_exact(ENTRY).enumerate() {
                let mut e = [0u8; ENTRY];
                e.copy_from_slice(s);
                slots.push(e);
                offsets.push((at + (k * ENTRY) as u64, pos));
            }
        }
        let dot = |i: usize, name: &[u8]| {
            slots
                .get(i)
                .is_some_and(|e| &e[..11] == name && e[11] & ATTR_DIR != 0)
        };
        out.dirs[d].dots = dot(0, b".          ") && dot(1, b"..         ");
        let parsed = parse_dir(&slots);
        out.stray.extend(parsed.stray.iter().map(|&i| offsets[i].0));
        out.stale.extend(parsed.stale.iter().map(|&i| offsets[i].0));
        for (idx, name, attr, first, size) in parsed.entries {
            let sfn = idx[idx.len() - 1];
            if name == "." || name == ".." {
                continue;
            }
            if attr & ATTR_VOLUME != 0 && attr & ATTR_DIR == 0 {
                // The volume label belongs in the root only.
                if d != 0 {
                    out.stray.extend(idx.iter().map(|&i| offsets[i].0));
                }
                continue;
            }
            let path = match out.dirs[d].path.as_str() {
                "" => name,
                dir => format!("{dir}/{name}"),
            };
            let subdir = (attr & ATTR_DIR != 0).then(|| {
                let mut sub = dir_chain(fat, first, &mut seen);
                sub.path = path.clone();
                out.dirs.push(sub);
                queue.push_back(out.dirs.len() - 1);
                out.dirs.len() - 1
            });
            out.entries.push(Entry {
                dir: d,
                pos: offsets[sfn].1,
                slots: idx.iter().map(|&i| offsets[i].0).collect(),
                path,
                attr,
                first,
                size,
                subdir,
            });
        }
    }
    Ok(out)
}

/// Checks the FAT32 volume on `dev` and repairs it (see the module doc).
/// `volume` names it in errors; `temp` says which files (by path, `/`
/// separated, long names) are leftover temporary files to remove. A volume
/// that is not FAT32, or is damaged beyond these repairs, is an error and
/// nothing is written to it.
pub fn check_and_repair<D: Read + Write + Seek>(
    dev: &mut D,
    volume: &str,
    temp: &dyn Fn(&str) -> bool,
) -> Result<Repair, Error> {
    let mut dev = Dev {
        dev,
        volume,
        writes: 0,
        bytes: 0,
    };
    let not_fat32 = |msg: String| Error::NotFat32 {
        volume: volume.to_string(),
        msg,
    };
    let len = dev
        .dev
        .seek(SeekFrom::End(0))
        .map_err(|e| dev.fail("finding the size".into(), e))?;
    let mut boot = vec![0u8; 512];
    if len < 512 {
        return Err(not_fat32(format!("{len} bytes")));
    }
    dev.read(0, &mut boot, "the boot sector")?;
    let geo = Geometry::parse(&boot).map_err(not_fat32)?;
    if geo.sector_offset(geo.total_sectors) > len {
        return Err(not_fat32(format!(
            "the boot sector says {} sectors of {} bytes, the partition has {len} bytes",
            geo.total_sectors, geo.sector
        )));
    }
    let ss = geo.sector as usize;
    boot.resize(ss, 0);
    dev.read(0, &mut boot, "the boot sector")?;
    let mut fsinfo = vec![0u8; ss];
    dev.read(geo.sector_offset(geo.fsinfo), &mut fsinfo, "FSInfo")?;
    let mut fats = Vec::new();
    for copy in 0..geo.fats {
        let mut raw = vec![0u8; geo.fat_bytes() as usize];
        dev.read(
            geo.fat_offset(copy),
            &mut raw,
            &format!("FAT #{}", copy + 1),
        )?;
        fats.push(raw);
    }
    let fat: Vec<u32> = fats[0][..geo.entries() * 4]
        .chunks_exact(4)
        .map(|b| u32_at(b, 0))
        .collect();
    let tree = scan(&mut dev, &geo, &fat)?;
    let p = plan(&geo, &fat, &tree, temp).map_err(|msg| Error::FatDamaged {
        volume: volume.to_string(),
        msg,
    })?;

    let mut r = Repair {
        cluster_bytes: geo.cluster,
        leaked_clusters: p.leaked,
        freed_clusters: p.freed,
        truncated: p.truncated.clone(),
        dirs_truncated: p.dirs_truncated.clone(),
        dirty_flag_cleared: p.fat_dirty,
        fat_copies_differed: fats[1..]
            .iter()
            .any(|f| f[..geo.entries() * 4] != fats[0][..geo.entries() * 4]),
        ..Repair::default()
    };

    // 1. Directory slots: the removed files disappear before their
    // clusters are freed.
    for rm in &p.removals {
        for &at in &rm.slots {
            dev.write(at, &[DELETED], &format!("the entry of {}", rm.path))?;
        }
        match &rm.broken {
            Some(why) => r.broken_removed.push((rm.path.clone(), why.clone())),
            None => r.temp_removed.push(rm.path.clone()),
        }
    }
    for &(at, ref path) in &p.clear_start {
        let mut e = [0u8; ENTRY];
        dev.read(at, &mut e, &format!("the entry of {path}"))?;
        e[20..22].fill(0);
        e[26..28].fill(0);
        dev.write(at, &e, &format!("the entry of {path}"))?;
    }
    for &at in &tree.stray {
        dev.write(at, &[DELETED], "a stray directory slot")?;
    }
    for &at in &tree.stale {
        dev.write(at, &[0u8; ENTRY], "a stale directory slot")?;
    }
    r.stray_slots = (tree.stray.len() + tree.stale.len()) as u32;
    if dev.writes > 0 {
        dev.barrier()?;
    }

    // 2. FAT #1, sector by sector: the sectors with new end marks first,
    // so that a chain is cut before its tail is freed.
    let mut fat1 = fats[0].clone();
    for (i, v) in p.fat.iter().enumerate() {
        put_u32(&mut fat1, i * 4, *v);
    }
    let sector_of = |c: u32| (c as usize * 4) / ss;
    let ends: Vec<usize> = {
        let mut v: Vec<usize> = p.ends.iter().map(|&c| sector_of(c)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let changed: Vec<usize> = (0..geo.fat_sectors as usize)
        .filter(|&s| fat1[s * ss..(s + 1) * ss] != fats[0][s * ss..(s + 1) * ss])
        .collect();
    let order = ends
        .iter()
        .copied()
        .filter(|s| changed.contains(s))
        .chain(changed.iter().copied().filter(|s| !ends.contains(s)));
    let before = dev.writes;
    for s in order {
        let at = geo.fat_offset(0) + (s * ss) as u64;
        dev.write(at, &fat1[s * ss..(s + 1) * ss], "FAT #1")?;
    }
    if dev.writes > before {
        dev.barrier()?;
    }

    // 3. The other FATs from FAT #1.
    for copy in 1..geo.fats {
        let before = dev.writes;
        for s in 0..geo.fat_sectors as usize {
            let want = &fat1[s * ss..(s + 1) * ss];
            if fats[copy as usize][s * ss..(s + 1) * ss] != *want {
                let at = geo.fat_offset(copy) + (s * ss) as u64;
                dev.write(at, want, &format!("FAT #{}", copy + 1))?;
                r.fat_copy_sectors += 1;
            }
        }
        if dev.writes > before {
            dev.barrier()?;
        }
    }

    // 4. FSInfo, now that the clusters are free.
    let repaired = dev.writes > 0;
    let mut fsinfo_now = fsinfo.clone();
    if let Some(fixed) = fsinfo_fix(&fsinfo, &p.fat, repaired) {
        dev.write(geo.sector_offset(geo.fsinfo), &fixed, "FSInfo")?;
        dev.barrier()?;
        r.fsinfo_fixed = true;
        fsinfo_now = fixed;
    }

    // 5. The dirty flag, once everything else holds.
    let mut boot_now = boot.clone();
    if boot_now[BPB_STATUS] & 0x03 != 0 {
        boot_now[BPB_STATUS] &= !0x03;
        dev.write(0, &boot_now, "the boot sector")?;
        dev.barrier()?;
        r.dirty_flag_cleared = true;
    }

    // 6. The backups from the primaries.
    if let Some(b) = geo.backup {
        let mut backup = vec![0u8; ss];
        dev.read(geo.sector_offset(b), &mut backup, "the backup boot sector")?;
        if backup != boot_now {
            dev.write(geo.sector_offset(b), &boot_now, "the backup boot sector")?;
            r.backup_boot_rewritten = true;
        }
    }
    if let Some(b) = geo.backup_fsinfo() {
        let mut backup = vec![0u8; ss];
        dev.read(geo.sector_offset(b), &mut backup, "the backup FSInfo")?;
        // A stale free count in the backup alone is no reason to write a
        // clean volume (fatfs and Linux never update it); bad signatures are.
        let bad_sigs = u32_at(&backup, 0) != FSI_LEAD || u32_at(&backup, 484) != FSI_STRUCT;
        if (dev.writes > 0 || bad_sigs) && backup != fsinfo_now {
            dev.write(geo.sector_offset(b), &fsinfo_now, "the backup FSInfo")?;
            r.backup_fsinfo_rewritten = true;
        }
    }
    if r.backup_boot_rewritten || r.backup_fsinfo_rewritten {
        dev.barrier()?;
    }
    r.writes = dev.writes;
    r.bytes_written = dev.bytes;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The boot sector mkfs.vfat -F 32 -S 512 writes for 64 MiB.
    fn bpb() -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[11..13].copy_from_slice(&512u16.to_le_bytes());
        b[13] = 1;
        b[14..16].copy_from_slice(&32u16.to_le_bytes());
        b[16] = 2;
        b[21] = 0xF8;
        b[32..36].copy_from_slice(&131_072u32.to_le_bytes());
        b[36..40].copy_from_slice(&1009u32.to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes());
        b[48..50].copy_from_slice(&1u16.to_le_bytes());
        b[50..52].copy_from_slice(&6u16.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    #[test]
    fn geometry_of_a_fat32_boot_sector() {
        let g = Geometry::parse(&bpb()).expect("fat32");
        assert_eq!(g.clusters, 131_072 - 32 - 2 * 1009);
        assert_eq!(g.cluster, 512);
        assert_eq!(g.backup, Some(6));
        assert_eq!(g.backup_fsinfo(), Some(7));
        assert_eq!(g.fat_offset(1), (32 + 1009) * 512);
        assert_eq!(g.cluster_offset(2), (32 + 2 * 1009) * 512);
    }

    #[test]
    fn nonsense_boot_sectors_are_named() {
        type Spoil = fn(&mut Vec<u8>);
        let cases: [(Spoil, &str); 6] = [
            (|b| b[510] = 0, "55 AA"),
            (
                |b| b[11..13].copy_from_slice(&500u16.to_le_bytes()),
                "500 bytes per sector",
            ),
            (|b| b[22] = 9, "FAT12/FAT16"),
            (
                |b| b[32..36].copy_from_slice(&40_000u32.to_le_bytes()),
                "not FAT32",
            ),
            (|b| b[44] = 0, "root directory cluster 0"),
            (|b| b[48] = 40, "FSInfo sector 40"),
        ];
        for (spoil, want) in cases {
            let mut b = bpb();
            spoil(&mut b);
            let err = Geometry::parse(&b).expect_err(want);
            assert!(err.contains(want), "{err} (wanted {want})");
        }
    }

    #[test]
    fn links() {
        let fat = [0x0FFF_FFF8, 0x0FFF_FFFF, 3, 0x1FFF_FFFF, 0, BAD, 1, 99];
        assert_eq!(link(&fat, 2), Link::Next(3));
        assert_eq!(link(&fat, 3), Link::End);
        assert_eq!(link(&fat, 4), Link::Free);
        assert_eq!(link(&fat, 5), Link::Bad);
        assert_eq!(link(&fat, 6), Link::OutOfRange(1));
        assert_eq!(link(&fat, 7), Link::OutOfRange(99));
        assert_eq!(link(&fat, 100), Link::Free);
    }

    fn short(name: &[u8; 11], attr: u8, first: u32, size: u32) -> [u8; ENTRY] {
        let mut e = [0u8; ENTRY];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e[20..22].copy_from_slice(&((first >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(first as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    /// The long-name slots of `name` for the short entry `sfn`, in disk order.
    fn long(name: &str, sfn: &[u8; 11]) -> Vec<[u8; ENTRY]> {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        if !units.len().is_multiple_of(13) {
            units.push(0);
        }
        while !units.len().is_multiple_of(13) {
            units.push(0xFFFF);
        }
        let n = units.len() / 13;
        let sum = lfn_checksum(sfn);
        (0..n)
            .rev()
            .map(|i| {
                let mut e = [0u8; ENTRY];
                e[0] = (i as u8 + 1) | if i == n - 1 { 0x40 } else { 0 };
                e[11] = ATTR_LFN;
                e[13] = sum;
                let at = (1..11)
                    .step_by(2)
                    .chain((14..26).step_by(2))
                    .chain((28..32).step_by(2));
                for (k, pos) in at.enumerate() {
                    e[pos..pos + 2].copy_from_slice(&units[i * 13 + k].to_le_bytes());
                }
                e
            })
            .collect()
    }

    #[test]
    fn directory_slots() {
        let sfn = *b"SLOT-B~1NEW";
        let mut slots = long("slot-b.conf.new", &sfn);
        assert_eq!(slots.len(), 2);
        slots.push(short(&sfn, 0x20, 9, 100));
        // An orphaned long name (its short entry was never written).
        slots.extend(long("vmlinuz-b.new", b"VMLINU~1NEW"));
        // A long name whose checksum does not match: the short name stays.
        slots.extend(long("other", b"XXXXXXXXXXX"));
        slots.push(short(b"KERNEL     ", 0x20, 12, 5));
        // Garbage (old file data in a directory cluster).
        slots.push([0x2A; ENTRY]);
        slots.push(short(b"EFI        ", ATTR_DIR, 3, 0));
        slots.push([0; ENTRY]);
        slots.push(short(b"STALE   TXT", 0x20, 4, 1));
        let p = parse_dir(&slots);
        let names: Vec<&str> = p.entries.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(names, ["slot-b.conf.new", "KERNEL", "EFI"]);
        assert_eq!(p.entries[0].0, [0, 1, 2]);
        assert_eq!((p.entries[0].3, p.entries[0].4), (9, 100));
        assert_eq!(p.entries[1].0, [5]);
        assert_eq!(p.stray, [3, 4, 6]);
        assert_eq!(p.stale, [9]);
    }

    #[test]
    fn short_names_show_their_case() {
        let mut e = short(b"VMLINUZ    ", 0x20, 0, 0);
        assert_eq!(short_name(&e), "VMLINUZ");
        e[12] = 0x08;
        assert_eq!(short_name(&e), "vmlinuz");
        let e = short(b"LOADER  CON", 0x20, 0, 0);
        assert_eq!(short_name(&e), "LOADER.CON");
    }

    fn entry(dir: usize, path: &str, attr: u8, first: u32, size: u32, slot: u64) -> Entry {
        Entry {
            dir,
            pos: 0,
            slots: vec![slot, slot + 32],
            path: path.into(),
            attr,
            first,
            size,
            subdir: None,
        }
    }

    #[test]
    fn the_plan_frees_cuts_and_removes() {
        let geo = Geometry::parse(&bpb()).expect("fat32");
        let mut fat = vec![0u32; 20];
        fat[0] = 0x0FFF_FFF8;
        fat[1] = 0x07FF_FFFF; // not cleanly unmounted
        fat[2] = EOC; // root
        fat[3] = 4; // a: two clusters, as its size says
        fat[4] = EOC;
        fat[5] = 6; // b: three clusters for one cluster's worth
        fat[6] = 7;
        fat[7] = 0x1FFF_FFFF; // (reserved high bits are kept)
        fat[10] = EOC; // leaked
        fat[14] = 15; // the .new file
        fat[15] = EOC;
        fat[16] = 17; // d: allocated, but its size was never written
        fat[17] = EOC;
        fat[18] = BAD;
        let scan = Scan {
            dirs: vec![Dir {
                path: String::new(),
                chain: vec![2],
                complete: true,
                dots: false,
            }],
            entries: vec![
                entry(0, "a", 0x20, 3, 1000, 1000),
                entry(0, "b", 0x20, 5, 10, 2000),
                entry(0, "c", 0x20, 12, 10, 3000),
                entry(0, "x", 0x20, 4, 10, 4000),
                entry(0, "EFI/tandem/vmlinuz-b.new", 0x20, 14, 1000, 5000),
                entry(0, "d", 0x20, 16, 0, 6000),
                entry(0, "e", 0x20, 3, 5000, 7000),
            ],
            ..Scan::default()
        };
        let p = plan(&geo, &fat, &scan, &|p| p.ends_with(".new")).expect("plan");
        assert_eq!(p.fat[3], 4);
        assert_eq!(p.fat[4], EOC);
        assert_eq!(p.fat[5], EOC);
        assert_eq!(p.fat[6], 0);
        assert_eq!(p.fat[7], 0x1000_0000);
        assert_eq!(
            [p.fat[10], p.fat[14], p.fat[15], p.fat[16], p.fat[17]],
            [0; 5]
        );
        assert_eq!(p.fat[18], BAD);
        assert_eq!(p.fat[1], 0x0FFF_FFFF);
        assert!(p.fat_dirty);
        assert_eq!(p.ends, [5]);
        assert_eq!(p.truncated, [("b".to_string(), 2)]);
        assert_eq!(p.clear_start, [(6032, "d".to_string())]);
        assert_eq!((p.freed, p.leaked), (7, 1));
        let removed: Vec<(&str, Option<&str>)> = p
            .removals
            .iter()
            .map(|r| (r.path.as_str(), r.broken.as_deref()))
            .collect();
        assert_eq!(
            removed,
            [
                ("c", Some("cluster 12 is free")),
                ("x", Some("cluster 4 also belongs to a")),
                ("EFI/tandem/vmlinuz-b.new", None),
                ("e", Some("cluster 3 also belongs to a")),
            ]
        );
        // The short entry goes first.
        assert_eq!(p.removals[0].slots, [3032, 3000]);
    }

    #[test]
    fn broken_directories_are_cut_or_removed() {
        let geo = Geometry::parse(&bpb()).expect("fat32");
        let mut fat = vec![0u32; 12];
        fat[2] = 3;
        fat[3] = 0; // the root's second cluster was freed
        fat[4] = 5;
        fat[5] = 1; // out of range
        fat[6] = 7;
        fat[7] = EOC;
        let mut seen = HashSet::new();
        let root = dir_chain(&fat, 2, &mut seen);
        assert_eq!(
            (root.chain.as_slice(), root.complete),
            ([2].as_slice(), false)
        );
        let mut sub = dir_chain(&fat, 4, &mut seen);
        assert_eq!(
            (sub.chain.as_slice(), sub.complete),
            ([4, 5].as_slice(), false)
        );
        sub.dots = true;
        let mut efi = entry(0, "EFI", ATTR_DIR, 4, 0, 100);
        efi.subdir = Some(1);
        let mut inner = entry(1, "EFI/f", 0x20, 6, 600, 200);
        inner.pos = 1;
        let scan = Scan {
            dirs: vec![root, sub],
            entries: vec![efi, inner],
            ..Scan::default()
        };
        let p = plan(&geo, &fat, &scan, &|_| false).expect("plan");
        assert_eq!(p.dirs_truncated, ["/", "EFI"]);
        assert_eq!((p.fat[2], p.fat[5]), (EOC, EOC));
        assert!(p.removals.is_empty());
        assert_eq!(p.leaked, 0);

        // Old file data with the directory bit is no directory.
        let mut junk = scan.clone();
        junk.dirs[1].dots = false;
        let p = plan(&geo, &fat, &junk, &|_| false).expect("plan");
        assert_eq!(p.removals.len(), 1);
        assert_eq!(
            p.removals[0].broken.as_deref(),
            Some("a directory without . and .. entries")
        );
        assert_eq!((p.fat[4], p.fat[6]), (0, 0));

        let mut fat = vec![0u32; 12];
        fat[2] = EOC;
        let empty = Scan {
            dirs: vec![dir_chain(&fat, 3, &mut HashSet::new())],
            ..Scan::default()
        };
        assert!(plan(&geo, &fat, &empty, &|_| false).is_err());
    }

    #[test]
    fn fsinfo_is_recomputed() {
        let mut fat = vec![EOC; 10];
        fat[6] = 0;
        fat[8] = 0;
        let mut s = vec![0u8; 512];
        put_u32(&mut s, 0, FSI_LEAD);
        put_u32(&mut s, 484, FSI_STRUCT);
        put_u32(&mut s, 508, FSI_TRAIL);
        put_u32(&mut s, FSI_FREE, 2);
        put_u32(&mut s, FSI_NEXT, 6);
        assert_eq!(fsinfo_fix(&s, &fat, false), None);
        assert_eq!(fsinfo_fix(&s, &fat, true), None);
        put_u32(&mut s, FSI_FREE, 5);
        put_u32(&mut s, FSI_NEXT, 7);
        let f = fsinfo_fix(&s, &fat, false).expect("fixed");
        assert_eq!((u32_at(&f, FSI_FREE), u32_at(&f, FSI_NEXT)), (2, 8));
        put_u32(&mut s, FSI_FREE, 2);
        put_u32(&mut s, FSI_NEXT, 70);
        s[0] = 0;
        let f = fsinfo_fix(&s, &fat, false).expect("fixed");
        assert_eq!((u32_at(&f, 0), u32_at(&f, FSI_NEXT)), (FSI_LEAD, 6));
    }

    #[test]
    fn the_report_in_one_line() {
        let r = Repair {
            cluster_bytes: 512,
            leaked_clusters: 1710,
            freed_clusters: 1710,
            dirty_flag_cleared: true,
            backup_boot_rewritten: true,
            temp_removed: vec!["EFI/tandem/vmlinuz-b.new".into()],
            writes: 9,
            ..Repair::default()
        };
        assert!(!r.is_clean());
        assert_eq!(
            r.to_string(),
            "ESP repaired: 1,710 leaked clusters (875 KB) freed, dirty flag cleared, backup boot sector rewritten, EFI/tandem/vmlinuz-b.new removed"
        );
        assert_eq!(Repair::default().to_string(), "ESP clean");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
