//! Publishing to an update repository (`tandem release`): a build directory
//! becomes an immutable version (chunked payload, kernel, initramfs,
//! manifest), channels are pointed at versions with signed pointers, and
//! [`status`] reports what a repository serves.
//!
//! Formats are [`repository::repo`], chunking is [`repository::payload`],
//! signing is [`repository::keys`] and the checks a node applies are
//! [`repository::policy`]: the release side and the node's update engine use
//! the same `repository` crate, so the two cannot drift.
//!
//! Crash safety: a version is assembled in a hidden directory inside the
//! repository and renamed into place complete, so a half-published version
//! is never visible; a channel pointer is written to a temporary file,
//! synced and renamed over the old one. One release command at a time holds
//! the repository (a lock file).

use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use repository::keys::{PrivateKey, PublicKey};
use repository::payload;
use repository::policy;
use repository::repo::{
    self, CHUNK_SIZE, ChannelPointer, Envelope, FORMAT, FileRef, Manifest, Rollout, Signature,
    UsrImage, Verity,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tandem_contract::Version;

use crate::build::manifest::{self, Artifact, BuildManifest};
use crate::build::pipeline::outputs;
use crate::clock;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// File names inside a version directory.
pub mod files {
    /// The chunked /usr payload.
    pub const PAYLOAD: &str = "usr.payload";
    /// The /usr slot image uncompressed, for block fetches.
    pub const RAW: &str = "usr.img";
    /// The kernel.
    pub const KERNEL: &str = "vmlinuz";
    /// The initramfs.
    pub const INITRD: &str = "initrd";
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
}

/// Lock file in the repository root (hidden: never part of a release).
pub const LOCK_FILE: &str = ".tandem-release.lock";

/// How long a new pointer is valid unless told otherwise.
pub const DEFAULT_EXPIRES_IN: u64 = 30 * 86_400;

pub use repository::repo::{valid_channel, valid_image};

fn check_channel(name: &str) -> Result<()> {
    if valid_channel(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "channel",
            name: name.into(),
            rule: "use lower-case letters, digits, `.`, `-` and `_` (e.g. stable, beta)",
        })
    }
}

mod build_dir;
mod files_io;
pub mod keys;
mod lock;
mod mirror;
mod pointer;
mod promote;
mod publish;
mod schedule;
mod status;

pub use build_dir::*;
use files_io::*;
pub use lock::*;
pub use mirror::*;
pub use pointer::*;
pub use promote::*;
pub use publish::*;
pub use schedule::*;
pub use status::*;

#[cfg(test)]
mod tests;
