//! Everything that can go wrong building or inspecting an image, publishing
//! or serving a release, each with the thing it happened to and, where
//! there is one, what to do about it.

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
        "package `{package}` is not in apt's package lists{}: check the name, or run `apt-get update` (as root) if the lists are old",
        quote_apt(apt)
    )]
    UnknownPackage {
        /// The package name.
        package: String,
        /// What apt said (its `E:` lines), if it was asked.
        apt: Vec<String>,
    },
    /// apt cannot install the requested packages together with their
    /// dependencies (unmet or conflicting dependencies, a virtual package
    /// with several providers, a version that is not there).
    #[error(
        "cannot resolve [usr] packages {} with their dependencies{}: {hint}",
        names(packages),
        quote_apt(apt)
    )]
    Unresolvable {
        /// The requested packages apt names, or all requested ones.
        packages: Vec<String>,
        /// What apt said: its `E:` lines and the lines explaining them.
        apt: Vec<String>,
        /// What to change.
        hint: String,
    },
    /// apt's answer is missing a package or cannot be read.
    #[error("apt: {message}: run `apt-get update` (as root) and build again")]
    AptAnswer {
        /// What was missing or unreadable.
        message: String,
    },
    /// `--locked`, and the packages resolved today differ from the lock file.
    #[error(
        "{path} does not match what the definition resolves to today:\n{changes}\nthe definition or Debian's archive changed; run `tandem build` without --locked to update {name}"
    )]
    LockMismatch {
        /// The lock file.
        path: PathBuf,
        /// Its file name, for the fix.
        name: String,
        /// One line per moved, added or removed package.
        changes: String,
    },
    /// `--locked` without a lock file.
    #[error(
        "--locked, but there is no lock file {path}: run `tandem build` without --locked once to write it, and commit it"
    )]
    LockMissing {
        /// Where the lock file was looked for.
        path: PathBuf,
    },
    /// A lock file that cannot be read.
    #[error(
        "{path} is not a lock file tandem can read ({message}): delete it and run `tandem build` without --locked to write it again"
    )]
    LockUnreadable {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
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
    /// A service file the build writes is invalid.
    #[error("service file {service}.toml: {err}")]
    ServiceFile {
        /// The service.
        service: String,
        /// What is wrong.
        #[source]
        err: tandem_contract::service::ServiceFileError,
    },
    /// A key name cannot name key files.
    #[error(
        "{name:?} cannot name a key: use letters, digits, `.`, `-` and `_` (not starting with `.`), at most 64 characters"
    )]
    KeyName {
        /// The name given.
        name: String,
    },
    /// A key file is in the way.
    #[error(
        "{path} already exists: keys are never overwritten; choose another name, or move the old key away first"
    )]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The system's random source failed.
    #[error("cannot get random bytes for a new key: {message}")]
    Random {
        /// Why.
        message: String,
    },
    /// A key file cannot be read or is not a key of the expected kind.
    #[error("{0}")]
    Key(#[from] repository::keys::KeyError),
    /// A name that becomes part of repository paths is not acceptable.
    #[error("{what} {name:?} is not valid: {rule}")]
    InvalidName {
        /// What the name is (channel, image, …).
        what: &'static str,
        /// The name.
        name: String,
        /// What would be valid.
        rule: &'static str,
    },
    /// A release request that cannot be carried out as asked.
    #[error("{message}")]
    Release {
        /// What is wrong and what to do.
        message: String,
    },
    /// A build directory is incomplete, modified or inconsistent.
    #[error("build directory {path}: {message}")]
    BuildDir {
        /// The build directory.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// An update repository holds something unexpected.
    #[error("update repository {path}: {message}")]
    Repository {
        /// The file or directory in the repository.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A version is already published with other content.
    #[error(
        "{image} {version} is already published in {path} with different content ({differences}): versions are immutable; give the image a new version and build it again"
    )]
    VersionExists {
        /// Image name.
        image: String,
        /// Version.
        version: String,
        /// The version directory.
        path: PathBuf,
        /// What differs.
        differences: String,
    },
    /// Cutting the slot image into a payload failed.
    #[error("cannot make the payload of {image}: {cause}")]
    Payload {
        /// The slot image.
        image: PathBuf,
        /// What failed.
        cause: repository::payload::PayloadError,
    },
    /// Another release command holds the repository.
    #[error(
        "another `tandem release` is writing to {path} right now: wait for it to finish and run this again"
    )]
    Busy {
        /// The repository's lock file.
        path: PathBuf,
    },
    /// `tandem run` cannot start the machine as asked.
    #[error("cannot start the machine: {message}")]
    Machine {
        /// What is wrong and what to do.
        message: String,
    },
    /// `tandem serve` cannot listen.
    #[error(
        "cannot listen on {addr}: {cause}: choose another address or port, or stop what uses it"
    )]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        cause: std::io::Error,
    },
}

/// `: apt says: E: …; E: …` or nothing.
fn quote_apt(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(" (apt says: {})", lines.join("; "))
    }
}

/// `` `a`, `b` ``.
fn names(packages: &[String]) -> String {
    packages
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
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
