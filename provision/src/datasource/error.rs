//! What can stop the search for user-data. A datasource that is absent is
//! not an error (it becomes a line in `tried`); one that is present but
//! cannot be read, or is configured and unreachable, is: the node must not
//! quietly boot with another source's config, or none.

use std::path::PathBuf;
use std::time::Duration;

/// Why no user-data could be found.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `tandem.datasource=` names a datasource that does not exist.
    #[error(
        "tandem.datasource names {name:?}, which is not a datasource: use a comma-separated list of {known}"
    )]
    UnknownDatasource {
        /// The name given.
        name: String,
        /// The known names, for the message.
        known: String,
    },
    /// `tandem.config.url=` is not an `http://` URL.
    #[error("tandem.config.url={url}: {why}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// `tandem.config.sha256=` is not 64 hex digits.
    #[error(
        "tandem.config.sha256={value} is not a sha256: give 64 hex digits (sha256sum user-data)"
    )]
    BadSha256 {
        /// The value given.
        value: String,
    },
    /// The user-data fetched does not have the sha256 the command line says.
    #[error(
        "the user-data from {url} has sha256 {actual}, but tandem.config.sha256 says {expected}: publish the right file or correct the hash"
    )]
    Sha256Mismatch {
        /// The URL.
        url: String,
        /// From the command line.
        expected: String,
        /// Of the bytes fetched.
        actual: String,
    },
    /// A configured URL could not be fetched within the time allowed.
    #[error(
        "fetching the user-data from {url} failed ({tries} tries in {waited:?}): {msg}{network}: check the URL and that the server is reachable from the node"
    )]
    Fetch {
        /// The URL.
        url: String,
        /// How many attempts were made.
        tries: u32,
        /// How long they took.
        waited: Duration,
        /// The last failure.
        msg: String,
        /// A note when no network came up.
        network: String,
    },
    /// The EC2 instance metadata service did not answer usably.
    #[error(
        "the EC2 instance metadata service at {url} failed: {msg}: check that the instance's metadata service is enabled (IMDSv2, hop limit ≥ 1), or boot with tandem.datasource=none"
    )]
    Imds {
        /// The URL asked.
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// A device or file that holds a datasource could not be read.
    #[error("reading {path}: {err}: check the device (a damaged or unreadable seed volume)")]
    Read {
        /// The device or file.
        path: PathBuf,
        /// The cause.
        err: std::io::Error,
    },
    /// A labelled volume's file system could not be read.
    #[error(
        "{source_name}: {msg}: rebuild the seed volume (for example with `xorriso -as mkisofs -volid {label} -joliet -rock`)"
    )]
    Volume {
        /// The datasource and device (`NoCloud volume /dev/vdb`).
        source_name: String,
        /// The volume's label.
        label: String,
        /// What went wrong.
        msg: String,
    },
    /// A metadata file is not in the format its datasource uses.
    #[error("{file}: {msg}: fix the file on the datasource")]
    Metadata {
        /// The datasource and file (`/dev/sr0: openstack/latest/meta_data.json`).
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// The OEM partition of the boot disk could not be read.
    #[error(
        "reading {OEM_FILE_NAME} on the OEM partition of {disk}: {msg}: check the boot disk's OEM partition (FAT, partition 6)"
    )]
    Oem {
        /// The boot disk.
        disk: PathBuf,
        /// What went wrong.
        msg: String,
    },
}

const OEM_FILE_NAME: &str = tandem_contract::provision::OEM_FILE;
