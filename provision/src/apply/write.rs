//! Writing a file so that a reader sees the old content or the new one,
//! never a part: a temporary file in the same directory gets the owner,
//! the mode and the bytes, is synced, and is renamed over the target.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `path` (absolute on the node) under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Owner and mode of a file to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Mode (permission bits, up to 07777).
    pub mode: u32,
}

impl Perm {
    /// root:root with `mode`.
    pub fn root(mode: u32) -> Perm {
        Perm {
            uid: 0,
            gid: 0,
            mode,
        }
    }
}

/// Makes the missing directories of `dir` (and `dir`), each 0755 root:root;
/// existing ones are left as they are. An existing non-directory is an error.
pub fn make_dirs(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        // Made by someone else meanwhile: theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    std::os::unix::fs::chown(dir, Some(0), Some(0))?;
    // The umask may have narrowed 0755.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
}

/// Writes `bytes` to `path` atomically with `perm`: temp file beside it,
/// fchown, fchmod, write, fsync, rename. Missing parents are made 0755.
pub fn write_atomic(path: &Path, bytes: &[u8], perm: Perm) -> std::io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "a path without a parent")
    })?;
    make_dirs(dir)?;
    let tmp = {
        let mut name = std::ffi::OsString::from(".");
        name.push(path.file_name().unwrap_or_default());
        name.push(".tandem-provision");
        path.with_file_name(name)
    };
    // A temporary file a crash left behind is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        // Created 0600: nobody reads it before its owner and mode are set.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        std::os::unix::fs::fchown(&f, Some(perm.uid), Some(perm.gid))?;
        // After fchown, which clears set-id bits.
        f.set_permissions(std::fs::Permissions::from_mode(perm.mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself lasts only once the directory is synced.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Whether `path` holds exactly `bytes` with `perm` (then writing it again
/// would change nothing).
pub fn same(path: &Path, bytes: &[u8], perm: Perm) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    meta.is_file()
        && meta.uid() == perm.uid
        && meta.gid() == perm.gid
        && meta.mode() & 0o7777 == perm.mode
        && meta.len() == bytes.len() as u64
        && std::fs::read(path).is_ok_and(|b| b == bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_with_owner_and_mode_and_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/c");
        write_atomic(&path, b"one\n", Perm::root(0o640)).unwrap();
        write_atomic(&path, b"two\n", Perm::root(0o4755)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        let dir = std::fs::metadata(tmp.path().join("a/b")).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o755);
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c"]);
        assert!(same(&path, b"two\n", Perm::root(0o4755)));
        assert!(!same(&path, b"two\n", Perm::root(0o755)));
        assert!(!same(&path, b"two!", Perm::root(0o4755)));
    }

    #[test]
    fn a_file_in_the_way_of_a_directory_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a"), "").unwrap();
        assert!(write_atomic(&tmp.path().join("a/b"), b"x", Perm::root(0o644)).is_err());
    }
}
