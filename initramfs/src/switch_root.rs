//! Switching from the initramfs to the real root, as busybox `switch_root`
//! does: move the API filesystems over, free the initramfs (it is RAM that
//! would otherwise stay allocated for the machine's lifetime), move the new
//! root onto `/` and chroot into it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::Error;

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The mounts carried from the initramfs into the new root.
pub const CARRIED: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

/// Moves [`CARRIED`] into `new_root`, empties the initramfs and makes
/// `new_root` the root directory of this process, which then goes on as the
/// system init.
pub fn switch_root(new_root: &Path) -> Result<(), Error> {
    let step = |what: &'static str| move |err| Error::SwitchRoot { step: what, err };

    std::env::set_current_dir(new_root).map_err(step("chdir to the new root"))?;
    // Read the mount table once: /proc itself moves away in the loop.
    let table =
        std::fs::read_to_string("/proc/self/mounts").map_err(step("reading /proc/self/mounts"))?;
    let mounted = crate::mount::parse_mounts(&table);
    for dir in CARRIED {
        let target = new_root.join(dir.trim_start_matches('/'));
        if !target.exists() {
            std::fs::create_dir_all(&target)
                .map_err(step("creating a mount point in the new root"))?;
        }
        if mounted.iter().any(|m| m.target == Path::new(dir)) {
            crate::sys::mount_move(Path::new(dir), &target)
                .map_err(step("moving an API filesystem"))?;
        }
    }

    // Only ever delete from an initramfs: a mistake here must not wipe a disk.
    let root_type = crate::sys::fs_type(Path::new("/")).map_err(step("statfs /"))?;
    if root_type == RAMFS_MAGIC || root_type == TMPFS_MAGIC {
        let root_dev = std::fs::symlink_metadata("/")
            .map_err(step("stat /"))?
            .dev();
        delete_contents(Path::new("/"), root_dev);
    }

    crate::sys::mount_move(Path::new("."), Path::new("/"))
        .map_err(step("moving the new root onto /"))?;
    crate::sys::chroot(Path::new(".")).map_err(step("chroot"))?;
    std::env::set_current_dir("/").map_err(step("chdir /"))?;
    Ok(())
}

/// Deletes everything under `dir` on device `dev`, not crossing into other
/// mounts. Best effort, like busybox: what cannot be deleted only costs RAM.
fn delete_contents(dir: &Path, dev: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue; // another mount, e.g. the new root itself
        }
        if meta.is_dir() {
            delete_contents(&path, dev);
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
}
