//! GPT GUIDs: 16 bytes on disk in the mixed-endian layout of the UEFI spec.

use core::fmt;
use core::str::FromStr;

/// A GUID as stored in a GPT (first three groups little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Guid(pub [u8; 16]);

/// The text is not a GUID of the form `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuidParseError;

impl fmt::Display for GuidParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a GUID (expected XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)")
    }
}

impl core::error::Error for GuidParseError {}

impl Guid {
    /// The all-zero GUID, which marks an unused partition entry.
    pub const NIL: Guid = Guid([0; 16]);

    /// The GUID whose canonical text is the hex of `v`
    /// (`0xC12A7328_F81F_…` reads as `C12A7328-F81F-…`).
    pub const fn from_u128(v: u128) -> Guid {
        let be = v.to_be_bytes();
        Guid([
            be[3], be[2], be[1], be[0], be[5], be[4], be[7], be[6], be[8], be[9], be[10], be[11],
            be[12], be[13], be[14], be[15],
        ])
    }

    /// A random-looking (version 4, RFC 4122 variant) GUID made from 16
    /// bytes of a hash, so builds can name partitions reproducibly.
    pub fn from_hash(bytes: [u8; 16]) -> Guid {
        let mut b = bytes;
        b[7] = (b[7] & 0x0F) | 0x40; // version 4 (byte 7 is the high byte of group 3)
        b[8] = (b[8] & 0x3F) | 0x80; // RFC 4122 variant
        Guid(b)
    }

    /// Whether this is the nil GUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    fn canonical_bytes(&self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.canonical_bytes();
        for (i, byte) in c.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 36 {
            return Err(GuidParseError);
        }
        let mut value: u128 = 0;
        for (i, &c) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return Err(GuidParseError);
                }
                continue;
            }
            let digit = (c as char).to_digit(16).ok_or(GuidParseError)?;
            value = (value << 4) | u128::from(digit);
        }
        Ok(Guid::from_u128(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::types;
    extern crate alloc;
    use alloc::string::ToString;

    #[test]
    fn text_round_trip_and_disk_layout() {
        let g: Guid = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
            .parse()
            .expect("valid");
        assert_eq!(g, types::EFI_SYSTEM);
        assert_eq!(g.to_string(), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        // On disk the first group is little-endian.
        assert_eq!(&g.0[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".parse::<Guid>(),
            Ok(types::EFI_SYSTEM)
        );
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "C12A7328F81F11D2BA4B00A0C93EC93B",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93G",
        ] {
            assert_eq!(bad.parse::<Guid>(), Err(GuidParseError), "{bad}");
        }
    }

    #[test]
    fn hashed_guids_are_version_4() {
        let g = Guid::from_hash([0xFF; 16]);
        let text = g.to_string();
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "A" | "B"));
    }
}
