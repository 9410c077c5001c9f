//! The GPT attribute bits that carry a slot's boot state (ChromeOS / CoreOS
//! convention): priority in bits 48–51, tries left in 52–55, successful in 56.

use core::fmt;

const PRIORITY_SHIFT: u32 = 48;
const TRIES_SHIFT: u32 = 52;
const SUCCESSFUL_BIT: u32 = 56;
const NIBBLE: u64 = 0xF;

/// A partition's 64-bit GPT attribute field, read through the slot fields.
///
/// Only bits 48–56 are ever changed; every other bit (e.g. bit 0, "required
/// partition", or bit 60, "read-only") is carried through untouched.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GptPrio(pub u64);

impl GptPrio {
    /// Highest value priority and tries can hold.
    pub const MAX: u8 = 15;

    /// Attributes with only the slot fields set; values above 15 are clamped.
    pub fn new(priority: u8, tries: u8, successful: bool) -> Self {
        GptPrio(0)
            .with_priority(priority)
            .with_tries(tries)
            .with_successful(successful)
    }

    /// Boot priority, 0–15; 0 means never boot.
    pub fn priority(self) -> u8 {
        ((self.0 >> PRIORITY_SHIFT) & NIBBLE) as u8
    }

    /// Boot attempts left before the slot is given up, 0–15.
    pub fn tries(self) -> u8 {
        ((self.0 >> TRIES_SHIFT) & NIBBLE) as u8
    }

    /// Whether the slot has booted healthy at least once.
    pub fn successful(self) -> bool {
        (self.0 >> SUCCESSFUL_BIT) & 1 == 1
    }

    /// The same attributes with another priority (clamped to 15).
    pub fn with_priority(self, priority: u8) -> Self {
        self.with_nibble(PRIORITY_SHIFT, priority)
    }

    /// The same attributes with another tries count (clamped to 15).
    pub fn with_tries(self, tries: u8) -> Self {
        self.with_nibble(TRIES_SHIFT, tries)
    }

    /// The same attributes with the successful bit set or cleared.
    pub fn with_successful(self, successful: bool) -> Self {
        let cleared = self.0 & !(1 << SUCCESSFUL_BIT);
        GptPrio(cleared | (u64::from(successful) << SUCCESSFUL_BIT))
    }

    /// Whether the selection rule may pick this slot at all:
    /// `priority > 0 && (tries > 0 || successful)`.
    pub fn is_bootable(self) -> bool {
        self.priority() > 0 && (self.tries() > 0 || self.successful())
    }

    fn with_nibble(self, shift: u32, value: u8) -> Self {
        let value = u64::from(value.min(Self::MAX));
        GptPrio((self.0 & !(NIBBLE << shift)) | (value << shift))
    }
}

impl fmt::Debug for GptPrio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GptPrio({self} raw={:#018x})", self.0)
    }
}

impl fmt::Display for GptPrio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority={} tries={} successful={}",
            self.priority(),
            self.tries(),
            u8::from(self.successful())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_without_touching_other_bits() {
        let other_bits = 0x1000_0000_0000_0001u64 | (1 << 57) | (0xABCD << 8);
        for p in 0..=15 {
            for t in 0..=15 {
                for s in [false, true] {
                    let a = GptPrio(other_bits)
                        .with_priority(p)
                        .with_tries(t)
                        .with_successful(s);
                    assert_eq!((a.priority(), a.tries(), a.successful()), (p, t, s));
                    assert_eq!(a.0 & !(0x1FF << 48), other_bits);
                }
            }
        }
    }

    #[test]
    fn bit_positions_match_the_chromeos_layout() {
        assert_eq!(GptPrio::new(1, 0, false).0, 1 << 48);
        assert_eq!(GptPrio::new(0, 1, false).0, 1 << 52);
        assert_eq!(GptPrio::new(0, 0, true).0, 1 << 56);
        assert_eq!(GptPrio::new(15, 15, true).0, 0x01FF_0000_0000_0000);
    }

    #[test]
    fn values_above_fifteen_are_clamped() {
        assert_eq!(GptPrio::new(200, 16, false), GptPrio::new(15, 15, false));
    }
}
