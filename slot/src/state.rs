//! Slot state and its transitions. Everything here changes an in-memory
//! [`SlotPair`] only; writing it to disk is the caller's job (see
//! [`crate::table`]), so every transition is a pure function that can be
//! checked over the whole state space.

use core::fmt;

use crate::attr::GptPrio;
use crate::slot::Slot;

/// The attributes of both /usr slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SlotPair {
    /// USR-A's attributes.
    pub a: GptPrio,
    /// USR-B's attributes.
    pub b: GptPrio,
}

/// What the bootloader does for one boot: which slot, and the attributes
/// before and after (tries decremented for an unconfirmed slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootDecision {
    /// The slot to boot.
    pub slot: Slot,
    /// Its attributes as found.
    pub before: GptPrio,
    /// Its attributes to persist before the kernel starts.
    pub after: GptPrio,
}

impl BootDecision {
    /// Whether the table must be written back before booting.
    pub fn needs_write(&self) -> bool {
        self.before != self.after
    }
}

/// Why a transition was refused; the table is left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionError {
    /// No slot satisfies `priority > 0 && (tries > 0 || successful)`.
    NoBootableSlot(SlotPair),
    /// Rolling back needs an inactive slot that would boot.
    InactiveNotBootable {
        /// The slot that would have been rolled back to.
        inactive: Slot,
        /// Its attributes.
        attrs: GptPrio,
    },
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionError::NoBootableSlot(pair) => write!(
                f,
                "no bootable /usr slot (A: {}; B: {}): a slot needs priority > 0 and tries > 0 or successful",
                pair.a, pair.b
            ),
            TransitionError::InactiveNotBootable { inactive, attrs } => write!(
                f,
                "cannot roll back to slot {inactive}: it would not boot ({attrs}); it is empty or was given up"
            ),
        }
    }
}

impl core::error::Error for TransitionError {}

impl SlotPair {
    /// A pair from both slots' attributes.
    pub fn new(a: GptPrio, b: GptPrio) -> Self {
        SlotPair { a, b }
    }

    /// The attributes of `slot`.
    pub fn get(&self, slot: Slot) -> GptPrio {
        match slot {
            Slot::A => self.a,
            Slot::B => self.b,
        }
    }

    /// Replaces the attributes of `slot`.
    pub fn set(&mut self, slot: Slot, attrs: GptPrio) {
        match slot {
            Slot::A => self.a = attrs,
            Slot::B => self.b = attrs,
        }
    }

    /// The selection rule: among bootable slots the highest priority wins;
    /// a tie goes to the lower partition number (A).
    pub fn next_boot(&self) -> Option<Slot> {
        let mut best: Option<Slot> = None;
        for slot in Slot::ALL {
            let attrs = self.get(slot);
            if !attrs.is_bootable() {
                continue;
            }
            match best {
                Some(b) if self.get(b).priority() >= attrs.priority() => {}
                _ => best = Some(slot),
            }
        }
        best
    }

    /// What the bootloader does: pick the slot and, if it is unconfirmed
    /// (tries > 0, not successful), spend one try. The returned decision says
    /// whether the table must be written back before the kernel starts.
    pub fn boot(&mut self) -> Result<BootDecision, TransitionError> {
        let slot = self
            .next_boot()
            .ok_or(TransitionError::NoBootableSlot(*self))?;
        let before = self.get(slot);
        let after = if !before.successful() && before.tries() > 0 {
            before.with_tries(before.tries() - 1)
        } else {
            before
        };
        self.set(slot, after);
        Ok(BootDecision {
            slot,
            before,
            after,
        })
    }

    /// The running slot came up healthy: successful, no tries left to spend.
    pub fn mark_successful(&mut self, running: Slot) {
        let attrs = self.get(running).with_successful(true).with_tries(0);
        self.set(running, attrs);
    }

    /// Before an update writes the inactive slot: make it unbootable
    /// (priority 0, tries 0, not successful). Persist this before the first
    /// byte of image data so a half-written slot can never be chosen.
    pub fn clear_inactive(&mut self, running: Slot) {
        let inactive = running.other();
        self.set(inactive, set_fields(self.get(inactive), 0, 0, false));
    }

    /// After the inactive slot is written and verified: it gets priority 2
    /// and [`TRIAL_BOOTS`] tries, the running slot drops to priority 1 (and
    /// stays bootable as the fallback).
    pub fn activate_inactive(&mut self, running: Slot) {
        let inactive = running.other();
        self.set(
            inactive,
            set_fields(self.get(inactive), 2, TRIAL_BOOTS, false),
        );
        self.set(running, self.get(running).with_priority(1));
    }

    /// Makes the inactive slot boot next, if it would boot: it gets
    /// priority 2, the running slot priority 1. Refused (and nothing
    /// changed) when the inactive slot is empty or exhausted.
    pub fn rollback_to_inactive(&mut self, running: Slot) -> Result<(), TransitionError> {
        let inactive = running.other();
        let attrs = self.get(inactive);
        if !attrs.is_bootable() {
            return Err(TransitionError::InactiveNotBootable { inactive, attrs });
        }
        self.set(inactive, attrs.with_priority(2));
        self.set(running, self.get(running).with_priority(1));
        Ok(())
    }

    /// The slot's kernel could not be loaded or started: spend all its tries
    /// and clear successful so the selection rule skips it. Its priority is
    /// kept, so the table still shows what it was meant to be.
    pub fn mark_unbootable(&mut self, slot: Slot) {
        let attrs = self.get(slot);
        self.set(slot, set_fields(attrs, attrs.priority(), 0, false));
    }

    /// The early init of `slot` failed. An unconfirmed slot (on trial) is
    /// given up when the other slot would boot: the failure is evidence
    /// against the release, and one trial is enough. A confirmed slot is
    /// kept (its next boot tries again), and so is a slot with nothing to
    /// fall back to.
    pub fn after_boot_failure(&mut self, slot: Slot) -> Recovery {
        let other = slot.other();
        if self.get(slot).successful() {
            Recovery::Stay(Stay::Confirmed)
        } else if !self.get(other).is_bootable() {
            Recovery::Stay(Stay::NoOtherSlot)
        } else {
            self.mark_unbootable(slot);
            Recovery::SwitchTo(other)
        }
    }

    /// /usr of `slot` is corrupt on disk. When the other slot holds a
    /// confirmed version, `slot` is given up and the other boots next
    /// (priority 2 over 1); otherwise nothing changes: booting an
    /// unconfirmed or empty slot instead would trade a known problem for an
    /// unknown one.
    pub fn after_corruption(&mut self, slot: Slot) -> Recovery {
        let other = slot.other();
        let attrs = self.get(other);
        if !(attrs.is_bootable() && attrs.successful()) {
            return Recovery::Stay(Stay::NoGoodOtherSlot);
        }
        self.mark_unbootable(slot);
        self.set(slot, self.get(slot).with_priority(1));
        self.set(other, attrs.with_priority(2));
        Recovery::SwitchTo(other)
    }
}

/// Boots a new slot gets before it is given up when none of them confirms
/// it. A boot that fails with evidence (its early init failed, its health
/// checks failed) gives the slot up at once; the other tries cover boots
/// cut short by power cuts and resets, which say nothing about the release.
pub const TRIAL_BOOTS: u8 = 3;

/// What [`SlotPair::after_boot_failure`] and [`SlotPair::after_corruption`]
/// decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// The slot was given up; this one boots next.
    SwitchTo(Slot),
    /// Nothing changed.
    Stay(Stay),
}

/// Why a slot is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stay {
    /// It is confirmed: a failed boot of it is retried, not given up.
    Confirmed,
    /// The other slot would not boot.
    NoOtherSlot,
    /// The other slot holds no confirmed version.
    NoGoodOtherSlot,
}

impl fmt::Display for Stay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stay::Confirmed => "it is confirmed, so its next boot tries again",
            Stay::NoOtherSlot => "the other slot would not boot",
            Stay::NoGoodOtherSlot => "the other slot holds no confirmed version to switch to",
        })
    }
}

fn set_fields(attrs: GptPrio, priority: u8, tries: u8, successful: bool) -> GptPrio {
    attrs
        .with_priority(priority)
        .with_tries(tries)
        .with_successful(successful)
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::vec::Vec;

    use super::*;

    /// Every state one slot can be in: 16 priorities × 16 tries × 2.
    fn all_states() -> Vec<GptPrio> {
        let mut v = Vec::with_capacity(512);
        for p in 0..=15 {
            for t in 0..=15 {
                for s in [false, true] {
                    v.push(GptPrio::new(p, t, s));
                }
            }
        }
        v
    }

    /// Runs `check` over all 512 × 512 pairs.
    fn for_all_pairs(mut check: impl FnMut(SlotPair)) {
        let states = all_states();
        for &a in &states {
            for &b in &states {
                check(SlotPair::new(a, b));
            }
        }
    }

    /// The rule written out independently, as the design states it.
    fn reference_choice(pair: SlotPair) -> Option<Slot> {
        let ok = |g: GptPrio| g.priority() > 0 && (g.tries() > 0 || g.successful());
        match (ok(pair.a), ok(pair.b)) {
            (false, false) => None,
            (true, false) => Some(Slot::A),
            (false, true) => Some(Slot::B),
            (true, true) if pair.b.priority() > pair.a.priority() => Some(Slot::B),
            (true, true) => Some(Slot::A),
        }
    }

    #[test]
    fn selection_matches_the_rule_for_every_pair() {
        for_all_pairs(|pair| assert_eq!(pair.next_boot(), reference_choice(pair), "{pair:?}"));
    }

    #[test]
    fn boot_spends_a_try_only_on_unconfirmed_slots() {
        for_all_pairs(|pair| {
            let mut after = pair;
            match after.boot() {
                Err(TransitionError::NoBootableSlot(p)) => {
                    assert_eq!(p, pair);
                    assert_eq!(after, pair, "a refused boot changes nothing");
                    assert_eq!(reference_choice(pair), None);
                }
                Err(e) => panic!("unexpected {e}"),
                Ok(d) => {
                    assert_eq!(Some(d.slot), reference_choice(pair));
                    assert_eq!(d.before, pair.get(d.slot));
                    let other = d.slot.other();
                    assert_eq!(after.get(other), pair.get(other), "other slot untouched");
                    assert_eq!(after.get(d.slot), d.after);
                    assert_eq!(d.after.priority(), d.before.priority());
                    assert_eq!(d.after.successful(), d.before.successful());
                    if d.before.successful() {
                        assert_eq!(d.after, d.before);
                        assert!(!d.needs_write());
                    } else {
                        assert_eq!(d.after.tries() + 1, d.before.tries());
                        assert!(d.needs_write());
                    }
                }
            }
        });
    }

    #[test]
    fn an_unconfirmed_slot_is_booted_exactly_tries_times() {
        for_all_pairs(|pair| {
            for slot in Slot::ALL {
                let attrs = pair.get(slot);
                if attrs.successful() || pair.next_boot() != Some(slot) {
                    continue;
                }
                let mut state = pair;
                let mut boots = 0;
                while state.next_boot() == Some(slot) {
                    state.boot().expect("bootable");
                    boots += 1;
                    assert!(boots <= 15);
                }
                assert_eq!(boots, attrs.tries(), "{pair:?}");
                // Once given up, the other slot boots if it can.
                let other = slot.other();
                assert_eq!(
                    state.next_boot(),
                    pair.get(other).is_bootable().then_some(other)
                );
            }
        });
    }

    #[test]
    fn mark_successful_confirms_only_the_running_slot() {
        for_all_pairs(|pair| {
            for running in Slot::ALL {
                let mut s = pair;
                s.mark_successful(running);
                assert!(s.get(running).successful());
                assert_eq!(s.get(running).tries(), 0);
                assert_eq!(s.get(running).priority(), pair.get(running).priority());
                assert_eq!(s.get(running.other()), pair.get(running.other()));
            }
        });
    }

    #[test]
    fn clear_then_activate_is_the_update_sequence() {
        for_all_pairs(|pair| {
            for running in Slot::ALL {
                let inactive = running.other();
                let mut s = pair;
                s.clear_inactive(running);
                assert!(!s.get(inactive).is_bootable());
                assert_eq!(s.get(inactive).priority(), 0);
                assert_eq!(s.get(running), pair.get(running), "running slot untouched");
                // While the inactive slot is being written, only the running
                // slot (if it was bootable) can be chosen.
                assert_eq!(
                    s.next_boot(),
                    pair.get(running).is_bootable().then_some(running)
                );

                s.activate_inactive(running);
                assert_eq!(s.get(inactive), GptPrio::new(2, TRIAL_BOOTS, false));
                assert_eq!(s.get(running).priority(), 1);
                assert_eq!(s.next_boot(), Some(inactive));
                // The new slot gets TRIAL_BOOTS boots; then the old one comes
                // back if it can (it now has priority 1, so it needs tries or
                // successful).
                for _ in 0..TRIAL_BOOTS {
                    assert_eq!(s.boot().expect("new slot boots").slot, inactive);
                }
                let old = pair.get(running);
                assert_eq!(
                    s.next_boot(),
                    (old.tries() > 0 || old.successful()).then_some(running)
                );
            }
        });
    }

    #[test]
    fn rollback_only_to_a_bootable_inactive_slot() {
        for_all_pairs(|pair| {
            for running in Slot::ALL {
                let inactive = running.other();
                let mut s = pair;
                match s.rollback_to_inactive(running) {
                    Ok(()) => {
                        assert!(pair.get(inactive).is_bootable());
                        assert_eq!(s.next_boot(), Some(inactive));
                        assert_eq!(s.get(running).priority(), 1);
                    }
                    Err(TransitionError::InactiveNotBootable { inactive: i, attrs }) => {
                        assert_eq!(i, inactive);
                        assert_eq!(attrs, pair.get(inactive));
                        assert!(!attrs.is_bootable());
                        assert_eq!(s, pair, "refused rollback changes nothing");
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
        });
    }

    #[test]
    fn mark_unbootable_removes_the_slot_from_selection() {
        for_all_pairs(|pair| {
            for slot in Slot::ALL {
                let mut s = pair;
                s.mark_unbootable(slot);
                assert!(!s.get(slot).is_bootable());
                assert_eq!(s.get(slot.other()), pair.get(slot.other()));
                assert_ne!(s.next_boot(), Some(slot));
            }
        });
    }

    #[test]
    fn a_failed_early_boot_gives_up_only_a_trial_with_a_fallback() {
        for_all_pairs(|pair| {
            for slot in Slot::ALL {
                let mut s = pair;
                let other = slot.other();
                match s.after_boot_failure(slot) {
                    Recovery::SwitchTo(to) => {
                        assert_eq!(to, other);
                        assert!(!pair.get(slot).successful());
                        assert!(!s.get(slot).is_bootable(), "given up");
                        assert_eq!(s.get(other), pair.get(other));
                        assert_eq!(s.next_boot(), Some(other));
                    }
                    Recovery::Stay(why) => {
                        assert_eq!(s, pair, "nothing changes: {why}");
                        assert!(
                            pair.get(slot).successful() || !pair.get(other).is_bootable(),
                            "{pair:?}"
                        );
                    }
                }
            }
        });
    }

    #[test]
    fn corruption_switches_only_to_a_confirmed_slot() {
        for_all_pairs(|pair| {
            for slot in Slot::ALL {
                let mut s = pair;
                let other = slot.other();
                let good = pair.get(other).is_bootable() && pair.get(other).successful();
                match s.after_corruption(slot) {
                    Recovery::SwitchTo(to) => {
                        assert!(good);
                        assert_eq!(to, other);
                        assert!(!s.get(slot).is_bootable());
                        assert_eq!(s.next_boot(), Some(other));
                        assert!(s.get(other).successful());
                    }
                    Recovery::Stay(why) => {
                        assert!(!good, "{pair:?}");
                        assert_eq!(why, Stay::NoGoodOtherSlot);
                        assert_eq!(s, pair);
                    }
                }
            }
        });
    }
}
