//! Tandem's update engine.
//!
//! Shared with the release tooling (`tandem release`, `tandem serve`):
//! - [`repo`]: the repository layout and formats (signed channel pointer,
//!   manifest, chunked payload);
//! - [`payload`]: cutting a slot image into compressed chunks (release side);
//! - [`keys`]: ed25519 key files, signing and verification;
//! - [`version`]: version ordering;
//! - [`policy`]: what a node accepts (signature, expiry, version rules,
//!   manifest identity), as pure functions;
//! - [`rollout`]: staged rollout arithmetic.
//!
//! The node side (the `tandem-updated` daemon and `tandemctl update`):
//! configuration, state, the check/download/verify/write/activate engine,
//! health and rollback detection, the status API.
#![warn(missing_docs)]

pub mod keys;
pub mod payload;
pub mod policy;
pub mod repo;
pub mod rollout;
pub mod version;

pub use version::Version;
