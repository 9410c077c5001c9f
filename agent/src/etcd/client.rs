//! The client's API: [`Etcd`] and its reads, guarded writes, leases,
//! history and watch; the [`Kv`] it reads and the [`Expect`] it compares.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::failover::{Attempt, Auth, Failover};
use super::tls::{Tls, tls_config};
use super::wire::{b64, header_revision, num_i64, num_u64, parse_kv, prefix_end, read_body};
use super::{CONNECT_TIMEOUT, Error, Miss, REQUEST_TIMEOUT, TlsSetting, WireError, code};

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
    pub(super) endpoints: Vec<String>,
    pub(super) agent: ureq::Agent,
    pub(super) auth: Auth,
    /// Whether a client certificate is set (for the hints of TLS failures).
    pub(super) client_cert: bool,
    /// The same TLS settings for rustls, to learn why etcd dropped a
    /// connection ([`Etcd::probe_tls`]); with a ca-file only.
    pub(super) probe: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub(super) token: Mutex<Option<String>>,
    pub(super) current: AtomicUsize,
    pub(super) timeout: Duration,
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
            return Err(Error::Tls(TlsSetting::PlainEndpoint {
                endpoint: plain.clone(),
            }));
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
            _ => Err(self.protocol("lease grant", &what, WireError::NoLeaseId)),
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
                    fo.failed(self, a.not_reauth(endpoint), "watch", key, endpoint)?;
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
                        self.send_failed("watch", key, endpoint, e),
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
                            last: Box::new(Miss::StreamBroke {
                                endpoint: endpoint.clone(),
                                source: e,
                            }),
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
            let ended = Attempt::Next(Miss::StreamEnded {
                endpoint: endpoint.clone(),
            });
            fo.failed(self, ended, "watch", key, endpoint)?;
        }
        Err(fo.exhausted(self, "watch", key))
    }

    fn kvs(&self, op: &'static str, key: &str, v: &Value) -> Result<Vec<Kv>, Error> {
        let Some(list) = v.get("kvs") else {
            return Ok(Vec::new());
        };
        let Some(list) = list.as_array() else {
            return Err(self.protocol(op, key, WireError::KvsNotList));
        };
        list.iter()
            .map(|item| parse_kv(item).map_err(|m| self.protocol(op, key, m)))
            .collect()
    }

    fn protocol(&self, op: &'static str, key: &str, problem: WireError) -> Error {
        Error::Protocol {
            endpoint: self.endpoint().to_string(),
            op,
            key: key.to_string(),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
