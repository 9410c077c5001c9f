//! A FleetLock client (the protocol of Fedora CoreOS's Zincati and the
//! airlock server): a counting semaphore per group behind two HTTP calls,
//! so a node can use an existing FleetLock server instead of etcd.
//!
//! - `POST <base>/v1/pre-reboot`: take a reboot slot (recursive: a holder
//!   asking again gets 200 again);
//! - `POST <base>/v1/steady-state`: give it back (a node that holds
//!   nothing gets 200 too).
//!
//! Both carry the header `fleet-lock-protocol: true` and the body
//! `{"client_params":{"id":"<machine-id>","group":"<group>"}}`. 200 means
//! done; anything else is a refusal, described by the server as
//! `{"kind":"…","value":"…"}` (e.g. `failed_lock_semaphore_full` when
//! every slot is taken).
//!
//! `http://` or `https://` (the server checked against the web PKI roots
//! built into the binary).

use std::io::Read;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the answer may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read.
const MAX_BODY: u64 = 64 * 1024;

/// What the server answered besides 200, or why there was no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FleetLockError {
    /// The URL is not `http://…` or `https://…`.
    #[error(
        "fleetlock url {url:?} must start with http:// or https://: set [fleetlock] url in agent.toml"
    )]
    Url {
        /// The URL.
        url: String,
    },
    /// The id or group is not what the protocol allows.
    #[error("fleetlock {what} {value:?} is invalid: {why}")]
    Param {
        /// `id` or `group`.
        what: &'static str,
        /// The value.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
    /// No answer (connection refused, timeout, DNS).
    #[error(
        "FleetLock server {url} did not answer: {msg} (is [fleetlock] url right and the server up?)"
    )]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The cause.
        msg: String,
    },
    /// The server refused, saying why.
    #[error("FleetLock server {url} refused (HTTP {status}, {kind}): {value}")]
    Refused {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error kind (`failed_lock_semaphore_full`, …), or `http`
        /// when the server sent no FleetLock error.
        kind: String,
        /// Its description.
        value: String,
    },
}

impl FleetLockError {
    /// Whether the server said every slot is taken (wait and ask again),
    /// as opposed to a failure (back off).
    pub fn is_full(&self) -> bool {
        matches!(self, FleetLockError::Refused { kind, .. } if kind.contains("full"))
    }
}

/// The request body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// The client's parameters.
    pub client_params: ClientParams,
}

/// `client_params`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientParams {
    /// The lock holder's id (the machine id).
    pub id: String,
    /// The reboot group.
    pub group: String,
}

/// An error as the protocol describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Error type.
    pub kind: String,
    /// Description.
    pub value: String,
}

/// Whether `group` is a FleetLock group name (`^[a-zA-Z0-9.-]+$`).
pub fn valid_group(group: &str) -> bool {
    !group.is_empty()
        && group.len() <= 63
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// A FleetLock client for one node.
#[derive(Debug)]
pub struct FleetLock {
    agent: ureq::Agent,
    base: String,
    params: ClientParams,
}

impl FleetLock {
    /// A client of the server at `base` (`http://host:port[/path]`) for the
    /// node `id` in `group`.
    pub fn new(base: &str, id: &str, group: &str) -> Result<FleetLock, FleetLockError> {
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(FleetLockError::Url { url: base.into() });
        }
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            return Err(FleetLockError::Param {
                what: "id",
                value: id.into(),
                why: "a non-empty label without control characters",
            });
        }
        if !valid_group(group) {
            return Err(FleetLockError::Param {
                what: "group",
                value: group.into(),
                why: "letters, digits, '.' and '-' (at most 63)",
            });
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("tandem-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(FleetLock {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
            params: ClientParams {
                id: id.into(),
                group: group.into(),
            },
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Takes a reboot slot (`/v1/pre-reboot`); `Ok` once it is held.
    pub fn pre_reboot(&self) -> Result<(), FleetLockError> {
        self.post("/v1/pre-reboot")
    }

    /// Gives the slot back (`/v1/steady-state`); `Ok` also when none was
    /// held.
    pub fn steady_state(&self) -> Result<(), FleetLockError> {
        self.post("/v1/steady-state")
    }

    fn post(&self, endpoint: &str) -> Result<(), FleetLockError> {
        let url = format!("{}{endpoint}", self.base);
        let body = serde_json::to_vec(&Body {
            client_params: self.params.clone(),
        })
        .unwrap_or_default();
        let resp = self
            .agent
            .post(&url)
            .header("fleet-lock-protocol", "true")
            .header("content-type", "application/json")
            .send(&body[..])
            .map_err(|e| FleetLockError::Unreachable {
                url: url.clone(),
                msg: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let mut text = Vec::new();
        // The body of a 200 is not used; of an error it says why.
        let _ = resp
            .into_body()
            .into_reader()
            .take(MAX_BODY)
            .read_to_end(&mut text);
        if status == 200 {
            return Ok(());
        }
        let (kind, value) = match serde_json::from_slice::<ErrorBody>(&text) {
            Ok(e) => (e.kind, e.value),
            Err(_) => (
                "http".to_string(),
                String::from_utf8_lossy(&text)
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
            ),
        };
        Err(FleetLockError::Refused {
            url,
            status,
            kind,
            value: if value.is_empty() {
                "(no description)".into()
            } else {
                value
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_format() {
        let b = Body {
            client_params: ClientParams {
                id: "c988d2509fdf4cdcbed39037c56406fb".into(),
                group: "workers".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&b).expect("json"),
            r#"{"client_params":{"id":"c988d2509fdf4cdcbed39037c56406fb","group":"workers"}}"#
        );
    }

    #[test]
    fn parameters_are_checked() {
        assert!(matches!(
            FleetLock::new("ftp://x", "id", "default"),
            Err(FleetLockError::Url { .. })
        ));
        assert!(matches!(
            FleetLock::new("http://x", "", "default"),
            Err(FleetLockError::Param { what: "id", .. })
        ));
        for bad in ["", "a_b", "a b", "ü"] {
            assert!(!valid_group(bad), "{bad}");
            assert!(matches!(
                FleetLock::new("http://x", "id", bad),
                Err(FleetLockError::Param { what: "group", .. })
            ));
        }
        for ok in ["default", "workers-1", "a.b"] {
            assert!(valid_group(ok), "{ok}");
        }
        let c = FleetLock::new("http://h:3333/base/", "id", "default").expect("ok");
        assert_eq!(c.base(), "http://h:3333/base");
    }

    #[test]
    fn unreachable_server() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let c = FleetLock::new(&format!("http://127.0.0.1:{port}"), "id", "default").expect("ok");
        let e = c.pre_reboot().expect_err("nothing listens");
        assert!(matches!(e, FleetLockError::Unreachable { .. }), "{e}");
        assert!(!e.is_full());
    }
}
