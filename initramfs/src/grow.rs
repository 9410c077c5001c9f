//! Growing ROOT to the end of the disk. The image ships a small ROOT; on the
//! first boot on a larger disk the early init moves the backup GPT to the
//! disk's end, extends partition 9, tells the kernel (BLKPG) and resizes the
//! mounted ext4 online. The decision comes from the table itself (is there
//! room after ROOT?), so it is idempotent and needs no "first boot" flag.
//! Failure is not fatal: a small ROOT still boots.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use tandem_slot::guid::types;
use tandem_slot::{BlockDevice, FileDisk, Gpt};

use crate::disk::Located;
use crate::early::ROOT_PARTITION;
use crate::early_log;

/// Grow only when at least this much (in bytes) would be gained.
const MIN_GAIN: u64 = 16 << 20;
/// Partition ends are aligned to this many bytes.
const ALIGN: u64 = 1 << 20;

/// What to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Move the backup table to the disk's last block first.
    pub relocate_backup: bool,
    /// ROOT's current last block.
    pub old_last_lba: u64,
    /// ROOT's new last block.
    pub new_last_lba: u64,
}

/// Decides whether ROOT (partition 9) can grow on a disk of `disk_blocks`
/// blocks: it must be the last partition and gain at least 16 MiB.
pub fn plan(gpt: &Gpt, disk_blocks: u64) -> Option<Plan> {
    let root = gpt.partition(ROOT_PARTITION)?;
    if root.type_guid != types::ROOT {
        return None;
    }
    if gpt
        .partitions()
        .any(|(n, e)| n != ROOT_PARTITION && e.last_lba > root.last_lba)
    {
        return None;
    }
    let mut grown = gpt.clone();
    let relocate_backup = disk_blocks.checked_sub(1)? > gpt.backup_lba;
    if relocate_backup {
        grown.relocate_backup(disk_blocks);
    }
    let per_align = ALIGN / gpt.block_size;
    let new_last_lba = ((grown.last_usable_lba + 1) / per_align * per_align).checked_sub(1)?;
    if new_last_lba <= root.last_lba || (new_last_lba - root.last_lba) * gpt.block_size < MIN_GAIN {
        return None;
    }
    Some(Plan {
        relocate_backup,
        old_last_lba: root.last_lba,
        new_last_lba,
    })
}

/// _IO(0x12, 105)
const BLKPG: u64 = 0x1269;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
/// _IOW('f', 16, __u64)
const EXT4_IOC_RESIZE_FS: u64 = 0x4008_6610;

#[repr(C)]
struct BlkpgPartition {
    start: libc::c_longlong,
    length: libc::c_longlong,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

fn blkpg_resize(disk: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let mut part = BlkpgPartition {
        start: start as libc::c_longlong,
        length: length as libc::c_longlong,
        pno: pno as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: BLKPG takes a blkpg_ioctl_arg whose data points at a
    // blkpg_partition; both live until the call returns.
    unsafe { crate::sys::ioctl_ptr(disk.as_raw_fd(), BLKPG, &mut arg) }?;
    Ok(())
}

fn resize_ext4(mountpoint: &Path, new_bytes: u64) -> io::Result<u64> {
    let dir = File::open(mountpoint)?;
    let p = crate::sys::cpath(mountpoint)?;
    // SAFETY: statvfs is plain old data; the call fills it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and statvfs.
    crate::sys::check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    let block = st.f_frsize as u64;
    if block == 0 {
        return Err(io::Error::other("filesystem reports block size 0"));
    }
    let mut blocks: u64 = new_bytes / block;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 (the new block count).
    unsafe { crate::sys::ioctl_ptr(dir.as_raw_fd(), EXT4_IOC_RESIZE_FS, &mut blocks) }?;
    Ok(blocks)
}

/// Grows ROOT if there is room; returns what was done for the status file.
pub fn grow_root_if_first_boot(usr: &Located, root_node: &Path, sysroot: &Path) -> Option<String> {
    let disk_path = usr.disk_path();
    let mut disk = match FileDisk::open(&disk_path) {
        Ok(d) => d,
        Err(e) => {
            return Some(warn(format!(
                "opening {} read-write: {e}",
                disk_path.display()
            )));
        }
    };
    let mut gpt = match Gpt::read(&mut disk) {
        Ok(g) => g,
        Err(e) => {
            return Some(warn(format!(
                "reading the partition table of {}: {e}",
                disk_path.display()
            )));
        }
    };
    let plan = plan(&gpt, disk.num_blocks())?;
    let bs = gpt.block_size;
    if plan.relocate_backup {
        gpt.relocate_backup(disk.num_blocks());
    }
    let (first, old_mib) = match gpt.partition_mut(ROOT_PARTITION) {
        Some(root) => {
            let old = (root.num_blocks() * bs) >> 20;
            root.last_lba = plan.new_last_lba;
            (root.first_lba, old)
        }
        None => return None,
    };
    if let Err(e) = gpt.write(&mut disk) {
        return Some(warn(format!(
            "writing the partition table of {}: {e}",
            disk_path.display()
        )));
    }
    let length = (plan.new_last_lba - first + 1) * bs;
    let file = match File::open(&disk_path) {
        Ok(f) => f,
        Err(e) => return Some(warn(format!("opening {}: {e}", disk_path.display()))),
    };
    if let Err(e) = blkpg_resize(&file, ROOT_PARTITION, first * bs, length) {
        return Some(warn(format!(
            "telling the kernel about the new size of {}: {e}",
            root_node.display()
        )));
    }
    if let Err(e) = resize_ext4(sysroot, length) {
        return Some(warn(format!(
            "resizing the ext4 filesystem on {}: {e}",
            root_node.display()
        )));
    }
    let msg = format!(
        "grew ROOT {} from {old_mib} MiB to {} MiB",
        root_node.display(),
        length >> 20
    );
    early_log!("{msg}");
    Some(msg)
}

fn warn(what: String) -> String {
    let msg = format!("growing ROOT failed: {what}; continuing with its current size");
    early_log!("warning: {msg}");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_slot::gpt::Entry;
    use tandem_slot::{Guid, MemDisk};

    /// A 64 MiB image layout: USR-A at 1 MiB (16 MiB), ROOT after it (8 MiB).
    fn image_gpt(blocks: u64) -> Gpt {
        let mut gpt = Gpt::new(blocks, 512, Guid::from_hash([7; 16])).expect("fits");
        *gpt.partition_mut(3).expect("entry") =
            Entry::new(types::USR, Guid::from_hash([3; 16]), 2048, 34815, "USR-A");
        *gpt.partition_mut(9).expect("entry") =
            Entry::new(types::ROOT, Guid::from_hash([9; 16]), 34816, 51199, "ROOT");
        gpt
    }

    #[test]
    fn grows_into_a_larger_disk() {
        let image_blocks = 64 * 2048;
        let mut disk = MemDisk::new(image_blocks, 512);
        image_gpt(image_blocks).write(&mut disk).expect("write");
        // The disk grew to 1 GiB after imaging.
        disk.data.resize(1024 << 20, 0);
        let gpt = Gpt::read(&mut disk).expect("read via the primary");
        let p = plan(&gpt, disk.num_blocks()).expect("room to grow");
        assert!(p.relocate_backup);
        assert_eq!(p.old_last_lba, 51199);
        // Last usable block is 2097118 (33 blocks of backup), aligned down to 1 MiB.
        assert_eq!(p.new_last_lba, 2097151 - 2048);
        assert_eq!((p.new_last_lba + 1) % 2048, 0);
    }

    #[test]
    fn fills_free_space_on_the_same_disk() {
        let blocks = 64 * 2048;
        let p = plan(&image_gpt(blocks), blocks).expect("room");
        assert!(!p.relocate_backup);
        assert_eq!(p.new_last_lba, blocks - 2048 - 1);
    }

    #[test]
    fn nothing_to_do_when_already_grown() {
        let blocks = 64 * 2048;
        let mut gpt = image_gpt(blocks);
        let p = plan(&gpt, blocks).expect("room");
        gpt.partition_mut(9).expect("entry").last_lba = p.new_last_lba;
        assert_eq!(plan(&gpt, blocks), None);
    }

    #[test]
    fn not_when_root_is_not_last() {
        let blocks = 64 * 2048;
        let mut gpt = image_gpt(blocks);
        *gpt.partition_mut(6).expect("entry") = Entry::new(
            types::LINUX_DATA,
            Guid::from_hash([6; 16]),
            60000,
            70000,
            "OEM",
        );
        assert_eq!(plan(&gpt, blocks), None);
    }

    #[test]
    fn blkpg_struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
    }
}
