//! FAT file systems for the ESP and OEM partitions.
//!
//! Written with the field's standard tools, `mkfs.vfat` (dosfstools) and
//! `mmd`/`mcopy` (mtools): both honour SOURCE_DATE_EPOCH and `--invariant`
//! fixes everything else, so the result is reproducible and rootless. The
//! `fatfs` crate is used only to read (`tandem inspect`): its 0.3 writer
//! puts long-name entries in front of `.` and `..`, which fsck.vfat rejects.

use std::io::Write;
use std::path::Path;

use crate::build::tools::{MCOPY, MKFS_VFAT, MMD};
use crate::error::{IoContext, Result};

/// What a file on the FAT volume holds.
#[derive(Clone, Debug)]
pub enum Content<'a> {
    /// In-memory bytes.
    Bytes(&'a [u8]),
    /// A host file.
    File(&'a Path),
}

/// A file to place: path with `/` separators, and its content.
pub type FatFile<'a> = (String, Content<'a>);

/// Volume parameters.
#[derive(Clone, Copy, Debug)]
pub struct Volume<'a> {
    /// Size of the file system in bytes.
    pub size: u64,
    /// Label, up to 11 characters.
    pub label: &'a str,
    /// Volume serial number.
    pub volume_id: u32,
    /// Force FAT32 (the ESP); otherwise the size decides.
    pub fat32: bool,
    /// Timestamp for every file, seconds since the epoch.
    pub epoch: i64,
}

/// Creates `path` holding a FAT file system with `files`.
pub fn build(path: &Path, vol: Volume<'_>, files: &[FatFile<'_>]) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let epoch = vol.epoch.max(315_532_800).to_string(); // FAT dates start in 1980
    let mut mkfs = MKFS_VFAT.command();
    mkfs.env("SOURCE_DATE_EPOCH", &epoch)
        .args([
            "--invariant",
            "-S",
            "512",
            "-n",
            &vol.label.to_ascii_uppercase(),
        ])
        .args(["-i", &format!("{:08X}", vol.volume_id)]);
    if vol.fat32 {
        mkfs.args(["-F", "32"]);
    }
    mkfs.arg("-C").arg(path).arg((vol.size / 1024).to_string());
    MKFS_VFAT.run(&mut mkfs)?;

    let image = path.to_str().ok_or_else(|| crate::error::Error::Io {
        action: "use as FAT image (path is not UTF-8)",
        path: path.into(),
        cause: std::io::Error::other("non-UTF-8 path"),
    })?;
    let mut dirs: Vec<String> = Vec::new();
    for (target, _) in files {
        let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
        for i in 1..parts.len() {
            let d = format!("::{}", parts[..i].join("/"));
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    if !dirs.is_empty() {
        let mut mmd = MMD.command();
        mmd.env("SOURCE_DATE_EPOCH", &epoch)
            .args(["-i", image])
            .args(&dirs);
        MMD.run(&mut mmd)?;
    }
    let staging = tempfile_in(path)?;
    for (i, (target, content)) in files.iter().enumerate() {
        let src = match content {
            Content::File(p) => p.to_path_buf(),
            Content::Bytes(b) => {
                let p = staging.join(i.to_string());
                std::fs::File::create(&p)
                    .and_then(|mut f| f.write_all(b))
                    .io("write", &p)?;
                p
            }
        };
        let mut mcopy = MCOPY.command();
        mcopy
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args(["-o", "-i", image])
            .arg(&src)
            .arg(format!("::{}", target.trim_start_matches('/')));
        MCOPY.run(&mut mcopy)?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}

/// A fresh directory beside `path` for staged file contents.
fn tempfile_in(path: &Path) -> Result<std::path::PathBuf> {
    let dir = path.with_extension("staging");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).io("create", &dir)?;
    Ok(dir)
}

/// A FAT file system inside a disk image, read-only.
pub struct FatReader {
    fs: fatfs::FileSystem<Window>,
}

impl std::fmt::Debug for FatReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FatReader")
    }
}

impl FatReader {
    /// Opens the FAT file system at bytes `offset..offset+size` of `image`.
    pub fn open(image: &Path, offset: u64, size: u64) -> Result<FatReader> {
        let file = std::fs::File::open(image).io("open", image)?;
        let fs = fatfs::FileSystem::new(Window::new(file, offset, size), fatfs::FsOptions::new())
            .io("open FAT file system in", image)?;
        Ok(FatReader { fs })
    }

    /// Whole content of the file at `target`.
    pub fn read(&self, target: &str) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut f = self
            .fs
            .root_dir()
            .open_file(target.trim_start_matches('/'))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Whether a file exists at `target`.
    pub fn exists(&self, target: &str) -> bool {
        self.fs
            .root_dir()
            .open_file(target.trim_start_matches('/'))
            .is_ok()
    }
}

/// A byte range of a file, seen as a whole device.
#[derive(Debug)]
struct Window {
    file: std::fs::File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Window {
    fn new(file: std::fs::File, start: u64, len: u64) -> Self {
        Window {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl std::io::Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl std::io::Write for Window {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        let put = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += put as u64;
        Ok(put)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for Window {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            std::io::SeekFrom::Start(p) => Some(p),
            std::io::SeekFrom::End(d) => self.len.checked_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before start")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_read_back_reproducibly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = Volume {
            size: 64 << 20,
            label: "EFI-SYSTEM",
            volume_id: 0x1234_5678,
            fat32: true,
            epoch: 1_700_000_000,
        };
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let files = [
            (
                "EFI/BOOT/BOOTX64.EFI".to_string(),
                Content::Bytes(b"MZ fake"),
            ),
            ("EFI/tandem/vmlinuz-a".to_string(), Content::Bytes(&big)),
        ];
        let a = dir.path().join("a.img");
        let b = dir.path().join("b.img");
        build(&a, vol, &files).expect("build a");
        build(&b, vol, &files).expect("build b");
        assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
        let r = FatReader::open(&a, 0, vol.size).expect("open");
        assert_eq!(r.read("EFI/tandem/vmlinuz-a").expect("read"), big);
        assert!(r.exists("EFI/BOOT/BOOTX64.EFI"));
        assert!(!r.exists("EFI/BOOT/nope"));
        let fsck = std::process::Command::new("fsck.vfat")
            .arg("-n")
            .arg(&a)
            .output()
            .expect("fsck.vfat (dosfstools)");
        assert!(
            fsck.status.success(),
            "fsck.vfat: {}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
}
