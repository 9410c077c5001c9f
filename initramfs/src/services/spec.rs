//! The services PID 1 runs: the layers of service files and how they
//! merge, and the built-in console service. The file format itself (keys,
//! checks, writer) is the contract's ([`tandem_contract::service`]),
//! re-exported here. Pure apart from [`read_dir`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, ServiceFileError};

pub use tandem_contract::service::{
    CPU_WEIGHT_MAX, Limits, NameOrId, Restart, RunsOn, ServiceSpec, ServiceType, StdioMode, parse,
    parse_size, valid_name,
};

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

/// Turns off the services that do not run on this boot (`runs_on`);
/// returns their names.
pub fn apply_runs_on(defs: &mut [ServiceDef], live_boot: bool) -> Vec<String> {
    let mut off = Vec::new();
    for d in defs.iter_mut() {
        if d.spec.enabled && !d.spec.runs_on.allows(live_boot) {
            d.spec.enabled = false;
            off.push(d.name.clone());
        }
    }
    off
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
            exec_start_pre: Vec::new(),
            exec_stop: Vec::new(),
            restart: Restart::Always,
            restart_delay_ms: 200,
            stop_timeout_secs: 2,
            enabled: true,
            stdio: StdioMode::Tty,
            runs_on: RunsOn::Any,
            after_network: false,
            after: Vec::new(),
            limits: Limits::default(),
            env: BTreeMap::from([
                ("HOME".into(), "/root".into()),
                ("PS1".into(), "\\h:\\w\\$ ".into()),
            ]),
            environment_files: Vec::new(),
            expand_env: false,
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

    #[test]
    fn runs_on_turns_services_off_where_they_do_not_belong() {
        let def = |name: &str, runs_on| {
            let mut d = builtin_console(true);
            d.name = name.into();
            d.spec.runs_on = runs_on;
            d
        };
        let all = || {
            vec![
                def("any", RunsOn::Any),
                def("updater", RunsOn::Installed),
                def("installer", RunsOn::Live),
            ]
        };
        let mut defs = all();
        assert_eq!(apply_runs_on(&mut defs, true), ["updater"]);
        assert!(defs[0].spec.enabled && defs[2].spec.enabled);
        let mut defs = all();
        assert_eq!(apply_runs_on(&mut defs, false), ["installer"]);
        assert!(defs[0].spec.enabled && defs[1].spec.enabled);
    }

    fn def(name: &str, restart: Restart) -> ServiceDef {
        test_def(name, restart)
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
