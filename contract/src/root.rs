//! What a new ROOT holds before `/etc` is filled: its directories and the
//! merged-/usr links. The image builder puts them in the ROOT file system;
//! a live boot (ROOT in RAM, [`crate::live`]) makes them at boot
//! ([`populate`]).

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Directories, with their modes, parents first.
pub const DIRS: &[(&str, u32)] = &[
    ("dev", 0o755),
    ("etc", 0o755),
    ("etc/tandem", 0o755),
    ("etc/tandem/services", 0o755),
    ("home", 0o755),
    ("mnt", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("var", 0o755),
    ("var/lib", 0o755),
    ("var/lib/tandem", 0o755),
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
];

/// Merged-/usr links: (link, target).
pub const LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
    ("etc/os-release", "../usr/lib/os-release"),
];

/// Makes [`DIRS`] and [`LINKS`] under `root` (an empty file system).
pub fn populate(root: &Path) -> io::Result<()> {
    for (dir, mode) in DIRS {
        let path = root.join(dir);
        std::fs::DirBuilder::new().mode(*mode).create(&path)?;
        // The umask does not apply: 1777 and 0700 must be exact.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    for (link, target) in LINKS {
        std::os::unix::fs::symlink(target, root.join(link))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_first_and_links_point_into_usr() {
        for (i, (dir, _)) in DIRS.iter().enumerate() {
            if let Some((parent, _)) = dir.rsplit_once('/') {
                assert!(DIRS[..i].iter().any(|(d, _)| *d == parent), "{dir}");
            }
        }
        assert!(LINKS.iter().all(|(_, t)| t.contains("usr/")));
    }

    #[test]
    fn populate_makes_the_skeleton() {
        let dir = tempfile::tempdir().expect("tempdir");
        populate(dir.path()).expect("populate");
        let tmp = std::fs::metadata(dir.path().join("tmp")).expect("tmp");
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read_link(dir.path().join("bin")).expect("link"),
            Path::new("usr/bin")
        );
    }
}
