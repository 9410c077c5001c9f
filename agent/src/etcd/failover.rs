//! Going round the endpoints: failover when one cannot be reached or says
//! "unavailable", authentication and the renewal of its token, and what
//! an error answer means.

use std::fmt;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::client::Etcd;
use super::error::hint;
use super::wire::{grpc_error, num_i64, read_body};
use super::{Error, Miss, WireError, code};

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

/// One failed attempt at one endpoint.
pub(super) enum Attempt {
    /// Try the next endpoint.
    Next(Miss),
    /// The token was refused (etcd's message): authenticate again, then
    /// retry.
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
    pub(super) fn not_reauth(self, endpoint: &str) -> Attempt {
        match self {
            Attempt::Reauth(message) => Attempt::Next(Miss::Etcd {
                endpoint: endpoint.to_string(),
                message,
            }),
            other => other,
        }
    }
}

impl Etcd {
    pub(super) fn clear_token(&self) {
        if let Ok(mut t) = self.token.lock() {
            *t = None;
        }
    }

    pub(super) fn refused_auth(
        &self,
        op: &'static str,
        key: &str,
        endpoint: &str,
        detail: String,
    ) -> Error {
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
    pub(super) fn token(&self, endpoint: &str) -> Result<Option<String>, Attempt> {
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
                    None => Attempt::Next(Miss::Send {
                        endpoint: endpoint.to_string(),
                        source: e,
                    }),
                },
            )?;
        let status = resp.status().as_u16();
        let text = read_body(resp).map_err(|source| {
            Attempt::Next(Miss::Body {
                endpoint: endpoint.to_string(),
                source,
            })
        })?;
        if status == 200 {
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                Attempt::Fail(Error::Protocol {
                    endpoint: endpoint.to_string(),
                    op: "authenticate",
                    key: user.clone(),
                    problem: WireError::NotJson(e),
                })
            })?;
            let token = v.get("token").and_then(Value::as_str).unwrap_or("");
            if token.is_empty() {
                return Err(Attempt::Fail(Error::Protocol {
                    endpoint: endpoint.to_string(),
                    op: "authenticate",
                    key: user.clone(),
                    problem: WireError::NoToken,
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
            return Err(Attempt::Next(Miss::Etcd {
                endpoint: endpoint.to_string(),
                message,
            }));
        }
        Err(Attempt::Fail(Error::Auth {
            endpoint: endpoint.to_string(),
            user: user.clone(),
            message,
        }))
    }

    /// What an error answer means.
    pub(super) fn classify(
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
                Attempt::Next(Miss::Status {
                    endpoint: endpoint.to_string(),
                    status,
                })
            } else {
                Attempt::Fail(Error::Protocol {
                    endpoint: endpoint.to_string(),
                    op,
                    key: key.to_string(),
                    problem: WireError::Status {
                        status,
                        body: text.chars().take(200).collect(),
                    },
                })
            };
        };
        if code == code::UNAVAILABLE {
            return Attempt::Next(Miss::Etcd {
                endpoint: endpoint.to_string(),
                message,
            });
        }
        if code == code::UNAUTHENTICATED
            || message.contains("invalid auth token")
            || message.contains("revision of auth store is old")
        {
            return Attempt::Reauth(message);
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
    pub(super) fn call(
        &self,
        op: &'static str,
        key: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, Error> {
        let text = body.to_string();
        let mut fo = Failover::new(self);
        while let Some((idx, endpoint)) = fo.next(self) {
            let token = match self.token(endpoint) {
                Ok(t) => t,
                Err(a) => {
                    fo.failed(self, a.not_reauth(endpoint), op, key, endpoint)?;
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
                        Err(source) => {
                            let miss = Miss::Body {
                                endpoint: endpoint.clone(),
                                source,
                            };
                            fo.failed(self, Attempt::Next(miss), op, key, endpoint)?;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    fo.failed(
                        self,
                        self.send_failed(op, key, endpoint, e),
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
                    problem: WireError::NotJson(e),
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
    pub(super) fn send_failed(
        &self,
        op: &'static str,
        key: &str,
        endpoint: &str,
        e: ureq::Error,
    ) -> Attempt {
        match self.tls_failure(op, key, endpoint, &e) {
            Some(t) => Attempt::Tls(t),
            None => Attempt::Next(Miss::Send {
                endpoint: endpoint.to_string(),
                source: e,
            }),
        }
    }
}

/// Where a request stands in going round the endpoints: the next one to
/// try, what went wrong last, whether the token was renewed already.
pub(super) struct Failover {
    start: usize,
    tried: usize,
    last: Miss,
    tls_failed: Option<Error>,
    reauthed: bool,
}

impl Failover {
    pub(super) fn new(etcd: &Etcd) -> Failover {
        Failover {
            start: etcd.current.load(Ordering::Relaxed),
            tried: 0,
            last: Miss::NotTried,
            tls_failed: None,
            reauthed: false,
        }
    }

    /// The endpoint to try now, or `None` when every one failed.
    pub(super) fn next<'e>(&self, etcd: &'e Etcd) -> Option<(usize, &'e String)> {
        let n = etcd.endpoints.len();
        (self.tried < n).then(|| {
            let idx = (self.start + self.tried) % n;
            (idx, &etcd.endpoints[idx])
        })
    }

    /// Takes a failed attempt into account: `Ok` to go on (the next
    /// endpoint, or the same one once after renewing the token), `Err` to
    /// give up with this error.
    pub(super) fn failed(
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
                // No need for `last`: with a TLS failure, that is the error.
                self.tls_failed = Some(e);
                self.tried += 1;
            }
            Attempt::Reauth(message) if !self.reauthed => {
                self.reauthed = true;
                self.last = Miss::Etcd {
                    endpoint: endpoint.to_string(),
                    message,
                };
                etcd.clear_token();
            }
            Attempt::Reauth(d) => return Err(etcd.refused_auth(op, key, endpoint, d)),
            Attempt::Fail(e) => return Err(e),
        }
        Ok(())
    }

    /// The error once every endpoint failed: a TLS failure if there was
    /// one (a setting to fix), else "unavailable".
    pub(super) fn exhausted(self, etcd: &Etcd, op: &'static str, key: &str) -> Error {
        self.tls_failed.unwrap_or_else(|| Error::Unavailable {
            op,
            key: key.to_string(),
            endpoints: etcd.endpoints.join(", "),
            last: Box::new(self.last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::Tls;

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
