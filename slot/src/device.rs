//! The storage interface the GPT code needs, implemented by the bootloader
//! over UEFI Block I/O, by the node over a block device file, and by tests
//! over memory.

extern crate alloc;
use alloc::vec::Vec;
use core::fmt;

/// A disk addressed in logical blocks.
pub trait BlockDevice {
    /// The device's own error type.
    type Error: fmt::Display + fmt::Debug;

    /// Bytes per logical block (512 or 4096).
    fn block_size(&self) -> u64;

    /// Number of logical blocks on the device.
    fn num_blocks(&self) -> u64;

    /// Fills `buf` (a whole number of blocks) from `lba` on.
    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `buf` (a whole number of blocks) from `lba` on.
    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), Self::Error>;

    /// Makes everything written so far durable.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// A disk in memory, for tests and for building tables before writing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemDisk {
    /// The disk's bytes.
    pub data: Vec<u8>,
    /// Bytes per block.
    pub block_size: u64,
}

/// An access beyond the end of a [`MemDisk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// First block of the access.
    pub lba: u64,
    /// Length of the access in bytes.
    pub len: usize,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access of {} bytes at block {} is beyond the end of the disk",
            self.len, self.lba
        )
    }
}

impl MemDisk {
    /// A zeroed disk of `blocks` blocks.
    pub fn new(blocks: u64, block_size: u64) -> Self {
        MemDisk {
            data: alloc::vec![0; (blocks * block_size) as usize],
            block_size,
        }
    }

    fn range(&self, lba: u64, len: usize) -> Result<core::ops::Range<usize>, OutOfRange> {
        let start = lba
            .checked_mul(self.block_size)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or(OutOfRange { lba, len })?;
        let end = start.checked_add(len).ok_or(OutOfRange { lba, len })?;
        if end > self.data.len() || !(len as u64).is_multiple_of(self.block_size) {
            return Err(OutOfRange { lba, len });
        }
        Ok(start..end)
    }
}

impl BlockDevice for MemDisk {
    type Error = OutOfRange;

    fn block_size(&self) -> u64 {
        self.block_size
    }

    fn num_blocks(&self) -> u64 {
        self.data.len() as u64 / self.block_size
    }

    fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let r = self.range(lba, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> Result<(), OutOfRange> {
        let r = self.range(lba, buf.len())?;
        self.data[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutOfRange> {
        Ok(())
    }
}

#[cfg(feature = "std")]
pub use file::FileDisk;

#[cfg(feature = "std")]
mod file {
    use super::BlockDevice;
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    /// A disk image file or block device node, with 512-byte blocks unless the
    /// device reports otherwise. `flush` is `fsync`.
    #[derive(Debug)]
    pub struct FileDisk {
        file: File,
        path: PathBuf,
        block_size: u64,
        num_blocks: u64,
    }

    impl FileDisk {
        /// Opens `path` for reading only.
        pub fn open_read_only(path: &Path) -> io::Result<Self> {
            Self::from_file(File::open(path)?, path)
        }

        /// Opens `path` for reading only, addressed in blocks of
        /// `block_size` bytes whatever the device's are: a hybrid ISO's
        /// table is laid out in 512-byte blocks, a CD's are 2048.
        pub fn open_read_only_as(path: &Path, block_size: u64) -> io::Result<Self> {
            let mut disk = Self::open_read_only(path)?;
            let bytes = disk.num_blocks * disk.block_size;
            disk.block_size = block_size;
            disk.num_blocks = bytes / block_size;
            Ok(disk)
        }

        /// Opens `path` for reading and writing.
        pub fn open(path: &Path) -> io::Result<Self> {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            Self::from_file(file, path)
        }

        fn from_file(file: File, path: &Path) -> io::Result<Self> {
            let (bytes, block_size) = device_geometry(&file)?;
            Ok(FileDisk {
                file,
                path: path.to_path_buf(),
                block_size,
                num_blocks: bytes / block_size,
            })
        }

        /// The path the disk was opened from.
        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    /// Size in bytes and logical block size of a regular file or block device.
    fn device_geometry(file: &File) -> io::Result<(u64, u64)> {
        use std::os::unix::fs::FileTypeExt;
        let meta = file.metadata()?;
        if !meta.file_type().is_block_device() {
            return Ok((meta.len(), 512));
        }
        use std::os::fd::AsRawFd;
        // _IOR(0x12, 114, size_t); not exported by the libc crate.
        const BLKGETSIZE64: libc::Ioctl = 0x8008_1272u32 as libc::Ioctl;
        let fd = file.as_raw_fd();
        let mut bytes: u64 = 0;
        let mut sector: libc::c_int = 0;
        // SAFETY: both ioctls write one integer of the given type through the pointer.
        let ok = unsafe {
            libc::ioctl(fd, BLKGETSIZE64, &mut bytes) == 0
                && libc::ioctl(fd, libc::BLKSSZGET, &mut sector) == 0
        };
        if !ok {
            return Err(io::Error::last_os_error());
        }
        Ok((bytes, u64::try_from(sector).unwrap_or(512).max(512)))
    }

    impl BlockDevice for FileDisk {
        type Error = io::Error;

        fn block_size(&self) -> u64 {
            self.block_size
        }

        fn num_blocks(&self) -> u64 {
            self.num_blocks
        }

        fn read_blocks(&mut self, lba: u64, buf: &mut [u8]) -> io::Result<()> {
            self.file.read_exact_at(buf, lba * self.block_size)
        }

        fn write_blocks(&mut self, lba: u64, buf: &[u8]) -> io::Result<()> {
            self.file.write_all_at(buf, lba * self.block_size)
        }

        fn flush(&mut self) -> io::Result<()> {
            self.file.sync_all()
        }
    }
}
