//! What reading, checking and writing the repository can fail with: one
//! type per module ([`crate::keys`], [`crate::policy`], [`crate::payload`]),
//! one variant per failure site. Each module re-exports its own type.
//!
//! The node's and the release tooling's errors wrap these (`#[from]`) and
//! add their own context (which file, which disk, what was written).

use std::io;

/// Problems with key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read key {path}: {cause}")]
    Read {
        /// The key file.
        path: String,
        /// Why.
        cause: io::Error,
    },
    /// The file's content is not a key of the expected kind.
    #[error("{path}: {message}")]
    Format {
        /// The key file (or `<text>`).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Why a pointer or manifest was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not JSON of the expected shape.
    #[error("{what} is malformed ({detail}): the server sent garbage or a truncated file")]
    Malformed {
        /// Which document.
        what: &'static str,
        /// Parser message.
        detail: String,
    },
    /// No signature by a trusted key.
    #[error(
        "channel pointer is signed by no trusted key (signed by {signers:?}; this node trusts {trusted:?}): publish with a key listed in the image's update.trusted-keys"
    )]
    UnknownKey {
        /// Key ids that signed.
        signers: Vec<String>,
        /// Key ids the node trusts.
        trusted: Vec<String>,
    },
    /// A trusted key's signature does not verify.
    #[error(
        "channel pointer signature by key {key_id} does not verify: the pointer was altered after signing"
    )]
    BadSignature {
        /// The key id.
        key_id: String,
    },
    /// The pointer is for another image or channel.
    #[error(
        "channel pointer is for {got} but this node wants {want}: the repository is misconfigured"
    )]
    WrongTarget {
        /// What it is for.
        got: String,
        /// What the node wanted.
        want: String,
    },
    /// The pointer expired.
    #[error(
        "channel pointer expired at {expires} (now {now}): the release server must re-sign the channel (`tandem release promote` or `publish`); an old pointer could hold nodes back"
    )]
    Expired {
        /// Expiry, Unix seconds.
        expires: u64,
        /// Now.
        now: u64,
    },
    /// A lower version without permission.
    #[error(
        "channel serves {offered}, lower than the running {running}: downgrades need `allow-downgrade = true` in /etc/tandem/update.toml"
    )]
    Downgrade {
        /// Offered.
        offered: String,
        /// Running.
        running: String,
    },
    /// A version that failed here before.
    #[error(
        "{version} failed to come up on this node or elsewhere in its cluster before and is not installed again automatically: `tandemctl update forget-failed {version}` (this node) or `tandemctl cluster forget-failed {version}` (the cluster) allows it"
    )]
    FailedBefore {
        /// The version.
        version: String,
    },
    /// The manifest is not the one the pointer names.
    #[error(
        "manifest does not match the signed pointer ({detail}): it was altered or the server is serving another file"
    )]
    ManifestMismatch {
        /// What differs.
        detail: String,
    },
    /// The manifest is for another image, architecture or version.
    #[error("manifest is for {got}, this node needs {want}")]
    WrongImage {
        /// What it is for.
        got: String,
        /// What the node needs.
        want: String,
    },
    /// The running version is too old to update directly.
    #[error(
        "{version} requires at least {min} to update from, this node runs {running}: update to an intermediate version first"
    )]
    SourceTooOld {
        /// Offered version.
        version: String,
        /// Minimum source.
        min: String,
        /// Running.
        running: String,
    },
}

/// Problems encoding or decoding a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The options cannot work.
    #[error("invalid payload options: {0}")]
    Options(String),
    /// Reading the slot image failed.
    #[error("cannot read the slot image at offset {offset}: {cause}")]
    Read {
        /// Image offset of the chunk being read.
        offset: u64,
        /// Why.
        cause: io::Error,
    },
    /// Writing the payload failed.
    #[error("cannot write the payload at offset {offset}: {cause}")]
    Write {
        /// Payload offset of the frame being written.
        offset: u64,
        /// Why.
        cause: io::Error,
    },
    /// zstd refused to compress a chunk.
    #[error("zstd could not compress chunk {index}: {cause}")]
    Compress {
        /// Chunk index.
        index: usize,
        /// Why.
        cause: io::Error,
    },
    /// A compression thread died.
    #[error("a payload compression thread panicked: this is a bug in tandem")]
    Worker,
    /// A chunk's frame has the wrong size.
    #[error(
        "chunk {index}: got {got} compressed bytes, the manifest says {want}: the payload does not belong to this manifest or was cut short"
    )]
    FrameSize {
        /// Chunk index.
        index: usize,
        /// Bytes given.
        got: u64,
        /// Bytes expected.
        want: u64,
    },
    /// A chunk's frame does not decompress.
    #[error(
        "chunk {index} does not decompress ({cause}): the payload is damaged or does not belong to this manifest"
    )]
    Decompress {
        /// Chunk index.
        index: usize,
        /// zstd's message.
        cause: io::Error,
    },
    /// A chunk decompressed to other bytes than the manifest names.
    #[error(
        "chunk {index} decompresses to {got_len} bytes with sha256 {got_sha256}, the manifest says {want_len} bytes with {want_sha256}: the payload is damaged or does not belong to this manifest"
    )]
    Mismatch {
        /// Chunk index.
        index: usize,
        /// Length obtained.
        got_len: u64,
        /// Hash obtained.
        got_sha256: String,
        /// Length expected.
        want_len: u64,
        /// Hash expected.
        want_sha256: String,
    },
}
