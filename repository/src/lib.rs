//! Tandem's update repository: what the release tooling publishes and a node
//! accepts, shared by both so they cannot drift (`tandem release` and
//! `tandem serve` on the host, the update engine in `updater` on the node).
//!
//! - [`repo`]: the layout and formats (signed channel pointer, manifest,
//!   chunk list), and the name rules ([`repo::valid_image`],
//!   [`repo::valid_channel`], [`repo::version_dir`]);
//! - [`payload`]: cutting a slot image into zstd chunks, decoding a chunk;
//! - [`install`]: the signed install manifest (a whole disk image, chunked);
//! - [`keys`]: ed25519 key files, signing and verification;
//! - [`policy`]: what a node accepts (signature, expiry, version rules,
//!   manifest identity), as pure functions;
//! - [`rollout`]: staged rollout arithmetic;
//! - [`error`]: what these can fail with.
//!
//! Versions are [`tandem_contract::Version`]. Nothing here touches the
//! network or the disk beyond reading key files: fetching is the node's
//! business, publishing the release tooling's.
//!
//! ```
//! use repository::keys::PrivateKey;
//! use repository::repo;
//!
//! let key = PrivateKey::from_seed([7; 32], "release");
//! let signature = key.sign(b"channel pointer");
//! assert!(key.public().verify(b"channel pointer", &signature));
//! assert!(!key.public().verify(b"altered pointer", &signature));
//! assert_eq!(repo::pointer_path("demo", "stable"), "demo/channels/stable.json");
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod install;
pub mod keys;
pub mod payload;
pub mod policy;
pub mod repo;
pub mod rollout;

pub use error::{KeyError, PayloadError, Refusal};
