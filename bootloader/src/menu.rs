//! The A/B menu shown when loader.conf has `timeout N` with N > 0: a person
//! presses A or B to boot that slot for this one boot, Enter for the
//! default; after N seconds without a choice the default decision stands.
//! Only bootable slots can be picked, so the menu cannot revive a slot the
//! tries counter gave up on.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use tandem_slot::{Slot, SlotPair};

use crate::plan::slot_state;

/// The menu's state between timer ticks and key presses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Menu {
    pair: SlotPair,
    default: Slot,
    remaining: u32,
}

/// What to do after a tick or a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep waiting; print the line if there is one.
    Wait(Option<String>),
    /// Stop the menu and boot: `Some` slot picked by the person, `None` for
    /// the default decision.
    Boot(Option<Slot>),
}

impl Menu {
    /// A menu for `timeout_secs` seconds, or `None` when no menu is wanted
    /// (timeout 0) or there is nothing to choose from (no bootable slot).
    pub fn new(pair: SlotPair, timeout_secs: u32) -> Option<Menu> {
        if timeout_secs == 0 {
            return None;
        }
        let default = pair.next_boot()?;
        Some(Menu {
            pair,
            default,
            remaining: timeout_secs,
        })
    }

    /// The slot booted when nobody chooses.
    pub fn default_slot(&self) -> Slot {
        self.default
    }

    /// The menu text; `versions` are slot A's and B's from their .conf.
    pub fn lines(&self, versions: [Option<&str>; 2]) -> Vec<String> {
        let mut lines = Vec::new();
        lines.push(String::from(
            "tandem-boot: choose the /usr slot for this boot",
        ));
        for (slot, version) in Slot::ALL.into_iter().zip(versions) {
            let attrs = self.pair.get(slot);
            lines.push(format!(
                "  [{slot}] version {:<12} {attrs}  {}{}",
                version.unwrap_or("unknown"),
                slot_state(attrs),
                if slot == self.default {
                    " (default)"
                } else {
                    ""
                },
            ));
        }
        lines.push(String::from(
            "Press A or B to boot that slot once, Enter for the default.",
        ));
        lines
    }

    /// The countdown line, rewritten in place each second.
    pub fn countdown(&self) -> String {
        format!("\rBooting slot {} in {} s ", self.default, self.remaining)
    }

    /// One second passed.
    pub fn tick(&mut self) -> Step {
        self.remaining = self.remaining.saturating_sub(1);
        if self.remaining == 0 {
            Step::Boot(None)
        } else {
            Step::Wait(Some(self.countdown()))
        }
    }

    /// A key was pressed (`\r` or `\n` for Enter).
    pub fn key(&mut self, key: char) -> Step {
        let slot = match key {
            '\r' | '\n' => return Step::Boot(None),
            'a' | 'A' => Slot::A,
            'b' | 'B' => Slot::B,
            _ => return Step::Wait(None),
        };
        let attrs = self.pair.get(slot);
        if attrs.is_bootable() {
            Step::Boot(Some(slot))
        } else {
            Step::Wait(Some(format!(
                "\rSlot {slot} cannot be booted ({}).\n{}",
                slot_state(attrs),
                self.countdown().trim_start_matches('\r')
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_slot::GptPrio;

    fn pair() -> SlotPair {
        SlotPair::new(GptPrio::new(1, 0, true), GptPrio::new(2, 1, false))
    }

    #[test]
    fn no_menu_without_timeout_or_choice() {
        assert_eq!(Menu::new(pair(), 0), None);
        assert_eq!(Menu::new(SlotPair::default(), 5), None);
        assert_eq!(
            Menu::new(pair(), 5).map(|m| m.default_slot()),
            Some(Slot::B)
        );
    }

    #[test]
    fn countdown_reaches_the_default() {
        let mut menu = Menu::new(pair(), 3).expect("menu");
        assert_eq!(menu.countdown(), "\rBooting slot B in 3 s ");
        assert_eq!(
            menu.tick(),
            Step::Wait(Some("\rBooting slot B in 2 s ".into()))
        );
        assert_eq!(
            menu.tick(),
            Step::Wait(Some("\rBooting slot B in 1 s ".into()))
        );
        assert_eq!(menu.tick(), Step::Boot(None));
    }

    #[test]
    fn keys_pick_bootable_slots_only() {
        let mut menu = Menu::new(pair(), 3).expect("menu");
        assert_eq!(menu.key('a'), Step::Boot(Some(Slot::A)));
        assert_eq!(menu.key('B'), Step::Boot(Some(Slot::B)));
        assert_eq!(menu.key('\r'), Step::Boot(None));
        assert_eq!(menu.key('x'), Step::Wait(None));

        let given_up = SlotPair::new(GptPrio::new(1, 0, true), GptPrio::new(2, 0, false));
        let mut menu = Menu::new(given_up, 3).expect("menu");
        match menu.key('b') {
            Step::Wait(Some(text)) => assert!(
                text.starts_with("\rSlot B cannot be booted (not bootable: no tries left"),
                "{text}"
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn lines_show_both_slots_and_the_default() {
        let menu = Menu::new(pair(), 3).expect("menu");
        let lines = menu.lines([Some("1.0.0"), None]);
        assert_eq!(lines.len(), 4);
        assert_eq!(
            lines[1],
            "  [A] version 1.0.0        priority=1 tries=0 successful=1  bootable"
        );
        assert_eq!(
            lines[2],
            "  [B] version unknown      priority=2 tries=1 successful=0  bootable, unconfirmed (default)"
        );
    }
}
