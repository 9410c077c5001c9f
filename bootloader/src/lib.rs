//! Tandem's UEFI bootloader (`BOOTX64.EFI`): picks the /usr slot from the
//! GPT priority attributes with the shared `tandem-slot` rule, spends a try
//! of an unconfirmed slot, and starts that slot's kernel from the ESP with
//! the command line of docs/boot-chain.md. The files it reads and the
//! arguments it writes are defined in `tandem-contract`.
//!
//! The pure parts build and test on the host (`cargo test -p bootloader
//! --lib`): [`cmdline`],
//! [`menu`] and [`plan`] (decision, fallback, messages). The firmware parts
//! exist only for `x86_64-unknown-uefi`: `disk` (Block I/O and finding the
//! boot disk), `esp` (files), `kernel` (LoadImage/StartImage), `console`,
//! `error` and `firmware`, which ties them together.
#![cfg_attr(target_os = "uefi", no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod cmdline;
pub mod menu;
pub mod plan;

#[cfg(target_os = "uefi")]
pub mod console;
#[cfg(target_os = "uefi")]
pub mod disk;
#[cfg(target_os = "uefi")]
pub mod error;
#[cfg(target_os = "uefi")]
pub mod esp;
#[cfg(target_os = "uefi")]
pub mod firmware;
#[cfg(target_os = "uefi")]
pub mod kernel;
