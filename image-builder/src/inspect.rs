//! `tandem inspect`: what is on a Tandem disk and what is wrong with it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use tandem_contract::Partition as Layout;
use tandem_contract::esp::{self, SlotConf, SlotFiles};

use serde::Serialize;
use tandem_slot::gpt::Copy;
use tandem_slot::guid::types;
use tandem_slot::{FileDisk, Gpt, GptPrio, Slot, table, verity};

use crate::build::fat;
use crate::error::{Error, IoContext, Result};

/// Everything `inspect` found.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The disk image.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Disk GUID.
    pub disk_guid: String,
    /// Which GPT copy was used and what was wrong with either.
    pub table: TableState,
    /// Partitions in table order.
    pub partitions: Vec<Partition>,
    /// Both /usr slots.
    pub slots: Vec<SlotState>,
    /// The slot the bootloader would pick next.
    pub next_boot: Option<String>,
    /// Problems, each saying what is wrong and what to do; empty if none.
    pub problems: Vec<String>,
}

/// The state of the partition table.
#[derive(Clone, Debug, Serialize)]
pub struct TableState {
    /// `primary` or `backup`.
    pub read_from: String,
    /// Damage of the primary copy.
    pub primary_damage: Option<String>,
    /// Damage of the backup copy.
    pub backup_damage: Option<String>,
}

/// One partition.
#[derive(Clone, Debug, Serialize)]
pub struct Partition {
    /// GPT number.
    pub number: u32,
    /// Label.
    pub label: String,
    /// Type, by name where known.
    pub kind: String,
    /// Partition GUID.
    pub guid: String,
    /// Offset in bytes.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Attribute bits, hex.
    pub attributes: String,
}

/// One /usr slot.
#[derive(Clone, Debug, Serialize)]
pub struct SlotState {
    /// `A` or `B`.
    pub slot: String,
    /// Priority.
    pub priority: u8,
    /// Tries left.
    pub tries: u8,
    /// Successful flag.
    pub successful: bool,
    /// Whether the selection rule may pick it.
    pub bootable: bool,
    /// Version from its ESP config, if any.
    pub version: Option<String>,
    /// dm-verity root hash from its ESP config, if any.
    pub root_hash: Option<String>,
    /// Whether its kernel and initramfs are on the ESP.
    pub boot_files: bool,
    /// With `--verify`: whether the slot's content matches its root hash.
    pub verified: Option<bool>,
}

/// Inspects the disk image at `path`; with `verify`, re-hashes each slot.
pub fn inspect(path: &Path, verify: bool) -> Result<Inspection> {
    let mut dev = FileDisk::open_read_only(path).io("open", path)?;
    let size = std::fs::metadata(path).io("stat", path)?.len();
    let gpt = Gpt::read(&mut dev).map_err(|e| Error::BadDisk {
        path: path.into(),
        message: format!("{e}: not a disk image, or its partition table is destroyed"),
    })?;
    let mut problems = Vec::new();
    if let Some(d) = &gpt.health.primary {
        problems.push(format!("primary partition table damaged ({d}); the backup was used: any slot operation rewrites both copies, or run `sgdisk -e`"));
    }
    if let Some(d) = &gpt.health.backup {
        problems.push(format!(
            "backup partition table damaged ({d}): any slot operation rewrites both copies"
        ));
    }
    let partitions: Vec<Partition> = gpt
        .partitions()
        .map(|(number, e)| Partition {
            number,
            label: e.name(),
            kind: type_name(e.type_guid).into(),
            guid: e.unique_guid.to_string(),
            offset: e.first_lba * gpt.block_size,
            size: e.num_blocks() * gpt.block_size,
            attributes: format!("{:#018x}", e.attributes),
        })
        .collect();
    for part in [Layout::Esp, Layout::Oem, Layout::Root] {
        let (number, label, ty) = (part.number(), part.label(), part.type_guid());
        match gpt.partition(number) {
            None => problems.push(format!(
                "partition {number} ({label}) is missing: not a Tandem disk"
            )),
            Some(e) if e.type_guid != ty => problems.push(format!(
                "partition {number} ({label}) has type {} instead of {ty}",
                e.type_guid
            )),
            Some(_) => {}
        }
    }

    let esp = gpt.partition(Layout::Esp.number()).map(|e| {
        (
            e.first_lba * gpt.block_size,
            e.num_blocks() * gpt.block_size,
        )
    });
    let mut slots = Vec::new();
    let mut next_boot = None;
    match table::slot_pair(&gpt) {
        Err(e) => problems.push(e.to_string()),
        Ok(pair) => {
            next_boot = pair.next_boot().map(|s| s.to_string());
            if next_boot.is_none() {
                problems.push(format!("no slot can boot ({}): the bootloader will stop; set a slot with `cgpt add -i 3 -P 1 -S 1`", tandem_slot::TransitionError::NoBootableSlot(pair)));
            }
            for slot in Slot::ALL {
                let s = slot_state(path, &gpt, slot, pair.get(slot), esp, verify, &mut problems)?;
                slots.push(s);
            }
        }
    }
    Ok(Inspection {
        path: path.into(),
        size,
        disk_guid: gpt.disk_guid.to_string(),
        table: TableState {
            read_from: match gpt.read_from {
                Copy::Primary => "primary",
                Copy::Backup => "backup",
            }
            .into(),
            primary_damage: gpt.health.primary.as_ref().map(ToString::to_string),
            backup_damage: gpt.health.backup.as_ref().map(ToString::to_string),
        },
        partitions,
        slots,
        next_boot,
        problems,
    })
}

fn slot_state(
    path: &Path,
    gpt: &Gpt,
    slot: Slot,
    attrs: GptPrio,
    esp: Option<(u64, u64)>,
    verify: bool,
    problems: &mut Vec<String>,
) -> Result<SlotState> {
    let files = SlotFiles::of(slot);
    let reader = esp.and_then(|(off, size)| fat::FatReader::open(path, off, size).ok());
    let conf = reader
        .as_ref()
        .and_then(|r| r.read(&files.conf).ok())
        .map(|b| esp::parse_slot_conf(&b).value);
    let verity = conf.as_ref().and_then(SlotConf::usr_verity);
    let version = conf.as_ref().and_then(|c| c.version.clone());
    let root_hash = verity.as_ref().map(|v| v.root_hash.clone());
    let boot_files = conf.is_some()
        && reader
            .as_ref()
            .is_some_and(|r| r.exists(&files.initrd) && r.exists(&files.kernel));
    if attrs.is_bootable() && !boot_files {
        problems.push(format!("slot {slot} is bootable but its kernel, initramfs or {} is missing from the ESP: the bootloader will give it up", files.conf));
    }
    if conf.is_some() && verity.is_none() {
        problems.push(format!("slot {slot}: {} has no valid tandem.usrhash, tandem.usrsalt and tandem.usrblocks: the initramfs will refuse to boot it", files.conf));
    }
    let mut verified = None;
    if verify && let Some(v) = &verity {
        let entry = table::usr_entry(gpt, slot).map_err(|e| Error::BadDisk {
            path: path.into(),
            message: e.to_string(),
        })?;
        let ok = verify_slot(
            path,
            entry.first_lba * gpt.block_size,
            v.data_blocks,
            &v.salt,
            &v.root_hash,
        )?;
        if !ok {
            problems.push(format!("slot {slot}: /usr does not match its dm-verity root hash (damaged or tampered): it will not boot"));
        }
        verified = Some(ok);
    }
    Ok(SlotState {
        slot: slot.to_string(),
        priority: attrs.priority(),
        tries: attrs.tries(),
        successful: attrs.successful(),
        bootable: attrs.is_bootable(),
        version,
        root_hash,
        boot_files,
        verified,
    })
}

/// Re-hashes a slot and compares it with the expected root hash.
fn verify_slot(
    path: &Path,
    offset: u64,
    blocks: u64,
    salt_hex: &str,
    root_hex: &str,
) -> Result<bool> {
    use std::io::{Read, Seek};
    let salt = hex::decode(salt_hex).map_err(|e| Error::BadDisk {
        path: path.into(),
        message: format!("bad salt in slot config: {e}"),
    })?;
    let mut f = std::fs::File::open(path).io("open", path)?;
    f.seek(std::io::SeekFrom::Start(offset)).io("seek", path)?;
    let mut r =
        std::io::BufReader::with_capacity(1 << 20, f.take(blocks * verity::BLOCK_SIZE as u64));
    let tree = verity::build(&mut r, blocks, &salt, |_| {}).io("hash slot in", path)?;
    Ok(verity::hex(&tree.root) == root_hex)
}

fn type_name(g: tandem_slot::Guid) -> &'static str {
    match g {
        types::EFI_SYSTEM => "EFI system",
        types::USR => "/usr slot",
        types::LINUX_DATA => "Linux data",
        types::ROOT => "resizable root",
        _ => "other",
    }
}

/// The inspection for people.
pub fn render(i: &Inspection) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} ({} MiB), disk GUID {}",
        i.path.display(),
        i.size >> 20,
        i.disk_guid
    );
    let _ = writeln!(s, "partition table: read from {} copy", i.table.read_from);
    let _ = writeln!(
        s,
        "\n  #  label        type             offset MiB   size MiB  attributes"
    );
    for p in &i.partitions {
        let _ = writeln!(
            s,
            "{:>3}  {:<12} {:<16} {:>10} {:>10}  {}",
            p.number,
            p.label,
            p.kind,
            p.offset >> 20,
            p.size >> 20,
            p.attributes
        );
    }
    let _ = writeln!(
        s,
        "\n  slot  priority  tries  successful  bootable  version      root hash"
    );
    for sl in &i.slots {
        let verified = match sl.verified {
            Some(true) => " (verified)",
            Some(false) => " (MISMATCH)",
            None => "",
        };
        let _ = writeln!(
            s,
            "  {:<4}  {:>8}  {:>5}  {:>10}  {:>8}  {:<11}  {}{}",
            sl.slot,
            sl.priority,
            sl.tries,
            if sl.successful { "yes" } else { "no" },
            if sl.bootable { "yes" } else { "no" },
            sl.version.as_deref().unwrap_or("-"),
            sl.root_hash.as_deref().map_or("-".to_string(), |h| h
                .chars()
                .take(16)
                .collect::<String>()
                + "…"),
            verified
        );
    }
    let _ = writeln!(
        s,
        "\nnext boot: {}",
        i.next_boot
            .as_deref()
            .map_or("none: no slot can boot".to_string(), |b| format!(
                "slot {b}"
            ))
    );
    if i.problems.is_empty() {
        let _ = writeln!(s, "no problems found");
    } else {
        let _ = writeln!(s, "\nproblems:");
        for p in &i.problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_parsing() {
        // inspect reads slot files with the one parser the bootloader uses.
        let hash = "ab".repeat(32);
        let c = format!(
            "# x\nversion 1.2.3\noptions tandem.usrhash={hash} tandem.usrsalt=- tandem.usrblocks=7\n"
        );
        let conf = esp::parse_slot_conf(c.as_bytes()).value;
        assert_eq!(conf.version.as_deref(), Some("1.2.3"));
        let v = conf.usr_verity().expect("verity");
        assert_eq!(v.root_hash, hash);
        assert_eq!(v.data_blocks, 7);
        let short =
            esp::parse_slot_conf(b"version 1\noptions tandem.usrhash=ab tandem.usrblocks=7\n");
        assert_eq!(short.value.usr_verity(), None, "a short hash is no verity");
    }
}
