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
//! `{"kind":"…","value":"…"}`. "Every slot is taken" is not a protocol
//! error kind of its own: the protocol's example is
//! `failed_lock_semaphore_full`, while airlock (coreos/airlock, the
//! reference server) answers HTTP 500 `failed_lock` with the value `all
//! <n> semaphore slots currently locked`; [`FleetLockError::is_full`]
//! knows both. Airlock's other refusals: 400 `invalid_client_identity`
//! (header or body wrong), 400 `unknown_group`, 500 `failed_sem_init`
//! (its etcd), 500 `failed_lock` with `conflict on semaphore detected,
//! aborting` (a concurrent change: ask again).
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
    /// as opposed to a failure (back off): a kind that says `full` (the
    /// protocol's example `failed_lock_semaphore_full`), or airlock's
    /// `failed_lock` "all <n> semaphore slots currently locked".
    pub fn is_full(&self) -> bool {
        match self {
            FleetLockError::Refused { kind, value, .. } => {
                kind.contains("full")
                    || (kind == "failed_lock" && value.contains("slots currently locked"))
            }
            _ => false,
        }
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

    /// A FleetLock server in a thread with airlock's semantics (coreos/airlock
    /// `internal/server`, `internal/lock`): the header
    /// `fleet-lock-protocol: true` and a body with non-empty id and group
    /// or 400 `invalid_client_identity`; known groups only (400
    /// `unknown_group`); a semaphore of one slot per group, recursive
    /// lock, unlock-if-held. When full it answers `full` (status, kind,
    /// value): airlock's, or the protocol document's example.
    struct Fake {
        url: String,
        /// Holders per group.
        held: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>>,
        /// Requests seen: (path, status answered).
        seen: std::sync::Arc<std::sync::Mutex<Vec<(String, u16)>>>,
    }

    /// Airlock's answer when every slot is taken.
    const AIRLOCK_FULL: (u16, &str, &str) =
        (500, "failed_lock", "all 1 semaphore slots currently locked");

    impl Fake {
        fn start(full: (u16, &'static str, &'static str)) -> Fake {
            use std::io::{BufRead, BufReader, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let url = format!("http://{}/base", listener.local_addr().expect("addr"));
            let held =
                std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::from([
                    ("default".to_string(), Vec::new()),
                    ("workers".to_string(), Vec::new()),
                ])));
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (h, s) = (held.clone(), seen.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                    let mut request = String::new();
                    let _ = reader.read_line(&mut request);
                    let mut headers = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                        }
                    }
                    let header = |name: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.as_str())
                    };
                    let len = header("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    let _ = std::io::Read::read_exact(&mut reader, &mut body);
                    let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (status, answer) =
                        airlock(&h, full, &path, header("fleet-lock-protocol"), &body);
                    s.lock().expect("seen").push((path, status));
                    // Go's http.Error: the JSON and a newline, as text.
                    let text = answer.map(|a| format!("{a}\n")).unwrap_or_default();
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                }
            });
            Fake { url, held, seen }
        }

        fn client(&self, id: &str, group: &str) -> FleetLock {
            FleetLock::new(&self.url, id, group).expect("client")
        }

        fn holders(&self, group: &str) -> Vec<String> {
            self.held.lock().expect("held")[group].clone()
        }
    }

    /// What airlock answers: the status and, for an error, its JSON.
    fn airlock(
        held: &std::sync::Mutex<std::collections::BTreeMap<String, Vec<String>>>,
        full: (u16, &str, &str),
        path: &str,
        protocol: Option<&str>,
        body: &[u8],
    ) -> (u16, Option<String>) {
        let error = |status: u16, kind: &str, value: &str| {
            (
                status,
                Some(serde_json::json!({ "kind": kind, "value": value }).to_string()),
            )
        };
        if protocol != Some("true") {
            return error(
                400,
                "invalid_client_identity",
                "failed to validate client identity: wrong 'fleet-lock-protocol' header",
            );
        }
        let params = match serde_json::from_slice::<Body>(body) {
            Ok(b) => b.client_params,
            Err(e) => {
                return error(
                    400,
                    "invalid_client_identity",
                    &format!("failed to validate client identity: {e}"),
                );
            }
        };
        if params.id.is_empty() || params.group.is_empty() {
            return error(
                400,
                "invalid_client_identity",
                "failed to validate client identity: empty client ID or group",
            );
        }
        let mut held = held.lock().expect("held");
        let Some(holders) = held.get_mut(&params.group) else {
            return error(
                400,
                "unknown_group",
                &format!("unknown group {:?}", params.group),
            );
        };
        match path {
            "/base/v1/pre-reboot" => {
                if holders.contains(&params.id) {
                    (200, None)
                } else if !holders.is_empty() {
                    error(full.0, full.1, full.2)
                } else {
                    holders.push(params.id);
                    (200, None)
                }
            }
            "/base/v1/steady-state" => {
                holders.retain(|h| *h != params.id);
                (200, None)
            }
            _ => (404, Some("404 page not found".into())),
        }
    }

    #[test]
    fn the_protocol_against_airlock_semantics() {
        let server = Fake::start(AIRLOCK_FULL);
        let a = server.client("node-a", "default");
        let b = server.client("node-b", "default");
        // Steady-state without holding anything: 200.
        a.steady_state().expect("steady-state, nothing held");
        a.pre_reboot().expect("a takes the slot");
        assert_eq!(server.holders("default"), ["node-a"]);
        // Recursive: the holder asks again.
        a.pre_reboot().expect("a again");
        // Full: b must wait, and is told so.
        let e = b.pre_reboot().expect_err("full");
        assert!(e.is_full(), "{e:?}");
        match &e {
            FleetLockError::Refused {
                status,
                kind,
                value,
                url,
            } => {
                assert_eq!((*status, kind.as_str()), (500, "failed_lock"));
                assert_eq!(value, "all 1 semaphore slots currently locked");
                assert!(url.ends_with("/base/v1/pre-reboot"), "{url}");
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("HTTP 500") && text.contains("slots currently locked"),
            "{text}"
        );
        // Another group has its own slot.
        server
            .client("node-b", "workers")
            .pre_reboot()
            .expect("other group");
        // b's steady-state gives nothing back (it holds nothing).
        b.steady_state().expect("b steady-state");
        assert_eq!(server.holders("default"), ["node-a"]);
        a.steady_state().expect("a gives the slot back");
        b.pre_reboot().expect("b's turn");
        assert_eq!(server.holders("default"), ["node-b"]);
        // Every request carried the header and a body airlock accepts:
        // nothing was refused but the one pre-reboot while full.
        let statuses: Vec<u16> = server
            .seen
            .lock()
            .expect("seen")
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(statuses, [200, 200, 200, 500, 200, 200, 200, 200]);
    }

    #[test]
    fn full_in_the_protocol_documents_words() {
        // The protocol document's example kind, with another status.
        let server = Fake::start((
            409,
            "failed_lock_semaphore_full",
            "semaphore currently full, all slots are locked already",
        ));
        server.client("node-a", "default").pre_reboot().expect("a");
        let e = server
            .client("node-b", "default")
            .pre_reboot()
            .expect_err("full");
        assert!(e.is_full(), "{e:?}");
        assert!(e.to_string().contains("HTTP 409"), "{e}");
    }

    #[test]
    fn refusals_that_are_not_full() {
        let server = Fake::start(AIRLOCK_FULL);
        // A group airlock is not configured for.
        let e = server
            .client("node-a", "db")
            .pre_reboot()
            .expect_err("unknown group");
        assert!(!e.is_full(), "{e:?}");
        let text = e.to_string();
        assert!(
            text.contains("HTTP 400") && text.contains("unknown_group") && text.contains("\"db\""),
            "{text}"
        );
        // Airlock's compare-and-swap lost a race: failed_lock, but not full.
        let conflict = FleetLockError::Refused {
            url: "u".into(),
            status: 500,
            kind: "failed_lock".into(),
            value: "conflict on semaphore detected, aborting".into(),
        };
        assert!(!conflict.is_full());
        // Something that is no FleetLock server.
        let e = FleetLock::new(&format!("{}/elsewhere", server.url), "node-a", "default")
            .expect("client")
            .pre_reboot()
            .expect_err("404");
        assert!(!e.is_full(), "{e:?}");
        assert!(e.to_string().contains("HTTP 404"), "{e}");
        // Without the header, airlock refuses: the fake checks it.
        let (status, answer) = airlock(
            &server.held,
            AIRLOCK_FULL,
            "/base/v1/pre-reboot",
            None,
            br#"{"client_params":{"id":"x","group":"default"}}"#,
        );
        assert_eq!(status, 400);
        assert!(
            answer
                .unwrap_or_default()
                .contains("invalid_client_identity")
        );
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
