//! Publishing to an update repository (`tandem release`): a build directory
//! becomes an immutable version (chunked payload, kernel, initramfs,
//! manifest), channels are pointed at versions with signed pointers, and
//! [`status`] reports what a repository serves.
//!
//! Formats are [`updater::repo`], signing is [`updater::keys`] and the
//! checks a node applies are [`updater::policy`]: the release side uses the
//! node's own code, so the two cannot drift.
//!
//! Crash safety: a version is assembled in a hidden directory inside the
//! repository and renamed into place complete, so a half-published version
//! is never visible; a channel pointer is written to a temporary file,
//! synced and renamed over the old one. One release command at a time holds
//! the repository (a lock file).

use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;
use sha2::{Digest, Sha256};
use updater::keys::{PrivateKey, PublicKey};
use updater::payload;
use updater::policy;
use updater::repo::{
    self, CHUNK_SIZE, ChannelPointer, Envelope, FORMAT, FileRef, Manifest, Rollout, Signature,
    UsrImage, Verity,
};
use updater::version::Version;

use crate::clock;
use crate::error::{Error, IoContext, Result};
use crate::manifest::{self, Artifact, BuildManifest};
use crate::pipeline::outputs;
use crate::progress::Progress;

/// File names inside a version directory.
pub mod files {
    /// The chunked /usr payload.
    pub const PAYLOAD: &str = "usr.payload";
    /// The kernel.
    pub const KERNEL: &str = "vmlinuz";
    /// The initramfs.
    pub const INITRD: &str = "initrd";
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
}

/// Lock file in the repository root (hidden: never part of a release).
pub const LOCK_FILE: &str = ".tandem-release.lock";

/// How long a new pointer is valid unless told otherwise.
pub const DEFAULT_EXPIRES_IN: u64 = 30 * 86_400;

/// Whether `name` is a valid channel name: letters, digits, `-`, `_`.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is a valid image name: lower-case letters, digits, `-`.
pub fn valid_image(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_channel(name: &str) -> Result<()> {
    if valid_channel(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "channel",
            name: name.into(),
            rule: "use letters, digits, `-` and `_` (e.g. stable, beta)",
        })
    }
}

// ---------------------------------------------------------------------------
// Schedules

/// When a rollout starts: `now`, Unix seconds, or `+<duration>` from now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RolloutStart {
    /// When the pointer is signed.
    #[default]
    Now,
    /// At this Unix time.
    At(u64),
    /// This many seconds after signing.
    In(u64),
}

impl FromStr for RolloutStart {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        if s == "now" {
            Ok(RolloutStart::Now)
        } else if let Some(d) = s.strip_prefix('+') {
            clock::parse_duration(d).map(RolloutStart::In)
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse()
                .map(RolloutStart::At)
                .map_err(|_| format!("{s:?} is too large for a Unix time"))
        } else {
            Err(format!(
                "{s:?} is not a start time: use `now`, Unix seconds (e.g. 1767225600) or `+` and a duration (e.g. +30m)"
            ))
        }
    }
}

impl RolloutStart {
    /// Unix seconds, given the signing time.
    pub fn resolve(self, now: u64) -> u64 {
        match self {
            RolloutStart::Now => now,
            RolloutStart::At(t) => t,
            RolloutStart::In(d) => now.saturating_add(d),
        }
    }
}

/// Rollout and validity of a new pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// When nodes start to become eligible.
    pub start: RolloutStart,
    /// Over how many seconds they do (0: all at the start).
    pub duration_secs: u64,
    /// Seconds from signing until nodes refuse the pointer.
    pub expires_in_secs: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            start: RolloutStart::Now,
            duration_secs: 0,
            expires_in_secs: DEFAULT_EXPIRES_IN,
        }
    }
}

// ---------------------------------------------------------------------------
// Build directories

/// A complete build (`tandem build --out DIR`), its record checked against
/// the files' sizes. The files' hashes are checked while they are read for
/// publishing.
#[derive(Clone, Debug)]
pub struct BuildDir {
    /// The directory.
    pub path: PathBuf,
    /// Its build.json.
    pub manifest: BuildManifest,
    /// The image's version.
    pub version: Version,
}

impl BuildDir {
    /// Reads `build.json` and checks it describes the files beside it.
    pub fn load(path: &Path) -> Result<BuildDir> {
        let bad = |message: String| Error::BuildDir {
            path: path.to_path_buf(),
            message,
        };
        let json_path = path.join(outputs::MANIFEST);
        let bytes = std::fs::read(&json_path).map_err(|e| {
            bad(format!(
                "cannot read {} ({e}): give the --out directory of a finished `tandem build`",
                outputs::MANIFEST
            ))
        })?;
        let manifest: BuildManifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("{} is not a build record: {e}", outputs::MANIFEST)))?;
        if manifest.format != manifest::FORMAT {
            return Err(bad(format!(
                "{} has format {}, this tandem reads {}: publish with the tandem that built it",
                outputs::MANIFEST,
                manifest.format,
                manifest::FORMAT
            )));
        }
        let img = &manifest.image;
        if !valid_image(&img.name) {
            return Err(bad(format!(
                "image name {:?} is not a valid repository directory name",
                img.name
            )));
        }
        if img.arch.is_empty()
            || !img
                .arch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(bad(format!("architecture {:?} is not valid", img.arch)));
        }
        let version: Version = img
            .version
            .parse()
            .map_err(|e| bad(format!("build.json: {e}")))?;
        let dir = BuildDir {
            path: path.to_path_buf(),
            manifest,
            version,
        };
        for name in [outputs::USR, outputs::KERNEL, outputs::INITRD] {
            let a = dir.artifact(name)?;
            let file = dir.file(name);
            let size = std::fs::metadata(&file)
                .map_err(|e| {
                    bad(format!(
                        "cannot read {name} ({e}): the build is incomplete; build again"
                    ))
                })?
                .len();
            if size != a.size {
                return Err(bad(modified(
                    name,
                    &format!("{size} bytes"),
                    &format!("{} bytes", a.size),
                )));
            }
        }
        let u = &dir.manifest.usr;
        let v = &u.verity;
        let consistent = v.algorithm == "sha256"
            && v.data_blocks.checked_mul(4096) == Some(v.hash_offset)
            && v.hash_offset == u.fs_size
            && u.fs_size > 0
            && u.fs_size < u.size
            && dir.artifact(outputs::USR)?.size == u.size
            && repo::is_sha256(&v.root_hash)
            && hex::decode(&v.salt).is_ok();
        if !consistent {
            return Err(bad(format!(
                "{}'s usr section is inconsistent (verity {} data blocks of 4096 bytes, hash tree at {}, file system {} bytes, image {} bytes): the record was edited; build again",
                outputs::MANIFEST,
                v.data_blocks,
                v.hash_offset,
                u.fs_size,
                u.size
            )));
        }
        Ok(dir)
    }

    /// The record of an output file.
    pub fn artifact(&self, name: &str) -> Result<&Artifact> {
        self.manifest
            .artifacts
            .get(name)
            .ok_or_else(|| Error::BuildDir {
                path: self.path.clone(),
                message: format!("{} records no {name}: build again", outputs::MANIFEST),
            })
    }

    /// Path of an output file.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The image name.
    pub fn image(&self) -> &str {
        &self.manifest.image.name
    }

    fn modified_error(&self, name: &str, got: &str, want: &str) -> Error {
        Error::BuildDir {
            path: self.path.clone(),
            message: modified(name, got, want),
        }
    }
}

fn modified(name: &str, got: &str, want: &str) -> String {
    format!(
        "{name} has {got}, {} records {want}: the build directory was modified after the build; build again",
        outputs::MANIFEST
    )
}

// ---------------------------------------------------------------------------
// The repository lock

/// Holds the repository's lock file until dropped.
#[derive(Debug)]
pub struct RepoLock {
    _file: std::fs::File,
}

impl RepoLock {
    /// Takes the lock of `repo` (created if needed), or fails at once if
    /// another release command holds it.
    pub fn acquire(repo: &Path) -> Result<RepoLock> {
        std::fs::create_dir_all(repo).io("create repository", repo)?;
        let path = repo.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .io("open lock file", &path)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Busy { path }
            } else {
                Error::Io {
                    action: "lock",
                    path,
                    cause: e,
                }
            });
        }
        Ok(RepoLock { _file: file })
    }
}

// ---------------------------------------------------------------------------
// Publish

/// What to publish where.
#[derive(Debug)]
pub struct PublishOptions<'a> {
    /// Repository root (created if missing).
    pub repo: &'a Path,
    /// Channel to point at the version.
    pub channel: &'a str,
    /// Signing key.
    pub key: &'a PrivateKey,
    /// Oldest version that may update to this one directly.
    pub min_source_version: Option<Version>,
    /// Rollout and expiry of the pointer.
    pub schedule: Schedule,
    /// Signing time, Unix seconds.
    pub now: u64,
    /// Payload compression.
    pub payload: payload::Options,
}

/// A channel pointer as written.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelUpdate {
    /// Pointer path, relative to the repository root.
    pub path: String,
    /// What the channel now serves.
    pub pointer: ChannelPointer,
    /// The version it served before, if it existed and was readable.
    pub previous: Option<Version>,
    /// Id of the signing key.
    pub key_id: String,
    /// Things worth knowing that are not errors.
    pub notes: Vec<String>,
}

/// What [`publish`] did.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    /// The signed channel pointer.
    pub channel: ChannelUpdate,
    /// The version directory, relative to the repository root.
    pub version_dir: String,
    /// Whether the version was already published identically.
    pub reused: bool,
    /// Bytes of the /usr slot image.
    pub image_size: u64,
    /// Bytes of its payload.
    pub payload_size: u64,
    /// Chunks in the payload.
    pub chunks: usize,
    /// Bytes of kernel + initramfs.
    pub boot_size: u64,
}

/// Publishes a build: the version (unless already published identically),
/// then the channel pointer.
pub fn publish(
    build: &BuildDir,
    opts: &PublishOptions<'_>,
    progress: &mut Progress,
) -> Result<Published> {
    check_channel(opts.channel)?;
    let version = &build.version;
    if let Some(min) = &opts.min_source_version
        && min > version
    {
        return Err(Error::Release {
            message: format!(
                "--min-source-version {min} is higher than the version published ({version}): no node could update to it"
            ),
        });
    }
    let _lock = RepoLock::acquire(opts.repo)?;
    let image = build.image();
    let vdir_rel = repo::version_dir(image, version);
    let vdir = opts.repo.join(&vdir_rel);
    let min = opts.min_source_version.clone();
    let (manifest, manifest_bytes, reused) = if std::fs::symlink_metadata(&vdir).is_ok() {
        let (m, b) = reuse_version(opts.repo, build, &vdir, min, progress)?;
        (m, b, true)
    } else {
        let (m, b) = write_version(opts.repo, build, &vdir_rel, min, &opts.payload, progress)?;
        (m, b, false)
    };
    let manifest_ref = FileRef {
        path: format!("{vdir_rel}/{}", files::MANIFEST),
        size: manifest_bytes.len() as u64,
        sha256: sha256_hex(&manifest_bytes),
    };
    let mut channel = progress.step("channel pointer", |_| {
        write_pointer(
            opts.repo,
            image,
            opts.channel,
            version,
            manifest_ref,
            opts.key,
            &opts.schedule,
            opts.now,
        )
    })?;
    if opts.channel != build.manifest.image.channel {
        channel.notes.push(format!(
            "nodes that install this image follow channel `{}` afterwards (its /usr/lib/tandem/update.toml), unless /etc/tandem/update.toml names another",
            build.manifest.image.channel
        ));
    }
    Ok(Published {
        channel,
        version_dir: vdir_rel,
        reused,
        image_size: manifest.usr.size,
        payload_size: manifest.usr.payload.size,
        chunks: manifest.usr.chunks.len(),
        boot_size: manifest.kernel.size + manifest.initrd.size,
    })
}

/// A directory removed when dropped, unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes a new version directory: everything in a hidden directory first,
/// checked against the build's record, then renamed into place.
fn write_version(
    repo: &Path,
    build: &BuildDir,
    vdir_rel: &str,
    min_source_version: Option<Version>,
    payload_opts: &payload::Options,
    progress: &mut Progress,
) -> Result<(Manifest, Vec<u8>)> {
    let image = build.image();
    let image_dir = repo.join(image);
    std::fs::create_dir_all(&image_dir).io("create image directory", &image_dir)?;
    // Left by a publish that crashed: the lock says nobody is using them.
    for e in std::fs::read_dir(&image_dir)
        .io("read image directory", &image_dir)?
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with(".incoming-") {
            std::fs::remove_dir_all(e.path()).io("remove stale", e.path())?;
        }
    }
    let tmp = TempDir {
        path: image_dir.join(format!(
            ".incoming-{}-{}",
            build.version,
            std::process::id()
        )),
        keep: false,
    };
    std::fs::create_dir(&tmp.path).io("create", &tmp.path)?;
    let file_ref = |name: &str, size: u64, sha256: String| FileRef {
        path: format!("{vdir_rel}/{name}"),
        size,
        sha256,
    };

    let (kernel, initrd) = progress.step("kernel and initramfs", |_| {
        let mut refs = Vec::new();
        for (src, dst) in [
            (outputs::KERNEL, files::KERNEL),
            (outputs::INITRD, files::INITRD),
        ] {
            let want = build.artifact(src)?;
            let (size, sha256) = copy_hashed(&build.file(src), &tmp.path.join(dst))?;
            if sha256 != want.sha256 {
                return Err(build.modified_error(
                    src,
                    &format!("sha256 {sha256}"),
                    &format!("sha256 {}", want.sha256),
                ));
            }
            refs.push(file_ref(dst, size, sha256));
        }
        let initrd = refs.pop();
        let kernel = refs.pop();
        kernel.zip(initrd).ok_or_else(|| Error::Release {
            message: "internal error: kernel and initramfs were not both copied".into(),
        })
    })?;

    let usr_img = build.file(outputs::USR);
    let enc = progress.step("payload (zstd, per 1 MiB chunk)", |step| {
        let input = std::fs::File::open(&usr_img).io("open", &usr_img)?;
        let out_path = tmp.path.join(files::PAYLOAD);
        let out = std::fs::File::create(&out_path).io("create", &out_path)?;
        let total = build.manifest.usr.size;
        let mut writer = BufWriter::with_capacity(1 << 20, out);
        let enc = payload::encode(input, &mut writer, payload_opts, |done| {
            step.detail(&format!("{} of {} MiB", done >> 20, total >> 20));
        })
        .map_err(|cause| Error::Payload {
            image: usr_img.clone(),
            cause,
        })?;
        let out = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .io("write", &out_path)?;
        out.sync_all().io("sync", &out_path)?;
        Ok::<_, Error>(enc)
    })?;
    let want = build.artifact(outputs::USR)?;
    if enc.image_sha256 != want.sha256 || enc.image_size != want.size {
        return Err(build.modified_error(
            outputs::USR,
            &format!("sha256 {} ({} bytes)", enc.image_sha256, enc.image_size),
            &format!("sha256 {} ({} bytes)", want.sha256, want.size),
        ));
    }

    let v = &build.manifest.usr.verity;
    let manifest = Manifest {
        format: FORMAT,
        image: image.to_string(),
        arch: build.manifest.image.arch.clone(),
        version: build.version.clone(),
        min_source_version,
        usr: UsrImage {
            size: enc.image_size,
            verity: Verity {
                root_hash: v.root_hash.clone(),
                salt: v.salt.clone(),
                data_blocks: v.data_blocks,
            },
            payload: enc.payload_ref(format!("{vdir_rel}/{}", files::PAYLOAD)),
            chunk_size: enc.chunk_size,
            chunks: enc.chunks,
        },
        kernel,
        initrd,
    };
    manifest.check().map_err(|m| Error::BuildDir {
        path: build.path.clone(),
        message: format!("the manifest made from it is inconsistent ({m}): build again"),
    })?;
    let bytes = manifest_bytes(&manifest)?;
    let mpath = tmp.path.join(files::MANIFEST);
    write_synced(&mpath, &bytes)?;
    sync_dir(&tmp.path)?;

    let vdir = repo.join(vdir_rel);
    std::fs::rename(&tmp.path, &vdir).map_err(|cause| Error::Repository {
        path: vdir.clone(),
        message: format!("cannot move the new version into place ({cause})"),
    })?;
    let mut tmp = tmp;
    tmp.keep = true;
    sync_dir(&image_dir)?;
    Ok((manifest, bytes))
}

/// An already published version: the build must be intact and describe the
/// same content, and the published files must be intact.
fn reuse_version(
    repo: &Path,
    build: &BuildDir,
    vdir: &Path,
    min_source_version: Option<Version>,
    progress: &mut Progress,
) -> Result<(Manifest, Vec<u8>)> {
    let mpath = vdir.join(files::MANIFEST);
    let broken = |message: String| Error::Repository {
        path: vdir.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(&mpath).map_err(|e| {
        broken(format!(
            "exists but its {} cannot be read ({e}): it is not a version tandem published; move it away",
            files::MANIFEST
        ))
    })?;
    let existing: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        broken(format!(
            "{} is not a manifest ({e}): move the directory away",
            files::MANIFEST
        ))
    })?;
    existing.check().map_err(|e| {
        broken(format!(
            "{} is inconsistent ({e}): move the directory away",
            files::MANIFEST
        ))
    })?;

    // What this build would publish, hashed the way the manifest is cut.
    let (usr, kernel, initrd) = progress.step("verify build", |_| {
        let usr = chunk_hashes(&build.file(outputs::USR), existing.usr.chunk_size)?;
        let kernel = hash_file(&build.file(outputs::KERNEL))?;
        let initrd = hash_file(&build.file(outputs::INITRD))?;
        Ok::<_, Error>((usr, kernel, initrd))
    })?;
    for (name, (size, sha256)) in [
        (outputs::USR, (usr.0, &usr.1)),
        (outputs::KERNEL, (kernel.0, &kernel.1)),
        (outputs::INITRD, (initrd.0, &initrd.1)),
    ] {
        let want = build.artifact(name)?;
        if *sha256 != want.sha256 || size != want.size {
            return Err(build.modified_error(
                name,
                &format!("sha256 {sha256}"),
                &format!("sha256 {}", want.sha256),
            ));
        }
    }

    let mut differences = Vec::new();
    let b = &build.manifest;
    let mut differ = |what: &str, published: String, now: String| {
        if published != now {
            differences.push(format!("{what}: published {published}, now {now}"));
        }
    };
    differ("image", existing.image.clone(), b.image.name.clone());
    differ("arch", existing.arch.clone(), b.image.arch.clone());
    let opt = |v: &Option<Version>| v.as_ref().map_or("none".to_string(), Version::to_string);
    differ(
        "min_source_version",
        opt(&existing.min_source_version),
        opt(&min_source_version),
    );
    differ("usr size", existing.usr.size.to_string(), usr.0.to_string());
    differ(
        "verity root hash",
        existing.usr.verity.root_hash.clone(),
        b.usr.verity.root_hash.clone(),
    );
    differ(
        "verity salt",
        existing.usr.verity.salt.clone(),
        b.usr.verity.salt.clone(),
    );
    differ(
        "verity data blocks",
        existing.usr.verity.data_blocks.to_string(),
        b.usr.verity.data_blocks.to_string(),
    );
    differ("kernel", existing.kernel.sha256.clone(), kernel.1.clone());
    differ(
        "initramfs",
        existing.initrd.sha256.clone(),
        initrd.1.clone(),
    );
    let published_chunks: Vec<(u64, u64, &str)> = existing
        .usr
        .chunks
        .iter()
        .map(|c| (c.offset, c.length, c.sha256.as_str()))
        .collect();
    let build_chunks: Vec<(u64, u64, &str)> =
        usr.2.iter().map(|(o, l, h)| (*o, *l, h.as_str())).collect();
    if published_chunks != build_chunks {
        let first = published_chunks
            .iter()
            .zip(&build_chunks)
            .position(|(a, b)| a != b)
            .unwrap_or(published_chunks.len().min(build_chunks.len()));
        differences.push(format!("/usr chunks differ from chunk {first} on"));
    }
    if !differences.is_empty() {
        return Err(Error::VersionExists {
            image: b.image.name.clone(),
            version: build.version.to_string(),
            path: vdir.to_path_buf(),
            differences: differences.join("; "),
        });
    }
    progress.step("verify published files", |_| verify_files(repo, &existing))?;
    Ok((existing, bytes))
}

/// Checks the payload, kernel and initramfs a manifest names against their
/// size and sha256.
fn verify_files(repo: &Path, m: &Manifest) -> Result<()> {
    for f in [&m.usr.payload, &m.kernel, &m.initrd] {
        let path = repo.join(&f.path);
        let detail = match hash_file(&path) {
            Ok((size, sha256)) if size == f.size && sha256 == f.sha256 => continue,
            Ok((size, sha256)) => format!(
                "{size} bytes with sha256 {sha256}, the manifest says {} bytes with {}",
                f.size, f.sha256
            ),
            Err(e) => e.to_string(),
        };
        return Err(Error::Repository {
            path,
            message: format!(
                "is damaged or missing ({detail}): move its version directory away and publish the build again"
            ),
        });
    }
    Ok(())
}

/// The manifest as written: pretty JSON and a newline.
fn manifest_bytes(m: &Manifest) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(m).map_err(|e| Error::Release {
        message: format!("cannot serialise the manifest: {e}"),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

// ---------------------------------------------------------------------------
// Channel pointers

/// Signs a pointer for `channel` and replaces the channel's file.
#[allow(clippy::too_many_arguments)]
fn write_pointer(
    repo_dir: &Path,
    image: &str,
    channel: &str,
    version: &Version,
    manifest: FileRef,
    key: &PrivateKey,
    schedule: &Schedule,
    now: u64,
) -> Result<ChannelUpdate> {
    let rel = repo::pointer_path(image, channel);
    let path = repo_dir.join(&rel);
    let previous = read_pointer(&path).ok().map(|(_, p)| p.version);
    let start = schedule.start.resolve(now);
    let pointer = ChannelPointer {
        format: FORMAT,
        image: image.to_string(),
        channel: channel.to_string(),
        version: version.clone(),
        manifest,
        rollout: Rollout {
            start,
            duration_secs: schedule.duration_secs,
        },
        issued: now,
        expires: now.saturating_add(schedule.expires_in_secs),
    };
    if schedule.expires_in_secs == 0 {
        return Err(Error::Release {
            message: "--expires-in must be more than 0: nodes refuse an expired pointer".into(),
        });
    }
    let signed = serde_json::to_string(&pointer).map_err(|e| Error::Release {
        message: format!("cannot serialise the channel pointer: {e}"),
    })?;
    let key_id = key.public().id();
    let envelope = Envelope {
        signatures: vec![Signature {
            key_id: key_id.clone(),
            signature: key.sign(signed.as_bytes()),
        }],
        signed,
    };
    // What nodes will check, checked here first.
    policy::verify_envelope(&envelope, &[key.public()]).map_err(|r| Error::Release {
        message: format!("internal error: the new signature does not verify: {r}"),
    })?;
    let mut bytes = serde_json::to_vec_pretty(&envelope).map_err(|e| Error::Release {
        message: format!("cannot serialise the channel pointer: {e}"),
    })?;
    bytes.push(b'\n');
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&dir).io("create channel directory", &dir)?;
    let tmp = dir.join(format!(".{channel}.json.tmp-{}", std::process::id()));
    write_synced(&tmp, &bytes)?;
    if let Err(cause) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::Io {
            action: "replace channel pointer",
            path,
            cause,
        });
    }
    sync_dir(&dir)?;

    let mut notes = Vec::new();
    if let Some(prev) = &previous
        && prev > version
    {
        notes.push(format!(
            "the channel served {prev} before: nodes already on it do not go back to {version} unless their update.toml allows downgrades"
        ));
    }
    let end = start.saturating_add(schedule.duration_secs);
    if pointer.expires <= end {
        notes.push(format!(
            "the pointer expires ({}) before the rollout ends ({}): nodes late in the rollout will not update unless it is re-signed in time",
            clock::utc(pointer.expires),
            clock::utc(end)
        ));
    }
    Ok(ChannelUpdate {
        path: rel,
        pointer,
        previous,
        key_id,
        notes,
    })
}

/// Reads and parses (without verifying) a channel pointer file.
pub fn read_pointer(path: &Path) -> Result<(Envelope, ChannelPointer)> {
    let bytes = std::fs::read(path).io("read channel pointer", path)?;
    let bad = |e: String| Error::Repository {
        path: path.to_path_buf(),
        message: format!("is not a channel pointer ({e})"),
    };
    let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let p: ChannelPointer = serde_json::from_str(&env.signed).map_err(|e| bad(e.to_string()))?;
    Ok((env, p))
}

// ---------------------------------------------------------------------------
// Promote

/// What to promote.
#[derive(Debug)]
pub struct PromoteOptions<'a> {
    /// Repository root.
    pub repo: &'a Path,
    /// Image; may be left out when the repository holds one.
    pub image: Option<&'a str>,
    /// Channel whose version is promoted.
    pub from: &'a str,
    /// Channel that gets it.
    pub to: &'a str,
    /// The version `from` must serve, if given.
    pub version: Option<&'a Version>,
    /// Signing key.
    pub key: &'a PrivateKey,
    /// Rollout and expiry of the new pointer.
    pub schedule: Schedule,
    /// Signing time, Unix seconds.
    pub now: u64,
}

/// Points `to` at the manifest `from` serves, after checking that manifest
/// and its files; nothing is rebuilt or copied. With `from == to` this
/// re-signs a channel (new expiry, new rollout).
pub fn promote(opts: &PromoteOptions<'_>, progress: &mut Progress) -> Result<ChannelUpdate> {
    check_channel(opts.from)?;
    check_channel(opts.to)?;
    let _lock = RepoLock::acquire(opts.repo)?;
    let image = pick_image(opts.repo, opts.image)?;
    let from_path = opts.repo.join(repo::pointer_path(&image, opts.from));
    if !from_path.exists() {
        let known = list_channels(opts.repo, &image).join(", ");
        return Err(Error::Release {
            message: format!(
                "{image} has no channel `{}` (channels: {}): publish to it first",
                opts.from,
                if known.is_empty() { "none" } else { &known }
            ),
        });
    }
    let (_, from) = read_pointer(&from_path)?;
    if from.image != image || from.channel != opts.from {
        return Err(Error::Repository {
            path: from_path,
            message: format!(
                "is a pointer for {}/{}, not {image}/{}: the file was copied or renamed; publish the channel again",
                from.image, from.channel, opts.from
            ),
        });
    }
    if let Some(v) = opts.version
        && from.version != *v
    {
        return Err(Error::Release {
            message: format!(
                "channel `{}` serves {image} {}, not {v}: promote what it serves, or publish {v} to `{}` first",
                opts.from, from.version, opts.from
            ),
        });
    }
    progress.step("verify version", |_| {
        let m = read_manifest(opts.repo, &from.manifest)?;
        if m.image != image || m.version != from.version {
            return Err(Error::Repository {
                path: opts.repo.join(&from.manifest.path),
                message: format!(
                    "is the manifest of {} {}, but the pointer says {image} {}",
                    m.image, m.version, from.version
                ),
            });
        }
        verify_files(opts.repo, &m)
    })?;
    progress.step("channel pointer", |_| {
        write_pointer(
            opts.repo,
            &image,
            opts.to,
            &from.version,
            from.manifest.clone(),
            opts.key,
            &opts.schedule,
            opts.now,
        )
    })
}

/// Reads the manifest a pointer names and checks it against the reference
/// and for consistency.
fn read_manifest(repo_dir: &Path, f: &FileRef) -> Result<Manifest> {
    let path = repo_dir.join(&f.path);
    if !repo::safe_path(&f.path) {
        return Err(Error::Repository {
            path,
            message: "the pointer names a manifest outside the repository".into(),
        });
    }
    let bytes = std::fs::read(&path).io("read manifest", &path)?;
    let bad = |message: String| Error::Repository {
        path: path.clone(),
        message,
    };
    policy::check_file(&bytes, f).map_err(|e| bad(format!("does not match its pointer ({e})")))?;
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("is not a manifest ({e})")))?;
    m.check()
        .map_err(|e| bad(format!("is inconsistent ({e})")))?;
    Ok(m)
}

/// The image to work on: the one named, or the only one there is.
fn pick_image(repo_dir: &Path, named: Option<&str>) -> Result<String> {
    let images = list_images(repo_dir)?;
    match named {
        Some(n) if images.iter().any(|i| i == n) => Ok(n.to_string()),
        Some(n) => Err(Error::Release {
            message: format!(
                "{} holds no image `{n}` (images: {})",
                repo_dir.display(),
                if images.is_empty() {
                    "none".into()
                } else {
                    images.join(", ")
                }
            ),
        }),
        None => match images.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::Release {
                message: format!(
                    "{} holds no image: publish one with `tandem release publish`",
                    repo_dir.display()
                ),
            }),
            many => Err(Error::Release {
                message: format!(
                    "{} holds several images ({}): choose one with --image",
                    repo_dir.display(),
                    many.join(", ")
                ),
            }),
        },
    }
}

/// Image directories of a repository, sorted.
pub fn list_images(repo_dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(repo_dir).io("read repository", repo_dir)?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_image(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Channel names of an image, sorted.
pub fn list_channels(repo_dir: &Path, image: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(repo_dir.join(image).join("channels")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .filter(|n| valid_channel(n))
        .collect();
    names.sort();
    names
}

/// Published versions of an image, in version order.
pub fn list_versions(repo_dir: &Path, image: &str) -> Vec<Version> {
    let Ok(entries) = std::fs::read_dir(repo_dir.join(image)) else {
        return Vec::new();
    };
    let mut versions: Vec<Version> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.parse().ok())
        .collect();
    versions.sort();
    versions
}

// ---------------------------------------------------------------------------
// Status

/// What a repository serves.
#[derive(Clone, Debug, Serialize)]
pub struct RepoStatus {
    /// Repository root.
    pub repo: PathBuf,
    /// When the status was taken, Unix seconds.
    pub now: u64,
    /// Ids of the keys signatures were checked against.
    pub trusted_keys: Vec<String>,
    /// Images, by name.
    pub images: Vec<ImageStatus>,
    /// Number of problems found.
    pub problems: usize,
}

/// One image of a repository.
#[derive(Clone, Debug, Serialize)]
pub struct ImageStatus {
    /// Name.
    pub image: String,
    /// Published versions, in order.
    pub versions: Vec<String>,
    /// Channels, by name.
    pub channels: Vec<ChannelStatus>,
}

/// One channel of an image.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelStatus {
    /// Name.
    pub channel: String,
    /// Pointer path, relative to the repository root.
    pub path: String,
    /// The version served (if the pointer could be read).
    pub version: Option<String>,
    /// Rollout window (Unix seconds), when readable.
    pub rollout_start: Option<u64>,
    /// End of the rollout window.
    pub rollout_end: Option<u64>,
    /// Share of nodes eligible now, 0–1.
    pub rollout_eligible: Option<f64>,
    /// When the pointer was signed.
    pub issued: Option<u64>,
    /// When nodes start refusing it.
    pub expires: Option<u64>,
    /// Whether it has expired.
    pub expired: bool,
    /// Key ids of its signatures.
    pub signed_by: Vec<String>,
    /// Whether a trusted key's signature verifies; `None` without trusted keys.
    pub verified: Option<bool>,
    /// Whether the manifest is present, matches the pointer and is consistent,
    /// and its files are present with the right sizes.
    pub manifest_ok: bool,
    /// Problems (each makes nodes refuse the channel or fail the update).
    pub problems: Vec<String>,
    /// Things worth knowing that are not problems yet.
    pub notes: Vec<String>,
}

/// Looks at every image and channel of a repository. Signatures are
/// checked against `trusted` (when given); files are checked by size (a
/// full hash check is what `promote` does).
pub fn status(repo_dir: &Path, trusted: &[PublicKey], now: u64) -> Result<RepoStatus> {
    let mut images = Vec::new();
    for image in list_images(repo_dir)? {
        let channels = list_channels(repo_dir, &image)
            .into_iter()
            .map(|c| channel_status(repo_dir, &image, &c, trusted, now))
            .collect();
        images.push(ImageStatus {
            versions: list_versions(repo_dir, &image)
                .iter()
                .map(Version::to_string)
                .collect(),
            image,
            channels,
        });
    }
    let problems = images
        .iter()
        .flat_map(|i| &i.channels)
        .map(|c| c.problems.len())
        .sum();
    Ok(RepoStatus {
        repo: repo_dir.to_path_buf(),
        now,
        trusted_keys: trusted.iter().map(PublicKey::id).collect(),
        images,
        problems,
    })
}

fn channel_status(
    repo_dir: &Path,
    image: &str,
    channel: &str,
    trusted: &[PublicKey],
    now: u64,
) -> ChannelStatus {
    let rel = repo::pointer_path(image, channel);
    let mut s = ChannelStatus {
        channel: channel.to_string(),
        path: rel.clone(),
        version: None,
        rollout_start: None,
        rollout_end: None,
        rollout_eligible: None,
        issued: None,
        expires: None,
        expired: false,
        signed_by: Vec::new(),
        verified: None,
        manifest_ok: false,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    let (env, p) = match read_pointer(&repo_dir.join(&rel)) {
        Ok(x) => x,
        Err(e) => {
            s.problems.push(e.to_string());
            return s;
        }
    };
    s.version = Some(p.version.to_string());
    let end = p.rollout.start.saturating_add(p.rollout.duration_secs);
    s.rollout_start = Some(p.rollout.start);
    s.rollout_end = Some(end);
    s.rollout_eligible = Some(if now < p.rollout.start {
        0.0
    } else if now >= end {
        1.0
    } else {
        (now - p.rollout.start) as f64 / p.rollout.duration_secs as f64
    });
    s.issued = Some(p.issued);
    s.expires = Some(p.expires);
    s.signed_by = env.signatures.iter().map(|g| g.key_id.clone()).collect();
    if p.image != image || p.channel != channel {
        s.problems.push(format!(
            "the pointer is for {}/{}: nodes of {image}/{channel} refuse it",
            p.image, p.channel
        ));
    }
    if p.expires <= now {
        s.expired = true;
        s.problems.push(format!(
            "EXPIRED at {}: nodes refuse it; re-sign with `tandem release promote --from {channel} --to {channel}`",
            clock::utc(p.expires)
        ));
    } else if p.expires - now < 3 * 86_400 {
        s.notes.push(format!(
            "expires in {}: re-sign it soon (`tandem release promote --from {channel} --to {channel}`)",
            clock::approx_duration(p.expires - now)
        ));
    }
    if !trusted.is_empty() {
        match policy::verify_envelope(&env, trusted) {
            Ok(()) => s.verified = Some(true),
            Err(r) => {
                s.verified = Some(false);
                s.problems.push(r.to_string());
            }
        }
    }
    match read_manifest(repo_dir, &p.manifest) {
        Ok(m) => {
            let mut ok = true;
            if m.image != image || m.version != p.version {
                ok = false;
                s.problems.push(format!(
                    "the manifest is for {} {}, the pointer says {image} {}",
                    m.image, m.version, p.version
                ));
            }
            for f in [&m.usr.payload, &m.kernel, &m.initrd] {
                match std::fs::metadata(repo_dir.join(&f.path)) {
                    Ok(meta) if meta.len() == f.size => {}
                    Ok(meta) => {
                        ok = false;
                        s.problems.push(format!(
                            "{} is {} bytes, the manifest says {}",
                            f.path,
                            meta.len(),
                            f.size
                        ));
                    }
                    Err(e) => {
                        ok = false;
                        s.problems.push(format!("{} is missing ({e})", f.path));
                    }
                }
            }
            s.manifest_ok = ok;
        }
        Err(e) => s.problems.push(e.to_string()),
    }
    s
}

/// The status as text for people.
pub fn render_status(st: &RepoStatus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "repository {}", st.repo.display());
    if st.trusted_keys.is_empty() {
        let _ = writeln!(
            out,
            "signatures not checked (give --trust <key.pub> to check them)"
        );
    } else {
        let _ = writeln!(out, "trusted keys {}", st.trusted_keys.join(", "));
    }
    if st.images.is_empty() {
        let _ = writeln!(out, "no images published");
    }
    for img in &st.images {
        let _ = writeln!(
            out,
            "\n{}  versions: {}",
            img.image,
            if img.versions.is_empty() {
                "none".into()
            } else {
                img.versions.join(", ")
            }
        );
        if img.channels.is_empty() {
            let _ = writeln!(out, "  no channels");
        }
        for c in &img.channels {
            let _ = writeln!(
                out,
                "  {:<10} {}",
                c.channel,
                c.version.as_deref().unwrap_or("(unreadable)")
            );
            if let (Some(start), Some(end), Some(share)) =
                (c.rollout_start, c.rollout_end, c.rollout_eligible)
            {
                let state = if st.now < start {
                    format!("starts in {}", clock::approx_duration(start - st.now))
                } else if st.now >= end {
                    "complete".to_string()
                } else {
                    format!("{:.0} % of nodes eligible", share * 100.0)
                };
                let window = if start == end {
                    format!("at {}", clock::utc(start))
                } else {
                    format!("{} to {}", clock::utc(start), clock::utc(end))
                };
                let _ = writeln!(out, "    rollout   {window} ({state})");
            }
            if let (Some(issued), Some(expires)) = (c.issued, c.expires) {
                let left = if c.expired {
                    "EXPIRED".to_string()
                } else {
                    format!("in {}", clock::approx_duration(expires - st.now))
                };
                let _ = writeln!(
                    out,
                    "    signed    {} by {}; expires {} ({left})",
                    clock::utc(issued),
                    if c.signed_by.is_empty() {
                        "nobody".into()
                    } else {
                        c.signed_by.join(", ")
                    },
                    clock::utc(expires)
                );
            }
            let sig = match c.verified {
                Some(true) => "verified",
                Some(false) => "NOT VERIFIED",
                None => "not checked",
            };
            let man = if c.manifest_ok { "ok" } else { "PROBLEM" };
            let _ = writeln!(
                out,
                "    checks    signature {sig}, manifest and files {man}"
            );
            for p in &c.problems {
                let _ = writeln!(out, "    problem:  {p}");
            }
            for n in &c.notes {
                let _ = writeln!(out, "    note:     {n}");
            }
        }
    }
    if st.problems > 0 {
        let _ = writeln!(out, "\n{} problem(s)", st.problems);
    }
    out
}

// ---------------------------------------------------------------------------
// Files

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Size and sha256 of a file.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).io("open", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).io("read", path)?;
        if n == 0 {
            return Ok((size, hex::encode(h.finalize())));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

/// Size, sha256 and per-chunk (offset, length, sha256) of a file.
type ChunkHashes = (u64, String, Vec<(u64, u64, String)>);

fn chunk_hashes(path: &Path, chunk_size: u64) -> Result<ChunkHashes> {
    let chunk_size = if chunk_size == 0 {
        CHUNK_SIZE
    } else {
        chunk_size
    };
    let mut f = std::fs::File::open(path).io("open", path)?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; chunk_size as usize];
    let mut offset = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = f.read(&mut buf[n..]).io("read", path)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        chunks.push((offset, n as u64, sha256_hex(&buf[..n])));
        offset += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok((offset, hex::encode(whole.finalize()), chunks))
}

/// Copies `src` to a new file `dst` (synced), hashing on the way.
fn copy_hashed(src: &Path, dst: &Path) -> Result<(u64, String)> {
    let mut input = std::fs::File::open(src).io("open", src)?;
    let mut out = std::fs::File::create(dst).io("create", dst)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).io("read", src)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).io("write", dst)?;
        size += n as u64;
    }
    out.sync_all().io("sync", dst)?;
    Ok((size, hex::encode(h.finalize())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).io("create", path)?;
    f.write_all(bytes).io("write", path)?;
    f.sync_all().io("sync", path)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .io("sync directory", dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{DiskInfo, ImageInfo, KernelInfo, UsrInfo, VerityInfo};
    use updater::policy::{NodeFacts, Offer};

    const NOW: u64 = 1_800_000_000;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                if i % 3 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                } else {
                    (i % 251) as u8
                }
            })
            .collect()
    }

    /// A build directory as `tandem build` leaves it, with small files.
    fn fake_build(dir: &Path, version: &str, seed: u64) -> BuildDir {
        std::fs::create_dir_all(dir).unwrap();
        let fs_size = 2u64 << 20;
        let usr = bytes((fs_size + 8192) as usize, seed);
        let files = [
            (outputs::USR, usr),
            (outputs::KERNEL, bytes(100_000, seed + 1)),
            (outputs::INITRD, bytes(50_000, seed + 2)),
        ];
        let mut artifacts = std::collections::BTreeMap::new();
        for (name, data) in &files {
            std::fs::write(dir.join(name), data).unwrap();
            artifacts.insert(
                name.to_string(),
                Artifact {
                    size: data.len() as u64,
                    sha256: sha256_hex(data),
                },
            );
        }
        let m = BuildManifest {
            format: manifest::FORMAT,
            image: ImageInfo {
                name: "demo".into(),
                version: version.into(),
                channel: "stable".into(),
                arch: "x86_64".into(),
            },
            source_date_epoch: 0,
            kernel: KernelInfo {
                release: "6.1.0-test".into(),
                package: None,
                initramfs_modules: vec![],
                system_modules: vec![],
            },
            packages: vec![],
            disk: DiskInfo {
                file: "disk.raw".into(),
                size: 0,
                block_size: 512,
                guid: String::new(),
                partitions: vec![],
            },
            usr: UsrInfo {
                file: outputs::USR.into(),
                filesystem: "erofs".into(),
                fs_size,
                size: fs_size + 8192,
                verity: VerityInfo {
                    root_hash: sha256_hex(&seed.to_le_bytes()),
                    salt: "00ff".into(),
                    algorithm: "sha256".into(),
                    data_blocks: fs_size / 4096,
                    hash_offset: fs_size,
                },
            },
            artifacts,
        };
        std::fs::write(
            dir.join(outputs::MANIFEST),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
        BuildDir::load(dir).unwrap()
    }

    fn opts<'a>(repo: &'a Path, channel: &'a str, key: &'a PrivateKey) -> PublishOptions<'a> {
        PublishOptions {
            repo,
            channel,
            key,
            min_source_version: None,
            schedule: Schedule {
                start: RolloutStart::In(600),
                duration_secs: 3600,
                expires_in_secs: 7 * 86_400,
            },
            now: NOW,
            payload: payload::Options::default(),
        }
    }

    fn node<'a>(channel: &'a str, running: &'a Version) -> NodeFacts<'a> {
        NodeFacts {
            image: "demo",
            arch: "x86_64",
            channel,
            running,
            now: NOW + 10,
            allow_downgrade: false,
            failed: &[],
            machine_id: "0123456789abcdef0123456789abcdef",
        }
    }

    /// Checks a channel as a node would, then every chunk of the payload.
    fn check_as_node(repo: &Path, key: &PrivateKey, channel: &str, build: &BuildDir) {
        let running: Version = "0.9".parse().unwrap();
        let n = node(channel, &running);
        let bytes = std::fs::read(repo.join(repo::pointer_path("demo", channel))).unwrap();
        let Offer::Update {
            pointer,
            eligible_at,
        } = policy::check_pointer(&bytes, &[key.public()], &n).unwrap()
        else {
            panic!("no update offered");
        };
        assert!((NOW + 600..NOW + 600 + 3600).contains(&eligible_at));
        let mbytes = std::fs::read(repo.join(&pointer.manifest.path)).unwrap();
        let m = policy::check_manifest(&mbytes, &pointer, &n).unwrap();
        assert_eq!(m.version, build.version);
        assert_eq!(m.usr.verity.root_hash, build.manifest.usr.verity.root_hash);
        let payload = std::fs::read(repo.join(&m.usr.payload.path)).unwrap();
        policy::check_file(&payload, &m.usr.payload).unwrap();
        let mut image = Vec::new();
        for (i, c) in m.usr.chunks.iter().enumerate() {
            let frame = &payload[c.payload_offset as usize..][..c.compressed_size as usize];
            image.extend(payload::decode_chunk(i, c, frame).unwrap());
        }
        assert_eq!(image, std::fs::read(build.file(outputs::USR)).unwrap());
        for (f, name) in [(&m.kernel, outputs::KERNEL), (&m.initrd, outputs::INITRD)] {
            let published = std::fs::read(repo.join(&f.path)).unwrap();
            policy::check_file(&published, f).unwrap();
            assert_eq!(published, std::fs::read(build.file(name)).unwrap());
        }
    }

    #[test]
    fn publish_promote_and_status_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let key = PrivateKey::from_seed([1; 32], "test");
        let mut progress = Progress::new(true);
        let build = fake_build(&tmp.path().join("b1"), "1.0.0", 7);
        // What a crashed publish leaves behind is cleared away.
        std::fs::create_dir_all(repo.join("demo/.incoming-0.9-1/x")).unwrap();

        let p = publish(&build, &opts(&repo, "beta", &key), &mut progress).unwrap();
        assert!(!p.reused);
        assert_eq!(p.version_dir, "demo/1.0.0");
        assert_eq!(p.chunks, 3);
        assert_eq!(p.channel.previous, None);
        assert_eq!(p.channel.key_id, key.public().id());
        assert!(
            p.channel
                .notes
                .iter()
                .any(|n| n.contains("follow channel `stable`")),
            "{:?}",
            p.channel.notes
        );
        check_as_node(&repo, &key, "beta", &build);
        // Nothing but the version and the channel: no leftovers.
        let mut names: Vec<_> = std::fs::read_dir(repo.join("demo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["1.0.0", "channels"]);

        // The same build again: reused, pointer re-signed.
        let again = publish(&build, &opts(&repo, "beta", &key), &mut progress).unwrap();
        assert!(again.reused);
        assert_eq!(again.channel.previous, Some(build.version.clone()));
        check_as_node(&repo, &key, "beta", &build);

        // Promote beta → stable, guarded by the version.
        let stable = PromoteOptions {
            repo: &repo,
            image: None,
            from: "beta",
            to: "stable",
            version: Some(&build.version),
            key: &key,
            schedule: opts(&repo, "", &key).schedule,
            now: NOW,
        };
        let c = promote(&stable, &mut progress).unwrap();
        assert_eq!(c.pointer.version, build.version);
        assert_eq!(c.pointer.channel, "stable");
        check_as_node(&repo, &key, "stable", &build);
        let other: Version = "2.0".parse().unwrap();
        let e = promote(
            &PromoteOptions {
                version: Some(&other),
                ..stable
            },
            &mut progress,
        )
        .unwrap_err();
        assert!(e.to_string().contains("serves demo 1.0.0, not 2.0"), "{e}");
        let e = promote(
            &PromoteOptions {
                from: "alpha",
                version: None,
                ..stable
            },
            &mut progress,
        )
        .unwrap_err();
        assert!(e.to_string().contains("no channel `alpha`"), "{e}");

        // Status: everything fine with the right key, not with another.
        let st = status(&repo, &[key.public()], NOW + 20).unwrap();
        assert_eq!(st.problems, 0, "{}", render_status(&st));
        assert_eq!(st.images[0].versions, ["1.0.0"]);
        let beta = &st.images[0].channels[0];
        assert_eq!(
            (beta.channel.as_str(), beta.verified, beta.manifest_ok),
            ("beta", Some(true), true)
        );
        assert_eq!(beta.rollout_eligible, Some(0.0));
        let text = render_status(&st);
        assert!(text.contains("signature verified"), "{text}");
        let stranger = PrivateKey::from_seed([2; 32], "other").public();
        let st = status(&repo, &[stranger], NOW + 20).unwrap();
        assert_eq!(st.problems, 2);
        assert!(render_status(&st).contains("NOT VERIFIED"));
        let st = status(&repo, &[], NOW + 8 * 86_400).unwrap();
        assert!(st.images[0].channels.iter().all(|c| c.expired));
        assert!(
            render_status(&st).contains("EXPIRED"),
            "{}",
            render_status(&st)
        );

        // A damaged payload shows in status and stops promotion.
        let payload_path = repo.join("demo/1.0.0/usr.payload");
        let mut damaged = std::fs::read(&payload_path).unwrap();
        damaged.truncate(damaged.len() - 1);
        std::fs::write(&payload_path, &damaged).unwrap();
        let st = status(&repo, &[key.public()], NOW + 20).unwrap();
        assert!(!st.images[0].channels[0].manifest_ok);
        let e = promote(&stable, &mut progress).unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }

    #[test]
    fn versions_are_immutable_and_builds_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let key = PrivateKey::from_seed([1; 32], "test");
        let mut progress = Progress::new(true);
        let build = fake_build(&tmp.path().join("b1"), "1.0.0", 7);
        publish(&build, &opts(&repo, "stable", &key), &mut progress).unwrap();
        let pointer_before = std::fs::read(repo.join("demo/channels/stable.json")).unwrap();

        // Same version, other content: refused, nothing changed.
        let other = fake_build(&tmp.path().join("b2"), "1.0.0", 99);
        let e = publish(&other, &opts(&repo, "stable", &key), &mut progress).unwrap_err();
        assert!(matches!(e, Error::VersionExists { .. }), "{e}");
        assert!(e.to_string().contains("verity root hash"), "{e}");
        assert!(e.to_string().contains("immutable"), "{e}");
        // Same content, other min_source_version: also another manifest.
        let mut o = opts(&repo, "stable", &key);
        o.min_source_version = Some("0.5".parse().unwrap());
        let e = publish(&build, &o, &mut progress).unwrap_err();
        assert!(e.to_string().contains("min_source_version"), "{e}");
        assert_eq!(
            std::fs::read(repo.join("demo/channels/stable.json")).unwrap(),
            pointer_before
        );

        // A build modified after the build (same size, other bytes): refused
        // before anything becomes visible.
        let next = fake_build(&tmp.path().join("b3"), "1.1.0", 8);
        let usr = next.file(outputs::USR);
        let mut data = std::fs::read(&usr).unwrap();
        data[1 << 20] ^= 1;
        std::fs::write(&usr, &data).unwrap();
        let e = publish(&next, &opts(&repo, "stable", &key), &mut progress).unwrap_err();
        assert!(e.to_string().contains("modified after the build"), "{e}");
        let mut names: Vec<_> = std::fs::read_dir(repo.join("demo"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["1.0.0", "channels"]);
        // A changed size is caught when loading.
        data.push(0);
        std::fs::write(&usr, &data).unwrap();
        let e = BuildDir::load(&next.path).unwrap_err();
        assert!(e.to_string().contains("modified after the build"), "{e}");

        // Nonsense requests.
        let mut o = opts(&repo, "stable", &key);
        o.min_source_version = Some("2.0".parse().unwrap());
        assert!(publish(&build, &o, &mut progress).is_err());
        let e = publish(&build, &opts(&repo, "../x", &key), &mut progress).unwrap_err();
        assert!(matches!(e, Error::InvalidName { .. }), "{e}");
        let e = BuildDir::load(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("tandem build"), "{e}");
    }

    #[test]
    fn downgrade_and_expiry_notes() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        let key = PrivateKey::from_seed([1; 32], "test");
        let mut progress = Progress::new(true);
        let new = fake_build(&tmp.path().join("b2"), "2.0", 2);
        let old = fake_build(&tmp.path().join("b1"), "1.0", 1);
        publish(&new, &opts(&repo, "stable", &key), &mut progress).unwrap();
        let mut o = opts(&repo, "stable", &key);
        o.schedule.expires_in_secs = 600;
        let p = publish(&old, &o, &mut progress).unwrap();
        let notes = p.channel.notes.join("\n");
        assert!(notes.contains("do not go back to 1.0"), "{notes}");
        assert!(notes.contains("expires"), "{notes}");
        o.schedule.expires_in_secs = 0;
        assert!(publish(&old, &o, &mut progress).is_err());
        let st = status(&repo, &[key.public()], NOW).unwrap();
        assert_eq!(st.images[0].versions, ["1.0", "2.0"]);
    }

    #[test]
    fn lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let held = RepoLock::acquire(tmp.path()).unwrap();
        let e = RepoLock::acquire(tmp.path()).unwrap_err();
        assert!(matches!(e, Error::Busy { .. }), "{e}");
        drop(held);
        RepoLock::acquire(tmp.path()).unwrap();
    }

    #[test]
    fn rollout_starts() {
        assert_eq!("now".parse(), Ok(RolloutStart::Now));
        assert_eq!("+30m".parse(), Ok(RolloutStart::In(1800)));
        assert_eq!("1767225600".parse(), Ok(RolloutStart::At(1_767_225_600)));
        assert!("tomorrow".parse::<RolloutStart>().is_err());
        assert!("+soon".parse::<RolloutStart>().is_err());
        assert_eq!(RolloutStart::In(60).resolve(100), 160);
        assert_eq!(RolloutStart::At(5).resolve(100), 5);
    }
}
