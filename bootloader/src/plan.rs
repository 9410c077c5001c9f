//! The boot plan: which slot to start, what to write before it starts, and
//! what to do when its kernel cannot be started. Pure logic; the firmware is
//! behind [`Firmware`] so every path (fallback, nothing bootable, failed
//! writes) is tested on the host.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use tandem_slot::{BootDecision, GptPrio, Slot, SlotPair, TransitionError};

/// What the boot plan needs from the machine.
pub trait Firmware {
    /// Why the table could not be written.
    type PersistError: fmt::Display;
    /// Why a slot's kernel could not be loaded or started.
    type StartError: fmt::Display;

    /// Writes both slots' attributes to both copies of the partition table.
    fn persist(&mut self, pair: &SlotPair) -> Result<(), Self::PersistError>;

    /// Loads and starts the kernel of `decision.slot`. On firmware this
    /// returns only on failure; `Ok` means the kernel took over.
    fn start(&mut self, decision: &BootDecision) -> Result<(), Self::StartError>;

    /// Prints one console line.
    fn say(&mut self, line: &str);
}

/// A slot that could not be booted this time, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The slot.
    pub slot: Slot,
    /// What went wrong, as printed.
    pub reason: String,
}

/// Nothing can be booted: the slots' final state and what failed this boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoBootableSlot {
    /// Both slots' attributes as they stand now.
    pub pair: SlotPair,
    /// Slots given up during this boot, in order.
    pub failures: Vec<Failure>,
}

impl NoBootableSlot {
    /// The console lines that say why nothing boots and what to do.
    pub fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.push(String::from(
            "tandem-boot: no bootable /usr slot, nothing to start",
        ));
        for slot in Slot::ALL {
            let attrs = self.pair.get(slot);
            lines.push(format!(
                "tandem-boot:   slot {slot}: {attrs}: {}",
                slot_state(attrs)
            ));
        }
        for failure in &self.failures {
            lines.push(format!(
                "tandem-boot:   slot {} failed this boot: {}",
                failure.slot, failure.reason
            ));
        }
        lines.push(String::from(
            "tandem-boot: a slot boots when priority > 0 and it has tries left or is marked successful",
        ));
        lines.push(String::from(
            "tandem-boot: to recover, start rescue media and mark a slot whose /usr and kernel are intact, e.g. `cgpt add -i 3 -P 1 -S 1 <disk>` for slot A",
        ));
        lines
    }
}

/// Why a slot is or is not bootable, in words.
pub fn slot_state(attrs: GptPrio) -> &'static str {
    if attrs.priority() == 0 {
        "not bootable: priority 0 (empty, or cleared while an update is written)"
    } else if attrs.tries() == 0 && !attrs.successful() {
        "not bootable: no tries left and never marked successful (given up)"
    } else if attrs.successful() {
        "bootable"
    } else {
        "bootable, unconfirmed"
    }
}

/// The console marker of docs/boot-chain.md:
/// `tandem-boot: booting slot A (priority 1, tries 0 -> 0, successful) version 1.0.0`.
pub fn decision_line(decision: &BootDecision, version: Option<&str>) -> String {
    let before = decision.before;
    format!(
        "tandem-boot: booting slot {} (priority {}, tries {} -> {}, {}) version {}",
        decision.slot,
        before.priority(),
        before.tries(),
        decision.after.tries(),
        if before.successful() {
            "successful"
        } else {
            "unconfirmed"
        },
        version.unwrap_or("unknown"),
    )
}

/// The slot to boot: `choice` (a menu pick) when that slot is bootable, else
/// the selection rule. Spends a try of an unconfirmed slot in `pair`.
pub fn decide(pair: &mut SlotPair, choice: Option<Slot>) -> Result<BootDecision, TransitionError> {
    match choice {
        Some(slot) if pair.get(slot).is_bootable() => {
            // Let the shared rule spend the try, with the other slot hidden,
            // rather than restating the rule here.
            let mut only = *pair;
            only.set(slot.other(), GptPrio::new(0, 0, false));
            let decision = only.boot()?;
            pair.set(slot, decision.after);
            Ok(decision)
        }
        _ => pair.boot(),
    }
}

/// Boots a slot: decide, persist a spent try, start; when a kernel cannot be
/// started, mark its slot unbootable, persist that and fall back to the other
/// slot. Returns the decision that started (test doubles only) or why
/// nothing could.
pub fn boot<F: Firmware>(
    fw: &mut F,
    mut pair: SlotPair,
    choice: Option<Slot>,
) -> Result<BootDecision, NoBootableSlot> {
    let mut choice = choice;
    let mut failures = Vec::new();
    loop {
        let Ok(decision) = decide(&mut pair, choice.take()) else {
            return Err(NoBootableSlot { pair, failures });
        };
        let slot = decision.slot;
        // Starting an unconfirmed slot without spending a try could boot a
        // bad update forever; fall back instead.
        if decision.needs_write()
            && let Err(e) = fw.persist(&pair)
        {
            let reason = format!(
                "cannot record the boot attempt in the partition table ({e}); an unconfirmed slot is not started without spending a try"
            );
            fw.say(&format!("tandem-boot: cannot boot slot {slot}: {reason}"));
            pair.mark_unbootable(slot);
            failures.push(Failure { slot, reason });
            continue;
        }
        match fw.start(&decision) {
            Ok(()) => return Ok(decision),
            Err(e) => {
                let reason = format!("{e}");
                fw.say(&format!(
                    "tandem-boot: cannot boot slot {slot}: {reason}; marking slot {slot} unbootable"
                ));
                pair.mark_unbootable(slot);
                if let Err(e) = fw.persist(&pair) {
                    fw.say(&format!(
                        "tandem-boot: cannot record that slot {slot} is unbootable: {e}; it will be tried again next boot"
                    ));
                }
                failures.push(Failure { slot, reason });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// Records everything; kernels of slots in `broken` fail to start,
    /// persisting fails while `read_only`.
    #[derive(Default)]
    struct Fake {
        broken: Vec<Slot>,
        read_only: bool,
        persisted: Vec<SlotPair>,
        started: Vec<Slot>,
        said: Vec<String>,
    }

    impl Firmware for Fake {
        type PersistError = &'static str;
        type StartError = String;

        fn persist(&mut self, pair: &SlotPair) -> Result<(), &'static str> {
            if self.read_only {
                return Err("write protected");
            }
            self.persisted.push(*pair);
            Ok(())
        }

        fn start(&mut self, decision: &BootDecision) -> Result<(), String> {
            self.started.push(decision.slot);
            if self.broken.contains(&decision.slot) {
                return Err(format!("kernel of slot {} is missing", decision.slot));
            }
            Ok(())
        }

        fn say(&mut self, line: &str) {
            self.said.push(line.into());
        }
    }

    fn pair(a: (u8, u8, bool), b: (u8, u8, bool)) -> SlotPair {
        SlotPair::new(GptPrio::new(a.0, a.1, a.2), GptPrio::new(b.0, b.1, b.2))
    }

    #[test]
    fn confirmed_slot_boots_without_writing() {
        let mut fw = Fake::default();
        let d = boot(&mut fw, pair((1, 0, true), (0, 0, false)), None).expect("boots");
        assert_eq!(d.slot, Slot::A);
        assert!(!d.needs_write());
        assert_eq!(fw.persisted, []);
        assert_eq!(fw.started, [Slot::A]);
        assert_eq!(fw.said, [] as [String; 0]);
    }

    #[test]
    fn unconfirmed_slot_spends_a_try_before_starting() {
        let mut fw = Fake::default();
        let d = boot(&mut fw, pair((1, 0, true), (2, 1, false)), None).expect("boots");
        assert_eq!(d.slot, Slot::B);
        assert_eq!((d.before.tries(), d.after.tries()), (1, 0));
        assert_eq!(fw.persisted, [pair((1, 0, true), (2, 0, false))]);
    }

    #[test]
    fn missing_kernel_falls_back_and_marks_the_slot() {
        let mut fw = Fake {
            broken: alloc::vec![Slot::B],
            ..Fake::default()
        };
        let d = boot(&mut fw, pair((1, 0, true), (2, 1, false)), None).expect("A boots");
        assert_eq!(d.slot, Slot::A);
        assert_eq!(fw.started, [Slot::B, Slot::A]);
        // The spent try, then B given up; A is confirmed and needs no write.
        assert_eq!(
            fw.persisted,
            [
                pair((1, 0, true), (2, 0, false)),
                pair((1, 0, true), (2, 0, false))
            ]
        );
        assert_eq!(
            fw.said,
            [
                "tandem-boot: cannot boot slot B: kernel of slot B is missing; marking slot B unbootable"
            ]
        );
    }

    #[test]
    fn a_broken_confirmed_slot_is_given_up_too() {
        let mut fw = Fake {
            broken: alloc::vec![Slot::A],
            ..Fake::default()
        };
        let d = boot(&mut fw, pair((2, 0, true), (1, 3, false)), None).expect("B boots");
        assert_eq!(d.slot, Slot::B);
        assert_eq!(
            fw.persisted,
            [
                pair((2, 0, false), (1, 3, false)),
                pair((2, 0, false), (1, 2, false))
            ]
        );
    }

    #[test]
    fn nothing_bootable_reports_both_slots_and_failures() {
        let mut fw = Fake {
            broken: alloc::vec![Slot::A],
            ..Fake::default()
        };
        let err = boot(&mut fw, pair((1, 0, true), (2, 0, false)), None).expect_err("nothing");
        assert_eq!(err.pair, pair((1, 0, false), (2, 0, false)));
        assert_eq!(err.failures.len(), 1);
        let report = err.report();
        assert_eq!(
            report[0],
            "tandem-boot: no bootable /usr slot, nothing to start"
        );
        assert_eq!(
            report[1],
            "tandem-boot:   slot A: priority=1 tries=0 successful=0: not bootable: no tries left and never marked successful (given up)"
        );
        assert_eq!(
            report[3],
            "tandem-boot:   slot A failed this boot: kernel of slot A is missing"
        );
        let empty = boot(&mut Fake::default(), SlotPair::default(), None).expect_err("empty");
        assert!(
            empty.report()[1]
                .ends_with("priority 0 (empty, or cleared while an update is written)")
        );
    }

    #[test]
    fn failed_write_refuses_an_unconfirmed_slot_but_not_a_confirmed_one() {
        let mut fw = Fake {
            read_only: true,
            ..Fake::default()
        };
        let d = boot(&mut fw, pair((1, 0, true), (2, 1, false)), None).expect("A boots");
        assert_eq!(d.slot, Slot::A);
        assert_eq!(fw.started, [Slot::A]);
        assert!(
            fw.said[0]
                .starts_with("tandem-boot: cannot boot slot B: cannot record the boot attempt")
        );

        let mut fw = Fake {
            read_only: true,
            ..Fake::default()
        };
        assert!(boot(&mut fw, pair((0, 0, false), (2, 1, false)), None).is_err());
        assert_eq!(fw.started, []);
    }

    #[test]
    fn menu_choice_boots_that_slot_once() {
        let mut fw = Fake::default();
        let start = pair((1, 0, true), (2, 2, false));
        let d = boot(&mut fw, start, Some(Slot::A)).expect("boots");
        assert_eq!(d.slot, Slot::A);
        assert_eq!(fw.persisted, [], "a confirmed pick changes nothing");

        let mut fw = Fake::default();
        let d = boot(&mut fw, pair((2, 0, true), (1, 2, false)), Some(Slot::B)).expect("boots");
        assert_eq!((d.slot, d.after.tries()), (Slot::B, 1));
        assert_eq!(
            fw.persisted,
            [pair((2, 0, true), (1, 1, false))],
            "priorities unchanged"
        );
    }

    #[test]
    fn unbootable_choice_is_ignored_and_fallback_uses_the_rule() {
        let mut fw = Fake::default();
        let d = boot(&mut fw, pair((1, 0, true), (2, 0, false)), Some(Slot::B)).expect("boots");
        assert_eq!(d.slot, Slot::A);

        let mut fw = Fake {
            broken: alloc::vec![Slot::A],
            ..Fake::default()
        };
        let d = boot(&mut fw, pair((1, 0, true), (2, 1, false)), Some(Slot::A)).expect("boots");
        assert_eq!(d.slot, Slot::B);
        assert_eq!(fw.started, [Slot::A, Slot::B]);
    }

    #[test]
    fn every_state_ends_in_at_most_two_starts() {
        for a in 0..=15u8 {
            for b in 0..=15u8 {
                for bits in 0..4u8 {
                    let start = pair(
                        (a % 3, a / 3 % 3, bits & 1 == 1),
                        (b % 3, b / 3 % 3, bits & 2 == 2),
                    );
                    for broken in [
                        alloc::vec![],
                        alloc::vec![Slot::A],
                        alloc::vec![Slot::B],
                        alloc::vec![Slot::A, Slot::B],
                    ] {
                        let mut fw = Fake {
                            broken: broken.clone(),
                            ..Fake::default()
                        };
                        let result = boot(&mut fw, start, None);
                        assert!(fw.started.len() <= 2);
                        match result {
                            Ok(d) => {
                                assert!(!broken.contains(&d.slot));
                                assert!(start.get(d.slot).is_bootable());
                            }
                            Err(e) => {
                                assert!(e.pair.next_boot().is_none());
                                assert_eq!(e.failures.len(), fw.started.len());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn decision_line_matches_the_contract() {
        let mut p = pair((1, 0, true), (0, 0, false));
        let d = p.boot().expect("A");
        assert_eq!(
            decision_line(&d, Some("1.0.0")),
            "tandem-boot: booting slot A (priority 1, tries 0 -> 0, successful) version 1.0.0"
        );
        let mut p = pair((1, 0, true), (2, 1, false));
        let d = p.boot().expect("B");
        assert_eq!(
            decision_line(&d, None),
            "tandem-boot: booting slot B (priority 2, tries 1 -> 0, unconfirmed) version unknown"
        );
        assert_eq!(
            slot_state(GptPrio::new(2, 1, false)).to_string(),
            "bootable, unconfirmed"
        );
    }
}
