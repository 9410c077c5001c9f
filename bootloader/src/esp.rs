//! Files on FAT partitions the firmware can read: the ESP (slot kernels,
//! initrds and .conf files) and OEM (`cmdline`).

use alloc::vec::Vec;

use tandem_slot::Guid;
use uefi::proto::device_path::DevicePath;
use uefi::proto::media::file::{File, FileAttribute, FileInfo, FileMode, RegularFile};
use uefi::proto::media::fs::SimpleFileSystem;
use uefi::{CString16, Handle, boot};

use crate::disk::{open_shared, partition_guid};
use crate::error::EspError;

/// Reads a whole file from the file system on `volume`.
pub fn read(volume: Handle, path: &str) -> Result<Vec<u8>, EspError> {
    let mut file = open(volume, path)?;
    let read_err = |e: uefi::Error| EspError::Read {
        path: path.into(),
        status: e.status(),
    };
    let info = file.get_boxed_info::<FileInfo>().map_err(read_err)?;
    let size = info.file_size();
    let too_large = || EspError::TooLarge {
        path: path.into(),
        size,
    };
    let len = usize::try_from(size).map_err(|_| too_large())?;
    // A huge or corrupt size must become an error, not an allocation abort.
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| too_large())?;
    buf.resize(len, 0);
    let mut got = 0;
    while got < len {
        let n = file.read(&mut buf[got..]).map_err(read_err)?;
        if n == 0 {
            return Err(EspError::Short {
                path: path.into(),
                got,
                size,
            });
        }
        got += n;
    }
    Ok(buf)
}

/// Like [`read`], but a missing file is `None`.
pub fn read_optional(volume: Handle, path: &str) -> Result<Option<Vec<u8>>, EspError> {
    match read(volume, path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a regular file exists at `path` (opening it, reading nothing).
pub fn check_file(volume: Handle, path: &str) -> Result<(), EspError> {
    open(volume, path).map(drop)
}

fn open(volume: Handle, path: &str) -> Result<RegularFile, EspError> {
    let name = CString16::try_from(path).map_err(|_| EspError::BadPath { path: path.into() })?;
    let mut fs = open_shared::<SimpleFileSystem>(volume).map_err(|e| EspError::Volume {
        path: path.into(),
        status: e.status(),
    })?;
    let mut root = fs.open_volume().map_err(|e| EspError::Volume {
        path: path.into(),
        status: e.status(),
    })?;
    let handle = root
        .open(&name, FileMode::Read, FileAttribute::empty())
        .map_err(|e| EspError::Read {
            path: path.into(),
            status: e.status(),
        })?;
    handle
        .into_regular_file()
        .ok_or_else(|| EspError::NotAFile { path: path.into() })
}

/// The file system on the partition with GPT partition GUID `guid`, if the
/// firmware has one (it mounts FAT only).
pub fn find_volume(guid: Guid) -> Option<Handle> {
    let handles = boot::find_handles::<SimpleFileSystem>().ok()?;
    handles.into_iter().find(|&handle| {
        open_shared::<DevicePath>(handle)
            .ok()
            .and_then(|path| partition_guid(&path))
            == Some(guid)
    })
}
