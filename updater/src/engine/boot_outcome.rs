//! What a boot means for an earlier update, from `state.json`'s pending
//! record and the slot table: pure, so every case has a unit test. The
//! engine acts on it in [`super::Engine::boot_outcome`].

use tandem_slot::{Slot, SlotPair};

use crate::state::Pending;

/// What this boot means for an earlier update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootOutcome {
    /// No update was pending.
    NoPending,
    /// The update is activated but the node has not rebooted yet.
    WaitingForReboot,
    /// The node runs the pending update's slot.
    BootedNew,
    /// The pending update's slot was tried and gave up; the node is back
    /// on the old slot.
    RolledBack,
    /// The pending record is not backed by an activated slot (the
    /// activation never happened, a later update cleared it, or someone
    /// switched slots by hand): forget it.
    Stale,
}

/// Classifies a boot from the pending record, the running slot and the
/// slot attributes.
pub fn classify_boot(pending: Option<&Pending>, running: Slot, pair: SlotPair) -> BootOutcome {
    let Some(p) = pending else {
        return BootOutcome::NoPending;
    };
    let Some(slot) = Slot::parse(&p.slot) else {
        return BootOutcome::Stale;
    };
    if slot == running {
        return BootOutcome::BootedNew;
    }
    let attrs = pair.get(slot);
    if attrs.priority() == 0 || attrs.successful() {
        BootOutcome::Stale
    } else if attrs.tries() > 0 {
        BootOutcome::WaitingForReboot
    } else {
        BootOutcome::RolledBack
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_slot::GptPrio;

    fn pending(slot: &str) -> Pending {
        Pending {
            version: "1.1".parse().expect("v"),
            slot: slot.into(),
            from_version: "1.0".parse().expect("v"),
            from_slot: "A".into(),
            activated_at: 0,
            failure: None,
        }
    }

    #[test]
    fn boots_are_classified() {
        let good = GptPrio::new(1, 0, true);
        let p = pending("B");
        let pair = |b| SlotPair::new(good, b);
        assert_eq!(
            classify_boot(None, Slot::A, pair(GptPrio::new(0, 0, false))),
            BootOutcome::NoPending
        );
        // Activated, not booted yet.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(2, 1, false))),
            BootOutcome::WaitingForReboot
        );
        // Booted it.
        assert_eq!(
            classify_boot(Some(&p), Slot::B, pair(GptPrio::new(2, 0, false))),
            BootOutcome::BootedNew
        );
        // Tried, never confirmed, back on A.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(2, 0, false))),
            BootOutcome::RolledBack
        );
        // Never activated, or cleared by a later update.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(0, 0, false))),
            BootOutcome::Stale
        );
        // Confirmed once, then the admin went back by hand: not a failure.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(1, 0, true))),
            BootOutcome::Stale
        );
        assert_eq!(
            classify_boot(Some(&pending("x")), Slot::A, pair(good)),
            BootOutcome::Stale
        );
    }
}
