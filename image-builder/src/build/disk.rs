//! Writes `disk.raw`: protective MBR, both GPT copies with the slot
//! attributes, and each partition's content. The disk is walked once, in
//! order, a MiB at a time: runs of zeros are left as holes (a 3 GiB image
//! takes only what its content needs) and every MiB goes to a second thread
//! that computes the image's sha256 while the next one is written.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use sha2::{Digest, Sha256};
use tandem_slot::{FileDisk, Gpt};

use tandem_contract::Partition;

use crate::build::layout::{BLOCK, DiskPlan};
use crate::error::{Error, IoContext, Result};

/// A partition's content: which partition, the image file, attribute bits.
#[derive(Clone, Copy, Debug)]
pub struct Content<'a> {
    /// The partition.
    pub part: Partition,
    /// The file system image to copy in, if any.
    pub image: Option<&'a Path>,
    /// GPT attribute bits.
    pub attributes: u64,
}

const MIB: u64 = 1 << 20;
/// Zero runs of this size are skipped instead of written.
const GRAIN: usize = 64 << 10;

/// Creates `path` from `plan` and `contents`; returns its sha256 (hex).
pub fn assemble(path: &Path, plan: &DiskPlan, contents: &[Content<'_>]) -> Result<String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .io("create", path)?;
    file.set_len(plan.size()).io("size", path)?;
    file.write_all_at(&tandem_slot::gpt::protective_mbr(plan.blocks), 0)
        .io("write protective MBR to", path)?;
    write_table(path, plan, contents)?;

    // Each content image with the byte range it occupies.
    let mut sources = Vec::new();
    for c in contents {
        let (Some(image), Some(part)) = (c.image, plan.partition(c.part)) else {
            continue;
        };
        let len = std::fs::metadata(image).io("stat", image)?.len();
        if len > part.size() {
            return Err(Error::TooLarge {
                what: image.display().to_string(),
                partition: part.label.into(),
                key: part.size_key.into(),
                need: len.div_ceil(MIB),
                have: part.size() / MIB,
            });
        }
        let f = std::fs::File::open(image).io("open", image)?;
        sources.push((part.offset(), len, f, image));
    }

    // Full buffers go to the hasher (None = a MiB of zeros), empty ones
    // come back for reuse.
    let (full_tx, full_rx) = mpsc::sync_channel::<Option<Vec<u8>>>(8);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    let hasher = std::thread::spawn(move || {
        let zeros = vec![0u8; MIB as usize];
        let mut h = Sha256::new();
        for chunk in full_rx {
            match chunk {
                Some(data) => {
                    h.update(&data);
                    let _ = empty_tx.send(data);
                }
                None => h.update(&zeros),
            }
        }
        hex::encode(h.finalize())
    });

    let walk = || -> Result<()> {
        let mut pos = 0u64;
        while pos < plan.size() {
            let len = MIB.min(plan.size() - pos);
            let mut buf = empty_rx
                .try_recv()
                .unwrap_or_else(|_| vec![0u8; MIB as usize]);
            buf.resize(len as usize, 0);
            let from_content = sources
                .iter()
                .find(|(off, l, _, _)| pos >= *off && pos < off + l);
            let chunk = if let Some((off, l, f, image)) = from_content {
                let n = len.min(off + l - pos) as usize;
                if is_hole(f, pos - off, n as u64) {
                    None
                } else {
                    buf[n..].fill(0);
                    f.read_exact_at(&mut buf[..n], pos - off)
                        .io("read", *image)?;
                    for (i, grain) in buf.chunks(GRAIN).enumerate() {
                        if !is_zero(grain) {
                            file.write_all_at(grain, pos + (i * GRAIN) as u64)
                                .io("write partition content to", path)?;
                        }
                    }
                    Some(buf)
                }
            } else if pos < MIB || pos + len > plan.size() - MIB {
                // The partition tables, already written.
                file.read_exact_at(&mut buf, pos).io("read back", path)?;
                Some(buf)
            } else {
                None
            };
            if full_tx.send(chunk).is_err() {
                break; // the hasher died; join() below reports it
            }
            pos += len;
        }
        Ok(())
    };
    let walked = walk();
    drop(full_tx);
    let digest = hasher.join().map_err(|_| Error::Io {
        action: "hash",
        path: path.into(),
        cause: std::io::Error::other("hashing thread panicked"),
    })?;
    walked?;
    file.sync_all().io("sync", path)?;
    Ok(digest)
}

/// Whether `len` bytes at `at` in `f` are all inside one hole of a sparse
/// file (nothing to read, copy or look at).
fn is_hole(f: &std::fs::File, at: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(start) = libc::off_t::try_from(at) else {
        return false;
    };
    // SAFETY: lseek only reads the descriptor's file; the offset is checked above.
    let data = unsafe { libc::lseek(f.as_raw_fd(), start, libc::SEEK_DATA) };
    // ENXIO: no data after `at` at all.
    (data < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO))
        || (data >= 0 && data as u64 >= at + len)
}

/// Whether a buffer is all zeros. OR-folding has no early exit, so it
/// vectorises; grains are small enough that this is faster than stopping.
fn is_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, &x| acc | x) == 0
}

fn write_table(path: &Path, plan: &DiskPlan, contents: &[Content<'_>]) -> Result<()> {
    let bad = |message: String| Error::BadDisk {
        path: path.into(),
        message,
    };
    let mut gpt = Gpt::new(plan.blocks, BLOCK, plan.disk_guid).map_err(|e| bad(e.to_string()))?;
    for part in &plan.partitions {
        let mut entry = part.entry();
        entry.attributes = contents
            .iter()
            .find(|c| c.part == part.part)
            .map_or(0, |c| c.attributes);
        if let Some(slot) = gpt.partition_mut(part.number) {
            *slot = entry;
        }
    }
    let mut dev = FileDisk::open(path).io("open", path)?;
    gpt.write(&mut dev).map_err(|e| bad(e.to_string()))
}
