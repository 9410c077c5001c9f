//! `tandem release publish`: a build becomes an immutable version and a channel points at it.

#[allow(unused_imports)]
use super::*;

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
pub(super) struct TempDir {
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
pub(super) fn write_version(
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
    let raw = progress.step("uncompressed image (for block fetches)", |_| {
        let (size, sha256) = copy_hashed(&usr_img, &tmp.path.join(files::RAW))?;
        if sha256 != want.sha256 {
            return Err(build.modified_error(
                outputs::USR,
                &format!("sha256 {sha256}"),
                &format!("sha256 {}", want.sha256),
            ));
        }
        Ok(file_ref(files::RAW, size, sha256))
    })?;

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
            raw: Some(raw),
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
pub(super) fn reuse_version(
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

/// Checks the files a manifest names (payload, raw image, kernel,
/// initramfs) against their size and sha256.
pub(super) fn verify_files(repo: &Path, m: &Manifest) -> Result<()> {
    for f in m.files() {
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
pub(super) fn manifest_bytes(m: &Manifest) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(m).map_err(|e| Error::Release {
        message: format!("cannot serialise the manifest: {e}"),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}
