//! What a boot means for an earlier update, from `state.json`'s pending
//! record and the slot table: pure, so every case has a unit test. The
//! engine acts on it in [`super::Engine::boot_outcome`].

use tandem_contract::incident::{Incident, IncidentKind};
use tandem_contract::node::Evidence;
use tandem_slot::{Slot, SlotPair, TRIAL_BOOTS};

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

/// Why the pending update's slot was given up, and what shows it: the new
/// slot's own verdict (its health checks, written into `pending` before it
/// asked to go back), an incident its early boot left on ROOT, or nothing
/// at all, when every trial boot was cut short.
pub fn rollback_reason(p: &Pending, running: Slot, incidents: &[Incident]) -> (String, Evidence) {
    if let Some(f) = &p.failure {
        return (f.clone(), Evidence::HealthChecks);
    }
    let of_slot = incidents
        .iter()
        .rev()
        .find(|i| Slot::parse(&p.slot) == Some(i.slot));
    match of_slot {
        Some(i) if i.kind == IncidentKind::BootFailed => {
            return (
                format!("the early boot of slot {} failed: {}", i.slot, i.what),
                Evidence::EarlyBoot,
            );
        }
        // The disk, not the release: nothing for the cluster to stop for.
        Some(i) => {
            return (
                format!(
                    "slot {}'s /usr turned out corrupt on disk: {}",
                    i.slot, i.what
                ),
                Evidence::None,
            );
        }
        None => {}
    }
    (
        format!(
            "slot {} did not confirm a healthy boot of {} in {TRIAL_BOOTS} boots, and none of them recorded a failure (each ended by a power cut, a reset, a hang or a crash the node could not record); the bootloader went back to slot {running}",
            p.slot, p.version
        ),
        Evidence::None,
    )
}

/// Which trial boot of its slot this is (1 for the first), from the tries
/// left after the bootloader spent one: more than 1 means earlier trial
/// boots ended before confirming and without a recorded failure.
pub fn trial_boot(tries_left: u8) -> u8 {
    TRIAL_BOOTS.saturating_sub(tries_left).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_contract::incident::FORMAT;
    use tandem_slot::GptPrio;

    #[test]
    fn a_rollback_names_its_evidence() {
        let mut p = pending("B");
        let incident = |slot, kind| Incident {
            format: FORMAT,
            slot,
            kind,
            what: "mounting /usr: no such device".into(),
            action: "slot B given up; slot A boots next".into(),
            at: 1,
        };
        let (why, ev) = rollback_reason(&p, Slot::A, &[]);
        assert_eq!(ev, Evidence::None);
        assert!(why.contains("none of them recorded a failure"), "{why}");
        // Incidents of the other slot are not evidence; corrupt /usr is the
        // disk's fault, said as such, not the release's.
        let other = [incident(Slot::A, IncidentKind::BootFailed)];
        assert_eq!(rollback_reason(&p, Slot::A, &other).1, Evidence::None);
        let corrupt = [incident(Slot::B, IncidentKind::UsrCorrupt)];
        let (why, ev) = rollback_reason(&p, Slot::A, &corrupt);
        assert_eq!(ev, Evidence::None);
        assert!(
            why.starts_with("slot B's /usr turned out corrupt on disk"),
            "{why}"
        );
        let (why, ev) =
            rollback_reason(&p, Slot::A, &[incident(Slot::B, IncidentKind::BootFailed)]);
        assert_eq!(ev, Evidence::EarlyBoot);
        assert_eq!(
            why,
            "the early boot of slot B failed: mounting /usr: no such device"
        );
        p.failure = Some("health check app failed".into());
        assert_eq!(
            rollback_reason(&p, Slot::A, &[incident(Slot::B, IncidentKind::BootFailed)]),
            ("health check app failed".into(), Evidence::HealthChecks)
        );
    }

    #[test]
    fn trial_boots_are_counted_from_the_tries_left() {
        assert_eq!(trial_boot(TRIAL_BOOTS - 1), 1);
        assert_eq!(trial_boot(0), TRIAL_BOOTS);
        assert_eq!(trial_boot(TRIAL_BOOTS), 1, "a slot set by hand");
        assert_eq!(trial_boot(15), 1);
    }

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
        // Activated, not booted yet (or only cut short so far).
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(2, TRIAL_BOOTS, false))),
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
