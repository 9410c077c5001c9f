//! The service file format: what `/usr/lib/tandem/services/*.toml` and
//! `/etc/tandem/services/*.toml` contain, how the layers merge, and the
//! built-in console service. Pure apart from [`read_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, ServiceFileError};

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

/// What a service is for (`type`): `simple` (default) or `oneshot`.
pub use tandem_contract::run::ServiceType;

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
        use tandem_contract::cgroup::file;
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

/// A service file, checked: what the supervisor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Free text for `tandemctl status`.
    pub description: Option<String>,
    /// `simple` or `oneshot`.
    pub kind: ServiceType,
    /// Program and arguments; the program is an absolute path.
    pub exec: Vec<String>,
    /// Restart policy (default `on-failure`; `never` for a oneshot).
    pub restart: Restart,
    /// First restart delay in milliseconds; doubles on each quick exit (up to
    /// 60 s) and resets once the service ran for 10 s.
    pub restart_delay_ms: u64,
    /// Seconds between SIGTERM and killing what is left at shutdown.
    pub stop_timeout_secs: u64,
    /// `false` turns the service off (useful to override an image service).
    pub enabled: bool,
    /// Standard input/output.
    pub stdio: StdioMode,
    /// Start only once the network is configured (or the boot's wait for it
    /// is over), like systemd's `After=network-online.target`: a service
    /// that talks to the cluster or the update server would otherwise spend
    /// its first attempt failing, and its start-up work would delay
    /// `system ready`.
    pub after_network: bool,
    /// Services this one starts after: a `simple` one once it was spawned,
    /// a `oneshot` once it exited with status 0 (checked by
    /// [`order`](super::order)).
    pub after: Vec<String>,
    /// Limits written into its cgroup.
    pub limits: Limits,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory (default /).
    pub working_directory: Option<PathBuf>,
    /// Numeric user id to run as (default root).
    pub user: Option<u32>,
    /// Numeric group id to run as (default root).
    pub group: Option<u32>,
}

/// A service file as written; [`parse`] checks it into a [`ServiceSpec`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: ServiceType,
    exec: Vec<String>,
    #[serde(default)]
    restart: Option<Restart>,
    #[serde(default = "default_restart_delay_ms")]
    restart_delay_ms: u64,
    #[serde(default = "default_stop_timeout_secs")]
    stop_timeout_secs: u64,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    stdio: StdioMode,
    #[serde(default)]
    after_network: bool,
    #[serde(default)]
    after: Vec<String>,
    /// Bytes (integer) or text with a K, M or G suffix.
    #[serde(default)]
    memory_max: Option<toml::Value>,
    #[serde(default)]
    cpu_weight: Option<i64>,
    #[serde(default)]
    tasks_max: Option<i64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    working_directory: Option<PathBuf>,
    #[serde(default)]
    user: Option<u32>,
    #[serde(default)]
    group: Option<u32>,
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

impl SpecFile {
    fn check(self) -> Result<ServiceSpec, ServiceFileError> {
        match self.exec.first() {
            Some(p) if p.starts_with('/') => {}
            _ => return Err(ServiceFileError::Exec),
        }
        if let Some(bad) = self.after.iter().find(|n| !valid_name(n)) {
            return Err(ServiceFileError::After(bad.clone()));
        }
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
        Ok(ServiceSpec {
            description: self.description,
            kind: self.kind,
            exec: self.exec,
            restart: self.restart.unwrap_or(match self.kind {
                ServiceType::Simple => Restart::OnFailure,
                ServiceType::Oneshot => Restart::Never,
            }),
            restart_delay_ms: self.restart_delay_ms,
            stop_timeout_secs: self.stop_timeout_secs,
            enabled: self.enabled,
            stdio: self.stdio,
            after_network: self.after_network,
            after,
            limits: Limits {
                memory_max,
                cpu_weight,
                tasks_max,
            },
            env: self.env,
            working_directory: self.working_directory,
            user: self.user,
            group: self.group,
        })
    }
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
    let file: SpecFile =
        toml::from_str(text).map_err(|e| ServiceFileError::Syntax(e.message().to_string()))?;
    file.check()
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
            kind: ServiceType::Simple,
            exec,
            restart: Restart::Always,
            restart_delay_ms: 200,
            stop_timeout_secs: 2,
            enabled: true,
            stdio: StdioMode::Tty,
            after_network: false,
            after: Vec::new(),
            limits: Limits::default(),
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

/// A test service running `/bin/true` with the given restart policy.
#[cfg(test)]
pub(crate) fn test_def(name: &str, restart: Restart) -> ServiceDef {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, restart: Restart) -> ServiceDef {
        test_def(name, restart)
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
    fn oneshot_order_and_limits() {
        let spec = parse(
            r#"
            type = "oneshot"
            exec = ["/usr/bin/ssh-keygen", "-A"]
            after = ["network-setup", "getty@ttyS1", "network-setup"]
            memory_max = "512M"
            cpu_weight = 50
            tasks_max = 64
            "#,
        )
        .expect("valid");
        assert_eq!(spec.kind, ServiceType::Oneshot);
        assert_eq!(spec.restart, Restart::Never, "a oneshot is not restarted");
        assert_eq!(spec.after, ["network-setup", "getty@ttyS1"], "once each");
        assert_eq!(
            spec.limits,
            Limits {
                memory_max: Some(512 << 20),
                cpu_weight: Some(50),
                tasks_max: Some(64),
            }
        );
        assert_eq!(
            spec.limits.files(),
            [
                ("memory.max", 512 << 20),
                ("cpu.weight", 50),
                ("pids.max", 64)
            ]
        );
        let retried =
            parse("type = \"oneshot\"\nexec = [\"/a\"]\nrestart = \"on-failure\"").expect("valid");
        assert_eq!(retried.restart, Restart::OnFailure, "unless it says so");
        let simple = parse("exec = [\"/a\"]\nmemory_max = 1048576").expect("valid");
        assert_eq!(simple.kind, ServiceType::Simple);
        assert_eq!(simple.limits.memory_max, Some(1 << 20), "bytes as a number");
        assert!(simple.after.is_empty());
        assert_eq!(simple.limits.files(), [("memory.max", 1 << 20)]);
        assert!(Limits::default().files().is_empty());
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("1", Some(1)),
            ("4096", Some(4096)),
            ("64K", Some(64 << 10)),
            ("512M", Some(512 << 20)),
            ("2G", Some(2 << 30)),
            ("0", None),
            ("0M", None),
            ("", None),
            ("M", None),
            ("512m", None),
            ("1.5G", None),
            ("512 M", None),
            ("-1", None),
            ("+5", None),
            ("1T", None),
            ("99999999999G", None),
            ("18446744073709551616", None),
        ] {
            assert_eq!(parse_size(text), bytes, "{text:?}");
        }
    }

    #[test]
    fn refuses_bad_limits_and_order() {
        let with = |line: &str| parse(&format!("exec = [\"/a\"]\n{line}"));
        assert_eq!(
            with("memory_max = \"lots\""),
            Err(ServiceFileError::MemoryMax("\"lots\"".into()))
        );
        assert_eq!(
            with("memory_max = 0"),
            Err(ServiceFileError::MemoryMax("0".into()))
        );
        assert_eq!(
            with("memory_max = -5"),
            Err(ServiceFileError::MemoryMax("-5".into()))
        );
        assert_eq!(
            with("memory_max = true"),
            Err(ServiceFileError::MemoryMax("true".into()))
        );
        assert_eq!(with("cpu_weight = 0"), Err(ServiceFileError::CpuWeight(0)));
        assert_eq!(
            with("cpu_weight = 10001"),
            Err(ServiceFileError::CpuWeight(10001))
        );
        assert!(with("cpu_weight = 1").is_ok() && with("cpu_weight = 10000").is_ok());
        assert_eq!(with("tasks_max = 0"), Err(ServiceFileError::TasksMax(0)));
        assert_eq!(
            with("after = [\"a/b\"]"),
            Err(ServiceFileError::After("a/b".into()))
        );
        assert!(matches!(
            with("type = \"forking\""),
            Err(ServiceFileError::Syntax(m)) if m.contains("simple, oneshot")
        ));
        assert!(matches!(
            with("cpu_weight = \"high\""),
            Err(ServiceFileError::Syntax(_))
        ));
        let text = with("memory_max = \"1.5G\"").expect_err("bad").to_string();
        assert!(
            text.contains("memory_max = \"1.5G\" is not a size"),
            "{text}"
        );
        assert!(text.contains("\"512M\""), "{text}");
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
    fn console_falls_back_to_busybox() {
        assert_eq!(builtin_console(true).spec.exec, ["/usr/bin/sh"]);
        assert_eq!(builtin_console(false).spec.exec, ["/usr/bin/busybox", "sh"]);
    }
}
