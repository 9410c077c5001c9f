//! What a check found and what it leads to: pure decisions over a verified
//! offer (the I/O is [`super::Engine::check`]).

use crate::status::UpdateState;
use crate::version::Version;
use repository::repo::{ChannelPointer, Manifest};

/// A verified update the channel offers.
#[derive(Clone, Debug)]
pub struct Offer {
    /// The verified pointer.
    pub pointer: ChannelPointer,
    /// The verified manifest.
    pub manifest: Manifest,
    /// sha256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// When this node's rollout turn comes (Unix seconds).
    pub eligible_at: u64,
}

/// What a check found.
#[derive(Clone, Debug)]
pub enum CheckOutcome {
    /// The channel serves the running version.
    UpToDate {
        /// The version.
        version: Version,
        /// The channel.
        channel: String,
    },
    /// An update.
    Available(Box<Offer>),
}

/// What to do after a successful check.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Nothing: the state to show.
    Show(UpdateState),
    /// Install now.
    Install,
}

/// Decides what a found update leads to: install now (the node's turn has
/// come, or `force`), or wait (for the turn, or for this boot to be
/// confirmed), or nothing (the same version already waits for a reboot).
pub fn after_check(
    offer: &Offer,
    now: u64,
    force: bool,
    confirmed: bool,
    current: &UpdateState,
) -> Next {
    let version = offer.pointer.version.clone();
    if let UpdateState::UpdatedNeedReboot { version: v, .. } = current
        && *v == version
    {
        return Next::Show(current.clone());
    }
    let waiting_for = if !confirmed {
        Some(
            "this boot to be confirmed healthy (its fallback slot must not be overwritten)"
                .to_string(),
        )
    } else if !force && offer.eligible_at > now {
        None
    } else {
        return Next::Install;
    };
    Next::Show(UpdateState::UpdateAvailable {
        version,
        eligible_at: offer.eligible_at,
        waiting_for,
    })
}

/// Whether two version texts (from the status, the agent, a refusal) name
/// the same version: `1.1`, `1.01` and `1.1.0` do.
pub(crate) fn same_version(a: &str, b: &str) -> bool {
    a == b
        || a.parse::<Version>()
            .is_ok_and(|a| b.parse::<Version>().is_ok_and(|b| a == b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use repository::repo::{FileRef, Rollout};

    fn offer(version: &str, eligible_at: u64) -> Offer {
        let m = repository::repo::testing::sample();
        Offer {
            pointer: ChannelPointer {
                format: 1,
                image: "demo".into(),
                channel: "stable".into(),
                version: version.parse().expect("v"),
                manifest: FileRef {
                    path: "m".into(),
                    size: 1,
                    sha256: "a".repeat(64),
                },
                rollout: Rollout {
                    start: 0,
                    duration_secs: 0,
                },
                issued: 0,
                expires: 1,
            },
            manifest: m,
            manifest_sha256: String::new(),
            eligible_at,
        }
    }

    #[test]
    fn checks_lead_to_installs_when_due() {
        let idle = UpdateState::Idle;
        assert_eq!(
            after_check(&offer("1.1", 100), 200, false, true, &idle),
            Next::Install
        );
        assert!(matches!(
            after_check(&offer("1.1", 300), 200, false, true, &idle),
            Next::Show(UpdateState::UpdateAvailable {
                eligible_at: 300,
                waiting_for: None,
                ..
            })
        ));
        assert_eq!(
            after_check(&offer("1.1", 300), 200, true, true, &idle),
            Next::Install,
            "apply overrides the wait"
        );
        assert!(matches!(
            after_check(&offer("1.1", 100), 200, true, false, &idle),
            Next::Show(UpdateState::UpdateAvailable {
                waiting_for: Some(_),
                ..
            })
        ));
        let waiting = UpdateState::UpdatedNeedReboot {
            version: "1.1".parse().expect("a version"),
            slot: tandem_slot::Slot::B,
        };
        assert_eq!(
            after_check(&offer("1.1", 100), 200, true, true, &waiting),
            Next::Show(waiting.clone())
        );
        assert_eq!(
            after_check(&offer("1.2", 100), 200, false, true, &waiting),
            Next::Install
        );
        // The same version spelt differently is still the one waiting.
        for same in ["1.01", "1.1.0"] {
            assert_eq!(
                after_check(&offer(same, 100), 200, true, true, &waiting),
                Next::Show(waiting.clone()),
                "{same}"
            );
        }
        assert!(same_version("1.1", "1.1.0") && !same_version("1.1", "1.10"));
        assert!(!same_version("x", "y") && same_version("x", "x"));
    }
}
