//! `build.json`: what a build produced, for people, tests and the release
//! tooling. Written last, so its presence marks a complete build.

use serde::{Deserialize, Serialize};

/// Format version of build.json. 2: `packages` is the whole dependency
/// closure with architecture, size and reason; `notes`.
pub const FORMAT: u32 = 2;

/// The build manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildManifest {
    /// Format version.
    pub format: u32,
    /// Image identity.
    pub image: ImageInfo,
    /// SOURCE_DATE_EPOCH used for every timestamp.
    pub source_date_epoch: i64,
    /// The kernel.
    pub kernel: KernelInfo,
    /// Debian packages unpacked into /usr, sorted by name: the
    /// definition's, the base set and their dependencies.
    pub packages: Vec<Package>,
    /// What the packages' maintainer scripts and files ask for that the
    /// build does not do, with what to do about it; sorted by package.
    pub notes: Vec<PackageNote>,
    /// The disk image and its partitions.
    pub disk: DiskInfo,
    /// The /usr slot image (file system + hash tree).
    pub usr: UsrInfo,
    /// sha256 of every output file, by file name.
    pub artifacts: std::collections::BTreeMap<String, Artifact>,
}

/// `[image]` of the definition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Channel.
    pub channel: String,
    /// Architecture.
    pub arch: String,
}

/// The kernel in the image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KernelInfo {
    /// `uname -r`.
    pub release: String,
    /// Debian package and version, when from a package.
    pub package: Option<PackageRef>,
    /// Modules in the initramfs, load order.
    pub initramfs_modules: Vec<String>,
    /// Modules the system init loads, load order.
    pub system_modules: Vec<String>,
}

/// A Debian package.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PackageRef {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// sha256 of the .deb.
    pub sha256: String,
}

/// A Debian package unpacked into /usr.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Package {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture (`amd64`, `all`).
    pub arch: String,
    /// sha256 of the .deb.
    pub sha256: String,
    /// Size of the .deb in bytes.
    pub size: u64,
    /// Installed size in bytes, as the package declares it.
    pub installed_size: u64,
    /// Why it is in the image.
    pub reason: Reason,
}

/// Why a package is in the image. Ordered: a package both named and needed
/// counts as named.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Named in the definition's `[usr] packages`.
    Requested,
    /// In the base set every image gets (`resolve::BASE_PACKAGES`).
    Base,
    /// Pulled in as a dependency.
    Dependency,
}

/// Something a package asks for that the build does not do as dpkg would,
/// and what to do about it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageNote {
    /// The package.
    pub package: String,
    /// What kind of thing.
    pub kind: NoteKind,
    /// What, and what to do.
    pub message: String,
}

/// Kinds of [`PackageNote`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum NoteKind {
    /// A maintainer script creates a user or group.
    User,
    /// A maintainer script creates a configuration file in /etc.
    ConfigFile,
    /// An alternative that could not be set up in /usr.
    Alternative,
    /// A maintainer script runs a command the build does not run.
    Script,
    /// The package ships files outside /usr, /etc and /var.
    Outside,
}

/// The disk image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DiskInfo {
    /// File name in the output directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// Disk GUID.
    pub guid: String,
    /// Partitions in disk order.
    pub partitions: Vec<PartitionInfo>,
}

/// One partition.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionInfo {
    /// GPT number.
    pub number: u32,
    /// GPT label.
    pub label: String,
    /// Type GUID.
    pub type_guid: String,
    /// Partition GUID.
    pub guid: String,
    /// Offset in bytes.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Attribute bits, hex.
    pub attributes: String,
}

/// The /usr image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsrInfo {
    /// File name in the output directory.
    pub file: String,
    /// File system type.
    pub filesystem: String,
    /// File system size in bytes (= offset of the hash tree).
    pub fs_size: u64,
    /// File size: file system + hash tree.
    pub size: u64,
    /// dm-verity parameters.
    pub verity: VerityInfo,
}

/// dm-verity parameters of the /usr image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerityInfo {
    /// Root hash, hex.
    pub root_hash: String,
    /// Salt, hex.
    pub salt: String,
    /// Hash algorithm.
    pub algorithm: String,
    /// Data blocks of 4096 bytes.
    pub data_blocks: u64,
    /// Byte offset of the hash tree in the slot.
    pub hash_offset: u64,
}

/// An output file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    /// Size in bytes.
    pub size: u64,
    /// sha256, hex.
    pub sha256: String,
}
