//! Where things live: ESP file names and the OEM partition (docs/boot-chain.md).

use alloc::format;
use alloc::string::String;

use tandem_slot::Slot;

/// Options for every boot.
pub const LOADER_CONF: &str = r"\EFI\tandem\loader.conf";

/// Extra kernel arguments on the OEM partition.
pub const OEM_CMDLINE: &str = r"\cmdline";

/// GPT partition number of OEM.
pub const OEM_PARTITION: u32 = 6;

/// What the slot holds: `\EFI\tandem\slot-a.conf`.
pub fn slot_conf(slot: Slot) -> String {
    format!(r"\EFI\tandem\slot-{}.conf", slot.letter())
}

/// The slot's kernel: `\EFI\tandem\vmlinuz-a`.
pub fn kernel(slot: Slot) -> String {
    format!(r"\EFI\tandem\vmlinuz-{}", slot.letter())
}

/// The slot's initramfs: `\EFI\tandem\initrd-a`.
pub fn initrd(slot: Slot) -> String {
    format!(r"\EFI\tandem\initrd-{}", slot.letter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(kernel(Slot::A), r"\EFI\tandem\vmlinuz-a");
        assert_eq!(initrd(Slot::B), r"\EFI\tandem\initrd-b");
        assert_eq!(slot_conf(Slot::B), r"\EFI\tandem\slot-b.conf");
    }
}
