//! An etcd v3 client over etcd's JSON gateway (`/v3/...`, plain HTTP+JSON
//! through `ureq`), enough for the reboot semaphore and the fleet records:
//! linearizable reads, compare-and-swap transactions, leases, a key's
//! history and a one-shot watch.
//!
//! The gateway's conventions, handled here so callers never see them: keys
//! and values are base64; 64-bit numbers (revisions, lease IDs) are JSON
//! strings; false, zero and empty fields are left out (a missing key has no
//! `kvs`, a failed transaction no `succeeded`, an expired lease no `TTL`).
//!
//! - Reads are linearizable (etcd's default; never `serializable`): a
//!   read sees every write acknowledged before it (locksmith read stale
//!   state, coreos/bugs#852).
//! - Every change is a transaction guarded by a compare ([`Etcd::cas`],
//!   [`Etcd::delete`]): [`Expect::Absent`] (create revision 0) or
//!   [`Expect::ModRevision`]. [`Etcd::put`] is the one unconditional write,
//!   for records only their owner writes.
//! - Endpoints fail over: a request that cannot reach an endpoint, or that
//!   the endpoint answers with "unavailable" (no leader, leader changed,
//!   request timed out), goes to the next; the client remembers which one
//!   answered. When none answers the error is [`Error::Unavailable`]; the
//!   caller backs off ([`Error::is_transient`]).
//! - Authentication (`Auth::Password`): the token from
//!   `/v3/auth/authenticate` goes in the `Authorization` header and is
//!   renewed when etcd says it is invalid. TLS: a CA to check the server
//!   and a client certificate ([`Tls`]), for `https://` endpoints. A failed
//!   handshake (server certificate not trusted, client certificate missing
//!   or refused) is [`Error::TlsSession`], saying which setting to check,
//!   not "unreachable": it is a setting to fix, not an outage.
//!
//! Every request has a deadline ([`REQUEST_TIMEOUT`], or
//! [`Etcd::with_timeout`]); nothing blocks forever. A write whose answer
//! was lost (timeout, endpoint died) may or may not have happened: retrying
//! the same compare-and-swap is safe (it fails if the first one landed),
//! and callers re-read.
//!
//! ```no_run
//! use agent::etcd::{Auth, Etcd, Expect, Tls};
//!
//! let etcd = Etcd::new(&["http://127.0.0.1:2379"], Auth::None, &Tls::default())?;
//! match etcd.range("demo/key")? {
//!     None => {
//!         etcd.cas("demo/key", Expect::Absent, b"1", None)?;
//!     }
//!     Some(kv) => {
//!         // Only if nobody changed it since it was read.
//!         let done = etcd.cas("demo/key", Expect::ModRevision(kv.mod_revision), b"2", None)?;
//!         println!("{}", if done.is_some() { "swapped" } else { "someone was first" });
//!     }
//! }
//! # Ok::<(), agent::etcd::Error>(())
//! ```

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// How long connecting to an endpoint may take before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request may take (etcd itself gives up on a write
/// after about 7 s without a leader, and says so).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (a range over many fleet records).
const MAX_BODY: u64 = 32 << 20;

/// gRPC status codes etcd puts in its error answers (`"code"`).
pub mod code {
    /// The request was cancelled.
    pub const CANCELLED: i32 = 1;
    /// Bad request; also "user name is empty" (auth is on, no token sent).
    pub const INVALID_ARGUMENT: i32 = 3;
    /// The request took too long inside etcd.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// Not found (a lease).
    pub const NOT_FOUND: i32 = 5;
    /// The user may not do this.
    pub const PERMISSION_DENIED: i32 = 7;
    /// Quota: "database space exceeded" (etcd is read-only) or "too many requests".
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// Precondition: e.g. "authentication is not enabled".
    pub const FAILED_PRECONDITION: i32 = 9;
    /// Aborted.
    pub const ABORTED: i32 = 10;
    /// A revision that is compacted or in the future.
    pub const OUT_OF_RANGE: i32 = 11;
    /// No leader, leader changed, request timed out: try another member.
    pub const UNAVAILABLE: i32 = 14;
    /// The auth token is not (or no longer) valid.
    pub const UNAUTHENTICATED: i32 = 16;
}

/// Everything the etcd client can fail at; each names the endpoint, the
/// operation and the key, and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No endpoint is configured.
    #[error(
        "no etcd endpoints: set [etcd] endpoints = [\"http://<host>:2379\"] in /etc/tandem/agent.toml (or pass --etcd)"
    )]
    NoEndpoints,
    /// An endpoint is not an `http://` or `https://` URL.
    #[error(
        "etcd endpoint {endpoint:?} is not a URL: use http://<host>:<port> or https://<host>:<port> ([etcd] endpoints)"
    )]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// A TLS file cannot be read or does not hold what it should.
    #[error("etcd TLS: {what} {path}: {msg}")]
    TlsFile {
        /// `ca-file`, `cert-file` or `key-file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The TLS settings do not fit together.
    #[error("etcd TLS: {0}")]
    Tls(String),
    /// No TLS session with any endpoint: etcd's certificate is not trusted,
    /// or etcd refused the client's (a setting to fix, not an outage).
    #[error("etcd at {endpoint}: {op} {key}: TLS handshake failed: {msg}: {hint}")]
    TlsSession {
        /// The endpoint (the last one where TLS failed).
        endpoint: String,
        /// The operation.
        op: &'static str,
        /// The key (or lease).
        key: String,
        /// What rustls said.
        msg: String,
        /// What to check.
        hint: &'static str,
    },
    /// No endpoint answered (refused, timed out, or "unavailable").
    #[error(
        "etcd unreachable: {op} {key}: {detail} (tried {endpoints}): check that etcd runs and that [etcd] endpoints lists its client URLs"
    )]
    Unavailable {
        /// The operation (`range`, `txn`, ...).
        op: &'static str,
        /// The key (or lease).
        key: String,
        /// Every endpoint tried.
        endpoints: String,
        /// What happened at the last one.
        detail: String,
    },
    /// etcd answered with an error.
    #[error("etcd at {endpoint}: {op} {key} failed: {message} (code {code}){hint}")]
    Refused {
        /// The endpoint that answered.
        endpoint: String,
        /// The operation.
        op: &'static str,
        /// The key (or lease).
        key: String,
        /// gRPC status code ([`code`]).
        code: i32,
        /// etcd's message.
        message: String,
        /// What to do, when known (starts with `: `).
        hint: &'static str,
    },
    /// Authentication failed.
    #[error(
        "etcd at {endpoint}: authenticating as {user:?} failed: {message}: check [etcd] username and password-file"
    )]
    Auth {
        /// The endpoint.
        endpoint: String,
        /// The user name.
        user: String,
        /// etcd's message.
        message: String,
    },
    /// The answer is not what etcd's gateway sends.
    #[error(
        "etcd at {endpoint}: {op} {key}: unexpected answer ({msg}): is this the client URL of an etcd 3.4 or later?"
    )]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// What is wrong.
        msg: String,
    },
}

impl Error {
    /// Whether trying again later can help (etcd down, no leader,
    /// read-only, overloaded), as opposed to a wrong setting or request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } | Error::Protocol { .. } => true,
            Error::Refused { code, .. } => matches!(
                *code,
                code::CANCELLED
                    | code::DEADLINE_EXCEEDED
                    | code::RESOURCE_EXHAUSTED
                    | code::ABORTED
                    | code::UNAVAILABLE
            ),
            _ => false,
        }
    }

    /// etcd's gRPC code, when etcd answered with an error.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How the client authenticates.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No authentication (or TLS client certificates only).
    #[default]
    None,
    /// etcd v3 user and password (`etcdctl user add`, `auth enable`).
    Password {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Password { user, .. } => write!(f, "Password {{ user: {user:?}, .. }}"),
        }
    }
}

/// TLS files, all PEM. Only used for `https://` endpoints; none set means
/// the server is checked against the Mozilla roots built in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificate(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (chain) for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl Tls {
    /// Whether any TLS file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// A key and its value, as of a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    /// The key (non-UTF-8 bytes replaced).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the key's creation (since its last deletion).
    pub create_revision: u64,
    /// Revision of the key's last change: what [`Expect::ModRevision`] compares.
    pub mod_revision: u64,
    /// Number of changes since creation (1 = just created).
    pub version: u64,
    /// The lease the key is attached to.
    pub lease: Option<i64>,
}

impl Kv {
    /// The value as text (non-UTF-8 bytes replaced).
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

/// What a guarded write expects the key to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist (its create revision is 0).
    Absent,
    /// The key exists, last changed at this revision.
    ModRevision(u64),
}

/// An etcd v3 client. Cheap to share between threads (`&Etcd` is enough;
/// requests from several threads go out in parallel).
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    auth: Auth,
    /// Whether a client certificate is set (for the hints of TLS failures).
    client_cert: bool,
    /// The same TLS settings for rustls, to learn why etcd dropped a
    /// connection ([`Etcd::probe_tls`]); with a ca-file only.
    probe: Option<std::sync::Arc<rustls::ClientConfig>>,
    token: Mutex<Option<String>>,
    current: AtomicUsize,
    timeout: Duration,
}

impl fmt::Debug for Etcd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One failed attempt at one endpoint.
enum Attempt {
    /// Try the next endpoint.
    Next(String),
    /// The token was refused: authenticate again, then retry.
    Reauth(String),
    /// TLS failed at this endpoint: try the next; this is the error if
    /// none answers.
    Tls(Error),
    /// A final answer.
    Fail(Error),
}

impl Attempt {
    /// A refused token while getting one (authenticating) is this
    /// endpoint's failure: go on to the next.
    fn not_reauth(self) -> Attempt {
        match self {
            Attempt::Reauth(d) => Attempt::Next(d),
            other => other,
        }
    }
}

impl Etcd {
    /// A client for these endpoints (`http://host:port` or `https://…`;
    /// a trailing `/` is dropped). TLS files are read and checked now, so
    /// a wrong path or a certificate that does not match its key is an
    /// error here, not at the first request. Nothing is sent yet.
    pub fn new<S: AsRef<str>>(endpoints: &[S], auth: Auth, tls: &Tls) -> Result<Etcd, Error> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.as_ref().trim().trim_end_matches('/').to_string())
            .collect();
        if endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        for e in &endpoints {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                return Err(Error::Endpoint {
                    endpoint: e.clone(),
                });
            }
        }
        if tls.is_set()
            && let Some(plain) = endpoints.iter().find(|e| e.starts_with("http://"))
        {
            return Err(Error::Tls(format!(
                "TLS files are set but endpoint {plain} is http://: use https:// endpoints (or drop ca-file/cert-file/key-file)"
            )));
        }
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(concat!("tandem-agent/", env!("CARGO_PKG_VERSION")));
        let mut probe = None;
        if tls.is_set() {
            let (ureq_tls, rustls_config) = tls_config(tls)?;
            config = config.tls_config(ureq_tls);
            probe = rustls_config;
        }
        Ok(Etcd {
            endpoints,
            agent: config.build().into(),
            auth,
            client_cert: tls.cert_file.is_some(),
            probe,
            token: Mutex::new(None),
            current: AtomicUsize::new(0),
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// The same client with another deadline per request.
    pub fn with_timeout(mut self, timeout: Duration) -> Etcd {
        self.timeout = timeout;
        self
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The endpoint that answered last (where the next request goes first).
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::Relaxed) % self.endpoints.len()]
    }

    /// The key's current value, or `None`: a linearizable read.
    pub fn range(&self, key: &str) -> Result<Option<Kv>, Error> {
        Ok(self.range_with_revision(key)?.0)
    }

    /// The key's current value and the store's revision at the read.
    pub fn range_with_revision(&self, key: &str) -> Result<(Option<Kv>, u64), Error> {
        let v = self.call("range", key, "/v3/kv/range", &json!({ "key": b64(key) }))?;
        let kvs = self.kvs("range", key, &v)?;
        Ok((kvs.into_iter().next(), header_revision(&v)))
    }

    /// The key's value as of `revision` (`None`: it did not exist then).
    /// A compacted revision is an error with code [`code::OUT_OF_RANGE`].
    pub fn range_at(&self, key: &str, revision: u64) -> Result<Option<Kv>, Error> {
        let body = json!({ "key": b64(key), "revision": revision.to_string() });
        let v = self.call("range", key, "/v3/kv/range", &body)?;
        Ok(self.kvs("range", key, &v)?.into_iter().next())
    }

    /// Every key starting with `prefix`, sorted by key.
    pub fn range_prefix(&self, prefix: &str) -> Result<Vec<Kv>, Error> {
        let body = json!({
            "key": b64(prefix),
            "range_end": B64.encode(prefix_end(prefix.as_bytes())),
        });
        let v = self.call("range", prefix, "/v3/kv/range", &body)?;
        self.kvs("range", prefix, &v)
    }

    /// The store's current revision.
    pub fn revision(&self) -> Result<u64, Error> {
        let body = json!({ "key": b64("\0"), "count_only": true });
        let v = self.call("range", "(revision)", "/v3/kv/range", &body)?;
        Ok(header_revision(&v))
    }

    /// Writes `value` (attached to `lease`, if any) only if the key is as
    /// `expected`. `Some(revision)` of the write, or `None` when the
    /// compare failed (someone else changed the key: read it again).
    pub fn cas(
        &self,
        key: &str,
        expected: Expect,
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<Option<u64>, Error> {
        let mut put = json!({ "key": b64(key), "value": B64.encode(value) });
        if let Some(l) = lease {
            put["lease"] = json!(l.to_string());
        }
        self.txn(key, expected, json!({ "request_put": put }))
    }

    /// Deletes the key only if it is as `expected`: `Some(revision)`, or
    /// `None` when the compare failed. ([`Expect::Absent`] succeeds, and
    /// deletes nothing, when the key does not exist.)
    pub fn delete(&self, key: &str, expected: Expect) -> Result<Option<u64>, Error> {
        self.txn(
            key,
            expected,
            json!({ "request_delete_range": { "key": b64(key) } }),
        )
    }

    fn txn(&self, key: &str, expected: Expect, op: Value) -> Result<Option<u64>, Error> {
        let compare = match expected {
            Expect::Absent => json!({
                "key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0",
            }),
            Expect::ModRevision(rev) => json!({
                "key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string(),
            }),
        };
        let body = json!({ "compare": [compare], "success": [op] });
        let v = self.call("txn", key, "/v3/kv/txn", &body)?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            Ok(Some(header_revision(&v)))
        } else {
            Ok(None)
        }
    }

    /// Writes `value` whatever the key holds (for records only their owner
    /// writes, such as a node's own record on its lease); the revision.
    pub fn put(&self, key: &str, value: &[u8], lease: Option<i64>) -> Result<u64, Error> {
        let mut body = json!({ "key": b64(key), "value": B64.encode(value) });
        if let Some(l) = lease {
            body["lease"] = json!(l.to_string());
        }
        let v = self.call("put", key, "/v3/kv/put", &body)?;
        Ok(header_revision(&v))
    }

    /// A new lease of `ttl_secs` seconds; its ID.
    pub fn lease_grant(&self, ttl_secs: u64) -> Result<i64, Error> {
        let what = format!("(lease, ttl {ttl_secs} s)");
        let v = self.call(
            "lease grant",
            &what,
            "/v3/lease/grant",
            &json!({ "TTL": ttl_secs.to_string() }),
        )?;
        match v.get("ID").and_then(num_i64) {
            Some(id) if id != 0 => Ok(id),
            _ => Err(self.protocol("lease grant", &what, "no lease ID")),
        }
    }

    /// Renews the lease; its new TTL in seconds, or `None` when it has
    /// expired (or never existed): grant a new one.
    pub fn lease_keepalive(&self, id: i64) -> Result<Option<u64>, Error> {
        let what = format!("lease {id:x}");
        let v = self.call(
            "lease keepalive",
            &what,
            "/v3/lease/keepalive",
            &json!({ "ID": id.to_string() }),
        )?;
        let result = v.get("result").unwrap_or(&v);
        match result.get("TTL").and_then(num_u64) {
            Some(ttl) if ttl > 0 => Ok(Some(ttl)),
            _ => Ok(None),
        }
    }

    /// Ends the lease now, deleting its keys. An unknown lease is not an
    /// error.
    pub fn lease_revoke(&self, id: i64) -> Result<(), Error> {
        let what = format!("lease {id:x}");
        match self.call(
            "lease revoke",
            &what,
            "/v3/lease/revoke",
            &json!({ "ID": id.to_string() }),
        ) {
            Ok(_) => Ok(()),
            Err(Error::Refused { code, .. }) if code == code::NOT_FOUND => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every version of the key since it was last created, oldest first,
    /// read back from etcd's own history (one read per version, each at
    /// the revision before the next). Empty when the key does not exist.
    /// Needs the history not to be compacted.
    pub fn history(&self, key: &str) -> Result<Vec<Kv>, Error> {
        let mut out = Vec::new();
        let mut next = self.range(key)?;
        while let Some(kv) = next {
            let at = kv.mod_revision;
            let first = kv.version <= 1 || at <= kv.create_revision;
            out.push(kv);
            if first {
                break;
            }
            next = self.range_at(key, at - 1)?;
        }
        out.reverse();
        Ok(out)
    }

    /// Waits until the key changes after revision `after` (a watch from
    /// `after + 1`), at most `wait`. `Some(revision)` of the first change,
    /// `None` when nothing changed in time. Returns at once if the key
    /// already changed since `after`.
    pub fn watch_once(&self, key: &str, after: u64, wait: Duration) -> Result<Option<u64>, Error> {
        let deadline = Instant::now() + wait;
        let body = json!({ "create_request": {
            "key": b64(key),
            "start_revision": (after + 1).to_string(),
        }});
        let mut fo = Failover::new(self);
        while let Some((idx, endpoint)) = fo.next(self) {
            let token = match self.token(endpoint) {
                Ok(t) => t,
                Err(a) => {
                    fo.failed(self, a.not_reauth(), "watch", key, endpoint)?;
                    continue;
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let mut req = self
                .agent
                .post(format!("{endpoint}/v3/watch"))
                .config()
                .timeout_global(Some(left.max(Duration::from_millis(1))))
                .build()
                .header("content-type", "application/json");
            if let Some(t) = &token {
                req = req.header("authorization", t);
            }
            let resp = match req.send(body.to_string()) {
                Ok(r) => r,
                Err(e) if Instant::now() >= deadline => {
                    let _ = e;
                    return Ok(None);
                }
                Err(e) => {
                    fo.failed(
                        self,
                        self.send_failed("watch", key, endpoint, &e),
                        "watch",
                        key,
                        endpoint,
                    )?;
                    continue;
                }
            };
            if resp.status().as_u16() != 200 {
                let status = resp.status().as_u16();
                let text = read_body(resp).unwrap_or_default();
                let a = self.classify("watch", key, endpoint, status, &text);
                fo.failed(self, a, "watch", key, endpoint)?;
                continue;
            }
            self.current.store(idx, Ordering::Relaxed);
            let reader = resp.into_body().into_reader();
            let stream = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
            for item in stream {
                let v = match item {
                    Ok(v) => v,
                    // The deadline cut the stream: nothing changed in time.
                    Err(_) if Instant::now() + Duration::from_millis(5) >= deadline => {
                        return Ok(None);
                    }
                    Err(e) => {
                        return Err(Error::Unavailable {
                            op: "watch",
                            key: key.to_string(),
                            endpoints: endpoint.clone(),
                            detail: format!("the watch stream broke: {e}"),
                        });
                    }
                };
                if let Some(err) = v.get("error") {
                    let msg = err
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error");
                    return Err(Error::Refused {
                        endpoint: endpoint.clone(),
                        op: "watch",
                        key: key.to_string(),
                        code: err.get("grpc_code").and_then(num_i64).unwrap_or(0) as i32,
                        message: msg.to_string(),
                        hint: "",
                    });
                }
                let result = v.get("result").unwrap_or(&v);
                if let Some(events) = result.get("events").and_then(Value::as_array) {
                    let rev = events
                        .iter()
                        .filter_map(|e| e.get("kv")?.get("mod_revision").and_then(num_u64))
                        .min();
                    return Ok(Some(rev.unwrap_or_else(|| header_revision(result))));
                }
                if result.get("canceled").and_then(Value::as_bool) == Some(true) {
                    // Compacted past `after` (or cancelled): the caller re-reads.
                    let rev = result.get("compact_revision").and_then(num_u64);
                    return Ok(Some(rev.unwrap_or_else(|| header_revision(result))));
                }
            }
            // The stream ended without an event: as a timeout when due.
            if Instant::now() + Duration::from_millis(5) >= deadline {
                return Ok(None);
            }
            let ended = Attempt::Next(format!("{endpoint}: the watch stream ended"));
            fo.failed(self, ended, "watch", key, endpoint)?;
        }
        Err(fo.exhausted(self, "watch", key))
    }

    // ---- the request machinery -------------------------------------------

    fn kvs(&self, op: &'static str, key: &str, v: &Value) -> Result<Vec<Kv>, Error> {
        let Some(list) = v.get("kvs") else {
            return Ok(Vec::new());
        };
        let Some(list) = list.as_array() else {
            return Err(self.protocol(op, key, "kvs is not a list"));
        };
        list.iter()
            .map(|item| parse_kv(item).map_err(|m| self.protocol(op, key, m)))
            .collect()
    }

    fn protocol(&self, op: &'static str, key: &str, msg: impl Into<String>) -> Error {
        Error::Protocol {
            endpoint: self.endpoint().to_string(),
            op,
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    fn clear_token(&self) {
        if let Ok(mut t) = self.token.lock() {
            *t = None;
        }
    }

    fn refused_auth(&self, op: &'static str, key: &str, endpoint: &str, detail: String) -> Error {
        Error::Refused {
            endpoint: endpoint.to_string(),
            op,
            key: key.to_string(),
            code: code::UNAUTHENTICATED,
            message: detail,
            hint: ": the auth token was refused twice; check [etcd] username and password-file",
        }
    }

    /// The auth token to send (authenticating at `endpoint` first if
    /// needed); `None` without auth.
    fn token(&self, endpoint: &str) -> Result<Option<String>, Attempt> {
        let Auth::Password { user, password } = &self.auth else {
            return Ok(None);
        };
        if let Ok(t) = self.token.lock()
            && let Some(t) = t.as_ref()
        {
            return Ok(Some(t.clone()));
        }
        let body = json!({ "name": user, "password": password });
        let resp = self
            .agent
            .post(format!("{endpoint}/v3/auth/authenticate"))
            .config()
            .timeout_global(Some(self.timeout))
            .build()
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(
                |e| match self.tls_failure("authenticate", user, endpoint, &e) {
                    Some(t) => Attempt::Tls(t),
                    None => Attempt::Next(format!("{endpoint}: {e}")),
                },
            )?;
        let status = resp.status().as_u16();
        let text = read_body(resp).map_err(|e| Attempt::Next(format!("{endpoint}: {e}")))?;
        if status == 200 {
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Attempt::Fail(Error::Protocol {
                    endpoint: endpoint.to_string(),
                    op: "authenticate",
                    key: user.clone(),
                    msg: e.to_string(),
                })
            })?;
            let token = v.get("token").and_then(Value::as_str).unwrap_or("");
            if token.is_empty() {
                return Err(Attempt::Fail(Error::Protocol {
                    endpoint: endpoint.to_string(),
                    op: "authenticate",
                    key: user.clone(),
                    msg: "no token in the answer".into(),
                }));
            }
            if let Ok(mut t) = self.token.lock() {
                *t = Some(token.to_string());
            }
            return Ok(Some(token.to_string()));
        }
        let (code, message) = grpc_error(&text);
        if code == Some(code::FAILED_PRECONDITION) && message.contains("not enabled") {
            // Credentials configured, authentication off in etcd: no token needed.
            return Ok(None);
        }
        if code == Some(code::UNAVAILABLE) || status >= 500 && code.is_none() {
            return Err(Attempt::Next(format!("{endpoint}: {message}")));
        }
        Err(Attempt::Fail(Error::Auth {
            endpoint: endpoint.to_string(),
            user: user.clone(),
            message,
        }))
    }

    /// The error to report when `e` is a failed TLS handshake (rustls's
    /// error, or an alert from etcd), with what to check; `None` for any
    /// other failure.
    fn tls_failure(
        &self,
        op: &'static str,
        key: &str,
        endpoint: &str,
        e: &ureq::Error,
    ) -> Option<Error> {
        let msg = match e {
            ureq::Error::Rustls(e) => e.to_string(),
            ureq::Error::Tls(m) => (*m).to_string(),
            ureq::Error::Io(io) => {
                match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(e) => e.to_string(),
                    // Dropped right after the handshake: perhaps etcd's alert
                    // lost the race against the request.
                    None if matches!(
                        io.kind(),
                        std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::UnexpectedEof
                    ) =>
                    {
                        self.probe_tls(endpoint)?
                    }
                    None => return None,
                }
            }
            _ => return None,
        };
        let hint = if msg.contains("invalid peer certificate") {
            "etcd's server certificate is not trusted: [etcd] ca-file must hold the CA that signed it, and the certificate must name the endpoint's host (subjectAltName)"
        } else if msg.contains("alert") && !self.client_cert {
            "etcd refused the connection: it asks for a client certificate (--client-cert-auth): set [etcd] cert-file and key-file"
        } else if msg.contains("alert") {
            "etcd refused the client certificate: cert-file must be signed by a CA in etcd's --trusted-ca-file, be valid now and allow client authentication (extendedKeyUsage clientAuth)"
        } else {
            "check [etcd] ca-file, cert-file and key-file"
        };
        Some(Error::TlsSession {
            endpoint: endpoint.to_string(),
            op,
            key: key.to_string(),
            msg,
            hint,
        })
    }

    /// Why etcd dropped a TLS connection, if it refused the handshake. In
    /// TLS 1.3 the client's part of the handshake ends before the server
    /// has checked the client certificate, so the request is already on
    /// its way when etcd's alert (certificate missing or refused) comes,
    /// and the client mostly sees only "broken pipe". This connects again,
    /// completes the handshake, sends nothing and waits up to 2 s for
    /// etcd's alert: rustls's error, or `None` (etcd kept the connection,
    /// or it could not be made).
    fn probe_tls(&self, endpoint: &str) -> Option<String> {
        use std::net::{TcpStream, ToSocketAddrs};
        let config = self.probe.clone()?;
        let authority = endpoint.strip_prefix("https://")?;
        let (host, addr) = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h, authority.to_string()),
            _ => (authority, format!("{authority}:443")),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let addr = addr.to_socket_addrs().ok()?.next()?;
        let mut sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        sock.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut conn = rustls::ClientConnection::new(config, name).ok()?;
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        let mut byte = [0u8; 1];
        // Whatever comes (a byte, the end, a timeout) but an alert: no TLS
        // refusal.
        stream
            .read_exact(&mut byte)
            .err()?
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map(ToString::to_string)
    }

    /// What an error answer means.
    fn classify(
        &self,
        op: &'static str,
        key: &str,
        endpoint: &str,
        status: u16,
        text: &str,
    ) -> Attempt {
        let (code, message) = grpc_error(text);
        let Some(code) = code else {
            return if status >= 500 {
                Attempt::Next(format!("{endpoint}: HTTP {status}"))
            } else {
                Attempt::Fail(Error::Protocol {
                    endpoint: endpoint.to_string(),
                    op,
                    key: key.to_string(),
                    msg: format!(
                        "HTTP {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ),
                })
            };
        };
        if code == code::UNAVAILABLE {
            return Attempt::Next(format!("{endpoint}: {message}"));
        }
        if code == code::UNAUTHENTICATED
            || message.contains("invalid auth token")
            || message.contains("revision of auth store is old")
        {
            return Attempt::Reauth(format!("{endpoint}: {message}"));
        }
        Attempt::Fail(Error::Refused {
            endpoint: endpoint.to_string(),
            op,
            key: key.to_string(),
            code,
            hint: hint(code, &message),
            message,
        })
    }

    /// POSTs `body` to `path`, failing over between endpoints; the JSON
    /// answer of the first endpoint that answers.
    fn call(&self, op: &'static str, key: &str, path: &str, body: &Value) -> Result<Value, Error> {
        let text = body.to_string();
        let mut fo = Failover::new(self);
        while let Some((idx, endpoint)) = fo.next(self) {
            let token = match self.token(endpoint) {
                Ok(t) => t,
                Err(a) => {
                    fo.failed(self, a.not_reauth(), op, key, endpoint)?;
                    continue;
                }
            };
            let mut req = self
                .agent
                .post(format!("{endpoint}{path}"))
                .config()
                .timeout_global(Some(self.timeout))
                .build()
                .header("content-type", "application/json");
            if let Some(t) = &token {
                req = req.header("authorization", t);
            }
            let (status, answer) = match req.send(text.as_str()) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match read_body(resp) {
                        Ok(t) => (status, t),
                        Err(e) => {
                            fo.failed(
                                self,
                                Attempt::Next(format!("{endpoint}: {e}")),
                                op,
                                key,
                                endpoint,
                            )?;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    fo.failed(
                        self,
                        self.send_failed(op, key, endpoint, &e),
                        op,
                        key,
                        endpoint,
                    )?;
                    continue;
                }
            };
            let attempt = if status == 200 {
                let v: Value = serde_json::from_str(&answer).map_err(|e| Error::Protocol {
                    endpoint: endpoint.clone(),
                    op,
                    key: key.to_string(),
                    msg: format!("not JSON: {e}"),
                })?;
                // Streaming endpoints (keepalive) answer 200 with an error inside.
                let Some(err) = v.get("error").filter(|e| e.is_object()) else {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                };
                let code = err.get("grpc_code").and_then(num_i64).unwrap_or(0) as i32;
                let message = err.get("message").and_then(Value::as_str).unwrap_or("");
                let wrapped = json!({ "code": code, "message": message }).to_string();
                self.classify(op, key, endpoint, 500, &wrapped)
            } else {
                self.classify(op, key, endpoint, status, &answer)
            };
            if let Err(e) = fo.failed(self, attempt, op, key, endpoint) {
                // This endpoint answered: keep talking to it.
                self.current.store(idx, Ordering::Relaxed);
                return Err(e);
            }
        }
        Err(fo.exhausted(self, op, key))
    }

    /// What a request that got no answer means: a TLS failure (a setting
    /// to fix) or an endpoint that is down (try the next).
    fn send_failed(&self, op: &'static str, key: &str, endpoint: &str, e: &ureq::Error) -> Attempt {
        match self.tls_failure(op, key, endpoint, e) {
            Some(t) => Attempt::Tls(t),
            None => Attempt::Next(format!("{endpoint}: {e}")),
        }
    }
}

/// Where a request stands in going round the endpoints: the next one to
/// try, what went wrong last, whether the token was renewed already.
struct Failover {
    start: usize,
    tried: usize,
    last: String,
    tls_failed: Option<Error>,
    reauthed: bool,
}

impl Failover {
    fn new(etcd: &Etcd) -> Failover {
        Failover {
            start: etcd.current.load(Ordering::Relaxed),
            tried: 0,
            last: String::new(),
            tls_failed: None,
            reauthed: false,
        }
    }

    /// The endpoint to try now, or `None` when every one failed.
    fn next<'e>(&self, etcd: &'e Etcd) -> Option<(usize, &'e String)> {
        let n = etcd.endpoints.len();
        (self.tried < n).then(|| {
            let idx = (self.start + self.tried) % n;
            (idx, &etcd.endpoints[idx])
        })
    }

    /// Takes a failed attempt into account: `Ok` to go on (the next
    /// endpoint, or the same one once after renewing the token), `Err` to
    /// give up with this error.
    fn failed(
        &mut self,
        etcd: &Etcd,
        attempt: Attempt,
        op: &'static str,
        key: &str,
        endpoint: &str,
    ) -> Result<(), Error> {
        match attempt {
            Attempt::Next(d) => {
                self.last = d;
                self.tried += 1;
            }
            Attempt::Tls(e) => {
                self.last = e.to_string();
                self.tls_failed = Some(e);
                self.tried += 1;
            }
            Attempt::Reauth(d) if !self.reauthed => {
                self.reauthed = true;
                self.last = d;
                etcd.clear_token();
            }
            Attempt::Reauth(d) => return Err(etcd.refused_auth(op, key, endpoint, d)),
            Attempt::Fail(e) => return Err(e),
        }
        Ok(())
    }

    /// The error once every endpoint failed: a TLS failure if there was
    /// one (a setting to fix), else "unavailable".
    fn exhausted(self, etcd: &Etcd, op: &'static str, key: &str) -> Error {
        self.tls_failed.unwrap_or_else(|| Error::Unavailable {
            op,
            key: key.to_string(),
            endpoints: etcd.endpoints.join(", "),
            detail: self.last,
        })
    }
}

/// What to do about an error code, when there is something to say.
fn hint(code: i32, message: &str) -> &'static str {
    if message.contains("space exceeded") {
        ": etcd is read-only (space quota); an operator must compact and defragment it, then `etcdctl alarm disarm`"
    } else if message.contains("user name is empty") {
        ": etcd has authentication enabled; set [etcd] username and password-file (or --user)"
    } else if code == code::PERMISSION_DENIED {
        ": grant the user's role read and write on the key (`etcdctl role grant-permission`)"
    } else if message.contains("compacted") {
        ": that revision is compacted away"
    } else if code == code::RESOURCE_EXHAUSTED {
        ": etcd is overloaded; retrying with backoff"
    } else {
        ""
    }
}

/// The gateway's error answer `{"error","message","code"}`: code and message.
fn grpc_error(text: &str) -> (Option<i32>, String) {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let code = v.get("code").and_then(num_i64).map(|c| c as i32);
            let message = v
                .get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (code, message)
        }
        Err(_) => (None, text.chars().take(200).collect()),
    }
}

fn read_body(resp: ureq::http::Response<ureq::Body>) -> Result<String, String> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("reading the answer: {e}"))?;
    if out.len() as u64 > MAX_BODY {
        return Err(format!("answer larger than {MAX_BODY} bytes"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn b64(key: &str) -> String {
    B64.encode(key.as_bytes())
}

/// A gateway number: a JSON string (64-bit) or, for small ones, a number.
fn num_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn num_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The answer's `header.revision` (0 when absent).
fn header_revision(v: &Value) -> u64 {
    v.get("header")
        .and_then(|h| h.get("revision"))
        .and_then(num_u64)
        .unwrap_or(0)
}

/// One entry of `kvs`.
fn parse_kv(v: &Value) -> Result<Kv, String> {
    let bytes = |field: &str| -> Result<Vec<u8>, String> {
        match v.get(field) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => B64
                .decode(s)
                .map_err(|e| format!("{field} is not base64: {e}")),
            Some(_) => Err(format!("{field} is not a string")),
        }
    };
    let n = |field: &str| v.get(field).and_then(num_u64).unwrap_or(0);
    let key = bytes("key")?;
    if key.is_empty() {
        return Err("an entry without a key".into());
    }
    let lease = v.get("lease").and_then(num_i64).filter(|l| *l != 0);
    Ok(Kv {
        key: String::from_utf8_lossy(&key).into_owned(),
        value: bytes("value")?,
        create_revision: n("create_revision"),
        mod_revision: n("mod_revision"),
        version: n("version"),
        lease,
    })
}

/// The end of the range of keys starting with `prefix`: the prefix with
/// its last byte below 0xff incremented (and what follows dropped); `\0`
/// (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::TlsFile {
        what,
        path: path.to_path_buf(),
        msg: format!("cannot be read: {e}"),
    })
}

/// The TLS settings for ureq, every file read and checked; and the same
/// for rustls when a ca-file is set (for [`Etcd::probe_tls`]).
#[allow(clippy::type_complexity)]
fn tls_config(
    tls: &Tls,
) -> Result<
    (
        ureq::tls::TlsConfig,
        Option<std::sync::Arc<rustls::ClientConfig>>,
    ),
    Error,
> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let certs = |what: &'static str, path: &Path| -> Result<Vec<Certificate<'static>>, Error> {
        let pem = read_file(what, path)?;
        let mut out = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => out.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::TlsFile {
                        what,
                        path: path.to_path_buf(),
                        msg: format!("not valid PEM: {e}"),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(Error::TlsFile {
                what,
                path: path.to_path_buf(),
                msg: "holds no PEM certificate (BEGIN CERTIFICATE)".into(),
            });
        }
        Ok(out)
    };
    let mut builder = TlsConfig::builder();
    let mut probe_roots = None;
    let mut probe_client = None;
    if let Some(path) = &tls.ca_file {
        let roots = certs("ca-file", path)?;
        let mut store = rustls::RootCertStore::empty();
        for c in &roots {
            store
                .add(rustls::pki_types::CertificateDer::from(c.der()))
                .map_err(|e| Error::TlsFile {
                    what: "ca-file",
                    path: path.clone(),
                    msg: format!("not a usable CA certificate: {e}"),
                })?;
        }
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
        probe_roots = Some(store);
    }
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Tls(
                "cert-file and key-file go together: set both (client certificate) or neither"
                    .into(),
            ));
        }
        (Some(cert_path), Some(key_path)) => {
            let chain = certs("cert-file", cert_path)?;
            let pem = read_file("key-file", key_path)?;
            let key = PrivateKey::from_pem(&pem).map_err(|e| Error::TlsFile {
                what: "key-file",
                path: key_path.clone(),
                msg: format!("holds no PEM private key: {e}"),
            })?;
            check_key(&chain, &key).map_err(|msg| Error::TlsFile {
                what: "key-file",
                path: key_path.clone(),
                msg: format!("{msg} (cert-file {})", cert_path.display()),
            })?;
            if let Ok(key_der) = rustls::pki_types::PrivateKeyDer::try_from(key.der().to_vec()) {
                let chain_der: Vec<_> = chain
                    .iter()
                    .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                    .collect();
                probe_client = Some((chain_der, key_der));
            }
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
    }
    // The probe is only for diagnosis: settings rustls refuses here just
    // mean no probe.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let probe = probe_roots.and_then(|roots| {
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
        let config = match probe_client {
            Some((chain, key)) => b.with_client_auth_cert(chain, key).ok()?,
            None => b.with_no_client_auth(),
        };
        Some(std::sync::Arc::new(config))
    });
    Ok((builder.build(), probe))
}

/// Whether rustls accepts the key and it belongs to the first certificate
/// (ureq would panic on either, when the first request is made).
fn check_key(
    chain: &[ureq::tls::Certificate<'static>],
    key: &ureq::tls::PrivateKey<'static>,
) -> Result<(), String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let der = key.der().to_vec();
    let key_der =
        PrivateKeyDer::try_from(der).map_err(|e| format!("unsupported private key: {e}"))?;
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key_der, &provider)
        .map(|_| ())
        .map_err(|e| format!("does not fit the client certificate or is not usable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn kvs_parse_with_omitted_fields() {
        let v: Value = serde_json::from_str(
            r#"{"key":"Zm9v","create_revision":"2","mod_revision":"7","version":"3","value":"YmFy","lease":"7587862072907470350"}"#,
        )
        .unwrap();
        let kv = parse_kv(&v).unwrap();
        assert_eq!(kv.key, "foo");
        assert_eq!(kv.value, b"bar");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 7, 3));
        assert_eq!(kv.lease, Some(7587862072907470350));
        // An empty value and no lease: the fields are left out.
        let kv = parse_kv(&json!({"key": "Zm9v", "mod_revision": "4"})).unwrap();
        assert_eq!((kv.value.len(), kv.lease, kv.create_revision), (0, None, 0));
        assert!(parse_kv(&json!({"key": "not base64!"})).is_err());
        assert!(parse_kv(&json!({"value": "YmFy"})).is_err());
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        assert_eq!(num_u64(&json!("18446744073709551615")), Some(u64::MAX));
        assert_eq!(num_u64(&json!(5)), Some(5));
        assert_eq!(num_u64(&json!("x")), None);
        assert_eq!(num_i64(&json!("-3")), Some(-3));
        assert_eq!(header_revision(&json!({"header": {"revision": "42"}})), 42);
        assert_eq!(header_revision(&json!({})), 0);
    }

    #[test]
    fn error_answers_are_classified() {
        let etcd = Etcd::new(&["http://127.0.0.1:1"], Auth::None, &Tls::default()).unwrap();
        let ep = "http://127.0.0.1:1";
        let body =
            |code: i32, msg: &str| json!({"error": msg, "message": msg, "code": code}).to_string();
        assert!(matches!(
            etcd.classify("txn", "k", ep, 503, &body(14, "etcdserver: no leader")),
            Attempt::Next(_)
        ));
        assert!(matches!(
            etcd.classify(
                "txn",
                "k",
                ep,
                401,
                &body(16, "etcdserver: invalid auth token")
            ),
            Attempt::Reauth(_)
        ));
        assert!(matches!(
            etcd.classify("txn", "k", ep, 502, "<html>"),
            Attempt::Next(_)
        ));
        match etcd.classify(
            "txn",
            "k",
            ep,
            429,
            &body(8, "etcdserver: mvcc: database space exceeded"),
        ) {
            Attempt::Fail(e) => {
                assert!(e.is_transient());
                assert!(e.to_string().contains("read-only"), "{e}");
            }
            _ => panic!("space exceeded is final for this request"),
        }
        match etcd.classify(
            "range",
            "k",
            ep,
            400,
            &body(3, "etcdserver: user name is empty"),
        ) {
            Attempt::Fail(e) => {
                assert!(!e.is_transient());
                assert!(e.to_string().contains("username"), "{e}");
            }
            _ => panic!("auth required is final"),
        }
    }

    #[test]
    fn settings_are_checked() {
        let none: [&str; 0] = [];
        assert!(matches!(
            Etcd::new(&none, Auth::None, &Tls::default()),
            Err(Error::NoEndpoints)
        ));
        for bad in ["127.0.0.1:2379", "ftp://x", "http://", "http://h:1/v3"] {
            assert!(
                matches!(
                    Etcd::new(&[bad], Auth::None, &Tls::default()),
                    Err(Error::Endpoint { .. })
                ),
                "{bad}"
            );
        }
        let tls = Tls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Tls::default()
        };
        let e = Etcd::new(&["http://h:2379"], Auth::None, &tls).unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        let e = Etcd::new(&["https://h:2379"], Auth::None, &tls).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let tls = Tls {
            cert_file: Some("/x".into()),
            ..Tls::default()
        };
        assert!(matches!(
            Etcd::new(&["https://h:2379"], Auth::None, &tls),
            Err(Error::Tls(_))
        ));
        let e = Etcd::new(&["http://h:2379/"], Auth::None, &Tls::default()).unwrap();
        assert_eq!(e.endpoint(), "http://h:2379");
        let shown = format!(
            "{:?}",
            Etcd::new(
                &["http://h:2379"],
                Auth::Password {
                    user: "u".into(),
                    password: "secret".into()
                },
                &Tls::default()
            )
            .unwrap()
        );
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn nothing_listening_is_unavailable_and_transient() {
        // Port 1 on loopback: connection refused at once.
        let etcd = Etcd::new(
            &["http://127.0.0.1:1", "http://127.0.0.1:2"],
            Auth::None,
            &Tls::default(),
        )
        .unwrap();
        let e = etcd.range("k").unwrap_err();
        assert!(e.is_transient());
        let text = e.to_string();
        assert!(
            text.contains("127.0.0.1:1") && text.contains("127.0.0.1:2"),
            "{text}"
        );
    }
}
