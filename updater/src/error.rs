//! Errors of the node side: one variant per failure site, each naming what
//! failed, on what, and what to do.

use std::io;
use std::path::PathBuf;

use repository::policy::Refusal;

/// Everything the update engine, its daemon and its client can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed.
    #[error("reading {path} failed: {err}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// Writing a file failed.
    #[error("writing {path} failed: {err}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A JSON state or status file does not parse.
    #[error("{path} is not valid ({msg}): move it away and the updater starts afresh")]
    Format {
        /// The file.
        path: PathBuf,
        /// Parser message.
        msg: String,
    },
    /// A state file could not be serialised; the previous file is untouched.
    #[error(
        "cannot serialise {path} ({msg}); the previous file is kept: this is a bug, please report it"
    )]
    Serialize {
        /// The file that was not written.
        path: PathBuf,
        /// Serialiser message.
        msg: String,
    },
    /// A configuration layer is invalid; the last good configuration stays in force.
    #[error("{origin}: {msg}")]
    Config {
        /// The file (or `OEM partition: update.toml`).
        origin: String,
        /// What is wrong.
        msg: String,
    },
    /// No update server is configured.
    #[error(
        "no update server configured: set `server = \"http://…\"` in /etc/tandem/update.toml (or the OEM partition's update.toml)"
    )]
    NoServer,
    /// A fact about the node is missing (os-release, early.json).
    #[error("{what}")]
    Node {
        /// What is missing.
        what: String,
    },
    /// update.toml's `ca-file` cannot be used.
    #[error(
        "ca-file {path} (update.toml) cannot be used: {msg}; it must hold the PEM certificates of the CAs that sign the update server's certificate"
    )]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The source of an offline update cannot be read.
    #[error("cannot read updates from {source_path}: {msg}")]
    Offline {
        /// The directory or device.
        source_path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An HTTP request failed.
    #[error("fetching {url} failed: {msg}")]
    Http {
        /// The URL.
        url: String,
        /// What happened.
        msg: String,
    },
    /// The repository's signed data was refused; nothing was written.
    #[error("{0}; nothing was written")]
    Refused(#[from] Refusal),
    /// A downloaded chunk does not match the signed manifest.
    #[error(
        "chunk {index} (image offset {offset}) does not match the signed manifest ({detail}); none of its bytes were written: the server or the network corrupts data, the updater retries"
    )]
    ChunkCorrupt {
        /// Chunk number.
        index: usize,
        /// Offset in the slot image.
        offset: u64,
        /// What differs.
        detail: String,
    },
    /// A fetched block does not match the verified hash tree.
    #[error(
        "the block at image offset {offset} of {path} does not match the signed manifest ({detail}); none of its bytes were written: the server or the network corrupts data, the updater retries"
    )]
    BlockCorrupt {
        /// Repository path of the uncompressed image.
        path: String,
        /// Offset in the slot image.
        offset: u64,
        /// What differs.
        detail: String,
    },
    /// A downloaded file (kernel, initramfs) does not match the manifest.
    #[error("{path} does not match the signed manifest ({detail}); it was not installed")]
    FileCorrupt {
        /// Repository path.
        path: String,
        /// What differs.
        detail: String,
    },
    /// The written slot does not hash to the manifest's verity root.
    #[error(
        "slot {slot} does not match the manifest's verity root hash after writing ({detail}); it stays unbootable and the next attempt re-checks every chunk: the disk may be failing"
    )]
    VerityMismatch {
        /// The slot.
        slot: tandem_slot::Slot,
        /// What differs.
        detail: String,
    },
    /// The slot partition is too small for the image.
    #[error(
        "slot {slot} ({partition} bytes) is too small for the {need}-byte image of {version}: this image cannot update to it, reinstall with larger /usr partitions"
    )]
    SlotTooSmall {
        /// The slot.
        slot: tandem_slot::Slot,
        /// Partition size.
        partition: u64,
        /// Image size.
        need: u64,
        /// The version.
        version: String,
    },
    /// Reading or writing the boot disk (slot data, partition table) failed.
    #[error("{what} on {disk} failed: {msg}")]
    Disk {
        /// What was done.
        what: &'static str,
        /// The disk.
        disk: PathBuf,
        /// Why.
        msg: String,
    },
    /// The ESP or OEM file system failed.
    #[error("{what} on the {partition} partition failed: {err}")]
    Fat {
        /// What was done.
        what: String,
        /// `EFI-SYSTEM` or `OEM`.
        partition: &'static str,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The ESP is not a FAT32 file system (or its boot sector is nonsense):
    /// the check before writing it refuses, nothing was written.
    #[error(
        "{volume} is not a FAT32 file system the updater can check ({msg}); nothing was written to it: the ESP must be made with mkfs.vfat -F 32"
    )]
    NotFat32 {
        /// The partition.
        volume: String,
        /// What is wrong with its boot sector.
        msg: String,
    },
    /// The FAT file system is damaged beyond what the check repairs.
    #[error(
        "the FAT file system on {volume} is damaged beyond what the updater repairs ({msg}); nothing was written to it: check it with fsck.vfat"
    )]
    FatDamaged {
        /// The partition.
        volume: String,
        /// What is wrong.
        msg: String,
    },
    /// Reading or writing during the check and repair of a FAT file system
    /// failed (each step leaves it usable; the next check goes on).
    #[error("checking the FAT file system on {volume}: {what} failed: {err}")]
    FatRepair {
        /// The partition.
        volume: String,
        /// What was done.
        what: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The running slot is not confirmed yet: its fallback must not be overwritten.
    #[error(
        "the running slot {slot} is not confirmed healthy yet; updating now would overwrite its fallback: wait for the health check (or `tandemctl slot mark-good`)"
    )]
    NotConfirmed {
        /// The running slot.
        slot: tandem_slot::Slot,
    },
    /// Talking to the updater daemon failed.
    #[error("updater at {socket}: {msg}")]
    Api {
        /// The socket.
        socket: PathBuf,
        /// What happened.
        msg: String,
    },
    /// A command-line call was wrong.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whether trying again later may help (network, server); the daemon
    /// backs off and retries these.
    pub fn transient(&self) -> bool {
        matches!(
            self,
            Error::Http { .. }
                | Error::ChunkCorrupt { .. }
                | Error::BlockCorrupt { .. }
                | Error::FileCorrupt { .. }
        )
    }
}
