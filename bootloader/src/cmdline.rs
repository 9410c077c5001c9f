//! The kernel command line (docs/boot-chain.md, "Kernel command line") and
//! its UCS-2 encoding for the kernel image's load options.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use tandem_slot::Slot;

use tandem_contract::cmdline::{UsrSource, live_args, slot_args};
use tandem_contract::esp::{SlotFiles, uefi_path};

/// Everything the command line is made of, in contract order.
#[derive(Clone, Copy, Debug)]
pub struct Cmdline<'a> {
    /// The slot being booted.
    pub slot: Slot,
    /// Where its /usr is: the partition's unique GUID (PARTUUID), or the
    /// live ISO.
    pub usr: UsrSource,
    /// `options` of loader.conf.
    pub loader_options: &'a str,
    /// `options` of slot-<x>.conf.
    pub slot_options: &'a str,
    /// The OEM `cmdline` file, already joined into one line.
    pub oem: &'a str,
}

impl Cmdline<'_> {
    /// `initrd=\EFI\tandem\initrd-<x> <loader.conf options> tandem.slot=<x>
    /// tandem.usr=PARTUUID=<guid> <slot-x.conf options> <OEM cmdline>`, one
    /// space between pieces, empty pieces left out.
    pub fn render(&self) -> String {
        let pieces = [
            format!("initrd={}", uefi_path(&SlotFiles::of(self.slot).initrd)),
            self.loader_options.trim().into(),
            match self.usr {
                UsrSource::Partition(partuuid) => slot_args(self.slot, partuuid),
                UsrSource::Live => live_args(),
            },
            self.slot_options.trim().into(),
            self.oem.trim().into(),
        ];
        let mut line = String::new();
        for piece in pieces.iter().filter(|p| !p.is_empty()) {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(piece);
        }
        line
    }
}

/// The command line cannot be passed as UEFI load options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    /// A character outside UCS-2, or a control character that would cut or
    /// garble the line.
    #[error(
        "kernel command line has {ch:?} at byte {offset}, which UEFI load options cannot carry; remove it from loader.conf, slot-<x>.conf or the OEM cmdline"
    )]
    Unencodable {
        /// The character.
        ch: char,
        /// Its byte offset in the command line.
        offset: usize,
    },
    /// More than 4 GiB of load options (the size field is 32-bit).
    #[error("kernel command line of {0} characters is too long for UEFI load options")]
    TooLong(usize),
}

/// The command line as NUL-terminated UCS-2, as the kernel's EFI stub reads
/// its load options. Tabs are allowed; other control characters are not.
pub fn encode_ucs2(line: &str) -> Result<Vec<u16>, CmdlineError> {
    let mut out = Vec::with_capacity(line.len() + 1);
    for (offset, ch) in line.char_indices() {
        // A `char` is never a surrogate, so every one below 0x10000 is UCS-2.
        match u16::try_from(u32::from(ch)) {
            Ok(unit) if !ch.is_control() || ch == '\t' => out.push(unit),
            _ => return Err(CmdlineError::Unencodable { ch, offset }),
        }
    }
    out.push(0);
    if u32::try_from(out.len() * 2).is_err() {
        return Err(CmdlineError::TooLong(out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "7130C94A-213A-4E5A-8E26-6CCE9662F132";

    fn parts<'a>(slot: Slot, loader: &'a str, slot_opts: &'a str, oem: &'a str) -> Cmdline<'a> {
        Cmdline {
            slot,
            usr: UsrSource::Partition(GUID.parse().expect("valid")),
            loader_options: loader,
            slot_options: slot_opts,
            oem,
        }
    }

    #[test]
    fn full_line_in_contract_order() {
        let line = parts(
            Slot::A,
            "console=ttyS0,115200 panic=10",
            "tandem.usrhash=ab tandem.usrsalt=cd tandem.usrblocks=7",
            "quiet",
        )
        .render();
        assert_eq!(
            line,
            r"initrd=\EFI\tandem\initrd-a console=ttyS0,115200 panic=10 tandem.slot=a tandem.usr=PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132 tandem.usrhash=ab tandem.usrsalt=cd tandem.usrblocks=7 quiet"
        );
    }

    #[test]
    fn empty_pieces_leave_no_double_spaces() {
        let line = parts(Slot::B, "", "  ", "").render();
        assert_eq!(
            line,
            r"initrd=\EFI\tandem\initrd-b tandem.slot=b tandem.usr=PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132"
        );
    }

    #[test]
    fn a_live_boot_names_no_partition() {
        let mut p = parts(Slot::A, "console=ttyS0", "tandem.usrhash=ab", "");
        p.usr = UsrSource::Live;
        assert_eq!(
            p.render(),
            r"initrd=\EFI\tandem\initrd-a console=ttyS0 tandem.slot=a tandem.live tandem.usrhash=ab"
        );
    }

    #[test]
    fn ucs2_is_nul_terminated() {
        let units = encode_ucs2("a=é\tb").expect("encodable");
        assert_eq!(units, [0x61, 0x3D, 0xE9, 0x09, 0x62, 0]);
        assert_eq!(encode_ucs2("").expect("empty"), [0]);
    }

    #[test]
    fn unencodable_characters_are_refused_with_their_place() {
        assert_eq!(
            encode_ucs2("quiet 😀"),
            Err(CmdlineError::Unencodable {
                ch: '😀',
                offset: 6
            })
        );
        assert_eq!(
            encode_ucs2("a\0b"),
            Err(CmdlineError::Unencodable {
                ch: '\0',
                offset: 1
            })
        );
        assert!(encode_ucs2("a\nb").is_err());
    }
}
