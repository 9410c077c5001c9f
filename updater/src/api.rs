//! The updater's socket API (`/run/tandem/updater.sock`, root only): one
//! request and one response per connection, each a JSON object on one
//! line. Daemon and clients (`tandemctl update`, the agent) share these
//! types, so they cannot drift.
//!
//! ```text
//! → {"request":"status"}
//! ← {"response":"status","status":{"format":1,"state":"idle",…}}
//! → {"request":"set-channel","channel":"beta"}
//! ← {"response":"done","message":"channel set to beta …","status":{…}}
//! → {"request":"apply"}
//! ← {"response":"refused","message":"…"}
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::status::{AgentReport, UpdateStatus};

/// Longest request or response line.
pub const MAX_LINE: u64 = 1 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// The current status.
    Status,
    /// Check the channel now; the response reports what was found.
    Check,
    /// Check and install now, without waiting for the rollout turn.
    Apply,
    /// Check and install now from a repository on local media (a
    /// directory, or a FAT stick made by `tandem release export`), with
    /// the same signature, version and channel rules as from a server.
    ApplyFrom {
        /// The directory or device, on the node.
        source: String,
    },
    /// Follow another channel (written to /etc/tandem/update.toml), then check.
    SetChannel {
        /// The channel.
        channel: String,
    },
    /// Allow a version that failed here to be installed again.
    ForgetFailed {
        /// The version.
        version: String,
    },
    /// The agent reports what it does.
    AgentReport {
        /// Its report.
        report: AgentReport,
    },
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Response {
    /// The status.
    Status {
        /// The status.
        status: Box<UpdateStatus>,
    },
    /// The request was carried out.
    Done {
        /// What happened.
        message: String,
        /// The status afterwards.
        status: Box<UpdateStatus>,
    },
    /// The request was not carried out.
    Refused {
        /// Why, and what to do.
        message: String,
    },
}

/// Writes one message as a JSON line.
pub fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

/// Reads one JSON line (at most [`MAX_LINE`] bytes).
pub fn read_message<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> std::io::Result<T> {
    let mut line = Vec::new();
    BufReader::new(r.take(MAX_LINE)).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            if line.is_empty() {
                "connection closed without a message"
            } else {
                "message not terminated by a newline"
            },
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// How long a client waits for the answer to `request`: checks and
/// channel changes fetch from the server.
pub fn timeout_for(request: &Request) -> Duration {
    match request {
        Request::Check | Request::SetChannel { .. } | Request::Apply => Duration::from_secs(300),
        _ => Duration::from_secs(10),
    }
}

/// Sends `request` to the daemon at `socket` and returns its response.
pub fn call(socket: &Path, request: &Request) -> Result<Response, Error> {
    let fail = |msg: String| Error::Api {
        socket: socket.into(),
        msg,
    };
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        fail(match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                format!("not running ({e}): is the `updater` service enabled? (`tandemctl status`)")
            }
            _ => e.to_string(),
        })
    })?;
    let timeout = timeout_for(request);
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    write_message(&mut stream, request)
        .map_err(|e| fail(format!("sending the request failed: {e}")))?;
    read_message(&mut stream).map_err(|e| fail(format!("no valid answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let text = serde_json::to_string(&Request::SetChannel {
            channel: "beta".into(),
        })
        .expect("json");
        assert_eq!(text, r#"{"request":"set-channel","channel":"beta"}"#);
        assert_eq!(
            serde_json::to_string(&Request::Status).expect("json"),
            r#"{"request":"status"}"#
        );
        let back: Request =
            serde_json::from_str(r#"{"request":"forget-failed","version":"1.1"}"#).expect("parse");
        assert_eq!(
            back,
            Request::ForgetFailed {
                version: "1.1".into()
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"request":"reboot"}"#).is_err());
        let r = Response::Status {
            status: Box::default(),
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["response"], "status");
        assert_eq!(v["status"]["state"], "idle");
        assert_eq!(serde_json::from_value::<Response>(v).expect("parse"), r);
    }

    #[test]
    fn framing() {
        let mut buf = Vec::new();
        write_message(&mut buf, &Request::Check).expect("write");
        assert_eq!(buf.last(), Some(&b'\n'));
        let back: Request = read_message(&mut buf.as_slice()).expect("read");
        assert_eq!(back, Request::Check);
        assert!(read_message::<Request>(&mut &b""[..]).is_err());
        assert!(
            read_message::<Request>(&mut &b"{\"request\":\"check\"}"[..]).is_err(),
            "no newline"
        );
    }
}
