//! The disk layout: partition numbers, labels and type GUIDs
//! (docs/architecture.md). Numbers and type GUIDs follow Flatcar, so
//! `sgdisk`, `cgpt` and Flatcar's tools recognise them.

use crate::guid::Guid;

/// Partition type GUIDs of the layout.
pub mod types {
    use crate::guid::Guid;
    /// EFI system partition.
    pub const EFI_SYSTEM: Guid = Guid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
    /// CoreOS/Flatcar "/usr" partition, used by USR-A and USR-B.
    pub const USR: Guid = Guid::from_u128(0x5DFBF5F4_2848_4BAC_AA5E_0D9A20B745A6);
    /// Linux filesystem data, used by OEM.
    pub const LINUX_DATA: Guid = Guid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
    /// CoreOS/Flatcar resizable root, used by ROOT.
    pub const ROOT: Guid = Guid::from_u128(0x3884DD41_8582_4404_B9A8_E9B84F2DF50E);
    /// Tandem's live /usr on an ISO ([`crate::live`]): not a slot.
    pub const LIVE_USR: Guid = Guid::from_u128(0x6F908C3F_9E42_478D_990B_D69FC12B33BA);
    /// Tandem's install data on an ISO ([`crate::live`]).
    pub const INSTALL_DATA: Guid = Guid::from_u128(0xDDDBA567_2252_4731_B3B7_1AA2A7B93A56);
}

/// A partition of a Tandem disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Partition {
    /// The EFI system partition: bootloader, per-slot kernels and configs.
    Esp,
    /// /usr slot A.
    UsrA,
    /// /usr slot B.
    UsrB,
    /// Platform and provisioning configuration.
    Oem,
    /// Writable state; last on the disk so it can grow to the disk's end.
    Root,
}

impl Partition {
    /// Every partition, in disk order.
    pub const ALL: [Partition; 5] = [
        Partition::Esp,
        Partition::UsrA,
        Partition::UsrB,
        Partition::Oem,
        Partition::Root,
    ];

    /// GPT partition number (1-based).
    pub const fn number(self) -> u32 {
        match self {
            Partition::Esp => 1,
            Partition::UsrA => 3,
            Partition::UsrB => 4,
            Partition::Oem => 6,
            Partition::Root => 9,
        }
    }

    /// GPT partition label (also the FAT volume label of ESP and OEM).
    pub const fn label(self) -> &'static str {
        match self {
            Partition::Esp => "EFI-SYSTEM",
            Partition::UsrA => "USR-A",
            Partition::UsrB => "USR-B",
            Partition::Oem => "OEM",
            Partition::Root => "ROOT",
        }
    }

    /// GPT partition type GUID.
    pub const fn type_guid(self) -> Guid {
        match self {
            Partition::Esp => types::EFI_SYSTEM,
            Partition::UsrA | Partition::UsrB => types::USR,
            Partition::Oem => types::LINUX_DATA,
            Partition::Root => types::ROOT,
        }
    }

    /// The partition with GPT number `number`, if the layout has one.
    pub fn from_number(number: u32) -> Option<Partition> {
        Partition::ALL.into_iter().find(|p| p.number() == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Slot;

    #[test]
    fn numbers_and_labels_are_flatcars() {
        let table: [(u32, &str); 5] = Partition::ALL.map(|p| (p.number(), p.label()));
        assert_eq!(
            table,
            [
                (1, "EFI-SYSTEM"),
                (3, "USR-A"),
                (4, "USR-B"),
                (6, "OEM"),
                (9, "ROOT")
            ]
        );
        for p in Partition::ALL {
            assert_eq!(Partition::from_number(p.number()), Some(p));
        }
        assert_eq!(Partition::from_number(2), None);
    }

    #[test]
    fn slots_are_the_usr_partitions() {
        for s in Slot::ALL {
            assert_eq!(s.partition().type_guid(), types::USR);
            assert_eq!(Slot::from_partition_number(s.partition_number()), Some(s));
        }
        assert_eq!(Slot::from_partition_number(1), None);
        assert_eq!(Slot::A.label(), "USR-A");
    }
}
