//! The OEM partition of the boot disk (FAT, partition 6): a `user-data`
//! file put there by whoever prepared the disk image. Read in place with
//! fatfs, as the update engine reads its `update.toml` there.

use std::fs::File;
use std::path::Path;

use tandem_contract::Partition;
use tandem_contract::provision::OEM_FILE;
use tandem_slot::{FileDisk, Gpt};

use super::error::Error;
use super::fat::{Fat, Window};
use super::{Env, Found};

/// Looks for `user-data` on the boot disk's OEM partition.
pub fn find(env: &Env, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    if env.live {
        tried.push("OEM: a live boot (the ISO has no OEM partition)".to_string());
        return Ok(None);
    }
    let Some(disk) = &env.boot_disk else {
        tried.push("OEM: the boot disk is not known (no /run/tandem/early.json)".to_string());
        return Ok(None);
    };
    let Some(user_data) = read(disk)? else {
        tried.push(format!("OEM: {}: no {OEM_FILE}", disk.display()));
        return Ok(None);
    };
    tried.push(format!("OEM: {}: {OEM_FILE}", disk.display()));
    Ok(Some(Found {
        source: format!("OEM partition of {}", disk.display()),
        file_name: OEM_FILE.to_string(),
        user_data,
        metadata: crate::Metadata::default(),
    }))
}

/// The file on the OEM partition of `disk`; `None` when the disk has no
/// OEM partition or the partition no such file.
pub fn read(disk: &Path) -> Result<Option<Vec<u8>>, Error> {
    let fail = |msg: String| Error::Oem {
        disk: disk.to_path_buf(),
        msg,
    };
    let mut dev = FileDisk::open_read_only(disk).map_err(|e| fail(e.to_string()))?;
    let gpt = Gpt::read(&mut dev).map_err(|e| fail(format!("reading the partition table: {e}")))?;
    let Some(entry) = gpt.partition(Partition::Oem.number()) else {
        return Ok(None);
    };
    let bs = gpt.block_size;
    let file = File::open(disk).map_err(|e| fail(e.to_string()))?;
    let window = Window::new(file, entry.first_lba * bs, entry.num_blocks() * bs);
    let fat = Fat::open(window).map_err(|e| fail(format!("not a FAT file system: {e}")))?;
    fat.read(OEM_FILE).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::volume::tests::env;
    use std::io::{Seek, SeekFrom, Write};
    use tandem_slot::gpt::Entry;
    use tandem_slot::{Guid, MemDisk};

    /// A GPT disk whose partition 6 is a FAT file system with `files`.
    fn disk(path: &Path, files: &[(&str, &[u8])]) {
        let blocks = 8192u64;
        let mut gpt = Gpt::new(blocks, 512, Guid::from_hash([7; 16])).expect("gpt");
        let first = 2048u64;
        let last = first + 4096 - 1;
        *gpt.partition_mut(6).expect("slot 6") = Entry::new(
            tandem_contract::partition::types::LINUX_DATA,
            Guid::from_hash([6; 16]),
            first,
            last,
            "OEM",
        );
        let mut mem = MemDisk::new(blocks, 512);
        gpt.write(&mut mem).expect("write gpt");
        let tmp = path.with_extension("fat");
        crate::datasource::fat::tests::image(&tmp, "OEM", files);
        let fat = std::fs::read(&tmp).expect("fat");
        let mut f = File::create(path).expect("disk");
        f.write_all(&mem.data).expect("write");
        f.seek(SeekFrom::Start(first * 512)).expect("seek");
        f.write_all(&fat).expect("fat");
    }

    #[test]
    fn reads_user_data_from_partition_6() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut env = env(tmp.path());
        let mut tried = Vec::new();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert!(tried[0].contains("boot disk is not known"));

        let path = tmp.path().join("vda");
        disk(&path, &[("cmdline", b"quiet\n")]);
        env.boot_disk = Some(path.clone());
        tried.clear();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert!(tried[0].ends_with("vda: no user-data"), "{tried:?}");

        disk(&path, &[("user-data", b"#cloud-config\n")]);
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert_eq!(found.user_data, b"#cloud-config\n");
        assert_eq!(found.file_name, "user-data");
    }

    #[test]
    fn a_live_boot_has_no_oem_partition_to_read() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut env = env(tmp.path());
        // A CD: no table this code could read, which is no error here.
        let path = tmp.path().join("sr0");
        std::fs::write(&path, vec![0u8; 1 << 20]).expect("write");
        env.boot_disk = Some(path);
        env.live = true;
        let mut tried = Vec::new();
        assert!(find(&env, &mut tried).expect("no error").is_none());
        assert!(tried[0].contains("live boot"), "{tried:?}");
    }

    #[test]
    fn a_disk_without_a_table_is_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("vda");
        std::fs::write(&path, vec![0u8; 1 << 20]).expect("write");
        let err = read(&path).expect_err("no gpt");
        assert!(err.to_string().contains("OEM partition"), "{err}");
    }
}
