//! `tandem release mirror`: copies channels of a repository (a directory
//! or a URL) into a directory that any static web server can serve, for
//! a site mirror or an air-gapped site. Nothing is trusted on the way:
//! - the pointer's signature is checked against the given keys, and an
//!   expired pointer or one for another channel is refused;
//! - the manifest, the kernel and the initramfs are checked against the
//!   sha256 that the pointer and manifest name;
//! - every payload chunk is decompressed and checked against the manifest
//!   before it is written; the whole payload is checked against its sha256;
//! - the uncompressed image (`usr.img`, for nodes' block fetches) is made
//!   from the checked payload, not fetched, and checked against its sha256.
//!
//! It is incremental. A file the mirror already holds with the right hash
//! is not fetched again. A payload chunk another mirrored version holds
//! (same content, same frame) is copied locally, and one left by an
//! interrupted run is kept when it still checks out.
//!
//! Safety: every file is written under a temporary name and renamed once
//! complete; the channel's pointer is written last, byte for byte as
//! signed. A refused or interrupted copy therefore never changes what the
//! mirror serves.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use repository::repo::{Chunk, MAX_METADATA_BYTES};
use updater::http::Fetch;

#[allow(unused_imports)]
use super::*;

/// What to mirror.
pub struct MirrorOptions<'a> {
    /// The source repository.
    pub source: &'a mut dyn Fetch,
    /// The mirror's root directory (created if missing).
    pub dest: &'a Path,
    /// `(image, channel)` pairs.
    pub channels: &'a [(String, String)],
    /// Keys the pointers must be signed by.
    pub trusted: &'a [PublicKey],
    /// Unix seconds.
    pub now: u64,
}

impl std::fmt::Debug for MirrorOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorOptions")
            .field("dest", &self.dest)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// What one channel's copy did.
#[derive(Clone, Debug, Serialize)]
pub struct MirroredChannel {
    /// Image.
    pub image: String,
    /// Channel.
    pub channel: String,
    /// The version it serves.
    pub version: String,
    /// Bytes fetched from the source.
    pub fetched_bytes: u64,
    /// Bytes the mirror had already (files, chunks of other versions).
    pub reused_bytes: u64,
    /// Requests made to the source.
    pub requests: u64,
}

/// Copies each channel; stops at the first refusal (what was copied for
/// earlier channels stays, complete).
pub fn mirror(opts: MirrorOptions<'_>) -> Result<Vec<MirroredChannel>> {
    if opts.trusted.is_empty() {
        return Err(Error::Release {
            message: "give the keys the channels must be signed by (--trust KEY.pub): a mirror checks every signature".into(),
        });
    }
    std::fs::create_dir_all(opts.dest).io("create mirror directory", opts.dest)?;
    let mut out = Vec::new();
    for (image, channel) in opts.channels {
        let mut c = ChannelCopy {
            source: &mut *opts.source,
            dest: opts.dest,
            report: MirroredChannel {
                image: image.clone(),
                channel: channel.clone(),
                version: String::new(),
                fetched_bytes: 0,
                reused_bytes: 0,
                requests: 0,
            },
        };
        c.channel(image, channel, opts.trusted, opts.now)?;
        out.push(c.report);
    }
    Ok(out)
}

struct ChannelCopy<'a> {
    source: &'a mut dyn Fetch,
    dest: &'a Path,
    report: MirroredChannel,
}

impl ChannelCopy<'_> {
    fn refuse(&self, message: String) -> Error {
        Error::Release {
            message: format!(
                "refusing to mirror {}/{}: {message}; the mirror still serves what it served before",
                self.report.image, self.report.channel
            ),
        }
    }

    fn fetch(&mut self, path: &str, max: u64) -> Result<Vec<u8>> {
        self.report.requests += 1;
        let bytes = self
            .source
            .get(path, max)
            .map_err(|e| self.refuse(e.to_string()))?;
        self.report.fetched_bytes += bytes.len() as u64;
        Ok(bytes)
    }

    fn channel(
        &mut self,
        image: &str,
        channel: &str,
        trusted: &[PublicKey],
        now: u64,
    ) -> Result<()> {
        let rel = repo::pointer_path(image, channel);
        let raw = self.fetch(&rel, MAX_METADATA_BYTES)?;
        let env: Envelope = serde_json::from_slice(&raw)
            .map_err(|e| self.refuse(format!("{rel} is not a channel pointer ({e})")))?;
        policy::verify_envelope(&env, trusted).map_err(|r| self.refuse(r.to_string()))?;
        let p: ChannelPointer =
            serde_json::from_str(&env.signed).map_err(|e| self.refuse(format!("{rel}: {e}")))?;
        if p.image != image || p.channel != channel {
            return Err(self.refuse(format!("the pointer is for {}/{}", p.image, p.channel)));
        }
        if p.expires <= now {
            return Err(self.refuse(format!("its pointer expired at {}", clock::utc(p.expires))));
        }
        self.report.version = p.version.to_string();
        let manifest_bytes = self.file(&p.manifest, MAX_METADATA_BYTES)?;
        let m: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| self.refuse(format!("{}: {e}", p.manifest.path)))?;
        m.check()
            .map_err(|e| self.refuse(format!("{}: {e}", p.manifest.path)))?;
        if m.image != image || m.version != p.version {
            return Err(self.refuse(format!("the manifest is for {} {}", m.image, m.version)));
        }
        for f in [&m.kernel, &m.initrd] {
            self.file(f, f.size)?;
        }
        self.payload(&m)?;
        if let Some(raw) = &m.usr.raw {
            self.raw_image(&m, raw)?;
        }
        // Last: the pointer, exactly as signed.
        let dst = self.dest.join(&rel);
        self.write(&dst, &raw)?;
        Ok(())
    }

    /// Writes `bytes` to `dst` under a temporary name, then renames it.
    fn write(&self, dst: &Path, bytes: &[u8]) -> Result<()> {
        let dir = dst.parent().unwrap_or(self.dest);
        std::fs::create_dir_all(dir).io("create", dir)?;
        let tmp = temp_name(dst);
        write_synced(&tmp, bytes)?;
        std::fs::rename(&tmp, dst).io("rename into place", dst)?;
        sync_dir(dir)
    }

    /// The file `f` in the mirror: kept when it is there with the right
    /// hash, else fetched, checked and written. Returns its bytes.
    fn file(&mut self, f: &FileRef, max: u64) -> Result<Vec<u8>> {
        let dst = self.dest.join(&f.path);
        if let Ok(bytes) = std::fs::read(&dst)
            && policy::check_file(&bytes, f).is_ok()
        {
            self.report.reused_bytes += bytes.len() as u64;
            return Ok(bytes);
        }
        let bytes = self.fetch(&f.path, max)?;
        policy::check_file(&bytes, f).map_err(|e| self.refuse(format!("{}: {e}", f.path)))?;
        self.write(&dst, &bytes)?;
        Ok(bytes)
    }

    /// The payload, chunk by chunk.
    fn payload(&mut self, m: &Manifest) -> Result<()> {
        let f = &m.usr.payload;
        let dst = self.dest.join(&f.path);
        if let Ok((size, sha)) = hash_file(&dst)
            && size == f.size
            && sha == f.sha256
        {
            self.report.reused_bytes += size;
            return Ok(());
        }
        let dir = dst.parent().unwrap_or(self.dest);
        std::fs::create_dir_all(dir).io("create", dir)?;
        // Kept across runs: what an interrupted run wrote is checked, not refetched.
        let partial = dst.with_file_name(format!(".{}.partial", files::PAYLOAD));
        let out = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&partial)
            .io("open", &partial)?;
        let others = self.known_chunks(m);
        for (i, c) in m.usr.chunks.iter().enumerate() {
            let mut frame = vec![0u8; c.compressed_size as usize];
            if out.read_exact_at(&mut frame, c.payload_offset).is_ok()
                && payload::decode_chunk(i, c, &frame).is_ok()
            {
                self.report.reused_bytes += c.compressed_size;
                continue;
            }
            if let Some(frame) = others
                .get(&(c.sha256.clone(), c.compressed_size))
                .and_then(|(path, offset)| read_at(path, *offset, c.compressed_size))
                .filter(|frame| payload::decode_chunk(i, c, frame).is_ok())
            {
                out.write_all_at(&frame, c.payload_offset)
                    .io("write", &partial)?;
                self.report.reused_bytes += c.compressed_size;
                continue;
            }
            self.report.requests += 1;
            let mut reader = self
                .source
                .range(
                    &f.path,
                    c.payload_offset,
                    c.payload_offset + c.compressed_size,
                )
                .map_err(|e| self.refuse(e.to_string()))?;
            frame.clear();
            reader
                .read_to_end(&mut frame)
                .map_err(|e| self.refuse(format!("{}: {e}", f.path)))?;
            self.report.fetched_bytes += frame.len() as u64;
            payload::decode_chunk(i, c, &frame)
                .map_err(|e| self.refuse(format!("{}: {e}", f.path)))?;
            out.write_all_at(&frame, c.payload_offset)
                .io("write", &partial)?;
        }
        out.set_len(f.size).io("truncate", &partial)?;
        out.sync_all().io("sync", &partial)?;
        drop(out);
        let (size, sha) = hash_file(&partial)?;
        if size != f.size || sha != f.sha256 {
            return Err(self.refuse(format!(
                "{}: every chunk checked, but the file's sha256 is {sha}, the manifest says {}",
                f.path, f.sha256
            )));
        }
        std::fs::rename(&partial, &dst).io("rename into place", &dst)?;
        sync_dir(dir)
    }

    /// The uncompressed image, decompressed from the mirrored payload.
    fn raw_image(&mut self, m: &Manifest, raw: &FileRef) -> Result<()> {
        let dst = self.dest.join(&raw.path);
        if let Ok((size, sha)) = hash_file(&dst)
            && size == raw.size
            && sha == raw.sha256
        {
            return Ok(());
        }
        let payload_path = self.dest.join(&m.usr.payload.path);
        let payload = std::fs::File::open(&payload_path).io("open", &payload_path)?;
        let tmp = temp_name(&dst);
        let out = std::fs::File::create(&tmp).io("create", &tmp)?;
        for (i, c) in m.usr.chunks.iter().enumerate() {
            let mut frame = vec![0u8; c.compressed_size as usize];
            payload
                .read_exact_at(&mut frame, c.payload_offset)
                .io("read", &payload_path)?;
            let data = payload::decode_chunk(i, c, &frame)
                .map_err(|e| self.refuse(format!("{}: {e}", m.usr.payload.path)))?;
            out.write_all_at(&data, c.offset).io("write", &tmp)?;
        }
        out.sync_all().io("sync", &tmp)?;
        drop(out);
        let (size, sha) = hash_file(&tmp)?;
        if size != raw.size || sha != raw.sha256 {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.refuse(format!(
                "{}: made from the checked chunks, it has {size} bytes with sha256 {sha}, the manifest says {} bytes with {}",
                raw.path, raw.size, raw.sha256
            )));
        }
        std::fs::rename(&tmp, &dst).io("rename into place", &dst)?;
        sync_dir(dst.parent().unwrap_or(self.dest))
    }

    /// Chunks of the other versions already in the mirror, by content:
    /// (sha256, frame size) → (payload file, offset).
    fn known_chunks(&self, m: &Manifest) -> HashMap<(String, u64), (PathBuf, u64)> {
        let mut out = HashMap::new();
        for v in list_versions(self.dest, &m.image) {
            if v == m.version {
                continue;
            }
            let dir = self.dest.join(repo::version_dir(&m.image, &v));
            let Ok(bytes) = std::fs::read(dir.join(files::MANIFEST)) else {
                continue;
            };
            let Ok(other) = serde_json::from_slice::<Manifest>(&bytes) else {
                continue;
            };
            let path = self.dest.join(&other.usr.payload.path);
            if !path.exists() {
                continue;
            }
            for c in other.usr.chunks {
                let Chunk {
                    sha256,
                    compressed_size,
                    payload_offset,
                    ..
                } = c;
                out.insert((sha256, compressed_size), (path.clone(), payload_offset));
            }
        }
        out
    }
}

fn read_at(path: &Path, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn temp_name(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dst.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `out`: a FAT volume holding the repository in `dir` (as
/// `mirror` made it), for `tandemctl update apply --from <device>` on a
/// node without a network. Returns its size. The file can be written to a
/// USB stick as it is (no partition table: the volume is the whole stick).
pub fn export_volume(dir: &Path, out: &Path) -> Result<u64> {
    use crate::build::fat::{self, Content, Volume};
    let mut found = Vec::new();
    collect_files(dir, dir, &mut found)?;
    let bytes: u64 = found.iter().map(|(_, _, len)| len).sum();
    // Room for the FAT, directories and cluster slack.
    let size = (bytes + bytes / 16 + (8 << 20)).div_ceil(1 << 20) << 20;
    let files: Vec<fat::FatFile<'_>> = found
        .iter()
        .map(|(rel, path, _)| (rel.clone(), Content::File(path)))
        .collect();
    fat::build(
        out,
        Volume {
            size,
            label: "TANDEMUPD",
            volume_id: 0x7a4d_0002,
            fat32: size > (512 << 20),
            epoch: clock::now() as i64,
        },
        &files,
    )?;
    Ok(size)
}

/// Every visible file under `dir`: (path relative to `root`, path, length).
fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf, u64)>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .io("list", dir)?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let meta = e.metadata().io("stat", &path)?;
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push((rel, path, meta.len()));
        }
    }
    Ok(())
}
