//! Writing a slot image into the inactive slot, chunk by chunk, from a
//! manifest (the caller has cleared the slot's attributes and persisted
//! that before calling [`write_slot`]).
//!
//! For every chunk, in order, the cheapest source wins:
//!
//! 1. **verified**: `progress.json` says an earlier attempt wrote, synced and
//!    verified it;
//! 2. **in place**: the inactive slot already holds it at its offset (an
//!    attempt that was killed before it recorded its progress);
//! 3. **copy**: the running slot holds the same bytes (same sha256) at one
//!    of its own chunk boundaries: copied locally, no download;
//! 4. **patch**: assembled from 4 KiB blocks, most of them local, the others
//!    fetched from the uncompressed image, when those cost fewer bytes than
//!    the compressed chunk (see [`crate::blocks`]: the new slot's hash tree
//!    says which blocks differ);
//! 5. **download**: adjacent downloads are coalesced into one HTTP Range
//!    request over the payload; each chunk is decompressed (bounded to its
//!    length: no zip bombs) and hashed before any of its bytes are written.
//!
//! Every few MiB the slot is synced and the verified chunks are recorded in
//! `progress.json`, so a kill or power cut costs at most the chunks since.
//! After the last chunk, [`verify_slot`] re-reads the whole slot and checks
//! it against the manifest's dm-verity root hash.
//!
//! The planning ([`plan`], [`ranges`]) is pure; [`write_slot`] works on any
//! [`Region`] (a partition of the boot disk, or a file in tests).

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tandem_slot::Slot;
use tandem_slot::verity;

use repository::payload;
use repository::repo::{Chunk, Manifest, UsrImage};

use crate::blocks::{self, Patcher};
use crate::disk::Region;
use crate::error::Error;
use crate::http::Fetch;
use crate::state::{Bitmap, FORMAT, Progress};

/// Where a chunk's bytes come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Recorded as verified by an earlier attempt.
    Verified,
    /// Already in the inactive slot at its offset.
    InPlace,
    /// Copied from the running slot at this offset.
    Copy(u64),
    /// Assembled from blocks, local and fetched.
    Patch,
    /// Downloaded.
    Download,
}

/// A run of adjacent downloaded chunks: one HTTP Range request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchRange {
    /// First chunk.
    pub first: usize,
    /// Last chunk, inclusive.
    pub last: usize,
    /// First payload byte.
    pub start: u64,
    /// Payload byte after the last.
    pub end: u64,
}

/// A sha256 digest.
pub type Digest32 = [u8; 32];

/// Chooses each chunk's source: verified, in place, copy, download.
/// `in_place[i]` says whether the inactive slot holds chunk `i` already;
/// `local` maps digests found in the running slot to their offset there.
pub fn plan(
    chunks: &[Chunk],
    verified: &Bitmap,
    in_place: &[bool],
    local: &HashMap<Digest32, u64>,
) -> Vec<Source> {
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if verified.get(i) {
                Source::Verified
            } else if in_place.get(i).copied().unwrap_or(false) {
                Source::InPlace
            } else if let Some(&at) = digest(&c.sha256).and_then(|d| local.get(&d)) {
                Source::Copy(at)
            } else {
                Source::Download
            }
        })
        .collect()
}

/// Coalesces adjacent downloads into ranges of the payload file.
pub fn ranges(chunks: &[Chunk], plan: &[Source]) -> Vec<FetchRange> {
    let mut out: Vec<FetchRange> = Vec::new();
    for (i, (c, s)) in chunks.iter().zip(plan).enumerate() {
        if *s != Source::Download {
            continue;
        }
        let end = c.payload_offset + c.compressed_size;
        match out.last_mut() {
            Some(r) if r.last + 1 == i && r.end == c.payload_offset => {
                r.last = i;
                r.end = end;
            }
            _ => out.push(FetchRange {
                first: i,
                last: i,
                start: c.payload_offset,
                end,
            }),
        }
    }
    out
}

/// The digest of a hex sha256.
pub fn digest(hex_sha: &str) -> Option<Digest32> {
    hex::decode(hex_sha).ok()?.try_into().ok()
}

/// Counters of one slot write, reported as it goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Image bytes done (any source).
    pub bytes_done: u64,
    /// Image bytes in total.
    pub bytes_total: u64,
    /// Compressed payload bytes received.
    pub downloaded: u64,
    /// Image bytes copied from the running slot.
    pub copied: u64,
    /// Image bytes already there (verified earlier or found in place).
    pub present: u64,
    /// Chunks downloaded, copied, already present.
    pub chunks: [usize; 3],
    /// Range requests made (payload and blocks).
    pub range_requests: usize,
    /// Payload byte ranges requested (`start..end`), in order.
    pub requested: Vec<(u64, u64)>,
    /// Blocks fetched from the uncompressed image (see [`crate::blocks`]).
    pub blocks_fetched: u64,
    /// Byte ranges of the uncompressed image requested, in order.
    pub requested_blocks: Vec<(u64, u64)>,
}

/// One slot write.
#[derive(Debug)]
pub struct SlotJob<'a> {
    /// The verified manifest.
    pub manifest: &'a Manifest,
    /// sha256 of its bytes (ties `progress.json` to this exact manifest).
    pub manifest_sha256: &'a str,
    /// The slot written.
    pub slot: Slot,
    /// The inactive slot's partition.
    pub target: &'a Region,
    /// The running slot's partition and the size of its image, for local copies.
    pub running: Option<(&'a Region, u64)>,
    /// `progress.json`.
    pub progress_file: &'a Path,
}

/// Sync and record progress at least this often.
pub const SYNC_BYTES: u64 = 8 << 20;
/// … or after this long.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Writes the manifest's image into `job.target`. On error, everything
/// verified so far is synced and recorded first.
pub fn write_slot(
    job: &SlotJob<'_>,
    fetch: &mut dyn Fetch,
    report: &mut dyn FnMut(&Counters),
) -> Result<Counters, Error> {
    let usr = &job.manifest.usr;
    if job.target.len() < usr.size {
        return Err(Error::SlotTooSmall {
            slot: job.slot,
            partition: job.target.len(),
            need: usr.size,
            version: job.manifest.version.to_string(),
        });
    }
    let n = usr.chunks.len();
    let slot_name = job.slot.to_string();
    let verified = Progress::load(job.progress_file)
        .and_then(|p| p.bitmap_for(job.manifest_sha256, &slot_name, n))
        .unwrap_or_else(|| Bitmap::new(n));
    let mut counters = Counters {
        bytes_total: usr.size,
        ..Counters::default()
    };
    report(&counters);

    let in_place = scan_in_place(job.target, &usr.chunks, &verified)
        .map_err(|e| disk_err(job.target, "reading the inactive slot", e))?;
    let local = match job.running {
        Some((region, size)) => index_slot(region, size, usr.chunk_size, &usr.chunks)
            .map_err(|e| disk_err(region, "reading the running slot", e))?,
        None => HashMap::new(),
    };
    let mut sources = plan(&usr.chunks, &verified, &in_place, &local);
    let patcher = match job.running {
        Some(running) if sources.contains(&Source::Download) => {
            Patcher::new(usr, job.target, running, fetch, &mut counters)?
        }
        _ => None,
    };
    if let Some(p) = &patcher {
        for (s, c) in sources.iter_mut().zip(&usr.chunks) {
            if *s == Source::Download && blocks::worth_patching(&p.plan_chunk(c), c.compressed_size)
            {
                *s = Source::Patch;
            }
        }
    }

    let mut w = Writer {
        job,
        verified,
        unsynced: Vec::new(),
        unsynced_bytes: 0,
        last_sync: Instant::now(),
    };
    let result = write_all(
        job,
        &sources,
        patcher.as_ref(),
        fetch,
        &mut w,
        &mut counters,
        report,
    );
    let synced = w.sync();
    result?;
    synced?;
    Ok(counters)
}

fn write_all(
    job: &SlotJob<'_>,
    sources: &[Source],
    patcher: Option<&Patcher<'_>>,
    fetch: &mut dyn Fetch,
    w: &mut Writer<'_, '_>,
    counters: &mut Counters,
    report: &mut dyn FnMut(&Counters),
) -> Result<(), Error> {
    let chunks = &job.manifest.usr.chunks;
    let fetches = ranges(chunks, sources);
    let mut next_fetch = fetches.iter().peekable();
    let mut buf = Vec::new();
    let mut i = 0;
    while i < chunks.len() {
        let c = &chunks[i];
        match sources[i] {
            Source::Verified | Source::InPlace => {
                if sources[i] == Source::InPlace {
                    w.done(i, 0)?;
                }
                counters.present += c.length;
                counters.chunks[2] += 1;
            }
            Source::Copy(from) => {
                let (region, _) = job.running.ok_or_else(|| Error::Node {
                    what: "copy planned without a running slot".into(),
                })?;
                buf.resize(c.length as usize, 0);
                region
                    .read_at(from, &mut buf)
                    .map_err(|e| disk_err(region, "reading the running slot", e))?;
                // The running slot is verified by dm-verity on reads through
                // /usr, not on raw reads: check again before writing.
                check_chunk(i, c, &buf)?;
                job.target
                    .write_at(c.offset, &buf)
                    .map_err(|e| disk_err(job.target, "writing the inactive slot", e))?;
                w.done(i, c.length)?;
                counters.copied += c.length;
                counters.chunks[1] += 1;
            }
            Source::Patch => {
                let p = patcher.ok_or_else(|| Error::Node {
                    what: "patch planned without the hash tree".into(),
                })?;
                let fetched = counters.blocks_fetched;
                let data = p.chunk(c, fetch, counters)?;
                check_chunk(i, c, &data)?;
                job.target
                    .write_at(c.offset, &data)
                    .map_err(|e| disk_err(job.target, "writing the inactive slot", e))?;
                w.done(i, c.length)?;
                let k = if counters.blocks_fetched > fetched {
                    0
                } else {
                    1
                };
                counters.chunks[k] += 1;
            }
            Source::Download => {
                let Some(r) = next_fetch.next() else {
                    return Err(Error::Node {
                        what: "download planned without a range".into(),
                    });
                };
                let path = &job.manifest.usr.payload.path;
                counters.range_requests += 1;
                counters.requested.push((r.start, r.end));
                let mut stream = fetch.range(path, r.start, r.end)?;
                let mut compressed = Vec::new();
                for (j, c) in chunks.iter().enumerate().take(r.last + 1).skip(r.first) {
                    compressed.resize(c.compressed_size as usize, 0);
                    stream
                        .read_exact(&mut compressed)
                        .map_err(|e| Error::Http {
                            url: fetch.url(path),
                            msg: format!(
                                "reading chunk {j} (payload bytes {}..{}): {e}",
                                c.payload_offset,
                                c.payload_offset + c.compressed_size
                            ),
                        })?;
                    counters.downloaded += c.compressed_size;
                    // At most `length` bytes come out (a frame that claims or
                    // produces more is refused, not allocated), and only
                    // bytes with the manifest's length and sha256.
                    let data = payload::decode_chunk(j, c, &compressed).map_err(|e| {
                        Error::ChunkCorrupt {
                            index: j,
                            offset: c.offset,
                            detail: e.to_string(),
                        }
                    })?;
                    job.target
                        .write_at(c.offset, &data)
                        .map_err(|e| disk_err(job.target, "writing the inactive slot", e))?;
                    w.done(j, c.length)?;
                    counters.chunks[0] += 1;
                    counters.bytes_done += c.length;
                    report(counters);
                }
                i = r.last + 1;
                continue;
            }
        }
        counters.bytes_done += c.length;
        report(counters);
        i += 1;
    }
    Ok(())
}

fn check_chunk(index: usize, c: &Chunk, data: &[u8]) -> Result<(), Error> {
    if data.len() as u64 != c.length {
        return Err(Error::ChunkCorrupt {
            index,
            offset: c.offset,
            detail: format!("{} bytes, expected {}", data.len(), c.length),
        });
    }
    let got = hex::encode(Sha256::digest(data));
    if got != c.sha256 {
        return Err(Error::ChunkCorrupt {
            index,
            offset: c.offset,
            detail: format!("sha256 {got}, expected {}", c.sha256),
        });
    }
    Ok(())
}

pub(crate) fn disk_err(region: &Region, what: &'static str, e: std::io::Error) -> Error {
    Error::Disk {
        what,
        disk: region.name().into(),
        msg: e.to_string(),
    }
}

/// Records written chunks; syncs the slot and then `progress.json`.
struct Writer<'a, 'b> {
    job: &'a SlotJob<'b>,
    verified: Bitmap,
    unsynced: Vec<usize>,
    unsynced_bytes: u64,
    last_sync: Instant,
}

impl Writer<'_, '_> {
    fn done(&mut self, i: usize, written: u64) -> Result<(), Error> {
        self.unsynced.push(i);
        self.unsynced_bytes += written;
        if self.unsynced_bytes >= SYNC_BYTES || self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.sync()?;
        }
        Ok(())
    }

    /// fsync the slot, then record its chunks as verified: a chunk is in
    /// `progress.json` only once its bytes are durable.
    fn sync(&mut self) -> Result<(), Error> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        self.job
            .target
            .sync()
            .map_err(|e| disk_err(self.job.target, "syncing the inactive slot", e))?;
        for &i in &self.unsynced {
            self.verified.set(i);
        }
        self.unsynced.clear();
        self.unsynced_bytes = 0;
        self.last_sync = Instant::now();
        Progress {
            format: FORMAT,
            version: self.job.manifest.version.clone(),
            manifest_sha256: self.job.manifest_sha256.to_string(),
            slot: self.job.slot.to_string(),
            chunks: self.verified.len(),
            verified: self.verified.to_hex(),
        }
        .save(self.job.progress_file)
    }
}

/// Which chunks (not yet verified) the slot already holds at their offsets.
pub fn scan_in_place(
    target: &Region,
    chunks: &[Chunk],
    verified: &Bitmap,
) -> std::io::Result<Vec<bool>> {
    let mut buf = Vec::new();
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if verified.get(i) {
                return Ok(false);
            }
            buf.resize(c.length as usize, 0);
            target.read_at(c.offset, &mut buf)?;
            Ok(hex::encode(Sha256::digest(&buf)) == c.sha256)
        })
        .collect()
}

/// Digests of the running slot's image at its chunk boundaries
/// (`chunk_size` windows; the last one may be shorter), restricted to the
/// digests `wanted` has.
pub fn index_slot(
    region: &Region,
    image_size: u64,
    chunk_size: u64,
    wanted: &[Chunk],
) -> std::io::Result<HashMap<Digest32, u64>> {
    let want: std::collections::HashSet<Digest32> =
        wanted.iter().filter_map(|c| digest(&c.sha256)).collect();
    let size = image_size.min(region.len());
    let mut out = HashMap::new();
    let mut buf = vec![0u8; chunk_size as usize];
    let mut at = 0;
    while at < size {
        let len = chunk_size.min(size - at) as usize;
        region.read_at(at, &mut buf[..len])?;
        let d: Digest32 = Sha256::digest(&buf[..len]).into();
        if want.contains(&d) {
            out.entry(d).or_insert(at);
        }
        at += len as u64;
    }
    Ok(out)
}

/// Size of a slot image with `data_blocks` blocks of file system: data plus
/// the dm-verity tree.
pub fn image_size(data_blocks: u64) -> u64 {
    data_blocks * verity::BLOCK_SIZE as u64 + verity::tree_size(data_blocks)
}

/// Re-reads the written slot and checks it against the manifest: the tree
/// computed from the data must have the manifest's root hash, and the tree
/// stored after the data must be that tree (dm-verity reads the stored one).
pub fn verify_slot(
    region: &Region,
    usr: &UsrImage,
    progress: impl FnMut(u64),
) -> Result<(), String> {
    let v = &usr.verity;
    let salt = hex::decode(&v.salt).map_err(|e| format!("salt is not hex: {e}"))?;
    let mut data = BufReader::with_capacity(1 << 20, region.cursor());
    let tree = verity::build(&mut data, v.data_blocks, &salt, progress)
        .map_err(|e| format!("reading the slot failed: {e}"))?;
    let root = verity::hex(&tree.root);
    if root != v.root_hash {
        return Err(format!(
            "the data hashes to root {root}, the manifest says {}",
            v.root_hash
        ));
    }
    let at = v.data_blocks * verity::BLOCK_SIZE as u64;
    if at + tree.tree.len() as u64 > usr.size {
        return Err(format!(
            "the hash tree ({} bytes) does not fit in the {}-byte image",
            tree.tree.len(),
            usr.size
        ));
    }
    let mut stored = vec![0u8; tree.tree.len()];
    region
        .read_at(at, &mut stored)
        .map_err(|e| format!("reading the hash tree failed: {e}"))?;
    if stored != tree.tree {
        let block = stored
            .chunks(verity::BLOCK_SIZE)
            .zip(tree.tree.chunks(verity::BLOCK_SIZE))
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(format!(
            "the stored hash tree differs from the data's at hash block {block}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u64, sha: u8, compressed: u64) -> Chunk {
        Chunk {
            offset: i * 100,
            length: 100,
            sha256: hex::encode([sha; 32]),
            payload_offset: 0,
            compressed_size: compressed,
        }
    }

    fn chunks(shas: &[u8]) -> Vec<Chunk> {
        let mut out: Vec<Chunk> = Vec::new();
        let mut po = 0;
        for (i, &s) in shas.iter().enumerate() {
            let mut c = chunk(i as u64, s, 10 + i as u64);
            c.payload_offset = po;
            po += c.compressed_size;
            out.push(c);
        }
        out
    }

    #[test]
    fn cheapest_source_wins() {
        let cs = chunks(&[1, 2, 3, 4, 5]);
        let mut verified = Bitmap::new(5);
        verified.set(0);
        let in_place = [true, true, false, false, false];
        let local = HashMap::from([([3u8; 32], 700), ([1u8; 32], 0)]);
        assert_eq!(
            plan(&cs, &verified, &in_place, &local),
            [
                Source::Verified,
                Source::InPlace,
                Source::Copy(700),
                Source::Download,
                Source::Download
            ]
        );
    }

    #[test]
    fn adjacent_downloads_coalesce() {
        let cs = chunks(&[1, 2, 3, 4, 5, 6, 7]);
        use Source::*;
        let p = [
            Download,
            Download,
            Copy(0),
            Download,
            Verified,
            Download,
            Download,
        ];
        let r = ranges(&cs, &p);
        assert_eq!(
            r,
            [
                FetchRange {
                    first: 0,
                    last: 1,
                    start: 0,
                    end: 21
                },
                FetchRange {
                    first: 3,
                    last: 3,
                    start: 33,
                    end: 46
                },
                FetchRange {
                    first: 5,
                    last: 6,
                    start: 60,
                    end: 91
                },
            ]
        );
        assert!(ranges(&cs, &[Verified; 7]).is_empty());
        assert_eq!(
            ranges(&cs, &[Download; 7]),
            [FetchRange {
                first: 0,
                last: 6,
                start: 0,
                end: 91
            }]
        );
    }

    #[test]
    fn image_sizes() {
        assert_eq!(image_size(1), 4096);
        assert_eq!(image_size(2), 3 * 4096);
        assert_eq!(image_size(129), 129 * 4096 + 3 * 4096);
    }
}
