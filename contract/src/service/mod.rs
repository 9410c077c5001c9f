//! The service file format: what `/usr/lib/tandem/services/<name>.toml`
//! and `/etc/tandem/services/<name>.toml` contain, read by PID 1 and
//! written by the image builder (and provisioning), through one type
//! ([`ServiceFile`]) and one check ([`ServiceFile::check`]) into what the
//! supervisor runs ([`ServiceSpec`]). docs/node-configuration.md documents
//! the keys.
//!
//! Services that need more than PID 1 does when it starts a program
//! (commands before it, environment files, `${VAR}` expansion, a user or
//! group given by name, see [`ServiceSpec::needs_launcher`]) are started
//! through the launcher [`EXEC_LAUNCHER`], which PID 1 hands an
//! [`ExecPlan`]:
//!
//! - [`env_file`]: systemd's `EnvironmentFile=` syntax;
//! - [`expand`]: `${VAR}`, `$VAR` and `$$` in commands;
//! - [`plan`]: the launcher's plan, the final environment and the
//!   credentials resolved from `/etc/passwd` and `/etc/group`.
//!
//! ```
//! use tandem_contract::service::{self, ServiceFile, StdioMode};
//!
//! let file = ServiceFile {
//!     exec: vec!["/usr/lib/tandem/tandem-agent".into()],
//!     stdio: Some(StdioMode::Log),
//!     after_network: Some(true),
//!     ..ServiceFile::default()
//! };
//! let text = file.render().expect("valid");
//! assert_eq!(
//!     text,
//!     "exec = [\"/usr/lib/tandem/tandem-agent\"]\nstdio = \"log\"\nafter_network = true\n"
//! );
//! let spec = service::parse(&text).expect("valid");
//! assert!(spec.after_network);
//! assert_eq!(service::parse(&spec.render().expect("valid")), Ok(spec));
//! ```

pub mod env_file;
pub mod expand;
pub mod plan;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::run::{RunsOn, ServiceType};
pub use plan::{Action, Credentials, ExecPlan};

/// The launcher: a role of the node binary that starts a service whose
/// file uses what PID 1 leaves to it ([`ServiceSpec::needs_launcher`]).
pub const EXEC_LAUNCHER: &str = "/usr/lib/tandem/tandem-exec";

/// The environment variable through which PID 1 hands the launcher its
/// [`ExecPlan`] (JSON). Not an argument: arguments are readable by every
/// user (`/proc/<pid>/cmdline`), the environment only by the process's
/// owner, and the plan carries the service's `[env]`.
pub const PLAN_VAR: &str = "TANDEM_EXEC_PLAN";

/// When to restart a service that exited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StdioMode {
    /// Output appended to `/run/tandem/log/<name>.log`; no input.
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

/// Resource limits of a service, written into its cgroup before it starts.
/// `None`: the kernel's default (no limit, weight 100).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// `memory_max`: bytes (`memory.max`).
    pub memory_max: Option<u64>,
    /// `cpu_weight`: 1–10000 (`cpu.weight`).
    pub cpu_weight: Option<u64>,
    /// `tasks_max`: processes and threads (`pids.max`).
    pub tasks_max: Option<u64>,
}

impl Limits {
    /// The cgroup files to write and their values.
    pub fn files(&self) -> Vec<(&'static str, u64)> {
        use crate::cgroup::file;
        [
            (file::MEMORY_MAX, self.memory_max),
            (file::CPU_WEIGHT, self.cpu_weight),
            (file::PIDS_MAX, self.tasks_max),
        ]
        .into_iter()
        .filter_map(|(f, v)| Some((f, v?)))
        .collect()
    }
}

/// Highest `cpu_weight` (the kernel's range is 1–10000).
pub const CPU_WEIGHT_MAX: u64 = 10_000;

/// Default `restart_delay_ms`.
pub const DEFAULT_RESTART_DELAY_MS: u64 = 500;
/// Default `stop_timeout_secs`.
pub const DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;

/// A user or group as a service file gives it: a numeric id, or a name
/// resolved from the node's `/etc/passwd` or `/etc/group` at each start.
/// In TOML an integer or a string (a string of digits is an id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameOrId {
    /// A numeric uid or gid.
    Id(u32),
    /// A name.
    Name(String),
}

impl NameOrId {
    /// The numeric id, if given as one.
    pub fn id(&self) -> Option<u32> {
        match self {
            NameOrId::Id(n) => Some(*n),
            NameOrId::Name(_) => None,
        }
    }
}

impl fmt::Display for NameOrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameOrId::Id(n) => write!(f, "{n}"),
            NameOrId::Name(s) => f.write_str(s),
        }
    }
}

impl Serialize for NameOrId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NameOrId::Id(n) => s.serialize_u32(*n),
            NameOrId::Name(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for NameOrId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NameOrId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a numeric id (0 to 4294967294)")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<NameOrId, E> {
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n != u32::MAX)
                    .map(NameOrId::Id)
                    .ok_or_else(|| E::custom(format!("id {n} is out of range (0 to 4294967294)")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<NameOrId, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<NameOrId, E> {
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    return match s.parse::<i64>() {
                        Ok(n) => self.visit_i64(n),
                        Err(_) => Err(E::custom(format!("id {s} is out of range"))),
                    };
                }
                if crate::sysusers::valid_name(s) {
                    Ok(NameOrId::Name(s.to_string()))
                } else {
                    Err(E::custom(format!(
                        "{s:?} is not a user or group name (a letter or '_', then letters, digits, '_' or '-', at most 31)"
                    )))
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A command of a service besides its program, run before it
/// (`exec_start_pre`) or to stop it (`exec_stop`): in a file either an
/// array (program, then arguments) or a table
/// `{ exec = [...], ignore_failure = true }`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtraCommand {
    /// Program (an absolute path) and arguments.
    pub exec: Vec<String>,
    /// Whether a failure (non-zero exit, or the program cannot run) is
    /// ignored, as systemd's `-` prefix; otherwise it fails the start
    /// (`exec_start_pre`) or skips the commands after it (`exec_stop`).
    pub ignore_failure: bool,
}

impl Serialize for ExtraCommand {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if !self.ignore_failure {
            return self.exec.serialize(s);
        }
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("exec", &self.exec)?;
        map.serialize_entry("ignore_failure", &true)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for ExtraCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ExtraCommand;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a command: an array (program, then arguments) or a table { exec = [...], ignore_failure = true }",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ExtraCommand, A::Error> {
                let mut exec = Vec::new();
                while let Some(word) = seq.next_element::<String>()? {
                    exec.push(word);
                }
                Ok(ExtraCommand {
                    exec,
                    ignore_failure: false,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ExtraCommand, A::Error> {
                use serde::de::Error;
                let mut exec = None;
                let mut ignore_failure = false;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "exec" => exec = Some(map.next_value::<Vec<String>>()?),
                        "ignore_failure" => ignore_failure = map.next_value()?,
                        other => {
                            return Err(A::Error::unknown_field(
                                other,
                                &["exec", "ignore_failure"],
                            ));
                        }
                    }
                }
                Ok(ExtraCommand {
                    exec: exec.ok_or_else(|| A::Error::missing_field("exec"))?,
                    ignore_failure,
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A file of `environment_files`: `-/path` in a service file is optional.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentFile {
    /// An absolute path.
    pub path: PathBuf,
    /// Whether a missing file is fine.
    pub optional: bool,
}

impl EnvironmentFile {
    /// Reads `-/path` or `/path`; `None` when the path is not absolute.
    pub fn parse(text: &str) -> Option<EnvironmentFile> {
        let (optional, path) = match text.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, text),
        };
        path.starts_with('/').then(|| EnvironmentFile {
            path: path.into(),
            optional,
        })
    }

    /// As written in a service file.
    pub fn render(&self) -> String {
        format!(
            "{}{}",
            if self.optional { "-" } else { "" },
            self.path.display()
        )
    }
}

/// A service file, checked: what the supervisor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Free text for `tandemctl status`.
    pub description: Option<String>,
    /// `simple` or `oneshot`.
    pub kind: ServiceType,
    /// Program and arguments; the program is an absolute path.
    pub exec: Vec<String>,
    /// Commands run in order before `exec`, at every start.
    pub exec_start_pre: Vec<ExtraCommand>,
    /// Commands run in order when the running service is asked to stop
    /// (a request or the shutdown), before SIGTERM; its main PID is in
    /// `$MAINPID`. They count against `stop_timeout_secs`.
    pub exec_stop: Vec<ExtraCommand>,
    /// Restart policy (default `on-failure`; `never` for a oneshot).
    pub restart: Restart,
    /// First restart delay in milliseconds; doubles on each quick exit (up to
    /// 60 s) and resets once the service ran for 10 s.
    pub restart_delay_ms: u64,
    /// Seconds from the stop (the `exec_stop` commands, then SIGTERM) to
    /// killing what is left.
    pub stop_timeout_secs: u64,
    /// `false` turns the service off (useful to override an image service).
    pub enabled: bool,
    /// Standard input/output.
    pub stdio: StdioMode,
    /// Which boots it runs on (default every boot); on the others it shows
    /// as disabled.
    pub runs_on: RunsOn,
    /// Start only once the network is configured (or the boot's wait for it
    /// is over), like systemd's `After=network-online.target`: a service
    /// that talks to the cluster or the update server would otherwise spend
    /// its first attempt failing, and its start-up work would delay
    /// `system ready`.
    pub after_network: bool,
    /// Services this one starts after: a `simple` one once it was spawned,
    /// a `oneshot` once it exited with status 0.
    pub after: Vec<String>,
    /// Limits written into its cgroup.
    pub limits: Limits,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Files of `KEY=VALUE` lines read at each start; they override `env`.
    pub environment_files: Vec<EnvironmentFile>,
    /// Whether `${VAR}`, `$VAR` and `$$` in `exec`, `exec_start_pre` and `exec_stop`
    /// are expanded ([`expand`]).
    pub expand_env: bool,
    /// Working directory (default /).
    pub working_directory: Option<PathBuf>,
    /// User to run as (default root).
    pub user: Option<NameOrId>,
    /// Group to run as (default root, or the user's primary group when the
    /// user is a name).
    pub group: Option<NameOrId>,
}

impl ServiceSpec {
    /// Whether the service is started through [`EXEC_LAUNCHER`]: it has
    /// commands to run before its program, environment files, expansion,
    /// or a user or group given by name. PID 1 starts the others itself
    /// (numeric credentials included).
    pub fn needs_launcher(&self) -> bool {
        !self.exec_start_pre.is_empty()
            || !self.environment_files.is_empty()
            || self.expand_env
            || matches!(self.user, Some(NameOrId::Name(_)))
            || matches!(self.group, Some(NameOrId::Name(_)))
    }

    /// The file that [`parse`]s back to this service: the keys whose
    /// values differ from their defaults.
    pub fn to_file(&self) -> ServiceFile {
        let default_restart = match self.kind {
            ServiceType::Simple => Restart::OnFailure,
            ServiceType::Oneshot => Restart::Never,
        };
        let some_if = |on: bool| on.then_some(true);
        ServiceFile {
            description: self.description.clone(),
            kind: (self.kind != ServiceType::default()).then_some(self.kind),
            exec: self.exec.clone(),
            exec_start_pre: self.exec_start_pre.clone(),
            exec_stop: self.exec_stop.clone(),
            restart: (self.restart != default_restart).then_some(self.restart),
            restart_delay_ms: (self.restart_delay_ms != DEFAULT_RESTART_DELAY_MS)
                .then_some(self.restart_delay_ms),
            stop_timeout_secs: (self.stop_timeout_secs != DEFAULT_STOP_TIMEOUT_SECS)
                .then_some(self.stop_timeout_secs),
            enabled: (!self.enabled).then_some(false),
            stdio: (self.stdio != StdioMode::default()).then_some(self.stdio),
            runs_on: (self.runs_on != RunsOn::default()).then_some(self.runs_on),
            after_network: some_if(self.after_network),
            after: self.after.clone(),
            memory_max: self.limits.memory_max.map(render_size),
            cpu_weight: self.limits.cpu_weight.map(|w| w as i64),
            tasks_max: self
                .limits
                .tasks_max
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            environment_files: self
                .environment_files
                .iter()
                .map(EnvironmentFile::render)
                .collect(),
            expand_env: some_if(self.expand_env),
            working_directory: self.working_directory.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            env: self.env.clone(),
        }
    }

    /// The service file's text ([`ServiceFile::render`] of [`to_file`](Self::to_file)).
    pub fn render(&self) -> Result<String, ServiceFileError> {
        self.to_file().render()
    }
}

/// A service file as written: `None` (or empty) for a key that is not
/// there, which then has its default. [`parse`] reads it and
/// [`check`](ServiceFile::check)s it into a [`ServiceSpec`];
/// [`render`](ServiceFile::render) writes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    /// `description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `type`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<ServiceType>,
    /// `exec` (required).
    pub exec: Vec<String>,
    /// `exec_start_pre`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_start_pre: Vec<ExtraCommand>,
    /// `exec_stop`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_stop: Vec<ExtraCommand>,
    /// `restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// `restart_delay_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
    /// `stop_timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_secs: Option<u64>,
    /// `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `stdio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdio: Option<StdioMode>,
    /// `runs_on`: `any`, `installed` or `live`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_on: Option<RunsOn>,
    /// `after_network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_network: Option<bool>,
    /// `after`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// `memory_max`: bytes (integer) or text with a K, M or G suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<toml::Value>,
    /// `cpu_weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<i64>,
    /// `tasks_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_max: Option<i64>,
    /// `environment_files`: absolute paths, `-` first for optional files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_files: Vec<String>,
    /// `expand_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expand_env: Option<bool>,
    /// `working_directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<PathBuf>,
    /// `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<NameOrId>,
    /// `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<NameOrId>,
    /// `[env]` (last: a TOML table follows the plain keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// A service file is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceFileError {
    /// TOML syntax or a field of the wrong type, unknown field included.
    #[error("{0}")]
    Syntax(String),
    /// `exec` is empty or not absolute.
    #[error("exec must be a non-empty list whose first element is an absolute path")]
    Exec,
    /// An `exec_start_pre` command is empty or not absolute.
    #[error(
        "exec_start_pre entry {0} must be a non-empty list whose first element is an absolute path"
    )]
    ExecStartPre(usize),
    /// An `exec_stop` command is empty or not absolute.
    #[error("exec_stop entry {0} must be a non-empty list whose first element is an absolute path")]
    ExecStop(usize),
    /// The file name is not a usable service name.
    #[error(
        "service name {0:?} (the file name without .toml) may only contain letters, digits, '-', '_', '.' and '@'"
    )]
    Name(String),
    /// An `after` entry is not a service name.
    #[error(
        "after names {0:?}, which is not a service name (a file name without .toml: letters, digits, '-', '_', '.' and '@')"
    )]
    After(String),
    /// `memory_max` is not a size.
    #[error(
        "memory_max = {0} is not a size: give bytes (536870912) or a number with K, M or G (\"512M\", powers of 1024), more than 0"
    )]
    MemoryMax(String),
    /// `cpu_weight` is out of range.
    #[error("cpu_weight = {0} is out of range: 1 to 10000 (100 is the default share)")]
    CpuWeight(i64),
    /// `tasks_max` is not a positive number.
    #[error("tasks_max = {0} must be at least 1 (processes and threads of the service)")]
    TasksMax(i64),
    /// An `environment_files` entry is not an absolute path.
    #[error(
        "environment_files entry {0:?} is not an absolute path (a '-' first makes the file optional)"
    )]
    EnvironmentFile(String),
    /// An `[env]` name is not a variable name.
    #[error(
        "[env] name {0:?} is not a variable name (letters, digits and '_', not starting with a digit)"
    )]
    EnvName(String),
    /// The file could not be written as TOML.
    #[error("writing the service file failed: {0}")]
    Render(String),
}

/// A size in bytes: a number, or a number followed by `K`, `M` or `G`
/// (powers of 1024, as systemd's `MemoryMax=`). Zero and overflows are
/// refused.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'K') => (&text[..i], 1u64 << 10),
        (i, 'M') => (&text[..i], 1 << 20),
        (i, 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .filter(|&n| n > 0)
}

/// `memory_max` as written: the largest unit that divides it (`"512M"`),
/// else bytes.
pub fn render_size(bytes: u64) -> toml::Value {
    for (unit, suffix) in [(1u64 << 30, 'G'), (1 << 20, 'M'), (1 << 10, 'K')] {
        if bytes.is_multiple_of(unit) {
            return toml::Value::String(format!("{}{suffix}", bytes / unit));
        }
    }
    match i64::try_from(bytes) {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(bytes.to_string()),
    }
}

/// Whether `name` is an environment variable name: letters, digits and
/// `_`, not starting with a digit.
pub fn valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

impl ServiceFile {
    /// Reads a service file's text (without checking the values).
    pub fn from_toml(text: &str) -> Result<ServiceFile, ServiceFileError> {
        toml::from_str(text).map_err(|e| ServiceFileError::Syntax(e.message().to_string()))
    }

    /// The file's text, once [checked](Self::check): writers cannot write
    /// a file PID 1 would refuse.
    pub fn render(&self) -> Result<String, ServiceFileError> {
        self.clone().check()?;
        toml::to_string(self).map_err(|e| ServiceFileError::Render(e.to_string()))
    }

    /// Checks the values and applies the defaults.
    pub fn check(self) -> Result<ServiceSpec, ServiceFileError> {
        let absolute = |exec: &[String]| exec.first().is_some_and(|p| p.starts_with('/'));
        if !absolute(&self.exec) {
            return Err(ServiceFileError::Exec);
        }
        if let Some(i) = self.exec_start_pre.iter().position(|c| !absolute(&c.exec)) {
            return Err(ServiceFileError::ExecStartPre(i + 1));
        }
        if let Some(i) = self.exec_stop.iter().position(|c| !absolute(&c.exec)) {
            return Err(ServiceFileError::ExecStop(i + 1));
        }
        if let Some(bad) = self.after.iter().find(|n| !valid_name(n)) {
            return Err(ServiceFileError::After(bad.clone()));
        }
        if let Some(bad) = self.env.keys().find(|n| !valid_env_name(n)) {
            return Err(ServiceFileError::EnvName(bad.clone()));
        }
        let environment_files = self
            .environment_files
            .iter()
            .map(|f| {
                EnvironmentFile::parse(f)
                    .ok_or_else(|| ServiceFileError::EnvironmentFile(f.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let memory_max = match self.memory_max {
            None => None,
            Some(toml::Value::Integer(n)) => Some(
                u64::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| ServiceFileError::MemoryMax(n.to_string()))?,
            ),
            Some(toml::Value::String(s)) => {
                Some(parse_size(&s).ok_or(ServiceFileError::MemoryMax(format!("{s:?}")))?)
            }
            Some(other) => return Err(ServiceFileError::MemoryMax(other.to_string())),
        };
        let cpu_weight = match self.cpu_weight {
            None => None,
            Some(w) => Some(
                u64::try_from(w)
                    .ok()
                    .filter(|w| (1..=CPU_WEIGHT_MAX).contains(w))
                    .ok_or(ServiceFileError::CpuWeight(w))?,
            ),
        };
        let tasks_max = match self.tasks_max {
            None => None,
            Some(t) => Some(
                u64::try_from(t)
                    .ok()
                    .filter(|&t| t > 0)
                    .ok_or(ServiceFileError::TasksMax(t))?,
            ),
        };
        let mut after: Vec<String> = Vec::new();
        for name in self.after {
            if !after.contains(&name) {
                after.push(name);
            }
        }
        let kind = self.kind.unwrap_or_default();
        Ok(ServiceSpec {
            description: self.description,
            kind,
            exec: self.exec,
            exec_start_pre: self.exec_start_pre,
            exec_stop: self.exec_stop,
            restart: self.restart.unwrap_or(match kind {
                ServiceType::Simple => Restart::OnFailure,
                ServiceType::Oneshot => Restart::Never,
            }),
            restart_delay_ms: self.restart_delay_ms.unwrap_or(DEFAULT_RESTART_DELAY_MS),
            stop_timeout_secs: self.stop_timeout_secs.unwrap_or(DEFAULT_STOP_TIMEOUT_SECS),
            enabled: self.enabled.unwrap_or(true),
            stdio: self.stdio.unwrap_or_default(),
            runs_on: self.runs_on.unwrap_or_default(),
            after_network: self.after_network.unwrap_or(false),
            after,
            limits: Limits {
                memory_max,
                cpu_weight,
                tasks_max,
            },
            env: self.env,
            environment_files,
            expand_env: self.expand_env.unwrap_or(false),
            working_directory: self.working_directory,
            user: self.user,
            group: self.group,
        })
    }
}

/// Parses and checks a service file's text.
pub fn parse(text: &str) -> Result<ServiceSpec, ServiceFileError> {
    ServiceFile::from_toml(text)?.check()
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

#[cfg(test)]
mod tests;
