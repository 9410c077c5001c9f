//! Tandem's image builder: turns an image definition into a dual-root GPT
//! disk image (ESP, USR-A with dm-verity, empty USR-B, OEM, ROOT) plus the
//! per-slot artefacts the update tooling publishes; inspects disks; and the
//! release side of updates: signing keys ([`release::keys`]), publishing
//! versions and channels to an update repository ([`release`]) and a small
//! server for it ([`serve`]).
//!
//! The binary is `tandem` (`tandem build`, `inspect`, `keygen`, `release`,
//! `serve`); this library is what it calls. Steps that the field does with
//! standard tools wrap those tools (mkfs.erofs, mke2fs/debugfs, apt,
//! dpkg-deb); the GPT, FAT, cpio and dm-verity work is done in Rust.
#![warn(missing_docs)]

pub mod build;
pub mod clock;
pub mod error;
pub mod export;
pub mod inspect;
pub mod iso;
pub mod progress;
pub mod release;
pub mod serve;
pub mod vm;

pub use build::{BuildOptions, Definition, build};
pub use error::{Error, Result};
