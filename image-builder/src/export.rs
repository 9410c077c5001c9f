//! A build's disk in the formats clouds and hypervisors import, made from
//! its `disk.raw` with `qemu-img` (the standard converter) and GNU tar, as
//! Flatcar's `image_to_vm.sh` does. docs/cloud-formats.md says which
//! platform takes which file and where a node finds its config there.
//!
//! Each file is written under a temporary name and renamed when complete:
//! an interrupted export leaves no file that looks finished.

use std::path::{Path, PathBuf};

use crate::build::pipeline::outputs;
use crate::build::tools::Tool;
use crate::error::{Error, IoContext, Result};
use crate::release::BuildDir;

/// `qemu-img`.
pub const QEMU_IMG: Tool = Tool {
    program: "qemu-img",
    package: "qemu-utils",
};
/// GNU `tar`.
pub const TAR: Tool = Tool {
    program: "tar",
    package: "tar",
};

/// Azure takes only fixed VHDs whose virtual size is a whole number of MiB.
pub const VHD_ALIGNMENT: u64 = 1 << 20;

/// A disk format `tandem export` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Compressed qcow2: QEMU/KVM, libvirt, OpenStack.
    Qcow2,
    /// Fixed VHD, a whole number of MiB: Azure, Hyper-V.
    Vhd,
    /// Stream-optimised VMDK: VMware vSphere/ESXi (OVF import).
    Vmdk,
    /// `disk.raw` in a gzip'd sparse tar: Google Compute Engine.
    Gce,
}

impl Format {
    /// Every format, in the order `--format all` makes them.
    pub const ALL: [Format; 4] = [Format::Qcow2, Format::Vhd, Format::Vmdk, Format::Gce];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Qcow2 => "qcow2",
            Format::Vhd => "vhd",
            Format::Vmdk => "vmdk",
            Format::Gce => "gce",
        }
    }

    /// The output file's name in the build directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Qcow2 => "disk.qcow2",
            Format::Vhd => "disk.vhd",
            Format::Vmdk => "disk.vmdk",
            Format::Gce => "disk-gce.tar.gz",
        }
    }

    /// Where the file goes.
    pub fn platforms(self) -> &'static str {
        match self {
            Format::Qcow2 => "QEMU/KVM, libvirt, OpenStack",
            Format::Vhd => "Azure, Hyper-V",
            Format::Vmdk => "VMware vSphere/ESXi",
            Format::Gce => "Google Compute Engine",
        }
    }

    /// The command that writes `out` from `raw`, run in `raw`'s directory
    /// (GNU tar stores the name as given: the archive must hold exactly
    /// `disk.raw`).
    pub fn command(self, raw: &Path, out: &Path, source_date_epoch: i64) -> (Tool, Vec<String>) {
        let raw = raw.display().to_string();
        let out = out.display().to_string();
        let convert = |options: &[&str]| {
            let mut args: Vec<String> = ["convert", "-f", "raw"].map(String::from).to_vec();
            args.extend(options.iter().map(|s| s.to_string()));
            args.extend([raw.clone(), out.clone()]);
            args
        };
        match self {
            Format::Qcow2 => (QEMU_IMG, convert(&["-c", "-O", "qcow2"])),
            // force_size: keep the raw size exactly (qemu-img would round
            // it to a CHS geometry otherwise).
            Format::Vhd => (
                QEMU_IMG,
                convert(&["-O", "vpc", "-o", "subformat=fixed,force_size=on"]),
            ),
            Format::Vmdk => (
                QEMU_IMG,
                convert(&["-O", "vmdk", "-o", "subformat=streamOptimized"]),
            ),
            // oldgnu + sparse, as GCE documents; owner, date and gzip
            // header fixed so the archive is reproducible.
            Format::Gce => (
                TAR,
                vec![
                    "--format=oldgnu".into(),
                    "--sparse".into(),
                    "--owner=0".into(),
                    "--group=0".into(),
                    "--numeric-owner".into(),
                    format!("--mtime=@{source_date_epoch}"),
                    "--use-compress-program=gzip -n".into(),
                    "-cf".into(),
                    out,
                    outputs::DISK.into(),
                ],
            ),
        }
    }
}

/// One file `export` made.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Exported {
    /// Its format.
    #[serde(serialize_with = "format_name")]
    pub format: Format,
    /// Where it is.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

fn format_name<S: serde::Serializer>(f: &Format, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(f.name())
}

/// Writes `formats` of the build in `build_dir` into `out_dir`.
/// `progress` hears of each format as it starts.
pub fn export(
    build_dir: &Path,
    out_dir: &Path,
    formats: &[Format],
    mut progress: impl FnMut(Format),
) -> Result<Vec<Exported>> {
    let build = BuildDir::load(build_dir)?;
    std::fs::create_dir_all(out_dir).io("create", out_dir)?;
    // Absolute: the tools run in the build directory.
    let out_dir = &out_dir.canonicalize().io("find", out_dir)?;
    let raw = build.file(outputs::DISK);
    let recorded = build.artifact(outputs::DISK)?.size;
    let size = std::fs::metadata(&raw).io("read", &raw).map(|m| m.len())?;
    if size != recorded {
        return Err(build.modified_error(
            outputs::DISK,
            &format!("{size} bytes"),
            &format!("{recorded} bytes"),
        ));
    }
    let mut made = Vec::new();
    for &format in formats {
        progress(format);
        if format == Format::Vhd && size % VHD_ALIGNMENT != 0 {
            return Err(Error::BuildDir {
                path: build_dir.into(),
                message: format!(
                    "{} is {size} bytes, not a whole number of MiB: Azure refuses such a VHD; build with partition sizes in MiB (the builder's default)",
                    outputs::DISK
                ),
            });
        }
        let out = out_dir.join(format.file_name());
        let partial = out_dir.join(format!("{}.partial", format.file_name()));
        let epoch = build.manifest.source_date_epoch;
        // Run in the build directory: tar stores the name as given.
        let (tool, args) = format.command(Path::new(outputs::DISK), &partial, epoch);
        let mut cmd = tool.command();
        cmd.current_dir(build_dir).args(&args);
        let result = tool.run(&mut cmd);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &out).io("rename", &partial)?;
        let size = std::fs::metadata(&out).io("read", &out)?.len();
        made.push(Exported {
            format,
            path: out,
            size,
        });
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_has_its_own_file() {
        let names: std::collections::BTreeSet<_> =
            Format::ALL.iter().map(|f| f.file_name()).collect();
        assert_eq!(names.len(), Format::ALL.len());
        assert!(!names.contains(outputs::DISK));
    }

    #[test]
    fn gce_archives_exactly_disk_raw_reproducibly() {
        let (tool, args) = Format::Gce.command(Path::new("disk.raw"), Path::new("x.tar.gz"), 7);
        assert_eq!(tool.program, "tar");
        assert_eq!(args.last().map(String::as_str), Some("disk.raw"));
        assert!(args.contains(&"--mtime=@7".to_string()));
        assert!(args.contains(&"--format=oldgnu".to_string()));
    }

    #[test]
    fn vhd_keeps_the_size() {
        let (_, args) = Format::Vhd.command(Path::new("disk.raw"), Path::new("d.vhd"), 0);
        assert!(
            args.iter()
                .any(|a| a.contains("subformat=fixed") && a.contains("force_size"))
        );
    }
}
