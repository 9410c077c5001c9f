//! The FAT partitions: the ESP (partition 1), where a slot's kernel,
//! initramfs and `slot-<x>.conf` live (docs/boot-chain.md), and the OEM
//! partition (6), which may carry an `update.toml`. Both are read and
//! written in place on the boot disk with `fatfs`; nothing is mounted.
//!
//! A slot's files are replaced by writing `<name>.new` and renaming it into
//! place. fatfs cannot rename over an existing file, and the ESP is sized
//! for two slots, not three: the inactive slot's old files are deleted
//! first (its attributes are already cleared, so they are dead). The
//! running slot's files are never touched.
//!
//! A power cut in the middle of that leaves the FAT inconsistent, and
//! nothing mounts the ESP to repair it: before writing, [`install_slot`]
//! checks and repairs it ([`repair`]), removing leftover `.new` files.

pub mod repair;

#[cfg(test)]
mod cut_tests;

use std::io::{Read, Seek, Write};

use tandem_contract::Partition;
use tandem_contract::esp::{self as files, SlotConf, SlotFiles, Writer};
use tandem_slot::Slot;

use repository::repo::Verity;

use crate::clock;
use crate::disk::{Cursor, Region};
use crate::error::Error;

pub use repair::Repair;

/// FAT time stamps from the system clock (fatfs defaults to 1980-01-01).
#[derive(Debug)]
struct SystemTime;

impl fatfs::TimeProvider for SystemTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.get_current_date_time().date
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        let c = clock::civil(clock::now_unix());
        // FAT dates cover 1980–2107.
        let year = c.year.clamp(1980, 2107) as u16;
        fatfs::DateTime {
            date: fatfs::Date {
                year,
                month: c.month as u16,
                day: c.day as u16,
            },
            time: fatfs::Time {
                hour: c.hour as u16,
                min: c.minute as u16,
                sec: c.second as u16,
                millis: 0,
            },
        }
    }
}

static SYSTEM_TIME: SystemTime = SystemTime;

/// A FAT file system on a partition of the boot disk.
pub struct Fat {
    fs: fatfs::FileSystem<Cursor>,
    region: Region,
    label: &'static str,
}

impl std::fmt::Debug for Fat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fat({})", self.region.name())
    }
}

impl Fat {
    /// Opens the FAT file system of `region`, the partition `part`.
    pub fn open(region: &Region, part: Partition) -> Result<Fat, Error> {
        let label = part.label();
        let opts = fatfs::FsOptions::new().time_provider(&SYSTEM_TIME);
        let fs = fatfs::FileSystem::new(region.cursor(), opts).map_err(|err| Error::Fat {
            what: format!("opening the FAT file system of {}", region.name()),
            partition: label,
            err,
        })?;
        Ok(Fat {
            fs,
            region: region.clone(),
            label,
        })
    }

    fn err(&self, what: String, err: std::io::Error) -> Error {
        Error::Fat {
            what,
            partition: self.label,
            err,
        }
    }

    /// The content of `path`, `None` if it does not exist.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut f = match self.fs.root_dir().open_file(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(format!("opening {path}"), e)),
        };
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| self.err(format!("reading {path}"), e))?;
        Ok(Some(out))
    }

    /// Removes `path` (`dir/name`) if it exists.
    pub fn remove(&self, path: &str) -> Result<(), Error> {
        remove_in(&self.fs, self.label, path)
    }

    /// Writes `dir/name.new`, then renames it to `path` = `dir/name`
    /// (removing an old `dir/name` first: fatfs cannot rename over a file).
    pub fn replace(&self, path: &str, data: &[u8]) -> Result<(), Error> {
        replace_in(&self.fs, self.label, path, data)
    }

    /// Flushes the file system and syncs the partition.
    pub fn close(self) -> Result<(), Error> {
        let Fat { fs, region, label } = self;
        fs.unmount().map_err(|err| Error::Fat {
            what: "unmounting".into(),
            partition: label,
            err,
        })?;
        region.sync().map_err(|err| Error::Fat {
            what: "syncing".into(),
            partition: label,
            err,
        })
    }
}

fn fat_err(label: &'static str) -> impl Fn(String, std::io::Error) -> Error {
    move |what, err| Error::Fat {
        what,
        partition: label,
        err,
    }
}

/// [`Fat::remove`] on any device (the tests record what it writes).
fn remove_in<D: Read + Write + Seek>(
    fs: &fatfs::FileSystem<D>,
    label: &'static str,
    path: &str,
) -> Result<(), Error> {
    let err = fat_err(label);
    let (dir, name) = split(path);
    let d = match fs.root_dir().open_dir(dir) {
        _ if dir.is_empty() => fs.root_dir(),
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(format!("opening {dir}"), e)),
    };
    match d.remove(name) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(err(format!("removing {dir}/{name}"), e))
        }
        _ => Ok(()),
    }
}

/// [`Fat::replace`] on any device.
fn replace_in<D: Read + Write + Seek>(
    fs: &fatfs::FileSystem<D>,
    label: &'static str,
    path: &str,
    data: &[u8],
) -> Result<(), Error> {
    let err = fat_err(label);
    let (dir, name) = split(path);
    let d = match fs.root_dir().open_dir(dir) {
        _ if dir.is_empty() => fs.root_dir(),
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs
            .root_dir()
            .create_dir(dir)
            .map_err(|e| err(format!("creating {dir}"), e))?,
        Err(e) => return Err(err(format!("opening {dir}"), e)),
    };
    let tmp = format!("{name}.new");
    remove_in(fs, label, &format!("{path}.new"))?;
    {
        let mut f = d
            .create_file(&tmp)
            .map_err(|e| err(format!("creating {dir}/{tmp}"), e))?;
        f.truncate()
            .map_err(|e| err(format!("truncating {dir}/{tmp}"), e))?;
        f.write_all(data)
            .and_then(|()| f.flush())
            .map_err(|e| err(format!("writing {dir}/{tmp}"), e))?;
    }
    remove_in(fs, label, path)?;
    d.rename(&tmp, &d, name)
        .map_err(|e| err(format!("renaming {dir}/{tmp} to {name}"), e))
}

/// `dir/name` as (`dir`, `name`); a name at the root has the directory `""`.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Reads a slot's `slot-<x>.conf`, if any.
pub fn read_slot_conf(esp: &Region, slot: Slot) -> Result<Option<SlotConf>, Error> {
    let fat = Fat::open(esp, Partition::Esp)?;
    Ok(fat
        .read(&SlotFiles::of(slot).conf)?
        .map(|b| files::parse_slot_conf(&b).value))
}

/// The first of `paths` on the ESP whose content `accept`s, if any: a
/// kernel or initramfs an update needs may already be there (the running
/// slot's, or the inactive slot's from an earlier attempt).
pub fn find_file(
    esp: &Region,
    paths: &[&str],
    accept: impl Fn(&[u8]) -> bool,
) -> Result<Option<Vec<u8>>, Error> {
    let fat = Fat::open(esp, Partition::Esp)?;
    for path in paths {
        if let Some(bytes) = fat.read(path)?
            && accept(&bytes)
        {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

/// The `slot-<x>.conf` for `version` with `verity`.
pub fn slot_conf(version: &str, verity: &Verity) -> String {
    SlotConf::new(version, verity).render(Writer::Updater)
}

/// Whether `path` on the ESP is a file [`Fat::replace`] left behind when
/// it was cut before its rename: `EFI/tandem/<name>.new`.
pub fn is_leftover_temp(path: &str) -> bool {
    let p = path.to_ascii_lowercase();
    p.starts_with(&format!("{}/", files::DIR.to_ascii_lowercase())) && p.ends_with(".new")
}

/// The partition as the repair's device: `flush` syncs it, so that each
/// step of a repair is on the disk before the next begins.
struct Durable(Cursor, Region);

impl Read for Durable {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Durable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.1.sync()
    }
}

impl Seek for Durable {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.0.seek(to)
    }
}

/// Checks the ESP's FAT and repairs what a power cut during an earlier
/// write left (leftover `.new` files included); logs what it fixed. The
/// engine calls it at start; [`install_slot`] before it writes.
pub fn check_and_repair_esp(esp: &Region) -> Result<Repair, Error> {
    let mut dev = Durable(esp.cursor(), esp.clone());
    let repair = repair::check_and_repair(&mut dev, esp.name(), &is_leftover_temp)?;
    log_repair(esp.name(), &repair);
    Ok(repair)
}

fn log_repair(volume: &str, repair: &Repair) {
    if repair.is_clean() {
        return;
    }
    crate::log!("{volume}: {repair}");
    for (path, why) in &repair.broken_removed {
        crate::log!(
            "warning: {volume}: {path} had a broken cluster chain ({why}); its entry was removed"
        );
    }
}

/// Installs a slot's kernel, initramfs and slot file (all verified by the
/// caller). The slot file comes last: the bootloader counts a slot as
/// installed only when all three exist. The ESP is checked and repaired
/// first: fatfs on a FAT left inconsistent by a cut makes it worse.
pub fn install_slot(
    esp: &Region,
    slot: Slot,
    kernel: &[u8],
    initrd: &[u8],
    conf: &str,
    step: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    let mut dev = Durable(esp.cursor(), esp.clone());
    install_slot_on(&mut dev, esp.name(), slot, kernel, initrd, conf, step)?;
    esp.sync().map_err(|err| Error::Fat {
        what: "syncing".into(),
        partition: Partition::Esp.label(),
        err,
    })
}

/// [`install_slot`] on any device, unsynced (the tests record its writes).
pub(crate) fn install_slot_on<D: Read + Write + Seek>(
    dev: &mut D,
    volume: &str,
    slot: Slot,
    kernel: &[u8],
    initrd: &[u8],
    conf: &str,
    step: &mut dyn FnMut(&str),
) -> Result<Repair, Error> {
    let repair = repair::check_and_repair(dev, volume, &is_leftover_temp)?;
    log_repair(volume, &repair);
    if !repair.is_clean() {
        step(&repair.to_string());
    }
    let label = Partition::Esp.label();
    let err = fat_err(label);
    dev.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| err("seeking".into(), e))?;
    let opts = fatfs::FsOptions::new().time_provider(&SYSTEM_TIME);
    let fs = fatfs::FileSystem::new(&mut *dev, opts)
        .map_err(|e| err(format!("opening the FAT file system of {volume}"), e))?;
    write_slot_files(&fs, slot, kernel, initrd, conf, step)?;
    fs.unmount().map_err(|e| err("unmounting".into(), e))?;
    Ok(repair)
}

/// The removes and replaces of an install.
fn write_slot_files<D: Read + Write + Seek>(
    fs: &fatfs::FileSystem<D>,
    slot: Slot,
    kernel: &[u8],
    initrd: &[u8],
    conf: &str,
    step: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    let label = Partition::Esp.label();
    let files = SlotFiles::of(slot);
    step(&format!(
        "removing the old {}, {}, {}",
        files.conf, files.kernel, files.initrd
    ));
    for path in [&files.conf, &files.kernel, &files.initrd] {
        remove_in(fs, label, path)?;
        remove_in(fs, label, &format!("{path}.new"))?;
    }
    for (path, bytes) in files
        .in_write_order()
        .into_iter()
        .zip([kernel, initrd, conf.as_bytes()])
    {
        step(&format!("writing {path}"));
        replace_in(fs, label, path, bytes)?;
    }
    Ok(())
}

/// The file `name` on the OEM partition (`update.toml`, `agent.toml`), if
/// any.
pub fn read_oem_file(oem: &Region, name: &str) -> Result<Option<String>, Error> {
    let fat = Fat::open(oem, Partition::Oem)?;
    Ok(fat
        .read(name)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_temp_files() {
        assert!(is_leftover_temp("EFI/tandem/vmlinuz-b.new"));
        assert!(is_leftover_temp("EFI/TANDEM/SLOT-B~1.NEW"));
        assert!(!is_leftover_temp("EFI/tandem/vmlinuz-b"));
        assert!(!is_leftover_temp("EFI/BOOT/x.new"));
        assert!(!is_leftover_temp("vmlinuz.new"));
    }

    #[test]
    fn slot_files_round_trip() {
        let v = Verity {
            root_hash: "ab".repeat(32),
            salt: "cd".repeat(32),
            data_blocks: 1234,
        };
        let text = slot_conf("1.2.0", &v);
        let conf = files::parse_slot_conf(text.as_bytes()).value;
        assert_eq!(conf.version.as_deref(), Some("1.2.0"));
        assert_eq!(conf.usr_verity(), Some(v));
        let hash = "aa".repeat(32);
        let builder = format!(
            "# written by tandem build\nversion 1.0.0\noptions tandem.usrhash={hash} tandem.usrsalt=bb tandem.usrblocks=77 # x\n"
        );
        let conf = files::parse_slot_conf(builder.as_bytes()).value;
        assert_eq!(conf.usr_verity().map(|v| v.data_blocks), Some(77));
    }
}
