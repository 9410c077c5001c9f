//! PID 1's control socket ([`INIT_SOCKET`]): `tandemctl stop|start|restart
//! <service>`, one request and one response per connection
//! ([`tandem_contract::control`]).
//!
//! The loop never waits for a client: connections are accepted when the
//! socket is readable, requests read when their connection is (both are
//! in the loop's poll set, through [`Syscall`]), and a client that has not
//! sent a whole request within [`REQUEST_DEADLINE`] is answered with an
//! error and dropped. A stop is answered once the service has stopped
//! ([`Control::stopped`]), later in the loop; the answers go out after the
//! status file shows the change ([`Control::flush`]), so a `tandemctl
//! status` after `tandemctl stop` agrees with it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use tandem_contract::control::{
    ControlError, MAX_REQUEST, Request, Response, StartOutcome, StopOutcome, StopReport,
};
pub use tandem_contract::run::INIT_SOCKET;

use super::shutdown::{Action, Shutdown};
use crate::error::Error;
use crate::services::{Event, StartNow, Supervisor};
use crate::syscall::{Conn, Syscall};
use crate::system_log;

/// How long a client has, from its connection, to send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Most clients served at once; more are answered "busy".
pub const MAX_CLIENTS: usize = 16;

/// Binds the control socket at `path`, mode 0600 (root only), non-blocking.
/// A socket left by an earlier PID 1 (none: /run is new at each boot, but
/// a test may leave one) is replaced.
pub fn bind(path: &Path) -> Result<UnixListener, Error> {
    let fail = |err| Error::Write {
        path: path.to_path_buf(),
        err,
    };
    if UnixStream::connect(path).is_ok() {
        return Err(fail(std::io::Error::from(std::io::ErrorKind::AddrInUse)));
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    Ok(listener)
}

#[derive(Debug)]
enum Phase {
    /// Its request is coming.
    Reading { buf: Vec<u8>, deadline: Instant },
    /// Its request waits for service `service` to stop; `stop` is the
    /// report of its stop, once there is one.
    Waiting {
        request: Request,
        service: usize,
        stop: Option<StopReport>,
    },
}

#[derive(Debug)]
struct Client {
    conn: Conn,
    phase: Phase,
}

/// What reading a client gave.
enum Read {
    /// A whole request line (or what came before the client closed).
    Request(Vec<u8>),
    /// Not yet.
    More,
    /// It cannot be a request.
    Bad(String),
    /// The client went away without a request.
    Gone,
}

/// The clients of the control socket.
#[derive(Debug, Default)]
pub(crate) struct Control {
    clients: Vec<Client>,
    /// Answers to send at the next [`Control::flush`].
    outbox: Vec<(Conn, Response)>,
}

impl Control {
    /// The connections whose request is still coming (the loop polls
    /// them).
    pub(crate) fn watch(&self) -> Vec<Conn> {
        self.clients
            .iter()
            .filter(|c| matches!(c.phase, Phase::Reading { .. }))
            .map(|c| c.conn)
            .collect()
    }

    /// When the next client runs out of time to send its request.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .iter()
            .filter_map(|c| match c.phase {
                Phase::Reading { deadline, .. } => Some(deadline),
                Phase::Waiting { .. } => None,
            })
            .min()
    }

    /// Accepts the connections waiting (each has [`REQUEST_DEADLINE`] from
    /// `now` for its request); past [`MAX_CLIENTS`] they are answered
    /// "busy" at once.
    pub(crate) fn accept(&mut self, sys: &mut dyn Syscall, now: Instant) {
        // Bounded, so that a flood of connections cannot hold up the loop.
        for _ in 0..2 * MAX_CLIENTS {
            let conn = match sys.accept() {
                Ok(Some(conn)) => conn,
                Ok(None) => return,
                Err(e) => {
                    system_log!("warning: control socket: accepting a connection failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                answer_now(
                    sys,
                    conn,
                    &Response::error(ControlError::Busy { limit: MAX_CLIENTS }),
                );
                continue;
            }
            self.clients.push(Client {
                conn,
                phase: Phase::Reading {
                    buf: Vec::new(),
                    deadline: now + REQUEST_DEADLINE,
                },
            });
        }
    }

    /// Reads what `conn` sent; a whole request is carried out (or its
    /// answer waits for a stop). Returns the supervisor's events.
    pub(crate) fn readable(
        &mut self,
        sys: &mut dyn Syscall,
        conn: Conn,
        supervisor: &mut Supervisor,
        now: Instant,
    ) -> Vec<Event> {
        let Some(k) = self.clients.iter().position(|c| c.conn == conn) else {
            return Vec::new();
        };
        let Phase::Reading { buf, .. } = &mut self.clients[k].phase else {
            return Vec::new();
        };
        match read(sys, conn, buf) {
            Read::More => Vec::new(),
            Read::Gone => {
                self.clients.remove(k);
                sys.close(conn);
                Vec::new()
            }
            Read::Bad(message) => {
                self.clients.remove(k);
                self.answer(conn, Response::error(ControlError::BadRequest { message }));
                Vec::new()
            }
            Read::Request(line) => {
                self.clients.remove(k);
                match Request::parse(&line) {
                    Ok(request) => self.handle(sys, conn, request, supervisor, now),
                    Err(e) => {
                        system_log!("control socket: refused an invalid request: {e}");
                        self.answer(conn, Response::error(e));
                        Vec::new()
                    }
                }
            }
        }
    }

    /// Answers the clients that have not sent a whole request in time.
    pub(crate) fn expire(&mut self, now: Instant) {
        let mut k = 0;
        while let Some(c) = self.clients.get(k) {
            match c.phase {
                Phase::Reading { deadline, .. } if deadline <= now => {
                    let conn = c.conn;
                    self.clients.remove(k);
                    self.answer(
                        conn,
                        Response::error(ControlError::BadRequest {
                            message: format!(
                                "no whole request (one JSON line) within {} s",
                                REQUEST_DEADLINE.as_secs()
                            ),
                        }),
                    );
                }
                _ => k += 1,
            }
        }
    }

    fn handle(
        &mut self,
        sys: &mut dyn Syscall,
        conn: Conn,
        request: Request,
        supervisor: &mut Supervisor,
        now: Instant,
    ) -> Vec<Event> {
        let i = match supervisor.lookup(request.service()) {
            Ok(i) => i,
            Err(e) => {
                system_log!(
                    "control socket: refused to {} {}: {e}",
                    request.verb(),
                    request.service()
                );
                self.answer(conn, Response::error(e));
                return Vec::new();
            }
        };
        system_log!("control socket: {} {}", request.verb(), request.service());
        let mut stop = None;
        if request.stops() {
            match supervisor.stop(sys, i, now) {
                Some(report) => stop = Some(report),
                None => {
                    self.clients.push(Client {
                        conn,
                        phase: Phase::Waiting {
                            request,
                            service: i,
                            stop: None,
                        },
                    });
                    return Vec::new();
                }
            }
        }
        self.conclude(sys, conn, request, i, stop, supervisor, now)
    }

    /// Carries out what is left of `request` once service `i` is not being
    /// stopped (its start), and answers.
    #[allow(clippy::too_many_arguments)]
    fn conclude(
        &mut self,
        sys: &mut dyn Syscall,
        conn: Conn,
        request: Request,
        i: usize,
        stop: Option<StopReport>,
        supervisor: &mut Supervisor,
        now: Instant,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        let start = if request.starts() {
            let (result, mut evs) = supervisor.start_now(sys, i, now);
            events.append(&mut evs);
            match result {
                StartNow::Started(_) => Some(StartOutcome::Started),
                StartNow::AlreadyRunning(_) => Some(StartOutcome::AlreadyRunning),
                StartNow::Stopping => {
                    self.clients.push(Client {
                        conn,
                        phase: Phase::Waiting {
                            request,
                            service: i,
                            stop,
                        },
                    });
                    return events;
                }
                StartNow::Failed(message) => {
                    self.answer(
                        conn,
                        Response::error(ControlError::StartFailed {
                            service: supervisor.name(i).to_string(),
                            message,
                        }),
                    );
                    return events;
                }
            }
        } else {
            None
        };
        let (state, pid) = supervisor.state_of(i);
        self.answer(
            conn,
            Response::Done {
                service: supervisor.name(i).to_string(),
                stop: if request.stops() { stop } else { None },
                start,
                state,
                pid,
            },
        );
        events
    }

    /// Service `i`, stopped on request, has stopped (`report`): the
    /// requests waiting for it go on (a restart starts it) and are
    /// answered.
    pub(crate) fn stopped(
        &mut self,
        sys: &mut dyn Syscall,
        supervisor: &mut Supervisor,
        i: usize,
        report: &StopReport,
        now: Instant,
    ) -> Vec<Event> {
        let name = supervisor.name(i).to_string();
        let secs = report.took_ms as f64 / 1000.0;
        let exit = report.exit.as_deref().unwrap_or("no main process");
        match report.outcome {
            StopOutcome::Killed => system_log!(
                "{name} stopped on request: killed at its stop timeout ({exit}), after {secs:.3} s"
            ),
            StopOutcome::GaveUp => system_log!(
                "warning: {name} marked stopped, but processes are still in its cgroup after {secs:.3} s"
            ),
            _ => system_log!("{name} stopped on request ({exit}), after {secs:.3} s"),
        }
        let (waiting, others): (Vec<Client>, Vec<Client>) = std::mem::take(&mut self.clients)
            .into_iter()
            .partition(|c| matches!(c.phase, Phase::Waiting { service, .. } if service == i));
        self.clients = others;
        let mut events = Vec::new();
        for c in waiting {
            if let Phase::Waiting { request, stop, .. } = c.phase {
                let stop = stop.or_else(|| Some(report.clone()));
                events.append(&mut self.conclude(sys, c.conn, request, i, stop, supervisor, now));
            }
        }
        events
    }

    /// The system is shutting down (`how`): every client is answered so,
    /// those waiting for a stop included (the shutdown stops every service
    /// anyway).
    pub(crate) fn shut_down(&mut self, sys: &mut dyn Syscall, how: Shutdown) {
        let refusal = Response::error(ControlError::ShuttingDown {
            how: how.noun().to_string(),
        });
        for c in std::mem::take(&mut self.clients) {
            self.outbox.push((c.conn, refusal.clone()));
        }
        self.flush(sys);
    }

    /// While shutting down: connections that come are answered that the
    /// system is shutting down, without reading their request.
    pub(crate) fn refuse_new(&mut self, sys: &mut dyn Syscall, how: Shutdown) {
        let refusal = Response::error(ControlError::ShuttingDown {
            how: how.noun().to_string(),
        });
        for _ in 0..2 * MAX_CLIENTS {
            match sys.accept() {
                Ok(Some(conn)) => answer_now(sys, conn, &refusal),
                Ok(None) | Err(_) => return,
            }
        }
    }

    fn answer(&mut self, conn: Conn, response: Response) {
        self.outbox.push((conn, response));
    }

    /// Sends the answers (after the status file was written) and closes
    /// their connections.
    pub(crate) fn flush(&mut self, sys: &mut dyn Syscall) {
        for (conn, response) in std::mem::take(&mut self.outbox) {
            answer_now(sys, conn, &response);
        }
    }
}

/// Writes `response` to `conn` (one try: a response is far smaller than a
/// socket's buffer, and the loop does not wait for a client) and closes it.
fn answer_now(sys: &mut dyn Syscall, conn: Conn, response: &Response) {
    let line = response.to_line();
    match sys.send(conn, &line) {
        Ok(n) if n == line.len() => {}
        Ok(n) => system_log!(
            "warning: control socket: {conn} took {n} of the {} bytes of its answer",
            line.len()
        ),
        // `tandemctl stop` interrupted: the stop went on all the same.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
            system_log!("control socket: {conn} went away before its answer")
        }
        Err(e) => system_log!("warning: control socket: answering {conn} failed: {e}"),
    }
    sys.close(conn);
}

/// Reads what is there of a request into `buf`, without blocking.
fn read(sys: &mut dyn Syscall, conn: Conn, buf: &mut Vec<u8>) -> Read {
    let mut chunk = [0u8; 1024];
    // Each read takes something or ends the loop; the length is bounded.
    loop {
        match sys.recv(conn, &mut chunk) {
            Ok(0) if buf.is_empty() => return Read::Gone,
            // Closed its end after a request without a newline: take it.
            Ok(0) => return Read::Request(std::mem::take(buf)),
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    buf.truncate(end + 1);
                    return Read::Request(std::mem::take(buf));
                }
                if buf.len() >= MAX_REQUEST {
                    return Read::Bad(format!("longer than {MAX_REQUEST} bytes"));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Read::More,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Read::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tandem_contract::control::{ControlError, Request, Response, StartOutcome};
    use tandem_contract::run::ServiceState;

    use super::*;
    use crate::services::{Exit, Restart, ServiceDef, test_def};
    use crate::status::{ServiceStatus, Status};
    use crate::syscall::test::{Call, TestSyscall};
    use crate::system::event_loop::tests::{ms, run_loop};

    fn stop(name: &str) -> Request {
        Request::Stop {
            service: name.into(),
        }
    }

    fn start(name: &str) -> Request {
        Request::Start {
            service: name.into(),
        }
    }

    fn restart(name: &str) -> Request {
        Request::Restart {
            service: name.into(),
        }
    }

    fn service<'a>(status: &'a Status, name: &str) -> &'a ServiceStatus {
        status
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name} in {status:?}"))
    }

    fn cgroup(name: &str) -> std::path::PathBuf {
        tandem_contract::cgroup::service(name)
    }

    /// The answer to client `n`, which must be one.
    fn answer(sys: &TestSyscall, n: i32) -> Response {
        sys.response(n).unwrap_or_else(|| {
            panic!(
                "client {n} got no valid answer: {:?}",
                String::from_utf8_lossy(sys.received(n))
            )
        })
    }

    fn report(outcome: StopOutcome, was: ServiceState, exit: &str, took_ms: u64) -> StopReport {
        StopReport {
            outcome,
            was,
            exit: Some(exit.into()),
            took_ms,
        }
    }

    fn stubborn(name: &str, stop_timeout_secs: u64) -> ServiceDef {
        let mut def = test_def(name, Restart::Always);
        def.spec.stop_timeout_secs = stop_timeout_secs;
        def
    }

    #[test]
    fn a_stop_terms_the_service_kills_its_cgroup_at_its_timeout_and_answers_once_it_is_empty() {
        // Ignores SIGTERM and has a child in its cgroup; stop timeout 3 s.
        let mut sys = TestSyscall::default()
            .ignores_term("web")
            .leaves("web", 1)
            .client(ms(1000), &stop("web"))
            .client(ms(6000), &stop("web"))
            .signal_at(ms(10000), libc::SIGTERM);
        run_loop(&mut sys, vec![stubborn("web", 3)], ms(10000), true);
        // SIGTERM to its process group at once, its whole cgroup killed at
        // its stop timeout, answered once the cgroup is empty.
        assert_eq!(
            sys.kills(),
            [
                (ms(1000), -100, libc::SIGTERM),
                (ms(1000), -100, libc::SIGCONT),
                // The shutdown: the stopped service is not touched again.
                (ms(10000), -1, libc::SIGTERM),
            ]
        );
        assert_eq!(
            sys.cgroup_actions(),
            [
                (ms(0), Call::CgroupCreate(cgroup("web"))),
                (ms(4000), Call::CgroupKill(cgroup("web"))),
                (ms(4000), Call::CgroupRemove(cgroup("web"))),
            ]
        );
        assert_eq!(sys.answered_at(1), Some(ms(4000)));
        assert_eq!(sys.closed_at(1), Some(ms(4000)));
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "web".into(),
                stop: Some(report(
                    StopOutcome::Killed,
                    ServiceState::Running,
                    "killed by signal 9",
                    3000
                )),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
        // Not restarted by its policy (`always`).
        assert_eq!(sys.spawn_times("web"), [ms(0)]);
        // Stopping while it was asked to, and the status file said
        // `stopped` before the answer went out.
        let during = sys.published_at(ms(2000)).expect("published");
        assert_eq!(service(during, "web").state, ServiceState::Stopping);
        let answered = sys.published_at(ms(4000)).expect("published");
        assert_eq!(service(answered, "web").state, ServiceState::Stopped);
        let later = sys.published_at(ms(9000)).expect("published");
        assert_eq!(service(later, "web").state, ServiceState::Stopped);
        assert_eq!(service(later, "web").pid, None);
        assert_eq!(service(later, "web").cgroup, None, "its cgroup is removed");
        assert_eq!(service(later, "web").restarts, 0);
        // Stopped already: nothing to do.
        assert_eq!(sys.answered_at(2), Some(ms(6000)));
        assert_eq!(
            answer(&sys, 2),
            Response::Done {
                service: "web".into(),
                stop: Some(StopReport {
                    outcome: StopOutcome::NotRunning,
                    was: ServiceState::Stopped,
                    exit: None,
                    took_ms: 0,
                }),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
    }

    #[test]
    fn a_service_that_ends_on_sigterm_is_stopped_at_once_and_its_dependants_left_alone() {
        // `app` starts after `web`; web's child dies with its cgroup.
        let mut app = test_def("app", Restart::Always);
        app.spec.after = vec!["web".into()];
        let mut sys = TestSyscall::default()
            .leaves("web", 1)
            .client(ms(1000), &stop("web"))
            .signal_at(ms(5000), libc::SIGTERM);
        let defs = vec![app, stubborn("web", 10)];
        run_loop(&mut sys, defs, ms(10000), true);
        assert_eq!(sys.spawns()[0], (ms(0), "web".to_string(), 100));
        assert_eq!(sys.spawns()[1], (ms(0), "app".to_string(), 101));
        assert_eq!(sys.answered_at(1), Some(ms(1000)));
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "web".into(),
                stop: Some(report(
                    StopOutcome::Stopped,
                    ServiceState::Running,
                    "killed by signal 15",
                    0
                )),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
        // What it left in its cgroup was killed with it.
        assert!(
            sys.cgroup_actions()
                .contains(&(ms(1000), Call::CgroupKill(cgroup("web"))))
        );
        // The service after it runs on, untouched, until the shutdown.
        let kills: Vec<_> = sys.kills().into_iter().filter(|k| k.0 < ms(5000)).collect();
        assert_eq!(
            kills,
            [
                (ms(1000), -100, libc::SIGTERM),
                (ms(1000), -100, libc::SIGCONT)
            ]
        );
        let published = sys.published_at(ms(4000)).expect("published");
        assert_eq!(service(published, "app").state, ServiceState::Running);
        assert_eq!(service(published, "web").state, ServiceState::Stopped);
        assert_eq!(sys.spawn_times("app"), [ms(0)]);
    }

    #[test]
    fn a_start_starts_a_stopped_service_now_with_its_backoff_reset() {
        // 100 ms runs that fail: restarts 0.5, 1 and 2 s after each exit.
        let mut sys = TestSyscall::default()
            .runs("flaky", ms(100), Exit::Code(1))
            .client(ms(2000), &stop("flaky"))
            .client(ms(2500), &start("flaky"))
            .signal_at(ms(4000), libc::SIGTERM);
        run_loop(
            &mut sys,
            vec![test_def("flaky", Restart::Always)],
            ms(10000),
            true,
        );
        // Stopped while it waited for its restart (due at 3.8 s): nothing to
        // signal; it does not restart.
        assert_eq!(sys.answered_at(1), Some(ms(2000)));
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "flaky".into(),
                stop: Some(StopReport {
                    outcome: StopOutcome::NotRunning,
                    was: ServiceState::WaitingToRestart,
                    exit: None,
                    took_ms: 0,
                }),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
        let stopped = sys.published_at(ms(2400)).expect("published");
        assert_eq!(service(stopped, "flaky").state, ServiceState::Stopped);
        assert_eq!(
            service(stopped, "flaky").last_exit.as_deref(),
            Some("exit status 1")
        );
        // Started at once; when it fails again it is restarted after the
        // first delay (0.5 s), not the 4 s its backoff had reached.
        assert_eq!(sys.answered_at(2), Some(ms(2500)));
        assert_eq!(
            answer(&sys, 2),
            Response::Done {
                service: "flaky".into(),
                stop: None,
                start: Some(StartOutcome::Started),
                state: ServiceState::Running,
                pid: Some(103),
            }
        );
        assert_eq!(
            sys.spawn_times("flaky"),
            [ms(0), ms(600), ms(1700), ms(2500), ms(3100)]
        );
        // Its cgroup went with the stop and was made again for the start.
        let dir = cgroup("flaky");
        let around: Vec<_> = sys
            .cgroup_actions()
            .into_iter()
            .filter(|(at, c)| {
                (ms(2000)..=ms(2500)).contains(at) && !matches!(c, Call::CgroupKill(_))
            })
            .collect();
        assert_eq!(
            around,
            [
                (ms(2000), Call::CgroupRemove(dir.clone())),
                (ms(2500), Call::CgroupCreate(dir)),
            ]
        );
    }

    #[test]
    fn a_restart_stops_then_starts() {
        let mut sys = TestSyscall::default()
            .client(ms(1000), &restart("web"))
            .client(ms(2000), &start("web"))
            .signal_at(ms(3000), libc::SIGTERM);
        let (_, init) = run_loop(&mut sys, vec![stubborn("web", 10)], ms(10000), true);
        assert_eq!(sys.spawn_times("web"), [ms(0), ms(1000)]);
        assert_eq!(sys.answered_at(1), Some(ms(1000)));
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "web".into(),
                stop: Some(report(
                    StopOutcome::Stopped,
                    ServiceState::Running,
                    "killed by signal 15",
                    0
                )),
                start: Some(StartOutcome::Started),
                state: ServiceState::Running,
                pid: Some(101),
            }
        );
        // Already running: said so, nothing done.
        assert_eq!(
            answer(&sys, 2),
            Response::Done {
                service: "web".into(),
                stop: None,
                start: Some(StartOutcome::AlreadyRunning),
                state: ServiceState::Running,
                pid: Some(101),
            }
        );
        // A start asked for is not a restart by its policy.
        assert_eq!(init.supervisor.status()[0].restarts, 0);
    }

    #[test]
    fn unknown_and_disabled_services_and_nonsense_are_refused() {
        let mut off = test_def("off", Restart::Always);
        off.spec.enabled = false;
        let mut sys = TestSyscall::default()
            .client(ms(100), &stop("nosuch"))
            .client(ms(200), &start("off"))
            .client_script(ms(300), vec![(ms(300), b"stop web\n".to_vec())], None)
            .client_script(
                ms(400),
                vec![(ms(400), br#"{"request":"reboot"}"#.to_vec())],
                Some(ms(400)),
            )
            .client_script(ms(500), vec![(ms(500), vec![b'x'; 5000])], None)
            .signal_at(ms(1000), libc::SIGTERM);
        run_loop(
            &mut sys,
            vec![test_def("web", Restart::Always), off],
            ms(10000),
            true,
        );
        assert_eq!(
            answer(&sys, 1),
            Response::error(ControlError::UnknownService {
                service: "nosuch".into(),
                known: vec!["web".into(), "off".into()],
            })
        );
        assert_eq!(
            answer(&sys, 2),
            Response::error(ControlError::Disabled {
                service: "off".into(),
                file: "test".into(),
                admin_file: "/etc/tandem/services/off.toml".into(),
            })
        );
        for n in 3..=5 {
            assert!(
                matches!(
                    answer(&sys, n),
                    Response::Error {
                        error: ControlError::BadRequest { .. },
                        ..
                    }
                ),
                "client {n}: {:?}",
                answer(&sys, n)
            );
        }
        let Response::Error { message, .. } = answer(&sys, 5) else {
            panic!("not an error");
        };
        assert_eq!(message, "invalid request: longer than 4096 bytes");
        // Each answered at once; nothing was stopped or started.
        for n in 1..=5 {
            assert_eq!(
                sys.answered_at(n),
                Some(ms(u64::try_from(n).expect("n") * 100))
            );
        }
        assert_eq!(sys.spawn_times("web"), [ms(0)]);
        assert!(sys.spawn_times("off").is_empty());
        assert_eq!(sys.kills()[0], (ms(1000), -100, libc::SIGTERM));
    }

    #[test]
    fn a_client_that_sends_nothing_does_not_stall_the_loop() {
        let mut sys = TestSyscall::default()
            .runs("flaky", ms(100), Exit::Code(1))
            .silent_client(ms(1000))
            // Half a request, then the client closes.
            .client_script(
                ms(1200),
                vec![(ms(1200), br#"{"request":"#.to_vec())],
                Some(ms(1300)),
            )
            // Connects and goes away.
            .client_script(ms(1400), Vec::new(), Some(ms(1400)))
            .client(ms(1500), &stop("web"))
            .signal_at(ms(5000), libc::SIGTERM);
        let defs = vec![
            test_def("flaky", Restart::Always),
            test_def("web", Restart::Always),
        ];
        run_loop(&mut sys, defs, ms(500), true);
        // Meanwhile: the watchdog, restarts on time, another client served.
        let pets: Vec<Duration> = (0..=10).map(|k| ms(k * 500)).collect();
        assert_eq!(sys.pets(), pets);
        assert_eq!(
            sys.spawn_times("flaky"),
            [ms(0), ms(600), ms(1700), ms(3800)]
        );
        assert_eq!(sys.answered_at(4), Some(ms(1500)));
        assert!(matches!(answer(&sys, 4), Response::Done { .. }));
        // The silent one is told why and dropped after 2 s.
        assert_eq!(sys.answered_at(1), Some(ms(3000)));
        assert_eq!(sys.closed_at(1), Some(ms(3000)));
        assert_eq!(
            answer(&sys, 1),
            Response::error(ControlError::BadRequest {
                message: "no whole request (one JSON line) within 2 s".into()
            })
        );
        // Half a request: refused when the client closed its end.
        assert_eq!(sys.answered_at(2), Some(ms(1300)));
        assert!(matches!(
            answer(&sys, 2),
            Response::Error {
                error: ControlError::BadRequest { .. },
                ..
            }
        ));
        // Gone without a word: closed, nothing written.
        assert_eq!(sys.closed_at(3), Some(ms(1400)));
        assert!(sys.received(3).is_empty());
    }

    #[test]
    fn a_stop_under_way_when_the_shutdown_comes_is_answered_so() {
        let mut sys = TestSyscall::default()
            .ignores_term("web")
            .client(ms(1000), &stop("web"))
            .signal_at(ms(2000), libc::SIGUSR2)
            .client(ms(3000), &stop("web"));
        let (how, init) = run_loop(&mut sys, vec![stubborn("web", 5)], ms(10000), true);
        assert_eq!(how, Shutdown::PowerOff);
        let refusal = Response::error(ControlError::ShuttingDown {
            how: "power off".into(),
        });
        // The waiting client at once; one that comes during the shutdown
        // without its request being read.
        assert_eq!(sys.answered_at(1), Some(ms(2000)));
        assert_eq!(answer(&sys, 1), refusal);
        let second = sys.answered_at(2).expect("answered");
        assert!(
            (ms(3000)..ms(3020)).contains(&second),
            "answered at {second:?}"
        );
        assert_eq!(answer(&sys, 2), refusal);
        // The shutdown finished the stop: killed at the stop timeout
        // counted from the request.
        assert_eq!(
            sys.cgroup_actions()
                .into_iter()
                .filter(|(_, c)| matches!(c, Call::CgroupKill(_)))
                .collect::<Vec<_>>(),
            [(ms(6000), Call::CgroupKill(cgroup("web")))]
        );
        assert_eq!(
            sys.kills().last().map(|k| (k.1, k.2)),
            Some((-1, libc::SIGTERM))
        );
        assert_eq!(init.supervisor.status()[0].state, ServiceState::Stopped);
    }

    #[test]
    fn a_start_while_the_service_stops_starts_it_once_stopped() {
        let mut sys = TestSyscall::default()
            .ignores_term("web")
            .client(ms(1000), &stop("web"))
            .client(ms(1500), &start("web"))
            .client(ms(1600), &stop("web"))
            .signal_at(ms(5000), libc::SIGTERM);
        run_loop(&mut sys, vec![stubborn("web", 2)], ms(10000), true);
        for n in 1..=3 {
            assert_eq!(sys.answered_at(n), Some(ms(3000)), "client {n}");
        }
        let killed = report(
            StopOutcome::Killed,
            ServiceState::Running,
            "killed by signal 9",
            2000,
        );
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "web".into(),
                stop: Some(killed.clone()),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
        assert_eq!(
            answer(&sys, 2),
            Response::Done {
                service: "web".into(),
                stop: None,
                start: Some(StartOutcome::Started),
                state: ServiceState::Running,
                pid: Some(101),
            }
        );
        // A second stop of the same run waited for it too (the start came
        // before its answer: it says so).
        assert_eq!(
            answer(&sys, 3),
            Response::Done {
                service: "web".into(),
                stop: Some(killed),
                start: None,
                state: ServiceState::Running,
                pid: Some(101),
            }
        );
        assert_eq!(sys.spawn_times("web"), [ms(0), ms(3000)]);
    }

    #[test]
    fn a_service_that_cannot_start_is_reported() {
        let mut sys = TestSyscall::default()
            .missing_program("broken")
            .client(ms(1000), &start("broken"))
            .signal_at(ms(2000), libc::SIGTERM);
        run_loop(
            &mut sys,
            vec![test_def("broken", Restart::Never)],
            ms(10000),
            true,
        );
        let Response::Error {
            error: ControlError::StartFailed { service, message },
            ..
        } = answer(&sys, 1)
        else {
            panic!("{:?}", answer(&sys, 1));
        };
        assert_eq!(service, "broken");
        assert!(
            message.starts_with("starting service broken (/bin/true) failed: "),
            "{message}"
        );
    }

    #[test]
    fn a_stopped_service_waiting_for_another_does_not_start_until_asked() {
        let mut prep = test_def("prep", Restart::Never);
        prep.spec =
            crate::services::parse("type = \"oneshot\"\nexec = [\"/bin/true\"]\n").expect("valid");
        let mut app = test_def("app", Restart::Always);
        app.spec.after = vec!["prep".into()];
        let mut sys = TestSyscall::default()
            .runs("prep", ms(3000), Exit::Code(0))
            .client(ms(1000), &stop("app"))
            .client(ms(4000), &start("app"))
            .signal_at(ms(5000), libc::SIGTERM);
        run_loop(&mut sys, vec![app, prep], ms(10000), true);
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "app".into(),
                stop: Some(StopReport {
                    outcome: StopOutcome::NotRunning,
                    was: ServiceState::WaitingForServices,
                    exit: None,
                    took_ms: 0,
                }),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
        // prep succeeded at 3 s; app stays stopped until started.
        assert_eq!(sys.spawn_times("app"), [ms(4000)]);
        let between = sys.published_at(ms(3500)).expect("published");
        assert_eq!(service(between, "app").state, ServiceState::Stopped);
    }

    #[test]
    fn a_stop_whose_processes_will_not_end_is_given_up_and_reported() {
        let mut sys = TestSyscall::default()
            .ignores_term("web")
            .leaves("web", 1)
            .stuck("web")
            .client(ms(1000), &stop("web"))
            .signal_at(ms(6000), libc::SIGTERM);
        run_loop(&mut sys, vec![stubborn("web", 1)], ms(10000), true);
        // Killed at 2 s, given up 2 s later.
        assert_eq!(sys.answered_at(1), Some(ms(4000)));
        assert_eq!(
            answer(&sys, 1),
            Response::Done {
                service: "web".into(),
                stop: Some(report(
                    StopOutcome::GaveUp,
                    ServiceState::Running,
                    "killed by signal 9",
                    3000
                )),
                start: None,
                state: ServiceState::Stopped,
                pid: None,
            }
        );
        // Its cgroup stays while something is in it.
        let published = sys.published_at(ms(5000)).expect("published");
        assert_eq!(
            service(published, "web").cgroup.as_deref(),
            Some("/sys/fs/cgroup/system/web.service")
        );
    }
}
