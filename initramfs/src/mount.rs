//! Mounting with errors that name what was mounted where, and reading the
//! mount table.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// Mount flags used here.
pub use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_RELATIME};

/// Mounts `source` (of type `fstype`) on `target`, creating `target` if needed.
pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), Error> {
    let fail = |err| Error::Mount {
        source_dev: source.to_string(),
        target: target.to_path_buf(),
        fstype: fstype.to_string(),
        err,
    };
    if !target.exists() {
        std::fs::create_dir_all(target).map_err(fail)?;
    }
    crate::sys::mount(source, target, fstype, flags, data).map_err(fail)
}

/// Mounts unless something is mounted on `target` already (the early init
/// hands over /dev, /proc, /sys and /run).
pub fn ensure(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<bool, Error> {
    if is_mountpoint(target) {
        return Ok(false);
    }
    mount(source, target, fstype, flags, data)?;
    Ok(true)
}

/// Whether `path` is a mount point (listed in /proc/self/mounts).
pub fn is_mountpoint(path: &Path) -> bool {
    match std::fs::read_to_string("/proc/self/mounts") {
        Ok(text) => parse_mounts(&text).iter().any(|m| m.target == path),
        Err(_) => false,
    }
}

/// One line of /proc/self/mounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// What is mounted (`/dev/vda9`, `proc`).
    pub source: String,
    /// Where.
    pub target: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// Mount options.
    pub options: String,
}

impl MountEntry {
    /// Whether the mount is read-only.
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Undoes the kernel's octal escapes (`\040` for a space) in mount fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mounts.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(MountEntry {
                source: unescape(f.next()?),
                target: PathBuf::from(unescape(f.next()?)),
                fstype: f.next()?.to_string(),
                options: f.next()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_table() {
        let text = "/dev/vda9 / ext4 rw,relatime 0 0\n\
                    /dev/dm-0 /usr erofs ro,relatime,user_xattr 0 0\n\
                    tmpfs /run tmpfs rw,nosuid,nodev,mode=755 0 0\n\
                    /dev/sdb1 /mnt/my\\040disk vfat rw 0 0\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].source, "/dev/dm-0");
        assert!(m[1].read_only());
        assert!(!m[0].read_only());
        assert_eq!(m[3].target, PathBuf::from("/mnt/my disk"));
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(unescape("x\\134y"), "x\\y");
        assert_eq!(unescape("end\\04"), "end\\04");
    }
}
