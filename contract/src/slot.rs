//! The two /usr slots.

use core::fmt;

use crate::partition::Partition;

/// One of the two /usr slots, USR-A (partition 3) or USR-B (partition 4).
///
/// Serialised (in `/run/tandem` files and the node's state) as `A`/`B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "std", derive(serde::Serialize, serde::Deserialize))]
pub enum Slot {
    /// USR-A, partition 3.
    A,
    /// USR-B, partition 4.
    B,
}

impl Slot {
    /// Both slots, in partition order (which is also tie-break order).
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];

    /// The slot that is not this one.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot's partition in the disk layout.
    pub fn partition(self) -> Partition {
        match self {
            Slot::A => Partition::UsrA,
            Slot::B => Partition::UsrB,
        }
    }

    /// GPT partition number (1-based) of this slot.
    pub fn partition_number(self) -> u32 {
        self.partition().number()
    }

    /// The slot stored at a partition number, if any.
    pub fn from_partition_number(number: u32) -> Option<Slot> {
        Slot::ALL
            .into_iter()
            .find(|s| s.partition_number() == number)
    }

    /// GPT partition label of this slot.
    pub fn label(self) -> &'static str {
        self.partition().label()
    }

    /// Lower-case letter used in file names (`vmlinuz-a`) and on the kernel
    /// command line (`tandem.slot=a`).
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// Parses `a`, `b`, `A`, `B`, `usr-a`, `USR-B`.
    pub fn parse(text: &str) -> Option<Slot> {
        let t = text.trim();
        let t = t
            .strip_prefix("usr-")
            .or_else(|| t.strip_prefix("USR-"))
            .unwrap_or(t);
        match t {
            "a" | "A" => Some(Slot::A),
            "b" | "B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Slot::A => "A",
            Slot::B => "B",
        })
    }
}
