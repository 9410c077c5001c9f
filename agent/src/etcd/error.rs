//! What the etcd client can fail at, etcd's gRPC status codes, and what
//! to do about them.

use std::path::PathBuf;

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
    #[error("etcd TLS: {what} {}: {problem}", path.display())]
    TlsFile {
        /// `ca-file`, `cert-file` or `key-file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        problem: Box<TlsFileProblem>,
    },
    /// The TLS settings do not fit together.
    #[error("etcd TLS: {0}")]
    Tls(#[source] TlsSetting),
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
        "etcd unreachable: {op} {key}: {last} (tried {endpoints}): check that etcd runs and that [etcd] endpoints lists its client URLs"
    )]
    Unavailable {
        /// The operation (`range`, `txn`, ...).
        op: &'static str,
        /// The key (or lease).
        key: String,
        /// Every endpoint tried.
        endpoints: String,
        /// What happened at the last one.
        #[source]
        last: Box<Miss>,
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
        "etcd at {endpoint}: {op} {key}: unexpected answer ({problem}): is this the client URL of an etcd 3.4 or later?"
    )]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// The operation.
        op: &'static str,
        /// The key.
        key: String,
        /// What is wrong.
        #[source]
        problem: WireError,
    },
}

/// What is wrong with a TLS file ([`Error::TlsFile`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsFileProblem {
    /// The file cannot be read.
    #[error("cannot be read: {0}")]
    Read(#[source] std::io::Error),
    /// The PEM text is broken.
    #[error("not valid PEM: {0}")]
    Pem(#[source] ureq::Error),
    /// No `BEGIN CERTIFICATE` in it.
    #[error("holds no PEM certificate (BEGIN CERTIFICATE)")]
    NoCertificate,
    /// rustls refuses a CA certificate.
    #[error("not a usable CA certificate: {0}")]
    Ca(#[source] rustls::Error),
    /// No private key in it.
    #[error("holds no PEM private key: {0}")]
    NoKey(#[source] ureq::Error),
    /// A kind of private key rustls does not take.
    #[error("unsupported private key: {why} (cert-file {})", cert.display())]
    UnsupportedKey {
        /// The client certificate it goes with.
        cert: PathBuf,
        /// What rustls said.
        why: &'static str,
    },
    /// The key does not belong to the client certificate.
    #[error("does not fit the client certificate or is not usable: {source} (cert-file {})", cert.display())]
    KeyMismatch {
        /// The client certificate.
        cert: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// TLS settings that do not fit together ([`Error::Tls`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsSetting {
    /// TLS files with a plain `http://` endpoint.
    #[error(
        "TLS files are set but endpoint {endpoint} is http://: use https:// endpoints (or drop ca-file/cert-file/key-file)"
    )]
    PlainEndpoint {
        /// The `http://` endpoint.
        endpoint: String,
    },
    /// A client certificate without its key, or a key without its certificate.
    #[error("cert-file and key-file go together: set both (client certificate) or neither")]
    CertWithoutKey,
}

/// Why one endpoint gave no usable answer (the last one is in
/// [`Error::Unavailable`]).
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    /// No endpoint was tried.
    #[error("no endpoint was tried")]
    NotTried,
    /// The request could not be sent or got no answer (refused, timed out).
    #[error("{endpoint}: {source}")]
    Send {
        /// The endpoint.
        endpoint: String,
        /// What ureq said.
        source: ureq::Error,
    },
    /// The answer could not be read.
    #[error("{endpoint}: {source}")]
    Body {
        /// The endpoint.
        endpoint: String,
        /// What is wrong with it.
        source: WireError,
    },
    /// etcd said to try another member, or refused the auth token.
    #[error("{endpoint}: {message}")]
    Etcd {
        /// The endpoint.
        endpoint: String,
        /// etcd's message.
        message: String,
    },
    /// An HTTP error without etcd's error body (a proxy, a crash).
    #[error("{endpoint}: HTTP {status}")]
    Status {
        /// The endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },
    /// A watch stream ended before an event or the deadline.
    #[error("{endpoint}: the watch stream ended")]
    StreamEnded {
        /// The endpoint.
        endpoint: String,
    },
    /// A watch stream broke off in the middle of an answer.
    #[error("{endpoint}: the watch stream broke: {source}")]
    StreamBroke {
        /// The endpoint.
        endpoint: String,
        /// What the JSON reader said.
        source: serde_json::Error,
    },
}

/// What is wrong with an answer of etcd's gateway ([`Error::Protocol`]).
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Reading the body failed.
    #[error("reading the answer: {0}")]
    Read(#[source] std::io::Error),
    /// The body is larger than the client reads.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// An HTTP status that is neither 200 nor an etcd error.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// `kvs` is there but not a list.
    #[error("kvs is not a list")]
    KvsNotList,
    /// An entry of `kvs` without a key.
    #[error("an entry without a key")]
    NoKey,
    /// A field that must be base64 is not.
    #[error("{field} is not base64: {source}")]
    NotBase64 {
        /// The field.
        field: &'static str,
        /// The decoder's complaint.
        source: base64::DecodeError,
    },
    /// A field that must be a string is not.
    #[error("{field} is not a string")]
    NotString {
        /// The field.
        field: &'static str,
    },
    /// A lease grant without the lease's ID.
    #[error("no lease ID")]
    NoLeaseId,
    /// An authentication answer without a token.
    #[error("no token in the answer")]
    NoToken,
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

/// What to do about an error code, when there is something to say.
pub(super) fn hint(code: i32, message: &str) -> &'static str {
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
