//! Everything that can go wrong building or inspecting an image, each with
//! the thing it happened to and, where there is one, what to do about it.

use std::path::PathBuf;

/// Errors of the image builder library. Messages carry their cause inline
/// (no `source()` chain), so they read the same however they are printed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image definition could not be read.
    #[error("cannot read image definition {path}: {cause}")]
    ReadDefinition {
        /// The definition file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The image definition is not valid TOML or has unknown or wrong keys.
    #[error("invalid image definition {path}: {message}")]
    Definition {
        /// The definition file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value in the definition is out of range or inconsistent.
    #[error("invalid image definition {path}: {field}: {message}")]
    DefinitionValue {
        /// The definition file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong and what would be right.
        message: String,
    },
    /// An external tool is missing.
    #[error(
        "`{tool}` is not installed: install the Debian package `{package}` (`cargo xtask setup` installs everything)"
    )]
    ToolMissing {
        /// The program.
        tool: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// An external tool failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// The tool's last words.
        stderr: String,
    },
    /// apt does not know a package.
    #[error(
        "package `{package}` is not in apt's package lists: check the name, or run `apt-get update` (as root) if the lists are old"
    )]
    UnknownPackage {
        /// The package name.
        package: String,
    },
    /// A downloaded package does not match apt's checksum.
    #[error(
        "downloaded {path} does not match the sha256 in apt's lists (want {want}, got {got}): delete it and build again"
    )]
    PackageChecksum {
        /// The .deb.
        path: PathBuf,
        /// Expected sha256.
        want: String,
        /// Actual sha256.
        got: String,
    },
    /// The kernel is not usable.
    #[error("kernel {kernel}: {message}")]
    Kernel {
        /// Kernel release or path.
        kernel: String,
        /// What is wrong.
        message: String,
    },
    /// Something does not fit in its partition.
    #[error(
        "{what} needs {need} MiB but partition {partition} has {have} MiB: raise `partitions.{key}` in the image definition"
    )]
    TooLarge {
        /// What was being placed.
        what: String,
        /// Partition label.
        partition: String,
        /// Definition key for the partition size.
        key: String,
        /// Needed MiB (rounded up).
        need: u64,
        /// Available MiB.
        have: u64,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A Tandem artefact (node binary, bootloader) is missing.
    #[error(
        "{what} not found at {path}: build it with `cargo xtask build` or pass --artifacts <dir>"
    )]
    ArtifactMissing {
        /// Which artefact.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The disk image is damaged or not a Tandem image.
    #[error("{path}: {message}")]
    BadDisk {
        /// The disk image.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of the image builder library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the action and path to an I/O error.
pub trait IoContext<T> {
    /// Wraps an `io::Error` as [`Error::Io`].
    fn io(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|cause| Error::Io {
            action,
            path: path.into(),
            cause,
        })
    }
}
