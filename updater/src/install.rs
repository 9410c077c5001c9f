//! Installing onto a bare disk (`tandemctl install`): the disk image a
//! Tandem ISO carries ([`tandem_contract::live`]), written so that an
//! interrupted install is never taken for a bootable Tandem disk.
//!
//! - The install manifest's signature is checked with the image's trusted
//!   keys before anything is written ([`repository::install::open`]).
//! - Every chunk is checked against its hash in the manifest before it is
//!   written. A chunk the manifest says is zeros is zeroed on the target
//!   without reading its frame (`BLKZEROOUT` on a block device).
//! - Order ([`write_order`]): both partition tables of the target are
//!   wiped first. Then come every chunk but the first and the last, the
//!   user-data on the OEM partition, the last chunk (with the backup
//!   table) and the first one (the protective MBR and the primary table).
//!   The target is synced between steps. A cut anywhere before the end
//!   leaves a disk with no valid partition table.
//! - ROOT is grown to the disk by the installed node's first boot, as on
//!   any disk larger than its image.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use repository::install::{self, InstallManifest, zero_sha256};
use repository::keys::PublicKey;
use repository::payload::decode_chunk;
use repository::repo::Chunk;
use tandem_contract::Partition;
use tandem_contract::live::{self, DataHeader, Embedded};
use tandem_contract::partition::types;
use tandem_contract::provision::OEM_FILE;
use tandem_slot::{BlockDevice, FileDisk, Gpt};

use crate::disk::Region;
use crate::esp::Fat;

/// Bytes wiped at each end of the target before anything else.
const WIPE: u64 = 1 << 20;

/// What can stop an install.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A file or device could not be read or written.
    #[error("{what} {path}: {err}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        err: std::io::Error,
    },
    /// The source is not a Tandem ISO, or is damaged.
    #[error(
        "{path} is not a Tandem ISO ({why}): give the ISO made by `tandem iso create`, or the device it is on"
    )]
    NotAnIso {
        /// The source.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The install manifest is not signed by a trusted key, or malformed.
    #[error("the ISO's install manifest is refused: {0}")]
    Refused(#[from] repository::Refusal),
    /// A chunk does not match the manifest: the ISO is damaged.
    #[error(
        "{0}: the ISO is damaged; nothing after the damage was written and the target has no partition table; write the ISO again"
    )]
    Chunk(#[from] repository::PayloadError),
    /// The target cannot take the image.
    #[error("cannot install onto {path}: {why}")]
    Target {
        /// The target.
        path: PathBuf,
        /// Why, and what to do.
        why: String,
    },
    /// Writing the user-data to the OEM partition failed.
    #[error("writing the config to the installed OEM partition: {0}")]
    Oem(#[from] crate::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |err| InstallError::Io {
        what,
        path: path.to_path_buf(),
        err,
    }
}

/// A Tandem ISO (a file or the device it is on): its install data.
#[derive(Debug)]
pub struct Source {
    path: PathBuf,
    data: Region,
    header: DataHeader,
    identity: (u64, u64),
}

fn file_fd(file: &File) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(file)
}

/// `_IO(0x12, 127)`: zero a byte range `[start, len]`.
const BLKZEROOUT: libc::Ioctl = 0x127f;
/// `_IO(0x12, 95)`: re-read the partition table.
const BLKRRPART: libc::Ioctl = 0x125f;

/// What identifies a file or device: (device number, inode) or the block
/// device's own number.
fn identity(file: &File, path: &Path) -> Result<(u64, u64), InstallError> {
    let m = file.metadata().map_err(io("read", path))?;
    Ok(if m.file_type().is_block_device() {
        (m.rdev(), 0)
    } else {
        (m.dev(), m.ino())
    })
}

impl Source {
    /// Opens the ISO at `path` and reads its install data header.
    pub fn open(path: &Path) -> Result<Source, InstallError> {
        let not = |why: String| InstallError::NotAnIso {
            path: path.to_path_buf(),
            why,
        };
        // The ISO's table is in 512-byte blocks, a CD's are 2048.
        let gpt = FileDisk::open_read_only_as(path, 512)
            .map_err(io("open", path))
            .and_then(|mut d| {
                Gpt::read(&mut d).map_err(|e| not(format!("no readable partition table: {e}")))
            })?;
        let file = File::open(path).map_err(io("open", path))?;
        let entry = match gpt.partition(live::DATA_PARTITION) {
            Some(e) if e.type_guid == types::INSTALL_DATA => *e,
            _ => {
                return Err(not(format!(
                    "partition {} is not install data",
                    live::DATA_PARTITION
                )));
            }
        };
        let identity = identity(&file, path)?;
        let data = Region::new(
            Arc::new(file),
            entry.first_lba * 512,
            entry.num_blocks() * 512,
            &format!("{} install data", path.display()),
        );
        let mut block = vec![0u8; live::HEADER_SIZE as usize];
        data.read_at(0, &mut block).map_err(io("read", path))?;
        let header = DataHeader::parse(&block).map_err(|e| not(e.to_string()))?;
        for (what, span) in [("manifest", header.manifest), ("payload", header.payload)] {
            if span
                .offset
                .checked_add(span.length)
                .is_none_or(|end| end > data.len())
            {
                return Err(not(format!("its {what} runs past its partition")));
            }
        }
        Ok(Source {
            path: path.to_path_buf(),
            data,
            header,
            identity,
        })
    }

    /// The install manifest, its signature checked with `keys`.
    pub fn manifest(&self, keys: &[PublicKey]) -> Result<InstallManifest, InstallError> {
        let span = self.header.manifest;
        let mut bytes = vec![0u8; span.length as usize];
        self.data
            .read_at(span.offset, &mut bytes)
            .map_err(io("read", &self.path))?;
        let m = install::open(&bytes, keys)?;
        if m.disk.payload.size != self.header.payload.length {
            return Err(InstallError::NotAnIso {
                path: self.path.clone(),
                why: "its payload is not the one its manifest describes".into(),
            });
        }
        Ok(m)
    }

    /// What `tandem iso customize` embedded.
    pub fn embedded(&self) -> Result<Embedded, InstallError> {
        let mut area = vec![0u8; live::EMBED_SIZE as usize];
        self.data
            .read_at(live::EMBED_OFFSET, &mut area)
            .map_err(io("read", &self.path))?;
        Embedded::parse(&area).map_err(|e| InstallError::NotAnIso {
            path: self.path.clone(),
            why: e.to_string(),
        })
    }

    /// Chunk `index`, read, decompressed and checked.
    fn chunk(&self, index: usize, c: &Chunk) -> Result<Vec<u8>, InstallError> {
        let mut frame = vec![0u8; c.compressed_size as usize];
        self.data
            .read_at(self.header.payload.offset + c.payload_offset, &mut frame)
            .map_err(io("read", &self.path))?;
        Ok(decode_chunk(index, c, &frame)?)
    }
}

/// The disk to install onto.
#[derive(Debug)]
pub struct Target {
    path: PathBuf,
    file: Arc<File>,
    disk: Region,
    size: u64,
    block_device: bool,
}

impl Target {
    /// Opens `path` for writing. A block device is opened exclusively: the
    /// kernel refuses while it or one of its partitions is mounted or used
    /// (the running system's disk, the ISO the live node runs from).
    pub fn open(path: &Path) -> Result<Target, InstallError> {
        let meta = std::fs::metadata(path).map_err(io("find", path))?;
        let block_device = meta.file_type().is_block_device();
        if !block_device && !meta.is_file() {
            return Err(InstallError::Target {
                path: path.into(),
                why: "not a disk".into(),
            });
        }
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if block_device {
            opts.custom_flags(libc::O_EXCL);
        }
        let file = opts.open(path).map_err(|err| {
            if err.raw_os_error() == Some(libc::EBUSY) {
                InstallError::Target {
                    path: path.into(),
                    why: "it is in use (mounted, or holding the running system or this ISO): choose another disk".into(),
                }
            } else {
                io("open", path)(err)
            }
        })?;
        // The size as the slot code reads it (a file's length, a device's
        // BLKGETSIZE64).
        let geometry = FileDisk::open_read_only(path).map_err(io("size", path))?;
        let size = geometry.num_blocks() * geometry.block_size();
        let name = path.display().to_string();
        let file = Arc::new(file);
        Ok(Target {
            path: path.to_path_buf(),
            disk: Region::new(Arc::clone(&file), 0, size, &name),
            file,
            size,
            block_device,
        })
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What is on it now, for the warning before it is erased.
    pub fn describe(&self) -> String {
        let gpt = FileDisk::open_read_only(&self.path)
            .ok()
            .and_then(|mut d| Gpt::read(&mut d).ok());
        let size = format!("{:.1} GiB", self.size as f64 / (1u64 << 30) as f64);
        match gpt {
            None => format!("{size}, no GPT partition table"),
            Some(g) => {
                let names: Vec<String> = g
                    .partitions()
                    .map(|(n, e)| {
                        let name = e.name();
                        if name.is_empty() {
                            format!("{n}")
                        } else {
                            format!("{n} {name}")
                        }
                    })
                    .collect();
                format!(
                    "{size}, GPT with {} partitions: {}",
                    names.len(),
                    names.join(", ")
                )
            }
        }
    }
}

/// Chunks in the order they are written: all but the first and the last,
/// then the last (the backup partition table), then the first (the
/// primary table).
pub fn write_order(chunks: usize) -> Vec<usize> {
    match chunks {
        0 => Vec::new(),
        1 => vec![0],
        n => (1..n - 1).chain([n - 1, 0]).collect(),
    }
}

/// How far an install has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Image bytes written (zeroed ones included).
    pub done: u64,
    /// Image bytes in all.
    pub total: u64,
}

/// What an install did.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Bytes written from the payload.
    pub written: u64,
    /// Bytes zeroed without reading the payload.
    pub zeroed: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// The first and last chunks, decoded, seen as a disk of the image's size:
/// enough for [`Gpt::read`] to check both tables before any is written.
struct Ends<'a> {
    first: &'a [u8],
    last: &'a [u8],
    size: u64,
}

impl BlockDevice for Ends<'_> {
    type Error = std::io::Error;
    fn block_size(&self) -> u64 {
        512
    }
    fn num_blocks(&self) -> u64 {
        self.size / 512
    }
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let at = lba * 512;
        let last_start = self.size - self.last.len() as u64;
        let (src, off) = if at + buf.len() as u64 <= self.first.len() as u64 {
            (self.first, at)
        } else if at >= last_start {
            (self.last, at - last_start)
        } else {
            return Err(std::io::Error::other("not in the first or last chunk"));
        };
        let off = off as usize;
        buf.copy_from_slice(&src[off..off + buf.len()]);
        Ok(())
    }
    fn write_blocks(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the image of `manifest` from `source` onto `target`, `config`
/// (user-data) onto its OEM partition. `progress` hears after each chunk.
pub fn install(
    source: &Source,
    manifest: &InstallManifest,
    target: &Target,
    config: Option<&[u8]>,
    mut progress: impl FnMut(Progress),
) -> Result<Report, InstallError> {
    let started = Instant::now();
    let d = &manifest.disk;
    if source.identity == identity_of(target)? {
        return Err(InstallError::Target {
            path: target.path.clone(),
            why: "it is the ISO being installed from".into(),
        });
    }
    if target.size < d.size {
        return Err(InstallError::Target {
            path: target.path.clone(),
            why: format!(
                "it holds {} MiB, the image needs {} MiB",
                target.size >> 20,
                d.size.div_ceil(1 << 20)
            ),
        });
    }
    let n = d.chunks.len();
    // Both ends first: checked before the disk is touched.
    let first = source.chunk(0, &d.chunks[0])?;
    let last = source.chunk(n - 1, &d.chunks[n - 1])?;
    let oem = oem_span(&first, &last, d.size).ok_or_else(|| InstallError::NotAnIso {
        path: source.path.clone(),
        why: "its disk image has no OEM partition".into(),
    })?;

    let sync = |t: &Target| t.disk.sync().map_err(io("sync", &t.path));
    let wipe = vec![0u8; WIPE.min(target.size) as usize];
    for at in [0, target.size - wipe.len() as u64] {
        target
            .disk
            .write_at(at, &wipe)
            .map_err(io("wipe", &target.path))?;
    }
    sync(target)?;

    let mut zero_hashes: BTreeMap<u64, String> = BTreeMap::new();
    let mut report = Report {
        written: 0,
        zeroed: 0,
        seconds: 0.0,
    };
    let mut done = 0u64;
    let order = write_order(n);
    for (step, &i) in order.iter().enumerate() {
        let c = &d.chunks[i];
        if i == n - 1 || i == 0 {
            // The tables: after everything else is durable, config included.
            if i == n - 1 {
                sync(target)?;
                if let Some(config) = config {
                    write_config(target, oem, config)?;
                }
            }
            let bytes = if i == 0 { &first } else { &last };
            target
                .disk
                .write_at(c.offset, bytes)
                .map_err(io("write", &target.path))?;
            sync(target)?;
            report.written += c.length;
        } else {
            let zero = zero_hashes
                .entry(c.length)
                .or_insert_with(|| zero_sha256(c.length));
            if c.sha256 == *zero {
                zero_range(target, c.offset, c.length)?;
                report.zeroed += c.length;
            } else {
                let bytes = source.chunk(i, c)?;
                target
                    .disk
                    .write_at(c.offset, &bytes)
                    .map_err(io("write", &target.path))?;
                report.written += c.length;
            }
        }
        done += c.length;
        if step + 1 == order.len() || step % 16 == 0 {
            progress(Progress {
                done,
                total: d.size,
            });
        }
    }
    if target.block_device {
        // The kernel learns the new partitions; a failure only means it
        // sees them at the next boot.
        // SAFETY: BLKRRPART takes no argument.
        unsafe { libc::ioctl(file_fd(&target.file), BLKRRPART) };
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn identity_of(target: &Target) -> Result<(u64, u64), InstallError> {
    identity(&target.file, &target.path)
}

/// The OEM partition's byte offset and size in the image.
fn oem_span(first: &[u8], last: &[u8], size: u64) -> Option<(u64, u64)> {
    let gpt = Gpt::read(&mut Ends { first, last, size }).ok()?;
    let e = gpt.partition(Partition::Oem.number())?;
    Some((e.first_lba * 512, e.num_blocks() * 512))
}

fn write_config(
    target: &Target,
    (offset, len): (u64, u64),
    config: &[u8],
) -> Result<(), InstallError> {
    let region = Region::new(
        Arc::clone(&target.file),
        offset,
        len,
        &format!("{} OEM partition", target.path.display()),
    );
    let fat = Fat::open(&region, Partition::Oem)?;
    fat.replace(OEM_FILE, config)?;
    fat.close()?;
    Ok(())
}

/// Zeroes `len` bytes at `offset` without transferring zeros where the
/// kernel can: `BLKZEROOUT` on a block device, a punched hole in a file;
/// written zeros otherwise.
fn zero_range(target: &Target, offset: u64, len: u64) -> Result<(), InstallError> {
    let fd = file_fd(&target.file);
    let done = if target.block_device {
        let range = [offset, len];
        // SAFETY: BLKZEROOUT reads two u64s.
        unsafe { libc::ioctl(fd, BLKZEROOUT, range.as_ptr()) == 0 }
    } else {
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        // SAFETY: plain system call on our own descriptor.
        unsafe { libc::fallocate(fd, mode, offset as i64, len as i64) == 0 }
    };
    if done {
        return Ok(());
    }
    let zeros = vec![0u8; len as usize];
    target
        .disk
        .write_at(offset, &zeros)
        .map_err(io("write", &target.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_written_last_primary_at_the_very_end() {
        assert_eq!(write_order(0), Vec::<usize>::new());
        assert_eq!(write_order(1), vec![0]);
        assert_eq!(write_order(2), vec![1, 0]);
        assert_eq!(write_order(5), vec![1, 2, 3, 4, 0]);
        for n in 1..50 {
            let mut o = write_order(n);
            assert_eq!(o.last(), Some(&0));
            o.sort_unstable();
            assert_eq!(o, (0..n).collect::<Vec<_>>(), "every chunk once");
        }
    }
}
