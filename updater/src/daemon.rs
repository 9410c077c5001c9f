//! `tandem-updated`: the update daemon.
//!
//! The main thread owns the [`Engine`]: it re-reads the configuration when a
//! file changes, checks the channel on schedule (interval ±10 %, backoff
//! after failures), watches the health of an unconfirmed boot, and carries
//! out socket commands. An install runs on its own thread and reports back.
//! The socket thread answers `status` itself from the shared status, so a
//! status is always available, even in the middle of a check.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::api::{self, Request, Response};
use crate::clock::now_unix;
use crate::engine::{self, CheckOutcome, Engine, Next, RebootFn, Shared};
use crate::error::Error;
use crate::http::Fetch;
use crate::node::Paths;
use crate::status::{ApplyReport, UpdateState, summary_line};
use crate::version::Version;

/// How often the main loop wakes up (configuration changes, health).
pub const TICK: Duration = Duration::from_secs(2);
/// Delay of the first check after start (the network may still be coming up).
pub const FIRST_CHECK: Duration = Duration::from_secs(3);

/// How the daemon runs.
pub struct Options {
    /// File locations.
    pub paths: Paths,
    /// Asks for a reboot (after giving up an unhealthy new slot).
    pub reboot: Arc<RebootFn>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("paths", &self.paths)
            .finish()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            paths: Paths::default(),
            reboot: Arc::new(reboot_via_init),
        }
    }
}

/// Asks PID 1 to reboot the way busybox's `reboot` does
/// ([`Shutdown::request`](tandem_contract::run::Shutdown::request)).
pub fn reboot_via_init(why: &str) {
    crate::log!("asking init for a reboot: {why}");
    if let Err(err) = tandem_contract::run::Shutdown::Reboot.request() {
        crate::log!("signalling PID 1 failed: {err}");
    }
}

enum Event {
    Command(Request, Sender<Response>),
    Installed(Box<Result<ApplyReport, Error>>),
}

/// Binds the socket (0600). A socket another daemon still answers on is
/// refused; a stale one is replaced.
pub fn bind(socket: &Path) -> Result<UnixListener, Error> {
    let fail = |err| Error::Write {
        path: socket.into(),
        err,
    };
    if UnixStream::connect(socket).is_ok() {
        return Err(Error::Api {
            socket: socket.into(),
            msg: "another tandem-updated is running".into(),
        });
    }
    let _ = std::fs::remove_file(socket);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let listener = UnixListener::bind(socket).map_err(fail)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(listener)
}

fn serve(listener: UnixListener, status: Shared, tx: Sender<Event>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (status, tx) = (status.clone(), tx.clone());
        let _ = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || connection(stream, &status, &tx));
    }
}

fn connection(mut stream: UnixStream, status: &Shared, tx: &Sender<Event>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let response = match api::read_message::<Request>(&mut stream) {
        Err(e) => Response::Refused {
            message: format!("invalid request: {e}"),
        },
        Ok(Request::Status) => Response::Status {
            status: Box::new(status.get()),
        },
        Ok(req) => {
            let timeout = api::timeout_for(&req);
            let (rtx, rrx) = mpsc::channel();
            if tx.send(Event::Command(req, rtx)).is_err() {
                Response::Refused {
                    message: "the updater is shutting down".into(),
                }
            } else {
                rrx.recv_timeout(timeout)
                    .unwrap_or_else(|_| Response::Refused {
                        message: "the updater did not answer in time".into(),
                    })
            }
        }
    };
    let _ = api::write_message(&mut stream, &response);
}

struct Daemon {
    engine: Engine,
    opts: Options,
    tx: Sender<Event>,
    installing: bool,
    on_trial: bool,
    next_check: Instant,
}

/// Runs the daemon; returns only if it cannot start.
pub fn run(opts: Options) -> Result<(), Error> {
    let listener = bind(&opts.paths.socket)?;
    let engine = Engine::new(opts.paths.clone());
    let (tx, rx) = mpsc::channel();
    let status = engine.status.clone();
    let stx = tx.clone();
    std::thread::Builder::new()
        .name("api-server".into())
        .spawn(move || serve(listener, status, stx))
        .map_err(|e| Error::Api {
            socket: opts.paths.socket.clone(),
            msg: format!("starting the server thread: {e}"),
        })?;
    let first = now_unix() + FIRST_CHECK.as_secs();
    engine.status.update(|s| s.next_check = Some(first));
    let mut d = Daemon {
        engine,
        opts,
        tx,
        installing: false,
        on_trial: false,
        next_check: Instant::now() + FIRST_CHECK,
    };
    let s = d.engine.status.get();
    crate::log!(
        "started: running {} (slot {}), channel {}, server {}",
        s.running_version
            .as_ref()
            .map_or("?".into(), ToString::to_string),
        s.running_slot.map_or("?".into(), |slot| slot.to_string()),
        s.channel.as_deref().unwrap_or("?"),
        s.server.as_deref().unwrap_or("(none)")
    );
    match d.engine.boot_outcome() {
        Ok(outcome) => crate::log!("boot: {outcome:?}"),
        Err(e) => crate::log!("cannot tell what this boot means for updates: {e}"),
    }
    if let Err(e) = d.engine.repair_esp() {
        crate::log!("warning: cannot check the ESP: {e}");
    }
    d.on_trial = matches!(d.engine.running_confirmed(), Ok(false));
    loop {
        d.step();
        let wait = TICK
            .min(d.next_check.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(10));
        match rx.recv_timeout(wait) {
            Ok(Event::Command(req, reply)) => {
                let r = d.command(req);
                let _ = reply.send(r);
            }
            Ok(Event::Installed(result)) => d.installed(*result),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

impl Daemon {
    fn step(&mut self) {
        self.engine.reload_config(false);
        if self.on_trial {
            match self.engine.health_tick(&*self.opts.reboot) {
                Ok(true) => {
                    self.on_trial = false;
                    // An update may have waited for this confirmation.
                    self.next_check = Instant::now();
                }
                Ok(false) => {}
                Err(e) => crate::log!("health: {e}"),
            }
        }
        if !self.installing && Instant::now() >= self.next_check {
            if matches!(
                self.engine.status.get().state,
                UpdateState::UpdatedNeedReboot { .. }
            ) {
                // Nothing to do until the reboot; look again later.
                self.schedule(None);
            } else {
                self.engine.reload_config(true);
                self.check(false);
            }
        }
    }

    fn schedule(&mut self, eligible_at: Option<u64>) {
        let cfg = self.engine.config();
        let mut delay = engine::next_delay(
            cfg.check_interval,
            self.engine.failures,
            engine::random_unit(),
        );
        if let Some(at) = eligible_at {
            // Wake up when this node's turn comes (and check again then:
            // the channel may have moved on).
            delay = delay.min(Duration::from_secs(at.saturating_sub(now_unix()) + 1));
        }
        self.next_check = Instant::now() + delay;
        let next = now_unix() + delay.as_secs();
        self.engine.status.update(|s| s.next_check = Some(next));
    }

    /// Checks now; installs if due (or `force`). Returns what happened.
    fn check(&mut self, force: bool) -> String {
        self.check_from(force, None)
    }

    /// Where updates come from: the configured servers, or `from` (local
    /// media).
    fn source(&self, from: Option<&Path>) -> Result<Box<dyn Fetch + Send>, Error> {
        match from {
            Some(p) => crate::local::open(p),
            None => Ok(Box::new(self.engine.fetcher()?)),
        }
    }

    /// [`Self::check`] against `from` (local media) instead of the servers.
    fn check_from(&mut self, force: bool, from: Option<&Path>) -> String {
        let saved = self.engine.status.get();
        let before = saved.state.clone();
        self.engine.status.set_state(UpdateState::Checking);
        let result = self
            .source(from)
            .and_then(|mut f| self.engine.check(f.as_mut()));
        self.engine.status.update(|s| {
            s.state = saved.state;
            s.since = saved.since;
        });
        match result {
            Err(e) => {
                let retry = engine::next_delay(
                    self.engine.config().check_interval,
                    self.engine.failures + 1,
                    0.0,
                );
                self.engine.record_error(&e, retry);
                self.schedule(None);
                format!("check failed: {e}")
            }
            Ok(outcome) => {
                self.engine.record_check(&outcome);
                let CheckOutcome::Available(offer) = outcome else {
                    self.schedule(None);
                    return summary_line(&self.engine.status.get(), now_unix());
                };
                let confirmed = self.engine.running_confirmed().unwrap_or(false);
                match engine::after_check(&offer, now_unix(), force, confirmed, &before) {
                    Next::Show(state) => {
                        self.engine.status.set_state(state);
                        self.schedule(Some(offer.eligible_at));
                        summary_line(&self.engine.status.get(), now_unix())
                    }
                    Next::Install => match self.start_install(*offer, from) {
                        Ok(msg) => msg,
                        Err(e) => {
                            let retry = engine::next_delay(
                                self.engine.config().check_interval,
                                self.engine.failures + 1,
                                0.0,
                            );
                            self.engine.record_error(&e, retry);
                            self.schedule(None);
                            e.to_string()
                        }
                    },
                }
            }
        }
    }

    fn start_install(
        &mut self,
        offer: engine::Offer,
        from: Option<&Path>,
    ) -> Result<String, Error> {
        let ctx = self.engine.install_context()?;
        let mut fetch = self.source(from)?;
        let status = self.engine.status.clone();
        let tx = self.tx.clone();
        let version = offer.pointer.version.clone();
        let slot = ctx.boot.slot.other();
        crate::log!("installing {version} into slot {slot}");
        status.set_state(UpdateState::Downloading(crate::status::Transfer {
            version: version.clone(),
            slot,
            bytes_done: 0,
            bytes_total: offer.manifest.usr.size,
            percent: 0.0,
            downloaded_bytes: 0,
            copied_bytes: 0,
            present_bytes: 0,
        }));
        std::thread::Builder::new()
            .name("install".into())
            .spawn(move || {
                let r = engine::install(&ctx, &offer, fetch.as_mut(), &status);
                let _ = tx.send(Event::Installed(Box::new(r)));
            })
            .map_err(|e| Error::Node {
                what: format!("starting the install thread: {e}"),
            })?;
        self.installing = true;
        Ok(format!(
            "installing {version} into slot {slot}: follow with `tandemctl update status`"
        ))
    }

    fn installed(&mut self, result: Result<ApplyReport, Error>) {
        self.installing = false;
        match result {
            Ok(report) => {
                crate::log!(
                    "installed {} into slot {} in {} s: {} bytes downloaded, {} copied from the running slot, {} already in place; reboot needed",
                    report.version,
                    report.slot,
                    report.seconds,
                    report.downloaded_bytes,
                    report.copied_bytes,
                    report.present_bytes
                );
                self.engine.failures = 0;
                let (version, slot) = (report.version.clone(), report.slot);
                self.engine.status.update(|s| {
                    s.failures = 0;
                    s.last_apply = Some(report);
                });
                self.engine
                    .status
                    .set_state(UpdateState::UpdatedNeedReboot { version, slot });
                self.schedule(None);
            }
            Err(e) => {
                let retry = engine::next_delay(
                    self.engine.config().check_interval,
                    self.engine.failures + 1,
                    0.0,
                );
                self.engine.record_error(&e, retry);
                self.schedule(None);
            }
        }
    }

    fn command(&mut self, req: Request) -> Response {
        let busy = || Response::Refused {
            message: "an update is being installed; `tandemctl update status` shows its progress"
                .into(),
        };
        let done = |engine: &Engine, message: String| Response::Done {
            message,
            status: Box::new(engine.status.get()),
        };
        match req {
            Request::Status => Response::Status {
                status: Box::new(self.engine.status.get()),
            },
            Request::Check | Request::Apply | Request::ApplyFrom { .. } if self.installing => {
                busy()
            }
            Request::Check => {
                self.engine.reload_config(true);
                let m = self.check(false);
                done(&self.engine, m)
            }
            Request::Apply => {
                self.engine.reload_config(true);
                let m = self.check(true);
                done(&self.engine, m)
            }
            Request::ApplyFrom { source } => {
                self.engine.reload_config(true);
                crate::log!("updating from {source} (local media)");
                let m = self.check_from(true, Some(Path::new(&source)));
                done(&self.engine, m)
            }
            Request::SetChannel { channel } => match self.engine.set_channel(&channel) {
                Err(e) => Response::Refused {
                    message: e.to_string(),
                },
                Ok(()) => {
                    crate::log!(
                        "channel set to {channel} in {}",
                        self.engine.paths.admin_config.display()
                    );
                    let m = if self.installing {
                        "the update being installed continues; the new channel is checked afterwards".to_string()
                    } else {
                        self.check(false)
                    };
                    done(&self.engine, format!("following channel {channel}: {m}"))
                }
            },
            Request::ForgetFailed { version } => {
                let v: Version = match version.parse() {
                    Ok(v) => v,
                    Err(e) => {
                        return Response::Refused {
                            message: format!("{e}"),
                        };
                    }
                };
                match self.engine.forget_failed(&v) {
                    Ok(true) => {
                        crate::log!("forgot that {v} failed here");
                        done(
                            &self.engine,
                            format!("{v} may be installed again; the next check may offer it"),
                        )
                    }
                    Ok(false) => Response::Refused {
                        message: format!("{v} is not recorded as failed on this node"),
                    },
                    Err(e) => Response::Refused {
                        message: e.to_string(),
                    },
                }
            }
            Request::AgentReport { report } => {
                let failed = report.cluster_failed.clone();
                self.engine.status.update(|s| s.agent = Some(report));
                for v in &failed {
                    if let Err(e) = self.engine.withdraw_pending(v) {
                        crate::log!("withdrawing {v}: {e}");
                    }
                }
                done(&self.engine, "noted".into())
            }
        }
    }
}
