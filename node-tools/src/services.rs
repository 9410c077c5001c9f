//! `tandemctl stop|start|restart <service> [--json]`: one request to PID 1
//! over its control socket ([`tandem_contract::control`]), its answer
//! printed.
//!
//! Exit status: [`EXIT_DONE`] when the service is as asked (stopped,
//! running; also when there was nothing to do), [`EXIT_REFUSED`] when the
//! request was refused or failed (unknown or disabled service, shutting
//! down, the program could not start, PID 1 unreachable), [`EXIT_TIMEOUT`]
//! when a stop was given up (processes still there after they were
//! killed) or no answer came in time.

use std::path::Path;

use initramfs::status::secs;
use tandem_contract::control::{
    CLIENT_TIMEOUT, CallError, INIT_SOCKET, Request, Response, StartOutcome, StopOutcome,
    StopReport, call,
};
use tandem_contract::run::ServiceState;

use crate::error::Error;

/// The service is as asked.
pub const EXIT_DONE: u8 = 0;
/// Refused or failed.
pub const EXIT_REFUSED: u8 = 1;
/// The stop did not finish: processes are left, or PID 1 did not answer.
pub const EXIT_TIMEOUT: u8 = 2;

/// Runs `tandemctl <verb> <args>` for `verb` `stop`, `start` or `restart`.
pub fn run(verb: &str, args: &[&str], usage: &str) -> Result<u8, Error> {
    run_at(Path::new(INIT_SOCKET), verb, args, usage)
}

/// [`run`] with PID 1's socket at `socket`.
pub fn run_at(socket: &Path, verb: &str, args: &[&str], usage: &str) -> Result<u8, Error> {
    let request = request(verb, args).ok_or_else(|| Error::Usage(usage.to_string()))?;
    let json = args.contains(&"--json");
    let response = match call(socket, &request, CLIENT_TIMEOUT) {
        Ok(r) => r,
        Err(e @ CallError::Timeout { .. }) => {
            eprintln!("tandemctl: {e}; PID 1 may still carry it out (see `tandemctl status`)");
            return Ok(EXIT_TIMEOUT);
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        match &response {
            Response::Error { message, .. } => eprintln!("tandemctl: {message}"),
            Response::Done { .. } => print!("{}", render(&response)),
        }
    }
    Ok(exit_code(&response))
}

/// The request `tandemctl <verb> <args>` asks for: one service name, and
/// `--json` anywhere.
pub fn request(verb: &str, args: &[&str]) -> Option<Request> {
    let names: Vec<&str> = args.iter().copied().filter(|a| *a != "--json").collect();
    let [name] = names.as_slice() else {
        return None;
    };
    if name.starts_with('-') || name.is_empty() {
        return None;
    }
    let service = name.to_string();
    match verb {
        "stop" => Some(Request::Stop { service }),
        "start" => Some(Request::Start { service }),
        "restart" => Some(Request::Restart { service }),
        _ => None,
    }
}

/// The exit status for `response` (see the module's documentation).
pub fn exit_code(response: &Response) -> u8 {
    match response {
        Response::Error { .. } => EXIT_REFUSED,
        Response::Done {
            stop:
                Some(StopReport {
                    outcome: StopOutcome::GaveUp,
                    ..
                }),
            ..
        } => EXIT_TIMEOUT,
        Response::Done { .. } => EXIT_DONE,
    }
}

/// What happened, for people: a line for the stop, one for the start.
pub fn render(response: &Response) -> String {
    let Response::Done {
        service,
        stop,
        start,
        state,
        pid,
    } = response
    else {
        return match response {
            Response::Error { message, .. } => format!("{message}\n"),
            Response::Done { .. } => String::new(),
        };
    };
    let mut out = String::new();
    if let Some(stop) = stop {
        let took = secs(stop.took_ms.saturating_mul(1000));
        let exit = stop.exit.as_deref().unwrap_or("no main process");
        let line = match stop.outcome {
            StopOutcome::Stopped => format!("{service} stopped ({exit}) after {took}"),
            StopOutcome::Killed => format!(
                "{service} did not stop within its stop timeout: its cgroup was killed ({exit}); stopped after {took}"
            ),
            StopOutcome::GaveUp => format!(
                "{service}: processes are still in its cgroup {took} after the stop began, even after they were killed (stuck in the kernel?); marked stopped, not waited for any longer"
            ),
            StopOutcome::NotRunning if stop.was == *state || start.is_some() => {
                format!("{service} was not running ({}); nothing to stop", stop.was)
            }
            StopOutcome::NotRunning => format!(
                "{service} was not running ({}); it is {state} now and does not start until `tandemctl start {service}`",
                stop.was
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let pid = pid.map_or_else(|| "-".to_string(), |p| p.to_string());
    match start {
        Some(StartOutcome::Started) => out.push_str(&format!("{service} started (pid {pid})\n")),
        Some(StartOutcome::AlreadyRunning) => {
            out.push_str(&format!("{service} is already running (pid {pid})\n"))
        }
        None if *state != ServiceState::Stopped
            && stop
                .as_ref()
                .is_some_and(|s| s.outcome != StopOutcome::NotRunning) =>
        {
            // Another request started it again before this one's answer.
            out.push_str(&format!("{service} is {state} now (pid {pid})\n"))
        }
        None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_contract::control::ControlError;

    fn done(
        stop: Option<StopReport>,
        start: Option<StartOutcome>,
        state: ServiceState,
        pid: Option<i32>,
    ) -> Response {
        Response::Done {
            service: "web".into(),
            stop,
            start,
            state,
            pid,
        }
    }

    fn report(outcome: StopOutcome, exit: Option<&str>, took_ms: u64) -> StopReport {
        StopReport {
            outcome,
            was: ServiceState::Running,
            exit: exit.map(String::from),
            took_ms,
        }
    }

    #[test]
    fn arguments() {
        assert_eq!(
            request("stop", &["web"]),
            Some(Request::Stop {
                service: "web".into()
            })
        );
        assert_eq!(
            request("restart", &["--json", "getty@ttyS1"]),
            Some(Request::Restart {
                service: "getty@ttyS1".into()
            })
        );
        assert_eq!(
            request("start", &["web", "--json"]),
            Some(Request::Start {
                service: "web".into()
            })
        );
        for bad in [&[][..], &["a", "b"], &["--json"], &["--force"], &[""]] {
            assert_eq!(request("stop", bad), None, "{bad:?}");
        }
        assert_eq!(request("kill", &["web"]), None);
    }

    #[test]
    fn what_a_stop_says_and_its_exit_status() {
        let stopped = done(
            Some(report(
                StopOutcome::Stopped,
                Some("killed by signal 15"),
                120,
            )),
            None,
            ServiceState::Stopped,
            None,
        );
        assert_eq!(
            render(&stopped),
            "web stopped (killed by signal 15) after 0.120 s\n"
        );
        assert_eq!(exit_code(&stopped), EXIT_DONE);

        let killed = done(
            Some(report(
                StopOutcome::Killed,
                Some("killed by signal 9"),
                10_004,
            )),
            None,
            ServiceState::Stopped,
            None,
        );
        assert_eq!(
            render(&killed),
            "web did not stop within its stop timeout: its cgroup was killed (killed by signal 9); stopped after 10.004 s\n"
        );
        assert_eq!(exit_code(&killed), EXIT_DONE);

        let gave_up = done(
            Some(report(
                StopOutcome::GaveUp,
                Some("killed by signal 9"),
                12_000,
            )),
            None,
            ServiceState::Stopped,
            None,
        );
        assert!(
            render(&gave_up).starts_with("web: processes are still in its cgroup 12.000 s"),
            "{}",
            render(&gave_up)
        );
        assert_eq!(exit_code(&gave_up), EXIT_TIMEOUT);

        let mut waiting = report(StopOutcome::NotRunning, None, 0);
        waiting.was = ServiceState::WaitingForServices;
        let held = done(Some(waiting), None, ServiceState::Stopped, None);
        assert_eq!(
            render(&held),
            "web was not running (waiting for services); it is stopped now and does not start until `tandemctl start web`\n"
        );
        let mut failed = report(StopOutcome::NotRunning, None, 0);
        failed.was = ServiceState::Failed;
        let nothing = done(Some(failed), None, ServiceState::Failed, None);
        assert_eq!(
            render(&nothing),
            "web was not running (failed); nothing to stop\n"
        );
        assert_eq!(exit_code(&nothing), EXIT_DONE);
        // Started again by another request before this answer.
        let again = done(
            Some(report(StopOutcome::Stopped, Some("exit status 0"), 5)),
            None,
            ServiceState::Running,
            Some(90),
        );
        assert_eq!(
            render(&again),
            "web stopped (exit status 0) after 0.005 s\nweb is running now (pid 90)\n"
        );
    }

    #[test]
    fn what_a_start_and_a_restart_say() {
        let started = done(
            None,
            Some(StartOutcome::Started),
            ServiceState::Running,
            Some(311),
        );
        assert_eq!(render(&started), "web started (pid 311)\n");
        let running = done(
            None,
            Some(StartOutcome::AlreadyRunning),
            ServiceState::Running,
            Some(88),
        );
        assert_eq!(render(&running), "web is already running (pid 88)\n");
        assert_eq!(exit_code(&running), EXIT_DONE);
        let restarted = done(
            Some(report(StopOutcome::Stopped, Some("exit status 0"), 40)),
            Some(StartOutcome::Started),
            ServiceState::Running,
            Some(312),
        );
        assert_eq!(
            render(&restarted),
            "web stopped (exit status 0) after 0.040 s\nweb started (pid 312)\n"
        );
        assert_eq!(exit_code(&restarted), EXIT_DONE);
    }

    #[test]
    fn a_request_goes_to_the_socket_and_its_answer_sets_the_exit_status() {
        use std::io::{BufRead, BufReader, Write};
        let dir = std::env::temp_dir().join(format!("tandemctl-svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("init.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let server = std::thread::spawn(move || {
            let mut asked = Vec::new();
            for answer in [
                done(
                    Some(report(
                        StopOutcome::GaveUp,
                        Some("killed by signal 9"),
                        3000,
                    )),
                    None,
                    ServiceState::Stopped,
                    None,
                ),
                Response::error(ControlError::UnknownService {
                    service: "wbe".into(),
                    known: vec!["web".into()],
                }),
            ] {
                let (stream, _) = listener.accept().expect("accept");
                let mut line = String::new();
                BufReader::new(&stream)
                    .read_line(&mut line)
                    .expect("request");
                asked.push(line);
                (&stream).write_all(&answer.to_line()).expect("answer");
            }
            asked
        });
        let usage = "usage";
        assert_eq!(
            run_at(&socket, "stop", &["web", "--json"], usage).expect("answered"),
            EXIT_TIMEOUT
        );
        assert_eq!(
            run_at(&socket, "start", &["wbe"], usage).expect("answered"),
            EXIT_REFUSED
        );
        let asked = server.join().expect("server");
        assert_eq!(
            asked,
            [
                "{\"request\":\"stop\",\"service\":\"web\"}\n",
                "{\"request\":\"start\",\"service\":\"wbe\"}\n"
            ]
        );
        // Nobody listens any more.
        let _ = std::fs::remove_file(&socket);
        assert!(matches!(
            run_at(&socket, "restart", &["web"], usage),
            Err(Error::Control(CallError::Connect { .. }))
        ));
        assert!(matches!(
            run_at(&socket, "restart", &[], usage),
            Err(Error::Usage(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_exit_1() {
        for e in [
            ControlError::UnknownService {
                service: "wbe".into(),
                known: vec!["web".into()],
            },
            ControlError::Disabled {
                service: "web".into(),
                file: "/etc/tandem/services/web.toml".into(),
                admin_file: "/etc/tandem/services/web.toml".into(),
            },
            ControlError::ShuttingDown {
                how: "reboot".into(),
            },
        ] {
            let r = Response::error(e.clone());
            assert_eq!(exit_code(&r), EXIT_REFUSED);
            assert_eq!(render(&r), format!("{e}\n"));
        }
    }
}
