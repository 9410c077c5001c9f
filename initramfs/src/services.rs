//! Services: declared in TOML files, supervised by the system init.
//!
//! Image services live in `/usr/lib/tandem/services/<name>.toml`; a file of
//! the same name in `/etc/tandem/services/` replaces the image's entirely
//! (`enabled = false` there turns an image service off). The format is
//! documented in docs/node-configuration.md.
//!
//! The parts that decide (file parsing, merging, restart policy and backoff)
//! are pure; [`Supervisor`] adds spawning and bookkeeping.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Error, ServiceFileError};
use crate::status::{ServiceState, ServiceStatus};
use crate::sys::{ChildIo, SpawnRequest};

/// Services that come with the image.
pub const IMAGE_DIR: &str = "/usr/lib/tandem/services";
/// Administrator's services and overrides.
pub const ADMIN_DIR: &str = "/etc/tandem/services";
/// Where `stdio = "log"` output goes.
pub const LOG_DIR: &str = "/run/tandem/log";
/// A log file is moved to `<name>.log.1` when a service starts and it is larger.
const LOG_ROTATE_BYTES: u64 = 1 << 20;
/// A service that ran at least this long before exiting restarts without
/// backoff: it was not crash-looping.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Longest delay between restarts.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Default PATH of services.
pub const DEFAULT_PATH: &str = "/usr/bin:/usr/sbin:/bin:/sbin";

/// When to restart a service that exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever the exit.
    Always,
    /// Unless it exited with status 0.
    #[default]
    OnFailure,
    /// Never.
    Never,
}

/// Where a service's standard input, output and error go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StdioMode {
    /// Output appended to /run/tandem/log/<name>.log; no input.
    #[default]
    Log,
    /// Output to the console; no input.
    Console,
    /// Nothing.
    Null,
    /// Input and output on the console terminal, which becomes the
    /// service's controlling terminal (for an interactive shell).
    Tty,
}

/// The contents of a service file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Free text for `tandemctl status`.
    #[serde(default)]
    pub description: Option<String>,
    /// Program and arguments; the program is an absolute path.
    pub exec: Vec<String>,
    /// Restart policy.
    #[serde(default)]
    pub restart: Restart,
    /// First restart delay in milliseconds; doubles on each quick exit (up to
    /// 60 s) and resets once the service ran for 10 s.
    #[serde(default = "default_restart_delay_ms")]
    pub restart_delay_ms: u64,
    /// Seconds between SIGTERM and SIGKILL at shutdown.
    #[serde(default = "default_stop_timeout_secs")]
    pub stop_timeout_secs: u64,
    /// `false` turns the service off (useful to override an image service).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Standard input/output.
    #[serde(default)]
    pub stdio: StdioMode,
    /// Start only once the network is configured (or the boot's wait for it
    /// is over), like systemd's `After=network-online.target`: a service
    /// that talks to the cluster or the update server would otherwise spend
    /// its first attempt failing, and its start-up work would delay
    /// `system ready`.
    #[serde(default)]
    pub after_network: bool,
    /// Extra environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default /).
    #[serde(default)]
    pub working_directory: Option<PathBuf>,
    /// Numeric user id to run as (default root).
    #[serde(default)]
    pub user: Option<u32>,
    /// Numeric group id to run as (default root).
    #[serde(default)]
    pub group: Option<u32>,
}

fn default_restart_delay_ms() -> u64 {
    500
}
fn default_stop_timeout_secs() -> u64 {
    10
}
fn default_true() -> bool {
    true
}

/// A service: its name, where it was defined, and the definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    /// Name (the file name without `.toml`).
    pub name: String,
    /// Defining file, or `built-in`.
    pub source: String,
    /// The definition.
    pub spec: ServiceSpec,
}

/// Parses a service file's text.
pub fn parse(text: &str) -> Result<ServiceSpec, ServiceFileError> {
    let spec: ServiceSpec =
        toml::from_str(text).map_err(|e| ServiceFileError::Syntax(e.message().to_string()))?;
    match spec.exec.first() {
        Some(p) if p.starts_with('/') => Ok(spec),
        _ => Err(ServiceFileError::Exec),
    }
}

/// Whether `name` is a valid service name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// Merges layers of definitions: a later layer replaces an earlier one's
/// service of the same name. Disabled services are kept (for status).
pub fn merge(layers: Vec<Vec<ServiceDef>>) -> Vec<ServiceDef> {
    let mut by_name: BTreeMap<String, ServiceDef> = BTreeMap::new();
    for layer in layers {
        for def in layer {
            by_name.insert(def.name.clone(), def);
        }
    }
    by_name.into_values().collect()
}

/// Reads every `*.toml` in `dir` (sorted; a missing directory is empty).
/// Invalid files are reported and skipped, so a lower layer's definition of
/// the same name stays in force.
pub fn read_dir(dir: &Path) -> (Vec<ServiceDef>, Vec<Error>) {
    let mut defs = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (defs, errors);
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        if !valid_name(&name) {
            errors.push(Error::ServiceFile {
                path,
                err: ServiceFileError::Name(name),
            });
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(err) => {
                errors.push(Error::Read { path, err });
                continue;
            }
        };
        match parse(&text) {
            Ok(spec) => defs.push(ServiceDef {
                name,
                source: path.display().to_string(),
                spec,
            }),
            Err(err) => errors.push(Error::ServiceFile { path, err }),
        }
    }
    (defs, errors)
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// exit(code).
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// Decodes a waitpid(2) status.
    pub fn from_wait_status(status: libc::c_int) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    /// Exit status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The restart decision after an exit: `Some(delay)` to restart.
///
/// `streak` counts the quick exits before this one; the delay doubles per
/// quick exit from `base` up to 60 s. A run of 10 s or more resets it.
pub fn restart_after(
    policy: Restart,
    exit: Exit,
    ran_for: Duration,
    streak: u32,
    base: Duration,
) -> Option<Duration> {
    let restart = match policy {
        Restart::Always => true,
        Restart::OnFailure => !exit.success(),
        Restart::Never => false,
    };
    if !restart {
        return None;
    }
    let streak = if ran_for >= STABLE_AFTER { 0 } else { streak };
    let factor = 1u32 << streak.min(16);
    Some(base.saturating_mul(factor).min(MAX_DELAY))
}

/// The next streak value after a run of `ran_for`.
pub fn next_streak(streak: u32, ran_for: Duration) -> u32 {
    if ran_for >= STABLE_AFTER {
        0
    } else {
        streak.saturating_add(1)
    }
}

/// The console shell, a built-in service: `/usr/bin/sh` if present, else
/// `busybox sh`, on the console terminal, restarted whenever it exits. An
/// administrator can replace it (`/etc/tandem/services/console.toml`), for
/// instance with `enabled = false` or a getty.
pub fn builtin_console(sh_exists: bool) -> ServiceDef {
    let exec = if sh_exists {
        vec!["/usr/bin/sh".to_string()]
    } else {
        vec!["/usr/bin/busybox".into(), "sh".into()]
    };
    ServiceDef {
        name: "console".into(),
        source: "built-in".into(),
        spec: ServiceSpec {
            description: Some("shell on the serial console".into()),
            exec,
            restart: Restart::Always,
            restart_delay_ms: 200,
            stop_timeout_secs: 2,
            enabled: true,
            stdio: StdioMode::Tty,
            after_network: false,
            env: BTreeMap::from([
                ("HOME".into(), "/root".into()),
                ("PS1".into(), "\\h:\\w\\$ ".into()),
            ]),
            working_directory: Some("/root".into()),
            user: None,
            group: None,
        },
    }
}

/// The console's terminal device: the last entry of
/// /sys/class/tty/console/active (the one /dev/console writes to), so that
/// job control and Ctrl-C work; /dev/console if that cannot be found.
pub fn console_tty() -> PathBuf {
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .last()
                .map(|t| PathBuf::from("/dev").join(t))
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/dev/console"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Disabled,
    /// `after_network`, and the network is not settled yet.
    WaitingForNetwork,
    Due(Instant),
    Running {
        pid: i32,
        since: Instant,
    },
    Stopping {
        pid: i32,
    },
    Done,
}

#[derive(Debug)]
struct Unit {
    def: ServiceDef,
    state: State,
    restarts: u32,
    streak: u32,
    last_exit: Option<Exit>,
    last_error: Option<String>,
}

/// A change worth a console line.
#[derive(Debug)]
pub enum Event {
    /// Started.
    Started {
        /// Service.
        name: String,
        /// PID.
        pid: i32,
    },
    /// Could not start.
    SpawnFailed(Error),
    /// Exited; `restart_in` when it will be restarted.
    Exited {
        /// Service.
        name: String,
        /// How.
        exit: Exit,
        /// Delay before restart, if any.
        restart_in: Option<Duration>,
    },
}

/// The supervised services.
#[derive(Debug)]
pub struct Supervisor {
    units: Vec<Unit>,
    console: PathBuf,
}

impl Supervisor {
    /// Services from `defs`, enabled ones due now.
    pub fn new(defs: Vec<ServiceDef>, now: Instant) -> Supervisor {
        let units = defs
            .into_iter()
            .map(|def| Unit {
                state: match (def.spec.enabled, def.spec.after_network) {
                    (false, _) => State::Disabled,
                    (true, true) => State::WaitingForNetwork,
                    (true, false) => State::Due(now),
                },
                def,
                restarts: 0,
                streak: 0,
                last_exit: None,
                last_error: None,
            })
            .collect();
        Supervisor {
            units,
            console: console_tty(),
        }
    }

    /// Starts every service that is due.
    pub fn start_due(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..self.units.len() {
            let State::Due(at) = self.units[i].state else {
                continue;
            };
            if at > now {
                continue;
            }
            match spawn(&self.units[i].def, &self.console) {
                Ok(pid) => {
                    let u = &mut self.units[i];
                    u.state = State::Running { pid, since: now };
                    u.last_error = None;
                    events.push(Event::Started {
                        name: u.def.name.clone(),
                        pid,
                    });
                }
                Err(err) => {
                    let u = &mut self.units[i];
                    // A program that cannot start is a quick failure.
                    let exit = Exit::Code(127);
                    let delay = restart_after(
                        u.def.spec.restart,
                        exit,
                        Duration::ZERO,
                        u.streak,
                        base(&u.def),
                    );
                    u.streak = next_streak(u.streak, Duration::ZERO);
                    u.last_exit = Some(exit);
                    u.last_error = Some(err.to_string());
                    u.state = delay.map_or(State::Done, |d| State::Due(now + d));
                    events.push(Event::SpawnFailed(err));
                }
            }
        }
        events
    }

    /// The network is configured, or the boot stopped waiting for it: the
    /// `after_network` services are due now. Later restarts do not wait.
    pub fn network_settled(&mut self, now: Instant) {
        for u in &mut self.units {
            if u.state == State::WaitingForNetwork {
                u.state = State::Due(now);
            }
        }
    }

    /// Records the exit of `pid`; `None` if it is not a service (an orphan).
    pub fn on_exit(&mut self, pid: i32, exit: Exit, now: Instant) -> Option<Event> {
        let u = self.units.iter_mut().find(|u| match u.state {
            State::Running { pid: p, .. } | State::Stopping { pid: p } => p == pid,
            _ => false,
        })?;
        u.last_exit = Some(exit);
        let State::Running { since, .. } = u.state else {
            u.state = State::Done;
            return Some(Event::Exited {
                name: u.def.name.clone(),
                exit,
                restart_in: None,
            });
        };
        let ran_for = now.saturating_duration_since(since);
        let delay = restart_after(u.def.spec.restart, exit, ran_for, u.streak, base(&u.def));
        u.streak = next_streak(u.streak, ran_for);
        u.state = match delay {
            Some(d) => {
                u.restarts += 1;
                State::Due(now + d)
            }
            None => State::Done,
        };
        Some(Event::Exited {
            name: u.def.name.clone(),
            exit,
            restart_in: delay,
        })
    }

    /// When the next restart is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Due(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Sends SIGTERM to every running service's process group and returns
    /// the longest stop timeout among them. No service is restarted after.
    pub fn terminate_all(&mut self) -> Duration {
        let mut longest = Duration::ZERO;
        for u in &mut self.units {
            match u.state {
                State::Running { pid, .. } => {
                    let _ = crate::sys::kill(-pid, libc::SIGTERM);
                    // An interactive shell ignores SIGTERM but not a hangup.
                    if u.def.spec.stdio == StdioMode::Tty {
                        let _ = crate::sys::kill(-pid, libc::SIGHUP);
                    }
                    let _ = crate::sys::kill(-pid, libc::SIGCONT);
                    longest = longest.max(Duration::from_secs(u.def.spec.stop_timeout_secs));
                    u.state = State::Stopping { pid };
                }
                State::Due(_) | State::WaitingForNetwork => u.state = State::Done,
                _ => {}
            }
        }
        longest
    }

    /// PIDs still stopping.
    pub fn stopping(&self) -> Vec<i32> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Stopping { pid } => Some(pid),
                _ => None,
            })
            .collect()
    }

    /// Names and PIDs of the services still stopping.
    pub fn stopping_names(&self) -> Vec<(String, i32)> {
        self.units
            .iter()
            .filter_map(|u| match u.state {
                State::Stopping { pid } => Some((u.def.name.clone(), pid)),
                _ => None,
            })
            .collect()
    }

    /// Status for /run/tandem/status.json.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.units
            .iter()
            .map(|u| {
                let (state, pid) = match u.state {
                    State::Disabled => (ServiceState::Disabled, None),
                    State::Due(_) if u.last_exit.is_some() => {
                        (ServiceState::WaitingToRestart, None)
                    }
                    State::Due(_) => (ServiceState::Starting, None),
                    State::WaitingForNetwork => (ServiceState::WaitingForNetwork, None),
                    State::Running { pid, .. } => (ServiceState::Running, Some(pid)),
                    State::Stopping { pid } => (ServiceState::Stopping, Some(pid)),
                    State::Done if u.last_exit.is_some_and(Exit::success) => {
                        (ServiceState::Exited, None)
                    }
                    State::Done => (ServiceState::Failed, None),
                };
                let last_exit = match (&u.last_error, u.last_exit) {
                    (Some(e), _) => Some(e.clone()),
                    (None, e) => e.map(|e| e.to_string()),
                };
                ServiceStatus {
                    name: u.def.name.clone(),
                    source: u.def.source.clone(),
                    state,
                    pid,
                    restarts: u.restarts,
                    last_exit,
                }
            })
            .collect()
    }
}

fn base(def: &ServiceDef) -> Duration {
    Duration::from_millis(def.spec.restart_delay_ms)
}

fn open_log(name: &str) -> std::io::Result<File> {
    std::fs::create_dir_all(LOG_DIR)?;
    let path = Path::new(LOG_DIR).join(format!("{name}.log"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(&path, path.with_extension("log.1"));
    }
    OpenOptions::new().create(true).append(true).open(path)
}

fn spawn(def: &ServiceDef, console: &Path) -> Result<i32, Error> {
    let spec = &def.spec;
    let program = spec.exec.first().cloned().unwrap_or_default();
    let fail = |err| Error::Spawn {
        name: def.name.clone(),
        program: program.clone(),
        err,
    };
    // The service's [env] overrides the defaults.
    let mut env = BTreeMap::from([
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), "/root".to_string()),
        ("TANDEM_SERVICE".to_string(), def.name.clone()),
    ]);
    env.extend(spec.env.clone());
    let cwd = spec
        .working_directory
        .as_deref()
        .filter(|d| d.is_dir())
        .unwrap_or(Path::new("/"));
    let open = |path: &Path, write: bool| {
        OpenOptions::new()
            .read(!write)
            .write(write)
            .open(path)
            .map_err(fail)
    };
    let null = Path::new("/dev/null");
    let tty = spec.stdio == StdioMode::Tty;
    let files: Option<[File; 3]> = match spec.stdio {
        StdioMode::Log => {
            let log = open_log(&def.name).map_err(fail)?;
            Some([open(null, false)?, log.try_clone().map_err(fail)?, log])
        }
        StdioMode::Console => {
            let out = open(Path::new("/dev/console"), true)?;
            Some([open(null, false)?, out.try_clone().map_err(fail)?, out])
        }
        StdioMode::Null => Some([open(null, false)?, open(null, true)?, open(null, true)?]),
        StdioMode::Tty => {
            env.entry("TERM".into()).or_insert_with(|| "vt100".into());
            None
        }
    };
    if spec.user.is_none() && spec.group.is_none() {
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let stdio = match &files {
            Some(f) => ChildIo::Fds(f.each_ref().map(|f| f.as_raw_fd())),
            None => ChildIo::Terminal(console),
        };
        return crate::sys::spawn(&SpawnRequest {
            program: &program,
            argv: &spec.exec,
            env: &env,
            cwd,
            stdio,
        })
        .map_err(fail);
    }
    // Other credentials need code between fork and exec, which posix_spawn
    // cannot run.
    let [stdin, stdout, stderr] = match files {
        Some(f) => f,
        None => {
            let t = OpenOptions::new()
                .read(true)
                .write(true)
                .open(console)
                .map_err(fail)?;
            [
                t.try_clone().map_err(fail)?,
                t.try_clone().map_err(fail)?,
                t,
            ]
        }
    };
    let mut cmd = Command::new(&program);
    cmd.args(spec.exec.get(1..).unwrap_or_default())
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    if let Some(g) = spec.group {
        cmd.gid(g);
    }
    if let Some(u) = spec.user {
        cmd.uid(u);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // PID 1 blocks the signals it reads through signalfd; children
            // must start with a clean mask.
            crate::sys::unblock_all_signals()?;
            // Own session and process group, so stop can signal the group.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if tty && libc::ioctl(0, libc::TIOCSCTTY as _, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The child is reaped by the init's waitpid(-1) loop, never via Child.
    let child = cmd.spawn().map_err(fail)?;
    Ok(child.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, restart: Restart) -> ServiceDef {
        ServiceDef {
            name: name.into(),
            source: "test".into(),
            spec: parse(&format!(
                "exec = [\"/bin/true\"]\nrestart = \"{}\"\n",
                match restart {
                    Restart::Always => "always",
                    Restart::OnFailure => "on-failure",
                    Restart::Never => "never",
                }
            ))
            .expect("valid"),
        }
    }

    #[test]
    fn parses_a_full_file() {
        let spec = parse(
            r#"
            description = "update agent"
            exec = ["/usr/lib/tandem/tandem-agent", "--config", "/etc/tandem/agent.toml"]
            restart = "always"
            restart_delay_ms = 1000
            stop_timeout_secs = 30
            stdio = "console"
            after_network = true
            working_directory = "/var/lib/agent"
            user = 1000
            group = 1000
            [env]
            RUST_LOG = "debug"
            "#,
        )
        .expect("valid");
        assert_eq!(spec.exec.len(), 3);
        assert_eq!(spec.restart, Restart::Always);
        assert_eq!(spec.restart_delay_ms, 1000);
        assert_eq!(spec.stop_timeout_secs, 30);
        assert_eq!(spec.stdio, StdioMode::Console);
        assert_eq!(spec.env.get("RUST_LOG").map(String::as_str), Some("debug"));
        assert_eq!(spec.user, Some(1000));
        assert!(spec.enabled);
        assert!(spec.after_network);
    }

    #[test]
    fn defaults() {
        let spec = parse("exec = [\"/usr/bin/sleep\", \"1\"]").expect("valid");
        assert_eq!(spec.restart, Restart::OnFailure);
        assert_eq!(spec.stdio, StdioMode::Log);
        assert_eq!(spec.restart_delay_ms, 500);
        assert_eq!(spec.stop_timeout_secs, 10);
        assert!(spec.enabled);
        assert!(!spec.after_network);
    }

    #[test]
    fn refuses_bad_files() {
        assert_eq!(parse("exec = []"), Err(ServiceFileError::Exec));
        assert_eq!(parse("exec = [\"sleep\"]"), Err(ServiceFileError::Exec));
        assert!(matches!(
            parse("exec = [\"/a\"]\nrestrat = \"always\""),
            Err(ServiceFileError::Syntax(_))
        ));
        assert!(matches!(
            parse("exec = [\"/a\"]\nrestart = \"sometimes\""),
            Err(ServiceFileError::Syntax(_))
        ));
        assert!(matches!(
            parse("exec = \"/a\""),
            Err(ServiceFileError::Syntax(_))
        ));
        assert!(matches!(
            parse("description = \"no exec\""),
            Err(ServiceFileError::Syntax(_))
        ));
    }

    #[test]
    fn names() {
        for ok in ["sshd", "getty@ttyS1", "my_service-2.v1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn admin_layer_overrides_by_name() {
        let mut console_off = builtin_console(true);
        console_off.spec.enabled = false;
        console_off.source = "/etc/tandem/services/console.toml".into();
        let merged = merge(vec![
            vec![builtin_console(true)],
            vec![
                def("agent", Restart::Always),
                def("sshd", Restart::OnFailure),
            ],
            vec![console_off, def("sshd", Restart::Never)],
        ]);
        let names: Vec<_> = merged.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["agent", "console", "sshd"]);
        assert!(!merged[1].spec.enabled);
        assert_eq!(merged[2].spec.restart, Restart::Never);
    }

    #[test]
    fn restart_policy() {
        let base = Duration::from_millis(500);
        let quick = Duration::from_secs(1);
        let ok = Exit::Code(0);
        let bad = Exit::Code(1);
        let killed = Exit::Signal(9);
        assert_eq!(restart_after(Restart::Never, bad, quick, 0, base), None);
        assert_eq!(restart_after(Restart::OnFailure, ok, quick, 0, base), None);
        assert_eq!(
            restart_after(Restart::OnFailure, bad, quick, 0, base),
            Some(base)
        );
        assert_eq!(
            restart_after(Restart::OnFailure, killed, quick, 0, base),
            Some(base)
        );
        assert_eq!(
            restart_after(Restart::Always, ok, quick, 0, base),
            Some(base)
        );
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let base = Duration::from_millis(500);
        let quick = Duration::from_millis(100);
        let mut streak = 0;
        let mut delays = Vec::new();
        for _ in 0..10 {
            delays.push(
                restart_after(Restart::Always, Exit::Code(1), quick, streak, base)
                    .expect("restarts"),
            );
            streak = next_streak(streak, quick);
        }
        assert_eq!(delays[0], Duration::from_millis(500));
        assert_eq!(delays[1], Duration::from_secs(1));
        assert_eq!(delays[3], Duration::from_secs(4));
        assert_eq!(delays[9], MAX_DELAY);
        // A long run resets the streak.
        let long = Duration::from_secs(600);
        assert_eq!(
            restart_after(Restart::Always, Exit::Code(1), long, streak, base),
            Some(base)
        );
        assert_eq!(next_streak(streak, long), 0);
        // Huge streaks do not overflow.
        assert_eq!(
            restart_after(
                Restart::Always,
                Exit::Code(1),
                quick,
                u32::MAX,
                Duration::from_secs(u64::MAX)
            ),
            Some(MAX_DELAY)
        );
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(Exit::from_wait_status(0), Exit::Code(0));
        assert_eq!(Exit::from_wait_status(3 << 8), Exit::Code(3));
        assert_eq!(Exit::from_wait_status(9), Exit::Signal(9));
        assert_eq!(Exit::Signal(15).to_string(), "killed by signal 15");
    }

    #[test]
    fn console_falls_back_to_busybox() {
        assert_eq!(builtin_console(true).spec.exec, ["/usr/bin/sh"]);
        assert_eq!(builtin_console(false).spec.exec, ["/usr/bin/busybox", "sh"]);
    }

    #[test]
    fn after_network_services_wait_until_the_network_settles() {
        let t0 = Instant::now();
        let mut net = def("agent", Restart::Always);
        net.spec.after_network = true;
        let mut off = def("off", Restart::Always);
        off.spec.enabled = false;
        off.spec.after_network = true;
        let mut s = Supervisor::new(vec![def("console", Restart::Always), net, off], t0);
        assert_eq!(s.next_due(), Some(t0), "the console is due at once");
        s.units[0].state = State::Running { pid: 10, since: t0 };
        assert_eq!(s.next_due(), None, "nothing else is due before the network");
        assert_eq!(s.status()[1].state, ServiceState::WaitingForNetwork);

        let t1 = t0 + Duration::from_millis(80);
        s.network_settled(t1);
        assert_eq!(s.next_due(), Some(t1));
        assert_eq!(s.status()[1].state, ServiceState::Starting);
        assert_eq!(
            s.status()[2].state,
            ServiceState::Disabled,
            "disabled stays disabled"
        );

        // A restart after the network settled does not wait again.
        s.units[1].state = State::Running { pid: 11, since: t1 };
        let t2 = t1 + Duration::from_secs(1);
        s.on_exit(11, Exit::Code(1), t2);
        assert_eq!(s.next_due(), Some(t2 + Duration::from_millis(500)));
    }

    #[test]
    fn shutdown_drops_services_still_waiting_for_the_network() {
        let t0 = Instant::now();
        let mut net = def("agent", Restart::Always);
        net.spec.after_network = true;
        let mut s = Supervisor::new(vec![net], t0);
        s.terminate_all();
        s.network_settled(t0);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn spawned_service_gets_its_environment_and_directory() {
        let dir = std::env::temp_dir().join(format!("tandem-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let def = ServiceDef {
            name: "probe".into(),
            source: "test".into(),
            spec: parse(&format!(
                "exec = [\"/bin/sh\", \"-c\", \"echo $PATH $TANDEM_SERVICE $X $(pwd) > out\"]\n\
                 stdio = \"null\"\nworking_directory = \"{}\"\n\
                 [env]\nPATH = \"/bin:/usr/bin\"\nX = \"y\"\n",
                dir.display()
            ))
            .expect("valid"),
        };
        let pid = spawn(&def, Path::new("/dev/null")).expect("spawn");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let out = std::fs::read_to_string(dir.join("out")).expect("output");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            out.trim(),
            format!("/bin:/usr/bin probe y {}", dir.display())
        );
    }

    #[test]
    fn supervisor_restarts_by_policy() {
        let t0 = Instant::now();
        let defs = vec![def("a", Restart::Always), def("n", Restart::Never)];
        let mut s = Supervisor::new(defs, t0);
        // Pretend both started (spawning is not part of this test).
        s.units[0].state = State::Running { pid: 10, since: t0 };
        s.units[1].state = State::Running { pid: 11, since: t0 };
        let t1 = t0 + Duration::from_secs(1);
        assert!(matches!(
            s.on_exit(10, Exit::Code(0), t1),
            Some(Event::Exited {
                restart_in: Some(_),
                ..
            })
        ));
        assert!(matches!(
            s.on_exit(11, Exit::Code(1), t1),
            Some(Event::Exited {
                restart_in: None,
                ..
            })
        ));
        assert!(
            s.on_exit(99, Exit::Code(0), t1).is_none(),
            "orphans are not services"
        );
        assert_eq!(s.next_due(), Some(t1 + Duration::from_millis(500)));
        let st = s.status();
        assert_eq!(st[0].state, ServiceState::WaitingToRestart);
        assert_eq!(st[0].restarts, 1);
        assert_eq!(st[1].state, ServiceState::Failed);
        assert_eq!(st[1].last_exit.as_deref(), Some("exit status 1"));
        // At shutdown nothing is restarted.
        s.terminate_all();
        assert_eq!(s.next_due(), None);
    }
}
