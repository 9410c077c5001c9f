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
