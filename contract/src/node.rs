//! The node's states as other crates see them: the update engine's state
//! (its kind, without details) and the reboot agent's state. The updater's
//! status socket, the agent's report to the updater, the fleet records in
//! etcd and `tandem cluster status` carry them; every reader matches the
//! enum, so a renamed state is a compile error, not a text that silently
//! stops matching.
//!
//! The serialised names are the wire format (JSON on the socket, in etcd,
//! `--json` output) and never change.

/// A text that names none of an enum's states.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {what} (one of: {known})")]
pub struct UnknownState {
    /// The text read.
    pub text: String,
    /// What it should have been (`an update state`).
    pub what: &'static str,
    /// The known names, comma-separated.
    pub known: String,
}

/// Defines a state enum whose every name is written once: serialised,
/// displayed and parsed as that text, with [`UnknownState`] naming the
/// known ones when a text is none of them.
macro_rules! state_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as ::serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }

        impl $name {
            /// Every state, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The state's name as serialised.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::node::UnknownState;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::node::UnknownState {
                        text: s.to_string(),
                        what: $what,
                        known: $name::ALL
                            .iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
    };
}

pub(crate) use state_enum;

state_enum! {
    /// Which state the update engine is in, without its details (the
    /// updater's `UpdateState` carries those; its `kind()` is this). The
    /// `state` tag of the updater's status and `update_state` of a fleet
    /// record.
    UpdateStateKind, "an update state" {
        /// Nothing to do.
        Idle = "idle",
        /// Fetching and checking the channel pointer and manifest.
        Checking = "checking",
        /// A verified update waits for this node's turn.
        UpdateAvailable = "update-available",
        /// Writing the inactive slot.
        Downloading = "downloading",
        /// Re-reading the written slot against the verity root hash.
        Verifying = "verifying",
        /// Kernel, initramfs and slot file to the ESP, then the slot flip.
        Finalizing = "finalizing",
        /// Installed and activated; the next boot runs it.
        UpdatedNeedReboot = "updated-need-reboot",
        /// The installed version did not come up.
        RolledBack = "rolled-back",
        /// Something failed.
        Error = "error",
    }
}

state_enum! {
    /// The reboot agent's state: reported to the updater (`agent:` line of
    /// `tandemctl update status`) and published in the fleet record
    /// (`agent_state`).
    AgentState, "an agent state" {
        /// Nothing to do.
        Idle = "idle",
        /// Strategy `off`: a reboot is needed, nobody does it.
        RebootNeeded = "reboot-needed",
        /// An update waits for the reboot window.
        WaitingForWindow = "waiting-for-window",
        /// An update waits for the cluster's lock.
        WaitingForLock = "waiting-for-lock",
        /// The reboot was asked for.
        Rebooting = "rebooting",
        /// The lock is held after the reboot, until this boot is confirmed
        /// (or for good, when it failed: stop the line).
        HoldingLock = "holding-lock",
        /// The installed version failed elsewhere in the cluster: no reboot
        /// into it.
        Blocked = "blocked",
        /// Something is wrong; the message says what to do.
        Error = "error",
    }
}

state_enum! {
    /// Whether the running boot is confirmed: the `boot` of the updater's
    /// status, without its details, as the fleet record carries it.
    BootHealthKind, "a boot health" {
        /// Not looked at yet.
        Unknown = "unknown",
        /// The running slot is marked successful.
        Confirmed = "confirmed",
        /// On trial: health checks are running.
        Checking = "checking",
        /// Health failed: the slot was given up.
        Failed = "failed",
    }
}

state_enum! {
    /// What shows that a new slot failed, rather than that its trial was
    /// cut short. Only a failure with evidence stops a rollout for the
    /// cluster.
    Evidence, "evidence of a failed trial" {
        /// Its health checks failed or did not pass by the deadline.
        HealthChecks = "health-checks",
        /// Its early boot failed (`tandem-init: FATAL`), recorded on ROOT.
        EarlyBoot = "early-boot",
        /// None: every trial boot ended without a recorded failure (power
        /// cuts, resets, hangs or crashes the node could not record).
        None = "none",
    }
}

impl Evidence {
    /// Whether this is evidence against the release (not just no news).
    pub fn is_failure(self) -> bool {
        self != Evidence::None
    }
}

/// Serde for an `Option<T>` written as `""` when absent (the fleet
/// record's `version`, `slot` and states, which were plain strings with an
/// empty default): `None` ⇄ `""`, `Some(t)` ⇄ `t`'s own form. A missing
/// field needs `#[serde(default)]` as well.
pub mod empty_as_none {
    use serde::de::{DeserializeOwned, IntoDeserializer};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// `None` as `""`.
    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => t.serialize(s),
            None => s.serialize_str(""),
        }
    }

    /// `""` (or `null`) as `None`; anything else must parse as `T`.
    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) if text.is_empty() => Ok(None),
            Some(text) => {
                let de: serde::de::value::StringDeserializer<D::Error> = text.into_deserializer();
                T::deserialize(de).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::str::FromStr;

    use serde::{Deserialize, Serialize};

    use super::*;

    fn round_trip<T>(all: &[T], today: &[&str])
    where
        T: Copy + fmt::Debug + PartialEq + Serialize + for<'de> Deserialize<'de> + FromStr,
        T: fmt::Display,
    {
        assert_eq!(all.len(), today.len(), "a state without its name");
        for (v, text) in all.iter().zip(today) {
            let json = serde_json::to_string(v).expect("json");
            assert_eq!(json, format!("\"{text}\""), "{v:?}");
            let back: T = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, *v);
            assert_eq!(v.to_string(), *text);
            assert!(text.parse::<T>().ok() == Some(*v), "{text}");
        }
    }

    #[test]
    fn update_states_keep_their_names() {
        round_trip(
            UpdateStateKind::ALL,
            &[
                "idle",
                "checking",
                "update-available",
                "downloading",
                "verifying",
                "finalizing",
                "updated-need-reboot",
                "rolled-back",
                "error",
            ],
        );
    }

    #[test]
    fn boot_health_keeps_its_names() {
        round_trip(
            BootHealthKind::ALL,
            &["unknown", "confirmed", "checking", "failed"],
        );
    }

    #[test]
    fn agent_states_keep_their_names() {
        round_trip(
            AgentState::ALL,
            &[
                "idle",
                "reboot-needed",
                "waiting-for-window",
                "waiting-for-lock",
                "rebooting",
                "holding-lock",
                "blocked",
                "error",
            ],
        );
    }

    #[test]
    fn unknown_states_say_what_they_should_be() {
        let e = "dancing".parse::<AgentState>().expect_err("unknown");
        let text = e.to_string();
        assert!(
            text.contains("\"dancing\" is not an agent state") && text.contains("holding-lock"),
            "{text}"
        );
        let e = serde_json::from_str::<UpdateStateKind>("\"Idle\"").expect_err("case matters");
        assert!(
            e.to_string().contains("\"Idle\" is not an update state"),
            "{e}"
        );
        assert_eq!(format!("{:<6}|", AgentState::Idle), "idle  |");
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        #[serde(default, with = "empty_as_none")]
        version: Option<crate::Version>,
        #[serde(default, with = "empty_as_none")]
        slot: Option<crate::Slot>,
        #[serde(default, with = "empty_as_none")]
        state: Option<AgentState>,
    }

    #[test]
    fn empty_text_is_none_and_stays_empty() {
        let none = Rec {
            version: None,
            slot: None,
            state: None,
        };
        let json = serde_json::to_string(&none).expect("json");
        assert_eq!(json, r#"{"version":"","slot":"","state":""}"#);
        assert_eq!(serde_json::from_str::<Rec>(&json).expect("parse"), none);
        assert_eq!(serde_json::from_str::<Rec>("{}").expect("parse"), none);
        let some: Rec =
            serde_json::from_str(r#"{"version":"1.01.0","slot":"B","state":"holding-lock"}"#)
                .expect("parse");
        assert_eq!(some.slot, Some(crate::Slot::B));
        assert_eq!(some.state, Some(AgentState::HoldingLock));
        assert_eq!(
            serde_json::to_string(&some).expect("json"),
            r#"{"version":"1.1.0","slot":"B","state":"holding-lock"}"#
        );
        for bad in [
            r#"{"version":"v1"}"#,
            r#"{"slot":"C"}"#,
            r#"{"state":"dancing"}"#,
        ] {
            let e = serde_json::from_str::<Rec>(bad).expect_err(bad);
            assert!(!e.to_string().is_empty());
        }
        let e = serde_json::from_str::<Rec>(r#"{"version":"v1"}"#).expect_err("bad");
        assert!(e.to_string().contains("not a version"), "{e}");
    }
}
