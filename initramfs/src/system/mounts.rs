//! The filesystems a running system needs, and ROOT's basic layout.

use std::path::Path;

use super::warn;
use crate::error::Error;
use crate::mount::{self, MS_NODEV, MS_NOEXEC, MS_NOSUID};

/// Directories and compatibility links a ROOT must have; created when
/// missing, so that an emptied ROOT (a factory reset) still boots.
pub const ROOT_LAYOUT: [(&str, Option<&str>); 11] = [
    ("/etc", None),
    ("/var", None),
    ("/home", None),
    ("/root", None),
    ("/mnt", None),
    ("/opt", None),
    ("/media", None),
    ("/bin", Some("usr/bin")),
    ("/sbin", Some("usr/sbin")),
    ("/lib", Some("usr/lib")),
    ("/lib64", Some("usr/lib64")),
];

pub(super) fn ensure_root_layout(warnings: &mut Vec<String>) {
    for (path, link) in ROOT_LAYOUT {
        let p = Path::new(path);
        if std::fs::symlink_metadata(p).is_ok() {
            continue;
        }
        let r = match link {
            Some(target)
                if Path::new("/usr")
                    .join(target.trim_start_matches("usr/"))
                    .exists() =>
            {
                std::os::unix::fs::symlink(target, p)
            }
            Some(_) => continue, // nothing to point at (e.g. no /usr/lib64)
            None => std::fs::create_dir_all(p),
        };
        if let Err(err) = r {
            warn(
                warnings,
                &Error::Write {
                    path: p.into(),
                    err,
                },
            );
        }
    }
}

pub(super) fn mount_system(warnings: &mut Vec<String>) {
    let mounts: [(&str, &str, &str, libc::c_ulong, Option<&str>); 7] = [
        (
            "proc",
            "/proc",
            "proc",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        ),
        ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, Some("mode=0755")),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            Some("mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            Some("gid=5,mode=0620,ptmxmode=0666"),
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            Some("mode=1777"),
        ),
    ];
    for (source, target, fstype, flags, data) in mounts {
        if let Err(e) = mount::ensure(source, Path::new(target), fstype, flags, data) {
            warn(warnings, &e);
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
}
