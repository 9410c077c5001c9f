//! Update signing keys on the release host. `tandem keygen` writes a key
//! pair, `tandem release` loads the private key to sign channel pointers,
//! and image definitions name the public keys their nodes trust. File
//! formats, signing and verification are [`repository::keys`]: the very code
//! nodes verify with.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use repository::keys::{PrivateKey, PublicKey};

use crate::error::{Error, IoContext, Result};

/// A key pair written by [`generate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    /// `<name>.key`, mode 0600.
    pub private_path: PathBuf,
    /// `<name>.pub`.
    pub public_path: PathBuf,
    /// The key id signatures name.
    pub id: String,
}

/// Whether `name` can name key files: letters, digits, `.`, `-`, `_`, not
/// starting with `.`, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// Generates a key pair from the system's random source and writes
/// `<out_dir>/<name>.key` (mode 0600, created exclusively: an existing key
/// is never overwritten) and `<out_dir>/<name>.pub`.
pub fn generate(name: &str, out_dir: &Path) -> Result<KeyPair> {
    if !valid_name(name) {
        return Err(Error::KeyName { name: name.into() });
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::Random {
        message: e.to_string(),
    })?;
    write_pair(&PrivateKey::from_seed(seed, name), name, out_dir)
}

fn write_pair(key: &PrivateKey, name: &str, out_dir: &Path) -> Result<KeyPair> {
    std::fs::create_dir_all(out_dir).io("create key directory", out_dir)?;
    let private_path = out_dir.join(format!("{name}.key"));
    let public_path = out_dir.join(format!("{name}.pub"));
    for p in [&private_path, &public_path] {
        if std::fs::symlink_metadata(p).is_ok() {
            return Err(Error::KeyExists { path: p.clone() });
        }
    }
    write_new(&private_path, key.to_file().as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public_path, key.public().to_file().as_bytes(), 0o644) {
        // Without its public half the new key is useless; it was ours to remove.
        let _ = std::fs::remove_file(&private_path);
        return Err(e);
    }
    if let Ok(dir) = std::fs::File::open(out_dir) {
        let _ = dir.sync_all();
    }
    Ok(KeyPair {
        private_path,
        public_path,
        id: key.public().id(),
    })
}

/// Creates `path` (never replacing a file), writes and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|cause| {
            if cause.kind() == std::io::ErrorKind::AlreadyExists {
                Error::KeyExists {
                    path: path.to_path_buf(),
                }
            } else {
                Error::Io {
                    action: "create key file",
                    path: path.to_path_buf(),
                    cause,
                }
            }
        })?;
    f.write_all(bytes).io("write key file", path)?;
    f.sync_all().io("sync key file", path)
}

/// Loads a private signing key; the notes warn about a key file others
/// can read.
pub fn load_signing_key(path: &Path) -> Result<(PrivateKey, Vec<String>)> {
    let key = PrivateKey::load(path)?;
    let mut notes = Vec::new();
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            notes.push(format!(
                "signing key {} is readable by others (mode {mode:04o}): `chmod 600` it",
                path.display()
            ));
        }
    }
    Ok((key, notes))
}

/// Loads public key files (the keys `release status` checks against).
pub fn load_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|p| PublicKey::load(p).map_err(Error::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_writes_a_pair_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let pair = generate("release-2026", dir.path()).unwrap();
        assert_eq!(pair.private_path, dir.path().join("release-2026.key"));
        let mode = std::fs::metadata(&pair.private_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (key, notes) = load_signing_key(&pair.private_path).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let public = PublicKey::load(&pair.public_path).unwrap();
        assert_eq!(public, key.public());
        assert_eq!(public.id(), pair.id);
        assert_eq!(public.name, "release-2026");

        let before = std::fs::read(&pair.private_path).unwrap();
        let e = generate("release-2026", dir.path()).unwrap_err();
        assert!(matches!(e, Error::KeyExists { .. }), "{e}");
        assert!(e.to_string().contains("never overwritten"), "{e}");
        assert_eq!(std::fs::read(&pair.private_path).unwrap(), before);

        // A stray public key also stops it, before anything is written.
        std::fs::write(dir.path().join("other.pub"), "x").unwrap();
        assert!(generate("other", dir.path()).is_err());
        assert!(!dir.path().join("other.key").exists());

        // Two keys differ.
        let second = generate("second", dir.path()).unwrap();
        assert_ne!(second.id, pair.id);
    }

    #[test]
    fn names_and_permissions() {
        for bad in ["", ".hidden", "a/b", "../x", "a b"] {
            assert!(!valid_name(bad), "{bad}");
            assert!(generate(bad, Path::new("/nonexistent")).is_err());
        }
        assert!(valid_name("release_2026.1"));
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        std::fs::write(&key, PrivateKey::from_seed([3; 32], "k").to_file()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, notes) = load_signing_key(&key).unwrap();
        assert!(notes[0].contains("chmod 600"), "{notes:?}");
        let e = load_signing_key(&dir.path().join("missing.key")).unwrap_err();
        assert!(e.to_string().contains("missing.key"), "{e}");
    }
}
