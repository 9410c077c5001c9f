//! `tandemctl update …`: a thin client of the daemon's socket.
//!
//! ```text
//! tandemctl update status [--json]      state, progress, versions, last check, what to do
//! tandemctl update check                check the channel now and say what was found
//! tandemctl update apply [--no-wait]    install now, without waiting for the rollout turn
//! tandemctl update apply --from <dir-or-device> [--no-wait]
//!                                       install from local media (no network)
//! tandemctl update channel <name>       follow another channel (written to /etc/tandem/update.toml)
//! tandemctl update forget-failed <ver>  allow a version that failed here again
//! ```
//!
//! Exit status: 0 done; 1 when the updater reports an error, refuses, or
//! `apply` did not install (and for usage errors, as every tandemctl error).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::api::{self, Request, Response};
use crate::clock::now_unix;
use crate::error::Error;
use crate::status::{UpdateState, UpdateStatus, render, summary_line};

/// Usage text.
pub const USAGE: &str = "usage:
  tandemctl update status [--json]      state, progress, versions, checks, what to do
  tandemctl update check                check the channel now and report what was found
  tandemctl update apply [--no-wait]    install now, without waiting for this node's rollout turn
  tandemctl update apply --from <dir-or-device> [--no-wait]
                                        install from local media: a repository directory, or a
                                        stick made by `tandem release export` (same checks)
  tandemctl update channel <name>       follow another channel (writes /etc/tandem/update.toml)
  tandemctl update forget-failed <ver>  allow a version that failed to come up here again";

/// Runs `tandemctl update <args>` against the daemon at `socket`; returns
/// the exit status.
pub fn run(args: &[&str], socket: &Path) -> Result<u8, Error> {
    let mut out = std::io::stdout().lock();
    let print = |out: &mut dyn Write, text: &str| {
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    match args {
        ["status"] | [] => {
            let s = status(socket)?;
            print(&mut out, &render(&s, now_unix()));
            Ok(code(&s))
        }
        ["status", "--json"] => {
            let s = status(socket)?;
            let text = serde_json::to_string_pretty(&s).unwrap_or_default();
            print(&mut out, &format!("{text}\n"));
            Ok(0)
        }
        ["check"] => done(&mut out, socket, &Request::Check),
        ["apply"] => {
            let code = done(&mut out, socket, &Request::Apply)?;
            if code != 0 {
                return Ok(code);
            }
            follow(&mut out, socket)
        }
        ["apply", "--no-wait"] => done(&mut out, socket, &Request::Apply),
        ["apply", "--from", source] | ["apply", "--from", source, "--no-wait"] => {
            let req = Request::ApplyFrom {
                source: absolute(source),
            };
            let code = done(&mut out, socket, &req)?;
            if code != 0 || args.last() == Some(&"--no-wait") {
                return Ok(code);
            }
            follow(&mut out, socket)
        }
        ["channel", name] => done(
            &mut out,
            socket,
            &Request::SetChannel {
                channel: name.to_string(),
            },
        ),
        ["forget-failed", version] => done(
            &mut out,
            socket,
            &Request::ForgetFailed {
                version: version.to_string(),
            },
        ),
        ["help" | "--help" | "-h"] => {
            print(&mut out, &format!("{USAGE}\n"));
            Ok(0)
        }
        _ => Err(Error::Usage(USAGE.to_string())),
    }
}

/// `path` made absolute against this process's directory (the daemon's
/// is another).
fn absolute(path: &str) -> String {
    std::path::absolute(path).map_or_else(|_| path.to_string(), |p| p.display().to_string())
}

/// The daemon's status.
pub fn status(socket: &Path) -> Result<UpdateStatus, Error> {
    match api::call(socket, &Request::Status)? {
        Response::Status { status } | Response::Done { status, .. } => Ok(*status),
        Response::Refused { message } => Err(Error::Api {
            socket: socket.into(),
            msg: message,
        }),
    }
}

fn code(s: &UpdateStatus) -> u8 {
    u8::from(matches!(s.state, UpdateState::Error { .. }))
}

fn done(out: &mut dyn Write, socket: &Path, req: &Request) -> Result<u8, Error> {
    match api::call(socket, req)? {
        Response::Done { message, status } => {
            let _ = writeln!(out, "{message}");
            if let UpdateState::Error { action, .. } = &status.state {
                let _ = writeln!(out, "to do: {action}");
            }
            Ok(code(&status))
        }
        Response::Status { status } => {
            let _ = writeln!(out, "{}", summary_line(&status, now_unix()));
            Ok(code(&status))
        }
        Response::Refused { message } => {
            let _ = writeln!(out, "refused: {message}");
            Ok(1)
        }
    }
}

/// Prints progress until the install ends; 0 when it is installed.
fn follow(out: &mut dyn Write, socket: &Path) -> Result<u8, Error> {
    let mut last = String::new();
    loop {
        let s = status(socket)?;
        let line = summary_line(&s, now_unix());
        if line != last {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
            last = line;
        }
        match &s.state {
            UpdateState::UpdatedNeedReboot { .. } => return Ok(0),
            UpdateState::Error { action, .. } => {
                let _ = writeln!(out, "to do: {action}");
                return Ok(1);
            }
            UpdateState::UpdateAvailable { .. } => return Ok(1),
            st if st.busy() || matches!(st, UpdateState::Checking) => {}
            _ => return Ok(0),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The update line of `tandemctl status`.
pub fn status_line(socket: &Path) -> String {
    match status(socket) {
        Ok(s) => summary_line(&s, now_unix()),
        Err(e) => format!("unknown ({e})"),
    }
}
