//! A build directory read and checked against its build.json.

#[allow(unused_imports)]
use super::*;

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

    pub(crate) fn modified_error(&self, name: &str, got: &str, want: &str) -> Error {
        Error::BuildDir {
            path: self.path.clone(),
            message: modified(name, got, want),
        }
    }
}

pub(super) fn modified(name: &str, got: &str, want: &str) -> String {
    format!(
        "{name} has {got}, {} records {want}: the build directory was modified after the build; build again",
        outputs::MANIFEST
    )
}
