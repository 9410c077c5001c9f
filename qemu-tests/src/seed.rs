//! Seed volumes a platform hands a node its user-data on: ISO 9660 (made
//! by xorriso with Joliet and Rock Ridge names, as cloud-localds makes
//! NoCloud seeds) or FAT (mkfs.vfat and mtools, as Nova makes config drives
//! with `config_drive_format=vfat`), attached as a second virtio disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::disk::run;

/// A volume and the directory that holds it (removed when dropped).
#[derive(Debug)]
pub struct Seed {
    _dir: tempfile::TempDir,
    /// The image file.
    pub path: PathBuf,
}

impl Seed {
    /// An ISO 9660 volume labelled `label` holding `files` (path → content).
    pub fn iso(label: &str, files: &[(&str, &str)]) -> Result<Seed> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        for (path, content) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().context("a file path has a parent")?)?;
            std::fs::write(&p, content)?;
        }
        let path = dir.path().join("seed.iso");
        run(Command::new("xorriso")
            .args([
                "-as", "mkisofs", "-quiet", "-volid", label, "-joliet", "-rock", "-o",
            ])
            .arg(&path)
            .arg(&root))
        .context("making a seed ISO with xorriso (package xorriso)")?;
        Ok(Seed { _dir: dir, path })
    }

    /// An 8 MiB FAT volume labelled `label` holding `files`.
    pub fn fat(label: &str, files: &[(&str, &str)]) -> Result<Seed> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("seed.img");
        std::fs::File::create(&path)?.set_len(8 << 20)?;
        run(Command::new("mkfs.vfat").args(["-n", label]).arg(&path))?;
        for (name, content) in files {
            let local = dir.path().join("file");
            std::fs::write(&local, content)?;
            let mut made = String::new();
            let mut parts: Vec<&str> = name.split('/').collect();
            parts.pop();
            for p in parts {
                made = format!("{made}/{p}");
                // An existing directory is fine.
                let _ = Command::new("mmd")
                    .arg("-i")
                    .arg(&path)
                    .arg(format!("::{made}"))
                    .output();
            }
            run(Command::new("mcopy")
                .arg("-i")
                .arg(&path)
                .arg(&local)
                .arg(format!("::/{name}")))?;
        }
        Ok(Seed { _dir: dir, path })
    }

    /// QEMU arguments attaching it read-only as a virtio disk.
    pub fn qemu_args(&self) -> Vec<String> {
        drive(&self.path)
    }
}

fn drive(path: &Path) -> Vec<String> {
    vec![
        "-drive".into(),
        format!("file={},format=raw,if=virtio,readonly=on", path.display()),
    ]
}
