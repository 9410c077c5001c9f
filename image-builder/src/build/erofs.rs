//! The /usr file system: EROFS made by `mkfs.erofs` (erofs-utils), the
//! field's standard read-only image format. EROFS over squashfs: faster
//! random reads with less CPU, and a simple on-disk layout; both are in the
//! Debian kernel. Reproducible with a fixed timestamp, UUID and ownership.

use std::path::Path;

use crate::build::tools::MKFS_EROFS;
use crate::error::{IoContext, Result};

/// Builds `image` from the directory `tree` (which becomes the file
/// system's root, i.e. /usr) and pads it to whole 4096-byte blocks.
/// Returns the image size in bytes.
pub fn build(image: &Path, tree: &Path, uuid: &str, epoch: i64) -> Result<u64> {
    let _ = std::fs::remove_file(image);
    let mut cmd = MKFS_EROFS.command();
    cmd.arg(format!("-T{epoch}"))
        .arg(format!("-U{uuid}"))
        .arg("--all-root")
        // No extended attributes: host xattrs must not leak into the image.
        .arg("-x-1")
        .arg("--quiet")
        .arg(image)
        .arg(tree);
    MKFS_EROFS.run(&mut cmd)?;
    let len = std::fs::metadata(image).io("stat", image)?.len();
    let padded = len.next_multiple_of(4096);
    if padded != len {
        std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .and_then(|f| f.set_len(padded))
            .io("pad", image)?;
    }
    Ok(padded)
}
