//! The agent's loop: I/O only. Each round reads the updater's status,
//! agent.toml and (when configured) etcd, asks [`crate::decide::decide`]
//! what to do, does it, publishes the node's fleet record and reports back
//! to the updater. Decisions that change the lock or record a failure are
//! followed by a new round at once; otherwise the loop sleeps [`POLL`], or
//! backs off (1 s … 60 s, doubling, with jitter) while etcd or the
//! FleetLock server fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tandem_contract::window::Position;
use tandem_contract::{AgentState, Version};
use updater::api::{self, Request};
use updater::clock::now_unix;
use updater::config::RebootStrategy;
use updater::status::{AgentReport, UpdateStatus};

use crate::config::{AgentConfig, ConfigError, ConfigPaths, EtcdSettings, read_password};
use crate::decide::{self, Decision, Inputs, LockState};
use crate::error::Error;
use crate::etcd::{Auth, Etcd, Tls};
use crate::fleet::{self, FailedRecord, NodeRecord, Presence};
use crate::fleetlock::FleetLock;
use crate::lock::{Lock, Locked};

/// How often the agent looks at the updater's status.
pub const POLL: Duration = Duration::from_secs(5);
/// First wait after a failure of etcd or the FleetLock server.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// Longest wait after failures.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Decisions carried out back to back before the loop sleeps (a lock
/// taken, then the reboot).
const MAX_STEPS: usize = 4;

/// Where the agent finds things.
#[derive(Clone, Debug)]
pub struct Options {
    /// The updater's socket.
    pub socket: PathBuf,
    /// agent.toml layers.
    pub config: ConfigPaths,
    /// `/etc/machine-id`.
    pub machine_id: PathBuf,
    /// The host name file (`/proc/sys/kernel/hostname`).
    pub hostname: PathBuf,
    /// This boot's provisioning outcome (`/run/tandem/provision.json`).
    pub provisioning: PathBuf,
    /// The system init's status (`/run/tandem/status.json`).
    pub node_status: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: tandem_contract::run::UPDATER_SOCKET.into(),
            config: ConfigPaths::default(),
            machine_id: updater::node::Paths::default().machine_id,
            hostname: "/proc/sys/kernel/hostname".into(),
            provisioning: tandem_contract::provision::RESULT_FILE.into(),
            node_status: tandem_contract::run::STATUS_FILE.into(),
        }
    }
}

/// A line on standard output (the service log): `tandem-agent: …`.
pub fn log(message: &str) {
    tandem_contract::log::line(tandem_contract::log::AGENT, format_args!("{message}"));
}

/// An etcd client from agent.toml's `[etcd]`.
pub fn connect(s: &EtcdSettings) -> Result<Etcd, Error> {
    let auth = match (&s.username, &s.password_file) {
        (Some(user), Some(file)) => Auth::Password {
            user: user.clone(),
            password: read_password(file)?,
        },
        (Some(user), None) => {
            return Err(Error::NoPasswordFile { user: user.clone() });
        }
        _ => Auth::None,
    };
    let tls = Tls {
        ca_file: s.ca_file.clone(),
        cert_file: s.cert_file.clone(),
        key_file: s.key_file.clone(),
    };
    Etcd::new(&s.endpoints, auth, &tls).map_err(Error::EtcdClient)
}

/// The lock service of a strategy.
enum Backend {
    Etcd,
    FleetLock(FleetLock),
    None,
}

/// What carrying out a decision led to.
struct Step {
    /// Decide again at once (the lock or a record changed).
    again: bool,
    /// The state to report.
    state: AgentState,
    /// What and why.
    message: String,
    /// A wait other than [`POLL`] (backing off).
    wait: Option<Duration>,
}

impl Step {
    fn done(state: AgentState, message: String) -> Step {
        Step {
            again: false,
            state,
            message,
            wait: None,
        }
    }

    fn again(state: AgentState, message: String) -> Step {
        Step {
            again: true,
            state,
            message,
            wait: None,
        }
    }

    fn wait(state: AgentState, message: String, wait: Duration) -> Step {
        Step {
            again: false,
            state,
            message,
            wait: Some(wait),
        }
    }
}

struct Agent<'a> {
    opts: Options,
    reboot: &'a dyn Fn() -> std::io::Result<()>,
    machine_id: String,
    config: AgentConfig,
    config_error: Option<Vec<ConfigError>>,
    fingerprints: Vec<Option<(std::time::SystemTime, u64)>>,
    etcd: Option<Etcd>,
    etcd_error: Option<Arc<Error>>,
    lock: LockState,
    reboot_requested_at: Option<u64>,
    rollback_recorded: bool,
    cluster_failed: Vec<Version>,
    failures: u32,
    presence: Presence,
    last_report: Option<(AgentState, String, Vec<Version>)>,
    last_log: String,
}

/// Runs the agent: never returns. `reboot` asks for the reboot.
pub fn run(opts: Options, reboot: &dyn Fn() -> std::io::Result<()>) -> ! {
    log(&format!("started, watching {}", opts.socket.display()));
    let mut agent = Agent {
        machine_id: String::new(),
        reboot,
        config: AgentConfig::default(),
        config_error: None,
        fingerprints: Vec::new(),
        etcd: None,
        etcd_error: None,
        lock: LockState::Unknown,
        reboot_requested_at: None,
        rollback_recorded: false,
        cluster_failed: Vec::new(),
        failures: 0,
        presence: Presence::default(),
        last_report: None,
        last_log: String::new(),
        opts,
    };
    loop {
        let wait = agent.round();
        std::thread::sleep(wait);
    }
}

impl Agent<'_> {
    /// Logs `msg` unless it is what was logged last (a failure repeating
    /// every round is said once).
    fn log_once(&mut self, msg: String) {
        if msg != self.last_log {
            log(&msg);
            self.last_log = msg;
        }
    }

    fn backoff(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        decide::backoff(
            self.failures,
            BACKOFF_FIRST,
            BACKOFF_CAP,
            updater::backoff::random_unit(),
        )
        .max(BACKOFF_FIRST)
    }

    fn reload_config(&mut self) {
        let prints = self.opts.config.fingerprints();
        if prints == self.fingerprints && !self.machine_id.is_empty() {
            return;
        }
        self.fingerprints = prints;
        if self.machine_id.is_empty() {
            match updater::node::machine_id(&self.opts.machine_id) {
                Ok(id) => self.machine_id = id,
                Err(e) => self.log_once(format!("cannot read the machine id: {e}")),
            }
        }
        match self.opts.config.load() {
            Ok(c) => {
                self.config = c;
                self.config_error = None;
            }
            Err(errors) => self.config_error = Some(errors),
        }
        self.etcd = None;
        self.etcd_error = None;
        if let Some(s) = &self.config.etcd {
            match connect(s) {
                Ok(e) => self.etcd = Some(e),
                Err(e) => self.etcd_error = Some(Arc::new(e)),
            }
        }
        log(&format!(
            "configuration: group {}, window {}, etcd {}, fleetlock {}",
            self.config.group,
            self.config
                .window
                .map_or_else(|| "none (any time)".to_string(), |w| w.to_string()),
            self.config
                .etcd
                .as_ref()
                .map_or_else(|| "not configured".into(), |e| e.endpoints.join(",")),
            self.config.fleetlock.as_deref().unwrap_or("not configured"),
        ));
    }

    fn backend(&self, strategy: RebootStrategy) -> Result<Backend, Error> {
        if let Some(errors) = &self.config_error {
            return Err(Error::Config(errors.clone()));
        }
        match strategy {
            RebootStrategy::EtcdLock => match (&self.etcd, &self.etcd_error) {
                (Some(_), _) => Ok(Backend::Etcd),
                (None, Some(e)) => Err(Error::EtcdSettings(Arc::clone(e))),
                (None, None) => Err(Error::NoEtcd),
            },
            RebootStrategy::Fleetlock => match &self.config.fleetlock {
                Some(url) => FleetLock::new(url, &self.machine_id, &self.config.group)
                    .map(Backend::FleetLock)
                    .map_err(Error::FleetLockClient),
                None => Err(Error::NoFleetLockUrl),
            },
            _ => Ok(Backend::None),
        }
    }

    /// Reads what etcd knows for this round: the cluster's failed
    /// versions, whether this node holds the lock (after a restart),
    /// whether this boot's rollback is recorded.
    fn read_etcd(&mut self, status: &UpdateStatus, strategy: RebootStrategy) -> Result<(), Error> {
        let Some(etcd) = &self.etcd else {
            return Ok(());
        };
        let (failed, bad) = fleet::failed(etcd).map_err(Error::ReadFailedVersions)?;
        self.cluster_failed = failed.into_iter().map(|f| f.version).collect();
        if strategy == RebootStrategy::EtcdLock && self.lock == LockState::Unknown {
            let s = Lock::new(etcd, &self.config.group)
                .status()
                .map_err(|source| Error::LockStatus {
                    group: self.config.group.clone(),
                    source: Box::new(source),
                })?;
            self.lock = if s.semaphore.holds(&self.machine_id) {
                log(&format!(
                    "this node holds the reboot lock {} (taken before this agent started)",
                    s.key
                ));
                LockState::Held { since: None }
            } else {
                LockState::Free
            };
        }
        if let Some(rb) = &status.rollback
            && !self.rollback_recorded
            && fleet::is_failed(etcd, &rb.version).map_err(|source| Error::RollbackRecorded {
                version: rb.version.clone(),
                source: Box::new(source),
            })?
        {
            self.rollback_recorded = true;
        }
        if !bad.is_empty() {
            self.log_once(format!("ignored in etcd: {}", bad.join("; ")));
        }
        Ok(())
    }

    /// One round; how long to sleep after it.
    fn round(&mut self) -> Duration {
        let mut wait = POLL;
        for _ in 0..MAX_STEPS {
            let status = match updater::cli::status(&self.opts.socket) {
                Ok(s) => s,
                Err(e) => {
                    self.log_once(format!(
                        "cannot read the updater's status: {e}; retrying every {} s",
                        POLL.as_secs()
                    ));
                    return POLL;
                }
            };
            self.reload_config();
            let strategy = status.reboot_strategy;
            let lock_based = matches!(
                strategy,
                RebootStrategy::EtcdLock | RebootStrategy::Fleetlock
            );
            if !lock_based && self.etcd.is_none() {
                self.lock = LockState::Free;
            }
            let backend = self.backend(strategy);
            let mut etcd_down = None;
            if let Err(e) = self.read_etcd(&status, strategy) {
                etcd_down = Some(e);
            }
            let now = now_unix();
            let unrecorded = status
                .rollback
                .as_ref()
                .filter(|_| self.etcd.is_some() && etcd_down.is_none() && !self.rollback_recorded);
            let inputs = Inputs {
                strategy,
                status: &status,
                lock: self.lock,
                backend_missing: backend.as_ref().err().map(ToString::to_string),
                window: self.config.window.as_ref(),
                now,
                reboot_requested_at: self.reboot_requested_at,
                unrecorded_rollback: unrecorded,
                cluster_failed: &self.cluster_failed,
            };
            let decision = decide::decide(&inputs);
            let backend = backend.unwrap_or(Backend::None);
            let step = self.carry_out(decision, &backend, strategy, &status, etcd_down);
            self.publish(&status, step.state);
            self.report(&status, step.state, step.message);
            if let Some(w) = step.wait {
                wait = w;
            }
            if !step.again {
                break;
            }
        }
        if wait == POLL {
            self.failures = 0;
        }
        wait
    }

    /// Does `decision`.
    fn carry_out(
        &mut self,
        decision: Decision,
        backend: &Backend,
        strategy: RebootStrategy,
        status: &UpdateStatus,
        etcd_down: Option<Error>,
    ) -> Step {
        let now = now_unix();
        match decision {
            Decision::Report { state, message } => match etcd_down {
                // A lock decision waits on etcd: say why it cannot be asked.
                Some(e) if strategy == RebootStrategy::EtcdLock => {
                    let wait = self.backoff();
                    Step::wait(
                        state,
                        format!("{message}; etcd: {e}; retrying in {} s", wait.as_secs()),
                        wait,
                    )
                }
                _ => Step::done(state, message),
            },
            Decision::RecordFailure { version, reason } => {
                let Some(etcd) = &self.etcd else {
                    return Step::done(
                        AgentState::Error,
                        "no etcd to record the failure in".into(),
                    );
                };
                let rec = FailedRecord {
                    version: version.clone(),
                    machine_id: self.machine_id.clone(),
                    hostname: hostname(&self.opts.hostname),
                    reason,
                    at: now,
                };
                match fleet::record_failure(etcd, &rec) {
                    Ok(created) => {
                        self.rollback_recorded = true;
                        log(&format!(
                            "{version} rolled back on this node: {} {}; no node of the cluster installs it until `tandemctl cluster forget-failed {version}`",
                            if created {
                                "recorded in"
                            } else {
                                "already recorded in"
                            },
                            fleet::failed_key(&version)
                        ));
                        Step::again(AgentState::Idle, "failure recorded".into())
                    }
                    Err(e) => {
                        let wait = self.backoff();
                        Step::wait(
                            AgentState::Error,
                            format!(
                                "cannot record in etcd that {version} rolled back: {e}; retrying in {} s",
                                wait.as_secs()
                            ),
                            wait,
                        )
                    }
                }
            }
            Decision::TakeLock { reason } => match self.take_lock(backend) {
                Ok(None) => {
                    log(&format!("took the reboot lock: {reason}"));
                    self.lock = LockState::Held { since: Some(now) };
                    Step::again(AgentState::WaitingForLock, reason)
                }
                Ok(Some(holders)) => Step::done(
                    AgentState::WaitingForLock,
                    format!("{reason}; the lock is full (held by {holders}), waiting"),
                ),
                Err(e) => {
                    let wait = self.backoff();
                    Step::wait(
                        AgentState::WaitingForLock,
                        format!(
                            "{reason}; cannot take the lock: {e}; retrying in {} s",
                            wait.as_secs()
                        ),
                        wait,
                    )
                }
            },
            Decision::Reboot { reason } => {
                log(&format!("rebooting: {reason}"));
                self.reboot_requested_at = Some(now);
                if let Err(e) = (self.reboot)() {
                    log(&format!("asking init to reboot failed: {e}"));
                }
                Step::done(AgentState::Rebooting, format!("rebooting: {reason}"))
            }
            Decision::ReleaseLock { reason } => match self.release_lock(backend) {
                Ok(()) => {
                    log(&format!("released the reboot lock: {reason}"));
                    self.lock = LockState::Free;
                    Step::again(AgentState::Idle, reason)
                }
                Err(e) => {
                    let wait = self.backoff();
                    let running = status
                        .running_version
                        .as_ref()
                        .map_or("?".into(), Version::to_string);
                    Step::wait(
                        AgentState::HoldingLock,
                        format!(
                            "running {running}: {reason}, but releasing the lock failed: {e}; retrying in {} s",
                            wait.as_secs()
                        ),
                        wait,
                    )
                }
            },
        }
    }

    /// Takes the lock: `None` when held, `Some(holders)` when full.
    fn take_lock(&self, backend: &Backend) -> Result<Option<String>, Error> {
        match backend {
            Backend::Etcd => {
                let etcd = self.etcd.as_ref().ok_or(Error::NoEtcd)?;
                match Lock::new(etcd, &self.config.group)
                    .lock(&self.machine_id)
                    .map_err(|source| Error::TakeLock {
                        group: self.config.group.clone(),
                        source: Box::new(source),
                    })? {
                    Locked::Full { state } => Ok(Some(state.semaphore.holders.join(", "))),
                    _ => Ok(None),
                }
            }
            Backend::FleetLock(f) => match f.pre_reboot() {
                Ok(()) => Ok(None),
                Err(e) if e.is_full() => Ok(Some(format!("other nodes, says {}", f.base()))),
                Err(e) => Err(Error::TakeFleetLock(e)),
            },
            Backend::None => Ok(None),
        }
    }

    fn release_lock(&self, backend: &Backend) -> Result<(), Error> {
        match backend {
            Backend::FleetLock(f) => f.steady_state().map_err(Error::ReleaseFleetLock),
            // Strategy etcd-lock, or another strategy on a node that may
            // still hold the lock from before the strategy changed.
            _ => match &self.etcd {
                Some(etcd) => Lock::new(etcd, &self.config.group)
                    .unlock(&self.machine_id)
                    .map(|_| ())
                    .map_err(|source| Error::ReleaseLock {
                        group: self.config.group.clone(),
                        source: Box::new(source),
                    }),
                None => Ok(()),
            },
        }
    }

    /// Writes this node's fleet record (when etcd is configured).
    fn publish(&mut self, status: &UpdateStatus, agent_state: AgentState) {
        let Some(etcd) = &self.etcd else {
            return;
        };
        if self.machine_id.is_empty() {
            return;
        }
        let (lock, lock_since) = match self.lock {
            LockState::Held { since } => (true, since),
            _ => (false, None),
        };
        let provisioning = provisioning(&self.opts.provisioning);
        let now = now_unix();
        let rec = NodeRecord {
            machine_id: self.machine_id.clone(),
            hostname: hostname(&self.opts.hostname),
            group: self.config.group.clone(),
            agent_state: Some(agent_state),
            lock,
            lock_since,
            last_seen: now,
            config: provisioning.as_ref().map(|p| p.state),
            config_errors: provisioning
                .iter()
                .flat_map(|p| p.errors())
                .map(|e| format!("{}: {}", e.at, e.message))
                .collect(),
            usr_corruption: usr_corruption(&self.opts.node_status),
            window: self.config.window.as_ref().map(ToString::to_string),
            window_opens_at: match (agent_state, &self.config.window) {
                (AgentState::WaitingForWindow, Some(w)) => match w.at(now) {
                    Position::Closed { opens_at } => Some(opens_at),
                    Position::Open { .. } => None,
                },
                _ => None,
            },
            ..fleet::update_fields(status)
        };
        if let Err(e) = self.presence.publish(etcd, &rec) {
            self.log_once(format!("cannot publish this node's fleet record: {e}"));
        }
    }

    /// Tells the updater what the agent does (when it changed).
    fn report(&mut self, status: &UpdateStatus, state: AgentState, message: String) {
        let key = (state, message.clone(), self.cluster_failed.clone());
        if self.last_report.as_ref() == Some(&key) {
            return;
        }
        log(&format!("{state}: {message}"));
        let req = Request::AgentReport {
            report: AgentReport {
                strategy: status.reboot_strategy,
                state,
                message,
                at: now_unix(),
                cluster_failed: self.cluster_failed.clone(),
            },
        };
        if api::call(&self.opts.socket, &req).is_ok() {
            self.last_report = Some(key);
        }
    }
}

/// The host name, or `"?"`.
/// Corrupt /usr found at run time, from the system init's status.
fn usr_corruption(path: &Path) -> Option<String> {
    let s: tandem_contract::run::Status =
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    s.usr_corruption
        .map(|c| format!("{}; {}", c.what, c.action))
}

/// This boot's provisioning outcome, if the node has one.
fn provisioning(path: &Path) -> Option<tandem_contract::provision::Outcome> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn hostname(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}
