//! Slot state stored in a GPT: find USR-A and USR-B, read their attributes,
//! apply a transition and write the table back (both copies).

use core::fmt;

use crate::attr::GptPrio;
use crate::device::BlockDevice;
use crate::gpt::{Gpt, GptError};
use crate::guid::types;
use crate::slot::Slot;
use crate::state::{SlotPair, TransitionError};

/// The table does not have the Tandem /usr slots where they belong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Partition 3 or 4 is missing.
    #[error("partition {number} ({label}) is missing: not a Tandem disk")]
    Missing {
        /// Partition number.
        number: u32,
        /// Expected label.
        label: &'static str,
    },
    /// Partition 3 or 4 has another type GUID.
    #[error(
        "partition {number} ({label}) is not of the /usr type 5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"
    )]
    WrongType {
        /// Partition number.
        number: u32,
        /// Expected label.
        label: &'static str,
    },
}

/// Errors of a read-modify-write of the slot attributes.
#[derive(Debug, thiserror::Error)]
pub enum TableError<E: fmt::Display + fmt::Debug> {
    /// Reading or writing the partition table failed.
    #[error(transparent)]
    Gpt(#[from] GptError<E>),
    /// The table is not laid out as a Tandem disk.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The transition was refused; nothing was written.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

/// The attributes of USR-A and USR-B in `gpt`.
pub fn slot_pair(gpt: &Gpt) -> Result<SlotPair, LayoutError> {
    Ok(SlotPair::new(
        GptPrio(usr_entry(gpt, Slot::A)?.attributes),
        GptPrio(usr_entry(gpt, Slot::B)?.attributes),
    ))
}

/// Stores both slots' attributes into `gpt` (in memory).
pub fn store_pair(gpt: &mut Gpt, pair: SlotPair) -> Result<(), LayoutError> {
    for slot in Slot::ALL {
        usr_entry(gpt, slot)?;
        if let Some(entry) = gpt.partition_mut(slot.partition_number()) {
            entry.attributes = pair.get(slot).0;
        }
    }
    Ok(())
}

/// The GPT entry of a slot, checked to be a /usr partition.
pub fn usr_entry(gpt: &Gpt, slot: Slot) -> Result<&crate::gpt::Entry, LayoutError> {
    let number = slot.partition_number();
    let label = slot.label();
    let entry = gpt
        .partition(number)
        .ok_or(LayoutError::Missing { number, label })?;
    if entry.type_guid != types::USR {
        return Err(LayoutError::WrongType { number, label });
    }
    Ok(entry)
}

/// Reads the table, applies `change` to the slot attributes and, if they
/// changed, writes both copies of the table back. Returns what `change`
/// returned and the pair as written. A refused change writes nothing.
pub fn modify<D, T>(
    dev: &mut D,
    change: impl FnOnce(&mut SlotPair) -> Result<T, TransitionError>,
) -> Result<(T, SlotPair), TableError<D::Error>>
where
    D: BlockDevice,
{
    let mut gpt = Gpt::read(dev)?;
    let before = slot_pair(&gpt)?;
    let mut pair = before;
    let out = change(&mut pair)?;
    // A damaged copy is repaired even when the slots did not change.
    if pair != before || !gpt.health.is_clean() {
        store_pair(&mut gpt, pair)?;
        gpt.write(dev)?;
    }
    Ok((out, pair))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::MemDisk;
    use crate::gpt::Entry;
    use crate::guid::Guid;

    fn disk() -> MemDisk {
        let mut disk = MemDisk::new(8192, 512);
        let mut gpt = Gpt::new(8192, 512, Guid::from_hash([1; 16])).expect("fits");
        for slot in Slot::ALL {
            let n = slot.partition_number();
            let first = 2048 + u64::from(n - 3) * 1024;
            *gpt.partition_mut(n).expect("entry") = Entry::new(
                types::USR,
                Guid::from_hash([n as u8; 16]),
                first,
                first + 1023,
                slot.label(),
            );
        }
        gpt.partition_mut(3).expect("entry").attributes = GptPrio::new(1, 0, true).0;
        gpt.write(&mut disk).expect("write");
        disk
    }

    #[test]
    fn modify_persists_both_copies() {
        let mut d = disk();
        let (decision, pair) = modify(&mut d, |p| {
            p.activate_inactive(Slot::A);
            p.boot()
        })
        .expect("modify");
        assert_eq!(decision.slot, Slot::B);
        assert_eq!(pair.b, GptPrio::new(2, crate::TRIAL_BOOTS - 1, false));
        let gpt = Gpt::read(&mut d).expect("read");
        assert!(gpt.health.is_clean());
        assert_eq!(slot_pair(&gpt), Ok(pair));
    }

    #[test]
    fn refused_change_writes_nothing() {
        let mut d = disk();
        let before = d.clone();
        let err = modify(&mut d, |p| p.rollback_to_inactive(Slot::A)).expect_err("B is empty");
        assert!(matches!(
            err,
            TableError::Transition(TransitionError::InactiveNotBootable { .. })
        ));
        assert_eq!(d, before);
    }

    #[test]
    fn wrong_layout_is_named() {
        let mut d = disk();
        let mut gpt = Gpt::read(&mut d).expect("read");
        gpt.partition_mut(4).expect("entry").type_guid = types::ROOT;
        gpt.write(&mut d).expect("write");
        let err = modify(&mut d, |_| Ok(())).expect_err("wrong type");
        assert_eq!(
            err.to_string(),
            "partition 4 (USR-B) is not of the /usr type 5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6"
        );
    }
}
