//! Errors of the firmware side, one variant per failure site. Messages say
//! what failed, on what, and what to do; the console prefixes them with
//! `tandem-boot: `.

use alloc::string::String;

use tandem_slot::{GptError, Guid, LayoutError};
use uefi::Status;

use crate::cmdline::CmdlineError;

/// A Block I/O call on the boot disk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// A Block I/O read or write failed.
    #[error("block i/o {op} of {len} bytes at block {lba} failed: {status}")]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// First block.
        lba: u64,
        /// Bytes transferred.
        len: usize,
        /// What the firmware said.
        status: Status,
    },
    /// Flushing the disk's write cache failed.
    #[error("block i/o flush failed: {0}")]
    Flush(Status),
    /// No buffer with the device's required alignment could be allocated.
    #[error("cannot allocate a {len}-byte buffer aligned to {align} bytes for block i/o")]
    Buffer {
        /// Bytes wanted.
        len: usize,
        /// Alignment the device asks for.
        align: usize,
    },
}

/// The boot disk or its slot table could not be found or read: nothing can
/// be booted.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Our own LoadedImage protocol is missing.
    #[error("cannot open the bootloader's LoadedImage protocol: {0}")]
    OwnImage(Status),
    /// LoadedImage has no device handle.
    #[error("the firmware did not say which device BOOTX64.EFI was loaded from")]
    NoBootDevice,
    /// The boot device has no device path.
    #[error("cannot read the device path of the partition BOOTX64.EFI was loaded from: {0}")]
    BootDevicePath(Status),
    /// The boot device is not a GPT partition.
    #[error(
        "BOOTX64.EFI was not loaded from a GPT partition (its device path does not end in a hard-drive node with a GUID); boot it from a Tandem disk's EFI-SYSTEM partition"
    )]
    NotGptPartition,
    /// No whole disk has the boot partition in its table.
    #[error(
        "no disk's partition table has the partition BOOTX64.EFI was loaded from ({0}); is the disk attached as a block device the firmware can read?"
    )]
    DiskNotFound(Guid),
    /// The boot disk's table is unreadable.
    #[error("cannot read the partition table of the boot disk: {0}")]
    Table(#[from] GptError<DiskError>),
    /// The table lacks the Tandem slots.
    #[error("the boot disk is not a Tandem disk: {0}")]
    Layout(#[from] LayoutError),
    /// A live ISO's slot A files are missing or unreadable.
    #[error("live boot: {0}")]
    LiveFiles(#[from] EspError),
    /// A live ISO's kernel did not start.
    #[error("live boot: {0}")]
    LiveKernel(#[from] KernelError),
}

/// A file on the ESP or OEM partition could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// The file system protocol is missing or its root cannot be opened.
    #[error("cannot open the file system to read {path}: {status}")]
    Volume {
        /// The file wanted.
        path: String,
        /// What the firmware said.
        status: Status,
    },
    /// The path cannot be expressed in UCS-2.
    #[error("{path} is not a valid UEFI file name")]
    BadPath {
        /// The path.
        path: String,
    },
    /// Opening, inspecting or reading the file failed.
    #[error("cannot read {path}: {status}")]
    Read {
        /// The path.
        path: String,
        /// What the firmware said (`NOT_FOUND` for a missing file).
        status: Status,
    },
    /// The path names a directory.
    #[error("{path} is a directory, not a file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// No memory for the file.
    #[error("{path} ({size} bytes) does not fit in memory")]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The file ended before its recorded size.
    #[error("cannot read {path}: got {got} of {size} bytes")]
    Short {
        /// The path.
        path: String,
        /// Bytes read.
        got: usize,
        /// Size in the directory entry.
        size: u64,
    },
}

impl EspError {
    /// Whether the file (or its directory) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, EspError::Read { status, .. } if *status == Status::NOT_FOUND)
    }
}

/// A slot's kernel could not be loaded or started; the slot is given up for
/// this boot and marked unbootable.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A file of the slot is missing or unreadable.
    #[error(transparent)]
    File(#[from] EspError),
    /// The slot's partition entry is missing.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The command line cannot be passed.
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    /// The kernel's device path could not be built.
    #[error("cannot build the device path of {path}: {what}")]
    DevicePath {
        /// The kernel's path.
        path: String,
        /// What the builder said.
        what: String,
    },
    /// LoadImage refused the kernel.
    #[error("the firmware cannot load {path} as an EFI image: {status}")]
    Load {
        /// The kernel's path.
        path: String,
        /// What LoadImage said.
        status: Status,
    },
    /// The kernel's LoadedImage protocol could not be opened.
    #[error("cannot set the command line of {path}: {status}")]
    LoadOptions {
        /// The kernel's path.
        path: String,
        /// What the firmware said.
        status: Status,
    },
    /// StartImage returned: the kernel's EFI stub gave up (e.g. it could
    /// not load the initrd) or the kernel exited.
    #[error("{path} returned to the bootloader: {status}")]
    Returned {
        /// The kernel's path.
        path: String,
        /// What StartImage returned.
        status: Status,
    },
}
