//! Errors: one variant per failure site, each naming what failed, on what,
//! and where it helps, what to do. The early init prints them after
//! `tandem-init: FATAL: `.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tandem_slot::{Guid, Slot};

pub use tandem_contract::cmdline::CmdlineError;

/// A line of `modules.load` is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line} ({text:?}): {reason}")]
pub struct ModuleListError {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// A service file is invalid (the contract's format).
pub use tandem_contract::service::ServiceFileError;

/// Everything that can fail in the init and tandemctl.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file or directory failed.
    #[error("reading {path} failed: {err}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// Writing a file failed.
    #[error("writing {path} failed: {err}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A mount failed.
    #[error(
        "mounting {source_dev} ({fstype}) on {target} failed: {err}{}",
        no_driver_hint(err, fstype)
    )]
    Mount {
        /// What was mounted.
        source_dev: String,
        /// Where.
        target: PathBuf,
        /// Filesystem type.
        fstype: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A kernel module did not load.
    #[error("loading module {path} failed: {err}")]
    Module {
        /// The module file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// `modules.load` is malformed.
    #[error("{path}: {err}")]
    ModuleList {
        /// The list.
        path: PathBuf,
        /// What is wrong.
        #[source]
        err: ModuleListError,
    },
    /// The kernel command line is unusable.
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    /// No disk has the /usr partition.
    #[error("no disk has {want} after {waited:?} ({seen})")]
    PartitionNotFound {
        /// What was looked for.
        want: String,
        /// How long we waited.
        waited: Duration,
        /// What each disk held instead.
        seen: String,
    },
    /// The live medium is not what the bootloader said.
    #[error("live boot: {what}")]
    LiveMedia {
        /// What is wrong.
        what: String,
    },
    /// Two disks carry the same /usr PARTUUID.
    #[error(
        "PARTUUID {partuuid} is on both {first} and {second}: detach the copy (booting either could mix slots)"
    )]
    DuplicatePartuuid {
        /// The partition looked for.
        partuuid: Guid,
        /// First disk.
        first: String,
        /// Second disk.
        second: String,
    },
    /// The command line's slot and partition do not agree with the GPT.
    #[error(
        "tandem.slot={slot} but PARTUUID {partuuid} is partition {number} ({what}) on {disk}: the bootloader and the disk disagree"
    )]
    SlotMismatch {
        /// Slot from the command line.
        slot: Slot,
        /// The partition.
        partuuid: Guid,
        /// Its number.
        number: u32,
        /// What is wrong with it.
        what: &'static str,
        /// The disk.
        disk: String,
    },
    /// The ROOT partition is missing or of the wrong type.
    #[error("partition 9 (ROOT) on {disk} {what}: not a Tandem disk")]
    RootPartition {
        /// The disk.
        disk: String,
        /// What is wrong.
        what: &'static str,
    },
    /// A device-mapper ioctl failed.
    #[error("device-mapper {op} for {name} failed: {err}")]
    DeviceMapper {
        /// Which step.
        op: &'static str,
        /// dm device name.
        name: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// Reading through dm-verity failed: the data does not match the root hash.
    #[error(
        "verity check of {what} failed: {err} (the /usr partition {partition} does not match tandem.usrhash: corrupted or wrong slot)"
    )]
    Verity {
        /// What was read.
        what: String,
        /// The partition under verity.
        partition: PathBuf,
        /// The cause (EIO for a hash mismatch).
        #[source]
        err: io::Error,
    },
    /// A switch-root step failed.
    #[error("switch root: {step} failed: {err}")]
    SwitchRoot {
        /// Which step.
        step: &'static str,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The watchdog could not be armed.
    #[error("arming {path} failed: {err}")]
    Watchdog {
        /// The node.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A partition table could not be read or written.
    #[error("partition table of {disk}: {msg}")]
    Gpt {
        /// The disk.
        disk: PathBuf,
        /// What failed.
        msg: String,
    },
    /// A service file is invalid.
    #[error("service file {path}: {err}")]
    ServiceFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        err: ServiceFileError,
    },
    /// Starting a service failed.
    #[error("starting service {name} ({program}) failed: {err}")]
    Spawn {
        /// Service name.
        name: String,
        /// The program.
        program: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The launcher's plan for a service could not be made.
    #[error("starting service {name} failed: {err}")]
    LaunchPlan {
        /// Service name.
        name: String,
        /// The cause.
        #[source]
        err: tandem_contract::service::plan::PlanError,
    },
    /// A cgroup operation failed.
    #[error("cgroup: {what} {path} failed: {err}")]
    Cgroup {
        /// What was done (`creating`, `writing`, `joining`).
        what: &'static str,
        /// The cgroup directory or file.
        path: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A network operation failed.
    #[error("network: {what} on {interface} failed: {err}")]
    Net {
        /// What was done.
        what: &'static str,
        /// The interface.
        interface: String,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A system call without a better home failed.
    #[error("{what} failed: {err}")]
    Sys {
        /// What was done.
        what: &'static str,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// A line of a configuration file (`sysusers.d`, `tmpfiles.d`) that
    /// cannot be honoured, or a file of them that cannot be read.
    #[error("{path}:{line}: {reason}")]
    ConfigLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0: the whole file).
        line: usize,
        /// Why, and what was done instead.
        reason: String,
    },
    /// A status file is not what this version writes.
    #[error("{path} is not a valid status file: {msg}")]
    Status {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl Error {
    /// Whether this failure means /usr is corrupt on disk: dm-verity
    /// answers a block that does not match the root hash with EIO, whether
    /// the early init read it or mount(2) did.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Verity { err, .. } => err.raw_os_error() == Some(libc::EIO),
            Error::Mount {
                source_dev, err, ..
            } => source_dev.starts_with("/dev/dm-") && err.raw_os_error() == Some(libc::EIO),
            _ => false,
        }
    }
}

/// ENODEV from mount(2) means the kernel does not know the file system type.
fn no_driver_hint(err: &io::Error, fstype: &str) -> String {
    if err.raw_os_error() == Some(libc::ENODEV) {
        format!(
            " (the kernel has no {fstype} driver loaded: list its module in the image definition's [kernel] modules)"
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_system_driver_is_named() {
        let mount = |errno| Error::Mount {
            source_dev: "/dev/dm-0".into(),
            target: "/sysroot/usr".into(),
            fstype: "erofs".into(),
            err: io::Error::from_raw_os_error(errno),
        };
        let text = mount(libc::ENODEV).to_string();
        assert!(text.contains("no erofs driver loaded"), "{text}");
        assert!(!mount(libc::EIO).to_string().contains("driver"));
    }
}
