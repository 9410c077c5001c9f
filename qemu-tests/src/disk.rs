//! Disks for test machines: a qcow2 overlay on a built image (the image
//! stays clean), or a private sparse copy that a scenario modifies from the
//! host before booting. Between boots the partition table is read from the
//! host.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use tandem_contract::Partition;
use tandem_contract::esp::SlotFiles;
use tandem_slot::{FileDisk, Gpt, Slot, SlotPair, table};

/// A disk image private to one test.
#[derive(Debug)]
pub struct Disk {
    dir: tempfile::TempDir,
    path: PathBuf,
    format: &'static str,
}

impl Disk {
    /// A qcow2 overlay whose backing file is `base` (raw).
    pub fn overlay(base: &Path) -> Result<Disk> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("disk.qcow2");
        let base = base
            .canonicalize()
            .with_context(|| format!("{} does not exist", base.display()))?;
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&path))?;
        Ok(Disk {
            dir,
            path,
            format: "qcow2",
        })
    }

    /// An empty qcow2 disk of `bytes` (a machine's bare disk).
    pub fn blank(bytes: u64) -> Result<Disk> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("blank.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg(bytes.to_string()))?;
        Ok(Disk {
            dir,
            path,
            format: "qcow2",
        })
    }

    /// QEMU arguments that attach this disk as one more virtio disk.
    pub fn qemu_args(&self) -> Vec<String> {
        vec![
            "-drive".into(),
            format!(
                "file={},format={},if=virtio",
                self.path.display(),
                self.format
            ),
        ]
    }

    /// A sparse raw copy of `base` that the test may change.
    pub fn copy(base: &Path) -> Result<Disk> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("disk.raw");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(base)
            .arg(&path))?;
        Ok(Disk {
            dir,
            path,
            format: "raw",
        })
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `raw` or `qcow2`, for QEMU's `-drive format=`.
    pub fn format(&self) -> &'static str {
        self.format
    }

    /// A raw view of the disk as it is now (the file itself for raw disks,
    /// a converted copy for overlays).
    pub fn raw(&self) -> Result<PathBuf> {
        if self.format == "raw" {
            return Ok(self.path.clone());
        }
        let out = self.dir.path().join("snapshot.raw");
        let _ = std::fs::remove_file(&out);
        run(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(&self.path)
            .arg(&out))?;
        Ok(out)
    }

    /// The partition table as it is now.
    pub fn gpt(&self) -> Result<Gpt> {
        let raw = self.raw()?;
        let mut dev = FileDisk::open_read_only(&raw)?;
        Ok(Gpt::read(&mut dev)?)
    }

    /// Both slots' attributes as they are now.
    pub fn slots(&self) -> Result<SlotPair> {
        Ok(table::slot_pair(&self.gpt()?)?)
    }

    /// `cgpt show -i <slot> -P/-T/-S` as (priority, tries, successful), read
    /// by Debian's cgpt as an independent oracle.
    pub fn cgpt_slot(&self, slot: Slot) -> Result<(u8, u8, bool)> {
        let raw = self.raw()?;
        let i = slot.partition_number().to_string();
        let field = |flag: &str| -> Result<u8> {
            let out = output(
                Command::new("cgpt")
                    .args(["show", "-i", &i, flag])
                    .arg(&raw),
            )?;
            out.trim()
                .parse()
                .with_context(|| format!("cgpt printed {out:?}"))
        };
        Ok((field("-P")?, field("-T")?, field("-S")? == 1))
    }

    /// Copies one slot's /usr partition and its kernel, initramfs and
    /// config on the ESP into the other slot (raw copies only), as an update
    /// of the same version would. Attributes are left alone.
    pub fn clone_slot(&self, from: Slot, to: Slot) -> Result<()> {
        if self.format != "raw" {
            bail!("changing partitions needs a raw copy (Disk::copy)");
        }
        let gpt = self.gpt()?;
        let bs = gpt.block_size;
        let src = table::usr_entry(&gpt, from)?;
        let dst = table::usr_entry(&gpt, to)?;
        let mib = 1 << 20;
        run(Command::new("dd")
            .arg(format!("if={}", self.path.display()))
            .arg(format!("of={}", self.path.display()))
            .args(["bs=1M", "conv=notrunc,sparse", "status=none"])
            .arg(format!("skip={}", src.first_lba * bs / mib))
            .arg(format!("seek={}", dst.first_lba * bs / mib))
            .arg(format!("count={}", src.num_blocks() * bs / mib)))?;
        let image = self.esp_image()?;
        let tmp = self.dir.path().join("esp-file");
        let (a, b) = (SlotFiles::of(from), SlotFiles::of(to));
        for (a, b) in a.in_write_order().into_iter().zip(b.in_write_order()) {
            run(Command::new("mcopy")
                .args(["-o", "-i", &image])
                .arg(format!("::{a}"))
                .arg(&tmp))?;
            run(Command::new("mcopy")
                .args(["-o", "-i", &image])
                .arg(&tmp)
                .arg(format!("::{b}")))?;
        }
        Ok(())
    }

    /// Writes `content` to `path` on the ESP (raw copies only).
    pub fn put_esp_file(&self, path: &str, content: &[u8]) -> Result<()> {
        let tmp = self.dir.path().join("esp-put");
        std::fs::write(&tmp, content)?;
        run(Command::new("mcopy")
            .args(["-o", "-i", &self.esp_image()?])
            .arg(&tmp)
            .arg(format!("::{path}")))
    }

    /// Writes `content` to `path` on the OEM partition (raw copies only),
    /// e.g. the node's `update.toml`.
    pub fn put_oem_file(&self, path: &str, content: &[u8]) -> Result<()> {
        let image = self.partition_image(Partition::Oem)?;
        let tmp = self.dir.path().join("oem-put");
        std::fs::write(&tmp, content)?;
        run(Command::new("mcopy")
            .args(["-o", "-i", &image])
            .arg(&tmp)
            .arg(format!("::{path}")))
    }

    /// Deletes `path` from the ESP (raw copies only).
    pub fn delete_esp_file(&self, path: &str) -> Result<()> {
        run(Command::new("mdel")
            .args(["-i", &self.esp_image()?])
            .arg(format!("::{path}")))
    }

    /// `fsck.vfat -n` (check only, change nothing) on a copy of the ESP:
    /// its exit status and what it printed.
    pub fn fsck_esp(&self) -> Result<(i32, String)> {
        let gpt = self.gpt()?;
        let p = gpt.partition(Partition::Esp.number()).context("no ESP")?;
        let copy = self.dir.path().join("esp-check.img");
        let mut f = std::fs::File::open(&self.path)?;
        let mut out = std::fs::File::create(&copy)?;
        use std::io::{Read, Seek};
        f.seek(std::io::SeekFrom::Start(p.first_lba * gpt.block_size))?;
        std::io::copy(&mut f.take(p.num_blocks() * gpt.block_size), &mut out)?;
        drop(out);
        let o = Command::new("fsck.vfat")
            .arg("-n")
            .arg(&copy)
            .output()
            .context("running fsck.vfat")?;
        let _ = std::fs::remove_file(&copy);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Ok((o.status.code().unwrap_or(-1), text))
    }

    /// Every file on the ESP, with its path (`::/EFI/tandem/vmlinuz-a`).
    pub fn esp_files(&self) -> Result<Vec<String>> {
        let text = output(
            Command::new("mdir")
                .args(["-/", "-b", "-i", &self.esp_image()?])
                .arg("::"),
        )?;
        Ok(text.lines().map(str::to_string).collect())
    }

    /// The mtools image spec of the ESP inside a raw copy (`disk@@offset`).
    fn esp_image(&self) -> Result<String> {
        self.partition_image(Partition::Esp)
    }

    /// The mtools image spec of FAT partition `part` of a raw copy.
    fn partition_image(&self, part: Partition) -> Result<String> {
        let number = part.number();
        if self.format != "raw" {
            bail!("changing a partition needs a raw copy (Disk::copy)");
        }
        let gpt = self.gpt()?;
        let p = gpt
            .partition(number)
            .with_context(|| format!("no partition {number}"))?;
        Ok(format!(
            "{}@@{}",
            self.path.display(),
            p.first_lba * gpt.block_size
        ))
    }

    /// Byte offset of `needle` inside the partition of `slot` (first hit),
    /// e.g. to find a file's data in a /usr image.
    pub fn find_in_slot(&self, slot: Slot, needle: &[u8]) -> Result<u64> {
        let raw = self.raw()?;
        let gpt = self.gpt()?;
        let e = table::usr_entry(&gpt, slot)?;
        let bs = gpt.block_size;
        let mut f = std::fs::File::open(&raw)?;
        use std::io::{Read, Seek};
        f.seek(std::io::SeekFrom::Start(e.first_lba * bs))?;
        let mut data = Vec::new();
        f.take(e.num_blocks() * bs).read_to_end(&mut data)?;
        let pos = data
            .windows(needle.len())
            .position(|w| w == needle)
            .context("needle not found in slot")?;
        Ok(e.first_lba * bs + pos as u64)
    }

    /// Inverts the byte at `offset` of the disk (raw copies only).
    pub fn flip_byte(&self, offset: u64) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if self.format != "raw" {
            bail!("changing bytes needs a raw copy (Disk::copy)");
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)?;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset)?;
        b[0] ^= 0xFF;
        f.write_all_at(&b, offset)?;
        Ok(())
    }

    /// Byte offset where partition `slot` starts.
    pub fn slot_offset(&self, slot: Slot) -> Result<u64> {
        let gpt = self.gpt()?;
        Ok(table::usr_entry(&gpt, slot)?.first_lba * gpt.block_size)
    }

    /// Runs `cgpt <args> <disk>` on a raw disk.
    pub fn cgpt(&self, args: &[&str]) -> Result<String> {
        if self.format != "raw" {
            bail!("cgpt changes need a raw copy (Disk::copy)");
        }
        output(Command::new("cgpt").args(args).arg(&self.path))
    }
}

/// Runs a command, failing with its stderr.
pub fn run(cmd: &mut Command) -> Result<()> {
    output(cmd).map(|_| ())
}

/// Runs a command and returns its stdout, failing with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} {:?} failed ({}): {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
