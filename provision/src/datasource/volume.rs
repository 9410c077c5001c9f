//! Finding a labelled seed volume (NoCloud's `cidata`, a config drive's
//! `config-2`) among the block devices, and reading its files.
//!
//! The devices are the entries of `/sys/class/block` (whole disks and
//! partitions); the device node is `/dev/<name>`. Devices that cannot hold
//! a seed (loop, ram, zram, device-mapper) and the boot disk with its
//! partitions are skipped: the boot disk's OEM partition is a datasource of
//! its own, and nothing else on it may ever be taken for one.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::Error;
use super::fat::{Fat, Window};
use super::iso9660;
use super::label::{self, Fs, Label, PROBE_LEN};
use super::{Env, Found};
use crate::Metadata;

/// A device with a matching label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    /// The device node (`/dev/vdb`).
    pub path: PathBuf,
    /// Its file system and label.
    pub label: Label,
}

/// Name prefixes of devices that are never a seed.
const SKIP: [&str; 4] = ["loop", "ram", "zram", "dm-"];

/// The block devices to probe, by name, sorted.
pub fn candidates(env: &Env) -> Vec<String> {
    let class = env.sys.join("class/block");
    let Ok(dir) = std::fs::read_dir(&class) else {
        return Vec::new();
    };
    let boot = env
        .boot_disk
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned());
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !SKIP.iter().any(|p| n.starts_with(p)))
        .filter(|n| boot.as_deref().is_none_or(|b| !on_disk(&class, n, b)))
        .filter(|n| !empty(&class.join(n)))
        .collect();
    names.sort();
    names
}

/// Whether `name` is the disk `disk` or one of its partitions: a
/// partition's sysfs directory is inside its disk's.
fn on_disk(class: &Path, name: &str, disk: &str) -> bool {
    if name == disk {
        return true;
    }
    let entry = class.join(name);
    if !entry.join("partition").exists() {
        return false;
    }
    std::fs::canonicalize(&entry)
        .ok()
        .and_then(|p| p.parent().and_then(Path::file_name).map(|n| n == disk))
        .unwrap_or(false)
}

/// A drive without a medium (an empty CD-ROM drive) has size 0.
fn empty(entry: &Path) -> bool {
    std::fs::read_to_string(entry.join("size")).is_ok_and(|s| s.trim() == "0")
}

/// The label of the device `path`, `None` when it has none we know or
/// cannot be read (a drive that refuses reads holds no seed).
pub fn probe(path: &Path) -> Option<Label> {
    let file = File::open(path).ok()?;
    let mut head = Vec::with_capacity(PROBE_LEN);
    file.take(PROBE_LEN as u64).read_to_end(&mut head).ok()?;
    label::probe(&head)
}

/// The devices labelled `wanted`, in name order.
pub fn find(env: &Env, wanted: &str) -> Vec<Volume> {
    candidates(env)
        .into_iter()
        .filter_map(|name| {
            let path = env.dev.join(&name);
            let label = probe(&path)?;
            label::matches(&label, wanted).then_some(Volume { path, label })
        })
        .collect()
}

/// A kind of seed volume: a label and the files on it.
#[derive(Clone, Copy, Debug)]
pub struct Seed {
    /// For `tried` lines (`NoCloud`, `config-2`).
    pub name: &'static str,
    /// For the source (`NoCloud volume`, `config drive`).
    pub kind: &'static str,
    /// The label (`cidata`).
    pub label: &'static str,
    /// The user-data's path on it.
    pub user_data: &'static str,
    /// The metadata's path on it.
    pub meta_data: &'static str,
}

/// The first volume labelled `seed.label` that has user-data, with its
/// metadata read by `parse`; `tried` says what each volume had.
pub fn find_seed(
    env: &Env,
    seed: Seed,
    parse: impl Fn(&[u8]) -> Result<Metadata, String>,
    tried: &mut Vec<String>,
) -> Result<Option<Found>, Error> {
    let volumes = find(env, seed.label);
    if volumes.is_empty() {
        tried.push(format!("{}: no volume labelled {}", seed.name, seed.label));
        return Ok(None);
    }
    for v in volumes {
        let at = format!("{} ({})", v.path.display(), v.label.label);
        let source = format!(
            "{} {} (label {})",
            seed.kind,
            v.path.display(),
            v.label.label
        );
        let fail = |what: &str, e: std::io::Error| Error::Volume {
            source_name: source.clone(),
            label: seed.label.to_string(),
            msg: format!("reading {what}: {e}"),
        };
        let mut reader = Reader::open(&v, &source)?;
        let Some(user_data) = reader
            .read(seed.user_data)
            .map_err(|e| fail(seed.user_data, e))?
        else {
            tried.push(format!("{}: {at}: no {}", seed.name, seed.user_data));
            continue;
        };
        let metadata = match reader
            .read(seed.meta_data)
            .map_err(|e| fail(seed.meta_data, e))?
        {
            Some(bytes) => parse(&bytes).map_err(|msg| Error::Metadata {
                file: format!("{}: {}", v.path.display(), seed.meta_data),
                msg,
            })?,
            None => Metadata::default(),
        };
        tried.push(format!("{}: {at}: {}", seed.name, seed.user_data));
        return Ok(Some(Found {
            source,
            file_name: seed.user_data.to_string(),
            user_data,
            metadata,
        }));
    }
    Ok(None)
}

/// Reads files from a volume, whichever its file system.
#[derive(Debug)]
pub enum Reader {
    /// FAT, through fatfs.
    Fat(Box<Fat>),
    /// ISO 9660, in user space.
    Iso(File),
}

impl Reader {
    /// Opens `volume`; `source_name` is for messages.
    pub fn open(volume: &Volume, source_name: &str) -> Result<Reader, Error> {
        let file = File::open(&volume.path).map_err(|err| Error::Read {
            path: volume.path.clone(),
            err,
        })?;
        match volume.label.fs {
            Fs::Iso9660 => Ok(Reader::Iso(file)),
            Fs::Fat => {
                let window = Window::whole(file).map_err(|err| Error::Read {
                    path: volume.path.clone(),
                    err,
                })?;
                Fat::open(window)
                    .map(|f| Reader::Fat(Box::new(f)))
                    .map_err(|e| Error::Volume {
                        source_name: source_name.to_string(),
                        label: volume.label.label.clone(),
                        msg: format!("not a readable FAT file system: {e}"),
                    })
            }
        }
    }

    /// The file at `path`, `None` if there is none.
    pub fn read(&mut self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Reader::Fat(fat) => fat.read(path),
            Reader::Iso(file) => iso9660::read_file(file, path),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// An environment over a temp dir: `sys/class/block`, `dev`.
    pub(crate) fn env(root: &Path) -> Env {
        let env = Env {
            cmdline: String::new(),
            sys: root.join("sys"),
            dev: root.join("dev"),
            boot_disk: None,
            live: false,
            modules: None,
            network_wait: Duration::ZERO,
        };
        std::fs::create_dir_all(env.sys.join("class/block")).expect("sys");
        std::fs::create_dir_all(&env.dev).expect("dev");
        env
    }

    /// Adds the block device `name` (a whole disk, or a partition of
    /// `parent`) with the content `bytes`.
    pub(crate) fn add_device(env: &Env, name: &str, parent: Option<&str>, bytes: &[u8]) {
        let devices = env.sys.join("devices/block");
        let dir = match parent {
            Some(p) => devices.join(p).join(name),
            None => devices.join(name),
        };
        std::fs::create_dir_all(&dir).expect("device dir");
        if parent.is_some() {
            std::fs::write(dir.join("partition"), "1\n").expect("partition");
        }
        std::fs::write(dir.join("size"), format!("{}\n", bytes.len() / 512)).expect("size");
        std::os::unix::fs::symlink(&dir, env.sys.join("class/block").join(name)).expect("link");
        std::fs::write(env.dev.join(name), bytes).expect("dev");
    }

    #[test]
    fn skips_the_boot_disk_its_partitions_and_virtual_devices() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut env = env(tmp.path());
        for (name, parent) in [
            ("vda", None),
            ("vda6", Some("vda")),
            ("vdb", None),
            ("vdb1", Some("vdb")),
            ("loop0", None),
            ("dm-0", None),
            ("zram0", None),
            ("sr0", None),
        ] {
            add_device(&env, name, parent, &[0u8; 1024]);
        }
        // An empty CD-ROM drive.
        add_device(&env, "sr1", None, &[]);
        env.boot_disk = Some(PathBuf::from("/dev/vda"));
        assert_eq!(candidates(&env), ["sr0", "vdb", "vdb1"]);
        env.boot_disk = None;
        assert_eq!(candidates(&env), ["sr0", "vda", "vda6", "vdb", "vdb1"]);
    }

    #[test]
    fn finds_volumes_by_label_in_any_case() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let iso = iso9660::tests::image(
            "CIDATA",
            &[("user-data", b"x")],
            iso9660::tests::Style::Joliet,
        );
        add_device(&env, "sr0", None, &iso);
        add_device(&env, "vdb", None, &[0u8; 4096]);
        let found = find(&env, "cidata");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, env.dev.join("sr0"));
        assert_eq!(found[0].label.fs, Fs::Iso9660);
        assert!(find(&env, "config-2").is_empty());
        let mut r = Reader::open(&found[0], "NoCloud").expect("open");
        assert_eq!(
            r.read("user-data").expect("read").as_deref(),
            Some(&b"x"[..])
        );
    }
}
