//! `tandem release promote`, and finding images, channels and versions in a repository.

#[allow(unused_imports)]
use super::*;

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
pub(super) fn read_manifest(repo_dir: &Path, f: &FileRef) -> Result<Manifest> {
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
pub(super) fn pick_image(repo_dir: &Path, named: Option<&str>) -> Result<String> {
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
