//! A/B slot state for Tandem's two /usr partitions, kept in GPT priority
//! attributes (ChromeOS / CoreOS convention).
//!
//! - [`attr`]: the attribute bits (priority, tries, successful);
//! - [`slot`], [`guid`]: the two slots and GPT GUIDs, re-exported from
//!   `tandem-contract`, which defines the disk layout once;
//! - [`state`]: the selection rule and the transitions, pure and exhaustively
//!   tested;
//! - [`gpt`] and [`device`]: the on-disk table with both CRC-checked copies,
//!   over any [`BlockDevice`];
//! - [`table`]: read-modify-write of the slot attributes on a disk;
//! - `verity` (feature `verity`): dm-verity hash trees for the slot images.
//!
//! Everything builds without `std` (the UEFI bootloader uses the same code);
//! the `std` feature adds [`FileDisk`].
//!
//! ```
//! use tandem_slot::{GptPrio, Recovery, Slot, SlotPair, TRIAL_BOOTS};
//!
//! // A fresh image: A confirmed, B empty. An update lands in B.
//! let mut pair = SlotPair::new(GptPrio::new(1, 0, true), GptPrio::new(0, 0, false));
//! pair.clear_inactive(Slot::A);
//! pair.activate_inactive(Slot::A);
//! let first = pair.boot().unwrap();
//! assert_eq!((first.slot, first.after.tries()), (Slot::B, TRIAL_BOOTS - 1));
//! // A power cut: B boots again. Its early init fails: B is given up.
//! assert_eq!(pair.next_boot(), Some(Slot::B));
//! assert_eq!(pair.after_boot_failure(Slot::B), Recovery::SwitchTo(Slot::A));
//! assert_eq!(pair.next_boot(), Some(Slot::A));
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

pub mod attr;
pub mod device;
pub mod gpt;
pub mod state;
pub mod table;

/// GPT GUIDs and the layout's partition types (defined in `tandem-contract`).
pub mod guid {
    pub use tandem_contract::guid::*;
    pub use tandem_contract::partition::types;
}
/// The two /usr slots (defined in `tandem-contract`).
pub mod slot {
    pub use tandem_contract::slot::*;
}
pub use tandem_contract::{Guid, Slot};
#[cfg(feature = "verity")]
pub mod verity;

pub use attr::GptPrio;
#[cfg(feature = "std")]
pub use device::FileDisk;
pub use device::{BlockDevice, MemDisk};
pub use gpt::{GeometryError, Gpt, GptError};
pub use state::{BootDecision, Recovery, SlotPair, Stay, TRIAL_BOOTS, TransitionError};
pub use table::{LayoutError, TableError};
