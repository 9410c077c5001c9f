//! PID 1's control socket ([`INIT_SOCKET`]): `tandemctl stop|start|restart
//! <service>`. One request and one response per connection, each one JSON
//! object on one line. The system init (the server) and `tandemctl` (the
//! client, [`call`]) share these types, so they cannot drift.
//!
//! ```text
//! → {"request":"stop","service":"web"}
//! ← {"response":"done","service":"web","stop":{"outcome":"stopped","was":"running",
//!    "exit":"killed by signal 15","took_ms":120},"state":"stopped","pid":null}
//! → {"request":"start","service":"wbe"}
//! ← {"response":"error","error":{"kind":"unknown-service","service":"wbe",
//!    "known":["console","web"]},"message":"no service named \"wbe\"; …"}
//! ```
//!
//! A stop is answered once the service has stopped: at most its
//! `stop_timeout_secs` plus 2 s (the wait after its cgroup was killed)
//! after the request.
//!
//! ```
//! use tandem_contract::control::{Request, Response, StartOutcome};
//! use tandem_contract::run::ServiceState;
//!
//! let line = Request::Start { service: "web".into() }.to_line();
//! assert_eq!(line, b"{\"request\":\"start\",\"service\":\"web\"}\n");
//! assert_eq!(Request::parse(&line).map(|r| r.service().to_string()), Ok("web".into()));
//! let done = Response::Done {
//!     service: "web".into(),
//!     stop: None,
//!     start: Some(StartOutcome::Started),
//!     state: ServiceState::Running,
//!     pid: Some(311),
//! };
//! assert_eq!(Response::parse(&done.to_line()).ok(), Some(done));
//! ```

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::state_enum;
pub use crate::run::INIT_SOCKET;
use crate::run::ServiceState;

/// Longest request line PID 1 reads, newline included.
pub const MAX_REQUEST: usize = 4096;
/// Longest response line a client reads, newline included.
pub const MAX_RESPONSE: usize = 64 << 10;
/// How long [`call`] waits for the answer. PID 1 answers a stop within the
/// service's stop timeout and 2 s; this only guards against a PID 1 that
/// does not answer at all.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What a client asks PID 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// SIGTERM to the service, its cgroup killed after its stop timeout;
    /// answered once its cgroup is empty. It stays stopped (not restarted)
    /// until started.
    Stop {
        /// The service's name.
        service: String,
    },
    /// Start a service that does not run, now (its restart backoff reset).
    Start {
        /// The service's name.
        service: String,
    },
    /// Stop, then start.
    Restart {
        /// The service's name.
        service: String,
    },
}

impl Request {
    /// The service the request is about.
    pub fn service(&self) -> &str {
        match self {
            Request::Stop { service }
            | Request::Start { service }
            | Request::Restart { service } => service,
        }
    }

    /// The request's name (`stop`, `start`, `restart`).
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Stop { .. } => "stop",
            Request::Start { .. } => "start",
            Request::Restart { .. } => "restart",
        }
    }

    /// Whether it stops the service (stop, restart).
    pub fn stops(&self) -> bool {
        matches!(self, Request::Stop { .. } | Request::Restart { .. })
    }

    /// Whether it starts the service (start, restart).
    pub fn starts(&self) -> bool {
        matches!(self, Request::Start { .. } | Request::Restart { .. })
    }

    /// The request as sent: JSON and a newline.
    pub fn to_line(&self) -> Vec<u8> {
        to_line(self)
    }

    /// A request line as received (the newline may be there or not). Input
    /// from a client: anything else than a request is an error saying why.
    pub fn parse(line: &[u8]) -> Result<Request, ControlError> {
        serde_json::from_slice(trim_newline(line)).map_err(|e| ControlError::BadRequest {
            message: e.to_string(),
        })
    }
}

state_enum! {
    /// How a stop went.
    StopOutcome, "a stop outcome" {
        /// Its processes ended within its stop timeout.
        Stopped = "stopped",
        /// Still running at its stop timeout: its cgroup was killed
        /// (without cgroups, its process group got SIGKILL); then it ended.
        Killed = "killed",
        /// Processes were still there 2 s after they were killed (stuck in
        /// the kernel): not waited for any longer. Marked stopped anyway.
        GaveUp = "gave-up",
        /// It was not running (nor due to start): nothing to stop.
        NotRunning = "not-running",
    }
}

state_enum! {
    /// How a start went.
    StartOutcome, "a start outcome" {
        /// Its process was spawned.
        Started = "started",
        /// It was running already; nothing was done.
        AlreadyRunning = "already-running",
    }
}

/// What a stop did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopReport {
    /// How it went.
    pub outcome: StopOutcome,
    /// The service's state when the request came.
    pub was: ServiceState,
    /// How its main process ended, if it was running (`killed by signal
    /// 15`).
    pub exit: Option<String>,
    /// From the request to the end of the stop, milliseconds.
    pub took_ms: u64,
}

/// PID 1's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    /// The request was carried out (or there was nothing to do).
    Done {
        /// The service.
        service: String,
        /// What the stop did (stop, restart).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop: Option<StopReport>,
        /// What the start did (start, restart).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start: Option<StartOutcome>,
        /// The service's state afterwards.
        state: ServiceState,
        /// Its main process afterwards, if it runs.
        pid: Option<i32>,
    },
    /// The request was not carried out.
    Error {
        /// Why.
        error: ControlError,
        /// The error's text (what failed and what to do).
        message: String,
    },
}

impl Response {
    /// The answer for a request that failed with `error`.
    pub fn error(error: ControlError) -> Response {
        Response::Error {
            message: error.to_string(),
            error,
        }
    }

    /// The response as sent: JSON and a newline.
    pub fn to_line(&self) -> Vec<u8> {
        to_line(self)
    }

    /// A response line as received.
    pub fn parse(line: &[u8]) -> Result<Response, serde_json::Error> {
        serde_json::from_slice(trim_newline(line))
    }
}

/// Why PID 1 did not carry out a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ControlError {
    /// No service has that name.
    #[error("no service named {service:?}; the services are: {}", known.join(", "))]
    UnknownService {
        /// The name asked for.
        service: String,
        /// Every service's name.
        known: Vec<String>,
    },
    /// The service is turned off (`enabled = false`).
    #[error("{}", disabled_message(service, file, admin_file))]
    Disabled {
        /// The service.
        service: String,
        /// The file that turns it off.
        file: String,
        /// The administrator's file for it (`/etc/tandem/services/<name>.toml`).
        admin_file: String,
    },
    /// Its program could not be started; its restart policy applies.
    #[error("{message}")]
    StartFailed {
        /// The service.
        service: String,
        /// What failed.
        message: String,
    },
    /// The system is shutting down: every service is being stopped.
    #[error("the system is shutting down ({how}): every service is being stopped")]
    ShuttingDown {
        /// What for (`reboot`, `power off`, `halt`).
        how: String,
    },
    /// Too many clients at once.
    #[error("PID 1 is answering {limit} requests already; try again")]
    Busy {
        /// How many it serves at once.
        limit: usize,
    },
    /// What the client sent is not a request (or came too slowly).
    #[error("invalid request: {message}")]
    BadRequest {
        /// What is wrong with it.
        message: String,
    },
}

fn disabled_message(service: &str, file: &str, admin_file: &str) -> String {
    let how = if file == admin_file {
        format!("set enabled = true in {admin_file}")
    } else {
        format!(
            "copy {file} to {admin_file} with enabled = true (a file there replaces the image's)"
        )
    };
    format!(
        "service {service} is disabled (enabled = false in {file}); to enable it, {how} and reboot (service files are read at boot)"
    )
}

fn to_line<T: Serialize>(msg: &T) -> Vec<u8> {
    // These types hold only strings, numbers and lists: serialising them
    // cannot fail.
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Why [`call`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The socket is missing or nobody listens.
    #[error("connecting to PID 1 at {} failed: {err}{}", socket.display(), connect_hint(err))]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The request could not be sent, and no answer came.
    #[error("sending the request to {} failed: {err}", socket.display())]
    Send {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// No answer within the time given.
    #[error("no answer from PID 1 on {} within {} s", socket.display(), waited.as_secs())]
    Timeout {
        /// The socket.
        socket: PathBuf,
        /// How long the client waited.
        waited: Duration,
    },
    /// Reading the answer failed, or the connection closed without one.
    #[error("reading PID 1's answer on {} failed: {err}", socket.display())]
    Receive {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        err: io::Error,
    },
    /// The answer is not a response.
    #[error("PID 1's answer on {} is not a response: {message}", socket.display())]
    Invalid {
        /// The socket.
        socket: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

fn connect_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
            " (is PID 1 Tandem's system init, and the node up?)"
        }
        io::ErrorKind::PermissionDenied => " (the socket is root's)",
        _ => "",
    }
}

/// Sends `request` to PID 1 at `socket` and waits up to `timeout` for its
/// response. If PID 1 answered without reading the request (it refuses
/// every request while shutting down), that answer is returned.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, CallError> {
    let mut stream = UnixStream::connect(socket).map_err(|err| CallError::Connect {
        socket: socket.into(),
        err,
    })?;
    // A zero timeout is refused by set_read_timeout: wait a millisecond.
    let timeout = timeout.max(Duration::from_millis(1));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5).min(timeout)));
    let _ = stream.set_read_timeout(Some(timeout));
    let sent = stream.write_all(&request.to_line());
    let received = read_line(&mut stream, MAX_RESPONSE);
    let line = match (received, sent) {
        (Ok(line), _) => line,
        (Err(_), Err(err)) => {
            return Err(CallError::Send {
                socket: socket.into(),
                err,
            });
        }
        (Err(err), Ok(()))
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(CallError::Timeout {
                socket: socket.into(),
                waited: timeout,
            });
        }
        (Err(err), Ok(())) => {
            return Err(CallError::Receive {
                socket: socket.into(),
                err,
            });
        }
    };
    Response::parse(&line).map_err(|e| CallError::Invalid {
        socket: socket.into(),
        message: e.to_string(),
    })
}

/// Reads one line (newline included) of at most `max` bytes.
fn read_line(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if line.is_empty() {
                    "the connection closed without an answer"
                } else {
                    "the answer is not terminated by a newline"
                },
            ));
        }
        let chunk = buf.get(..n).unwrap_or_default();
        line.extend_from_slice(chunk);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end + 1);
            return Ok(line);
        }
        if line.len() >= max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("longer than {max} bytes"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("json")
    }

    #[test]
    fn requests_on_the_wire() {
        for (req, text) in [
            (
                Request::Stop {
                    service: "web".into(),
                },
                r#"{"request":"stop","service":"web"}"#,
            ),
            (
                Request::Start {
                    service: "sshd".into(),
                },
                r#"{"request":"start","service":"sshd"}"#,
            ),
            (
                Request::Restart {
                    service: "getty@ttyS1".into(),
                },
                r#"{"request":"restart","service":"getty@ttyS1"}"#,
            ),
        ] {
            let line = req.to_line();
            assert_eq!(line, format!("{text}\n").as_bytes());
            assert_eq!(Request::parse(&line), Ok(req.clone()));
            assert_eq!(
                Request::parse(text.as_bytes()),
                Ok(req.clone()),
                "no newline"
            );
            assert_eq!(req.verb(), json(text)["request"]);
        }
        let stop = Request::Stop {
            service: "a".into(),
        };
        assert!(stop.stops() && !stop.starts());
        let restart = Request::Restart {
            service: "a".into(),
        };
        assert!(restart.stops() && restart.starts());
        assert_eq!(restart.service(), "a");
    }

    #[test]
    fn anything_else_is_a_bad_request_that_says_why() {
        for bad in [
            &b""[..],
            b"\n",
            b"stop web\n",
            br#"{"request":"reboot"}"#,
            br#"{"request":"stop"}"#,
            br#"{"request":"stop","service":"web","force":true}"#,
            br#"{"request":"stop","service":7}"#,
            br#"{"service":"web"}"#,
            br#"[1,2]"#,
            &[0xff, 0xfe, b'\n'],
        ] {
            match Request::parse(bad) {
                Err(ControlError::BadRequest { message }) => assert!(!message.is_empty()),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn responses_on_the_wire() {
        let done = Response::Done {
            service: "web".into(),
            stop: Some(StopReport {
                outcome: StopOutcome::Killed,
                was: ServiceState::Running,
                exit: Some("killed by signal 9".into()),
                took_ms: 10_020,
            }),
            start: Some(StartOutcome::Started),
            state: ServiceState::Running,
            pid: Some(312),
        };
        let line = done.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(v["response"], "done");
        assert_eq!(v["stop"]["outcome"], "killed");
        assert_eq!(v["stop"]["was"], "running");
        assert_eq!(v["stop"]["took_ms"], 10_020);
        assert_eq!(v["start"], "started");
        assert_eq!(v["state"], "running");
        assert_eq!(v["pid"], 312);
        assert_eq!(Response::parse(&line).expect("parse"), done);

        // A stop alone has no `start`, and a stopped service no PID.
        let stopped = Response::Done {
            service: "web".into(),
            stop: Some(StopReport {
                outcome: StopOutcome::NotRunning,
                was: ServiceState::Failed,
                exit: None,
                took_ms: 0,
            }),
            start: None,
            state: ServiceState::Stopped,
            pid: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&stopped.to_line()).expect("json");
        assert!(v.get("start").is_none(), "{v}");
        assert_eq!(v["state"], "stopped");
        assert_eq!(v["stop"]["outcome"], "not-running");
        assert!(v["pid"].is_null());
        assert_eq!(Response::parse(&stopped.to_line()).expect("parse"), stopped);

        for &o in StopOutcome::ALL {
            let text = serde_json::to_string(&o).expect("json");
            assert_eq!(text, format!("\"{o}\""));
        }
        assert_eq!(
            StartOutcome::ALL
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>(),
            ["started", "already-running"]
        );
    }

    #[test]
    fn errors_carry_their_kind_and_their_text() {
        let unknown = Response::error(ControlError::UnknownService {
            service: "wbe".into(),
            known: vec!["console".into(), "web".into()],
        });
        let line = unknown.to_line();
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(v["response"], "error");
        assert_eq!(v["error"]["kind"], "unknown-service");
        assert_eq!(v["error"]["known"][1], "web");
        assert_eq!(
            v["message"],
            "no service named \"wbe\"; the services are: console, web"
        );
        assert_eq!(Response::parse(&line).expect("parse"), unknown);

        let image = ControlError::Disabled {
            service: "web".into(),
            file: "/usr/lib/tandem/services/web.toml".into(),
            admin_file: "/etc/tandem/services/web.toml".into(),
        };
        assert_eq!(
            image.to_string(),
            "service web is disabled (enabled = false in /usr/lib/tandem/services/web.toml); \
             to enable it, copy /usr/lib/tandem/services/web.toml to /etc/tandem/services/web.toml \
             with enabled = true (a file there replaces the image's) and reboot (service files are read at boot)"
        );
        let admin = ControlError::Disabled {
            service: "web".into(),
            file: "/etc/tandem/services/web.toml".into(),
            admin_file: "/etc/tandem/services/web.toml".into(),
        };
        assert_eq!(
            admin.to_string(),
            "service web is disabled (enabled = false in /etc/tandem/services/web.toml); \
             to enable it, set enabled = true in /etc/tandem/services/web.toml and reboot \
             (service files are read at boot)"
        );
        for e in [
            image,
            ControlError::StartFailed {
                service: "web".into(),
                message: "starting service web (/x) failed: not found".into(),
            },
            ControlError::ShuttingDown {
                how: "reboot".into(),
            },
            ControlError::Busy { limit: 16 },
            ControlError::BadRequest {
                message: "eof".into(),
            },
        ] {
            let r = Response::error(e);
            assert_eq!(Response::parse(&r.to_line()).expect("parse"), r);
        }
        assert!(
            Response::parse(br#"{"response":"error","error":{"kind":"nope"},"message":""}"#)
                .is_err()
        );
    }

    fn socket_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tandem-control-{}-{name}.sock", std::process::id()))
    }

    /// A server at a fresh socket that handles one connection with `serve`.
    fn serve_once(
        name: &str,
        serve: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (PathBuf, std::thread::JoinHandle<()>) {
        let path = socket_path(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            serve(stream);
        });
        (path, handle)
    }

    #[test]
    fn a_client_sends_one_request_and_reads_one_response() {
        let (path, server) = serve_once("call", |mut stream| {
            let line = read_line(&mut stream, MAX_REQUEST).expect("request");
            let req = Request::parse(&line).expect("valid");
            let answer = Response::Done {
                service: req.service().to_string(),
                stop: None,
                start: Some(StartOutcome::AlreadyRunning),
                state: ServiceState::Running,
                pid: Some(7),
            };
            stream.write_all(&answer.to_line()).expect("answer");
        });
        let req = Request::Start {
            service: "web".into(),
        };
        let r = call(&path, &req, Duration::from_secs(5)).expect("answered");
        server.join().expect("server");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(r, Response::Done { pid: Some(7), .. }), "{r:?}");
    }

    #[test]
    fn an_answer_given_without_reading_the_request_still_counts() {
        let refusal = Response::error(ControlError::ShuttingDown {
            how: "reboot".into(),
        });
        let sent = refusal.clone();
        let (path, server) = serve_once("refuse", move |mut stream| {
            stream.write_all(&sent.to_line()).expect("answer");
        });
        let req = Request::Stop {
            service: "web".into(),
        };
        let r = call(&path, &req, Duration::from_secs(5)).expect("answered");
        server.join().expect("server");
        let _ = std::fs::remove_file(&path);
        assert_eq!(r, refusal);
    }

    #[test]
    fn no_server_no_answer_or_nonsense_are_errors() {
        let req = Request::Stop {
            service: "web".into(),
        };
        let missing = socket_path("missing");
        let err = call(&missing, &req, Duration::from_secs(1)).expect_err("nobody there");
        assert!(matches!(err, CallError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("is PID 1 Tandem's"), "{err}");

        let (path, server) = serve_once("silent", |stream| {
            std::thread::sleep(Duration::from_millis(300));
            drop(stream);
        });
        let err = call(&path, &req, Duration::from_millis(50)).expect_err("silent");
        server.join().expect("server");
        assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");

        let (path, server) = serve_once("closes", |mut stream| {
            let _ = read_line(&mut stream, MAX_REQUEST);
        });
        let err = call(&path, &req, Duration::from_secs(5)).expect_err("closed");
        server.join().expect("server");
        assert!(matches!(err, CallError::Receive { .. }), "{err:?}");

        let (path, server) = serve_once("nonsense", |mut stream| {
            let _ = read_line(&mut stream, MAX_REQUEST);
            let _ = stream.write_all(b"{\"response\":\"maybe\"}\n");
        });
        let err = call(&path, &req, Duration::from_secs(5)).expect_err("nonsense");
        server.join().expect("server");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(err, CallError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn lines_are_bounded() {
        let long = vec![b'x'; 5000];
        let err = read_line(&mut long.as_slice(), MAX_REQUEST).expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let two = b"{}\n{}\n".to_vec();
        assert_eq!(read_line(&mut two.as_slice(), 10).expect("line"), b"{}\n");
    }
}
