//! A systemd `.service` unit (with its drop-ins merged) translated into a
//! Tandem service description, and every directive that could not be
//! honoured named with its line.
//!
//! The output, [`TranslatedService`], has two parts:
//!
//! - fields named as the keys of Tandem's service file (docs/node-configuration.md,
//!   "Services"): what the node can run today;
//! - [`Extensions`]: what the translation needs and Tandem's service format
//!   does not have yet (commands before, after and to stop the main one,
//!   environment files, user and group by name, environment expansion in
//!   arguments). The node must refuse to run a service whose extensions it
//!   cannot honour rather than run it differently; adding them to the
//!   service format is the next step.
//!
//! Semantics kept from systemd where Tandem's defaults differ: no
//! `Restart=` is `restart = "never"` (systemd's default), not Tandem's
//! `on-failure`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tandem_contract::run::ServiceType;

use crate::diagnostics::Severity;
use crate::exec::{self, Command};
use crate::model::UnitCommand;
use crate::unit::{Entry, UnitFile};

/// Tandem's `restart` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// After any exit.
    Always,
    /// Unless the exit status is 0.
    OnFailure,
    /// Never.
    Never,
}

/// Tandem's `stdio` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stdio {
    /// `/run/tandem/log/<name>.log`.
    Log,
    /// `/dev/console`.
    Console,
    /// Discarded.
    Null,
    /// The console terminal, interactive.
    Tty,
}

/// An `EnvironmentFile=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnvironmentFile {
    /// The file.
    pub path: String,
    /// `-` before the path: a missing file is not an error.
    pub optional: bool,
}

/// What a translated service needs that Tandem's service format does not
/// have yet; empty when the service can run as today's format says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Extensions {
    /// `ExecStartPre=`, in order; a failure (unless ignored) fails the start.
    pub exec_start_pre: Vec<Command>,
    /// `ExecStartPost=`, and a oneshot's second and later `ExecStart=`.
    pub exec_start_post: Vec<Command>,
    /// `ExecStop=`, run before SIGTERM.
    pub exec_stop: Vec<Command>,
    /// `EnvironmentFile=`, read in order before `[env]` is applied.
    pub environment_files: Vec<EnvironmentFile>,
    /// `User=` when it is a name (a number goes to `user`).
    pub user_name: Option<String>,
    /// `Group=` when it is a name (a number goes to `group`).
    pub group_name: Option<String>,
    /// `exec` has `$VAR`/`${VAR}` that systemd would expand.
    pub exec_needs_env_expansion: bool,
    /// `-` on `ExecStart=`: a failure exit status counts as success.
    pub exec_ignore_failure: bool,
}

impl Extensions {
    /// Whether the service needs nothing beyond today's service format.
    pub fn is_empty(&self) -> bool {
        *self == Extensions::default()
    }
}

/// A Tandem service description. The fields up to `env` are the keys of
/// Tandem's service file; `extensions` holds the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TranslatedService {
    /// The service's name: the unit name without `.service`.
    pub name: String,
    /// `description`.
    pub description: Option<String>,
    /// `type`.
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// `exec`: absolute program path, then arguments.
    pub exec: Vec<String>,
    /// `restart`.
    pub restart: Restart,
    /// `restart_delay_ms`.
    pub restart_delay_ms: Option<u64>,
    /// `stop_timeout_secs`.
    pub stop_timeout_secs: Option<u64>,
    /// `enabled`.
    pub enabled: bool,
    /// `stdio`.
    pub stdio: Option<Stdio>,
    /// `after_network`.
    pub after_network: bool,
    /// `after`: other services' names.
    pub after: Vec<String>,
    /// `memory_max` (`tandem.services` only; units have no such directive here).
    pub memory_max: Option<String>,
    /// `cpu_weight` (`tandem.services` only).
    pub cpu_weight: Option<u32>,
    /// `tasks_max` (`tandem.services` only).
    pub tasks_max: Option<u64>,
    /// `working_directory`.
    pub working_directory: Option<String>,
    /// `user`: numeric uid.
    pub user: Option<u32>,
    /// `group`: numeric gid.
    pub group: Option<u32>,
    /// `[env]`.
    pub env: BTreeMap<String, String>,
    /// Not in Tandem's service format yet.
    pub extensions: Extensions,
}

impl TranslatedService {
    /// A service with Tandem's defaults and no command yet.
    pub fn new(name: &str) -> TranslatedService {
        TranslatedService {
            name: name.to_string(),
            description: None,
            kind: ServiceType::Simple,
            exec: Vec::new(),
            restart: Restart::OnFailure,
            restart_delay_ms: None,
            stop_timeout_secs: None,
            enabled: true,
            stdio: None,
            after_network: false,
            after: Vec::new(),
            memory_max: None,
            cpu_weight: None,
            tasks_max: None,
            working_directory: None,
            user: None,
            group: None,
            env: BTreeMap::new(),
            extensions: Extensions::default(),
        }
    }
}

/// A finding of the translation, in the unit text `origin` (0 the unit,
/// 1.. its drop-ins in order) at `line` (0: the unit as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Error (the unit cannot be translated) or warning (not honoured).
    pub severity: Severity,
    /// Which text.
    pub origin: usize,
    /// Which line of it.
    pub line: usize,
    /// What and why.
    pub message: String,
}

/// What the translation knows about the other services.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// The `.service` units this config defines (with content).
    pub units: &'a [String],
    /// The image's services, when known (on the node); `None` on the build host.
    pub image_services: Option<&'a [String]>,
}

/// How the config asks for the unit to be run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activation {
    /// `enable`.
    pub enable: Option<bool>,
    /// `command`.
    pub command: Option<UnitCommand>,
    /// `mask`.
    pub mask: bool,
}

/// The translation of one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The service; `None` when an error leaves nothing to run.
    pub service: Option<TranslatedService>,
    /// Errors and not-honoured directives.
    pub findings: Vec<Finding>,
}

/// Targets that every Tandem service is started after anyway, or that
/// only group units: ordering on them is met by construction.
const IMPLIED_TARGETS: &[&str] = &[
    "basic.target",
    "sysinit.target",
    "local-fs.target",
    "remote-fs.target",
    "multi-user.target",
    "default.target",
    "paths.target",
    "sockets.target",
    "timers.target",
    "time-sync.target",
    "systemd-journald.service",
    "system.slice",
];

/// Network targets: `after_network`.
const NETWORK: &[&str] = &[
    "network.target",
    "network-online.target",
    "systemd-networkd-wait-online.service",
];

/// Directives that only describe the unit (no effect to honour).
const METADATA: &[(&str, &str)] = &[("Unit", "Documentation"), ("Unit", "SourcePath")];

/// Translates `unit` (named `name`, e.g. `hello.service`).
pub fn translate(
    name: &str,
    unit: &UnitFile,
    activation: Activation,
    ctx: &Context<'_>,
) -> Translation {
    let mut t = Translator {
        findings: Vec::new(),
    };
    let service = t.run(name, unit, activation, ctx);
    Translation {
        service,
        findings: t.findings,
    }
}

struct Translator {
    findings: Vec<Finding>,
}

impl Translator {
    fn warn(&mut self, e: &Entry, message: String) {
        self.push(Severity::Warning, e.origin, e.line, message);
    }

    fn error(&mut self, e: &Entry, message: String) {
        self.push(Severity::Error, e.origin, e.line, message);
    }

    fn push(&mut self, severity: Severity, origin: usize, line: usize, message: String) {
        self.findings.push(Finding {
            severity,
            origin,
            line,
            message,
        });
    }

    fn not_honoured(&mut self, e: &Entry, why: &str) {
        self.warn(e, format!("`{}={}` is not honoured: {why}", e.key, e.value));
    }

    fn run(
        &mut self,
        name: &str,
        unit: &UnitFile,
        activation: Activation,
        ctx: &Context<'_>,
    ) -> Option<TranslatedService> {
        let short = name.strip_suffix(".service").unwrap_or(name);
        let mut svc = TranslatedService::new(short);
        // systemd's default is Restart=no.
        svc.restart = Restart::Never;
        let mut exec_start: Vec<(Command, Entry)> = Vec::new();
        let mut wanted_by: Vec<&Entry> = Vec::new();
        for section in &unit.sections {
            for e in &section.entries {
                let known = match section.name.as_str() {
                    "Unit" => self.unit_entry(e, &mut svc, ctx),
                    "Service" => self.service_entry(e, &mut svc, &mut exec_start),
                    "Install" => {
                        match e.key.as_str() {
                            "WantedBy" if e.value.is_empty() => wanted_by.clear(),
                            "WantedBy" => wanted_by.push(e),
                            _ => self.not_honoured(
                                e,
                                "Tandem enables a service with `enable: true` or `command: start`; it has no aliases or other targets",
                            ),
                        }
                        true
                    }
                    other => {
                        self.warn(e, format!("section [{other}] has no meaning for a Tandem service; `{}=` ignored", e.key));
                        true
                    }
                };
                if !known {
                    self.not_honoured(e, "Tandem's services have no such setting");
                }
                for s in exec::specifiers(&e.value) {
                    if matches!(section.name.as_str(), "Unit" | "Service") && e.key != "Description"
                    {
                        self.warn(
                            e,
                            format!("the specifier `{s}` is not expanded: write the value out"),
                        );
                    }
                }
            }
        }
        self.activation(&mut svc, activation, &wanted_by, unit);
        // The main command.
        let mut commands = exec_start.into_iter();
        let Some((main, main_entry)) = commands.next() else {
            self.push(
                Severity::Error,
                0,
                0,
                format!("`{name}` has no `ExecStart=` in [Service]: nothing to run"),
            );
            return None;
        };
        let rest: Vec<(Command, Entry)> = commands.collect();
        if !rest.is_empty() {
            if svc.kind == ServiceType::Oneshot {
                // systemd runs them in order before ExecStartPost=.
                let mut post: Vec<Command> = rest.into_iter().map(|(c, _)| c).collect();
                post.append(&mut svc.extensions.exec_start_post);
                svc.extensions.exec_start_post = post;
            } else {
                self.error(
                    &rest[0].1,
                    "more than one `ExecStart=` is only allowed with `Type=oneshot`".into(),
                );
            }
        }
        if main.ignore_failure {
            if svc.kind == ServiceType::Simple {
                self.warn(&main_entry, "`-` on `ExecStart=`: a failure exit status counts as success (kept as exec_ignore_failure)".into());
            }
            svc.extensions.exec_ignore_failure = true;
        }
        svc.extensions.exec_needs_env_expansion = main.needs_env_expansion;
        svc.exec = main.argv;
        Some(svc)
    }

    fn activation(
        &mut self,
        svc: &mut TranslatedService,
        a: Activation,
        wanted_by: &[&Entry],
        unit: &UnitFile,
    ) {
        let enabled_by_install = a.enable == Some(true) && !wanted_by.is_empty();
        if a.enable == Some(true) && wanted_by.is_empty() {
            let (origin, line) = unit
                .section("Install")
                .map_or((0, 0), |s| (s.origin, s.line));
            self.push(
                Severity::Warning,
                origin,
                line,
                "`enable: true` with no `WantedBy=` in [Install] enables nothing (as systemctl enable); the service starts only if `command: start` says so".into(),
            );
        }
        for e in wanted_by {
            if !matches!(
                e.value.as_str(),
                "multi-user.target" | "default.target" | "basic.target"
            ) {
                self.warn(
                    e,
                    format!("`WantedBy={}`: Tandem has no targets; an enabled service starts at every boot", e.value),
                );
            }
        }
        let started = a.command.is_some_and(UnitCommand::starts);
        svc.enabled =
            !a.mask && a.command != Some(UnitCommand::Stop) && (started || enabled_by_install);
    }

    /// `[Unit]`; false when the key is unknown.
    fn unit_entry(&mut self, e: &Entry, svc: &mut TranslatedService, ctx: &Context<'_>) -> bool {
        match e.key.as_str() {
            "Description" => svc.description = (!e.value.is_empty()).then(|| e.value.clone()),
            "After" | "Requires" => {
                for other in e.value.split_whitespace() {
                    self.order_after(e, other, svc, ctx);
                }
                if e.key == "Requires" {
                    self.warn(
                        e,
                        "`Requires=` is read as ordering (`after`): Tandem starts every enabled service and does not stop it when the one it requires stops".into(),
                    );
                }
            }
            "Wants" => self.not_honoured(
                e,
                "Tandem starts every enabled service; for ordering write `After=` (`after`)",
            ),
            _ if METADATA.iter().any(|(s, k)| *s == "Unit" && *k == e.key) => {}
            _ => return false,
        }
        true
    }

    fn order_after(
        &mut self,
        e: &Entry,
        other: &str,
        svc: &mut TranslatedService,
        ctx: &Context<'_>,
    ) {
        if NETWORK.contains(&other) {
            svc.after_network = true;
            return;
        }
        if IMPLIED_TARGETS.contains(&other) {
            return;
        }
        let Some(service) = other.strip_suffix(".service") else {
            self.warn(e, format!("`{other}` is not a service: Tandem orders services only after services and the network"));
            return;
        };
        let push = |svc: &mut TranslatedService| {
            if !svc.after.iter().any(|a| a == service) {
                svc.after.push(service.to_string());
            }
        };
        if ctx.units.iter().any(|u| u == other) {
            push(svc);
            return;
        }
        match ctx.image_services {
            Some(image) if image.iter().any(|s| s == service) => push(svc),
            Some(_) => self.warn(
                e,
                format!("`{other}` is neither in this config nor a service of the image: the ordering is dropped"),
            ),
            None => {
                push(svc);
                self.warn(
                    e,
                    format!("`{other}` is not in this config: ordered after the image's service `{service}`; if the image has none (Podman needs no daemon) the node ignores it with a warning"),
                );
            }
        }
    }

    /// `[Service]`; false when the key is unknown.
    fn service_entry(
        &mut self,
        e: &Entry,
        svc: &mut TranslatedService,
        exec_start: &mut Vec<(Command, Entry)>,
    ) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "Type" => {
                svc.kind = match v {
                    "" | "simple" => ServiceType::Simple,
                    "oneshot" => ServiceType::Oneshot,
                    "exec" | "notify" | "notify-reload" | "dbus" | "idle" => {
                        self.warn(e, format!("`Type={v}` is run as `simple`: Tandem counts a service as started once its process is spawned"));
                        ServiceType::Simple
                    }
                    "forking" => {
                        self.warn(e, "`Type=forking` is run as `simple`: Tandem supervises the process it started, so run the program in the foreground (its --foreground/-f option)".into());
                        ServiceType::Simple
                    }
                    other => {
                        self.error(e, format!("unknown `Type={other}`"));
                        ServiceType::Simple
                    }
                }
            }
            "ExecStart" | "ExecStartPre" | "ExecStartPost" | "ExecStop" => {
                let commands = match exec::parse_exec(v) {
                    Ok(c) => c,
                    Err(err) => {
                        self.error(e, format!("`{}=`: {err}", e.key));
                        return true;
                    }
                };
                for c in &commands {
                    self.check_command(e, c);
                }
                match e.key.as_str() {
                    "ExecStart" if v.is_empty() => exec_start.clear(),
                    "ExecStart" => exec_start.extend(commands.into_iter().map(|c| (c, e.clone()))),
                    key => {
                        let list = match key {
                            "ExecStartPre" => &mut svc.extensions.exec_start_pre,
                            "ExecStartPost" => &mut svc.extensions.exec_start_post,
                            _ => &mut svc.extensions.exec_stop,
                        };
                        if v.is_empty() {
                            list.clear();
                        }
                        list.extend(commands);
                    }
                }
            }
            "Restart" => {
                svc.restart = match v {
                    "no" | "" => Restart::Never,
                    "always" => Restart::Always,
                    "on-failure" => Restart::OnFailure,
                    "on-abnormal" | "on-abort" | "on-watchdog" => {
                        self.warn(e, format!("`Restart={v}` is approximated by `on-failure` (restart unless the exit status is 0)"));
                        Restart::OnFailure
                    }
                    "on-success" => {
                        self.warn(e, "`Restart=on-success` is approximated by `always`".into());
                        Restart::Always
                    }
                    other => {
                        self.error(e, format!("unknown `Restart={other}`"));
                        Restart::Never
                    }
                }
            }
            "RestartSec" => match parse_timespan(v) {
                Some(Some(d)) => {
                    svc.restart_delay_ms = Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                }
                _ => self.error(
                    e,
                    format!("`RestartSec={v}` is not a time span (e.g. 5s, 500ms, 1min)"),
                ),
            },
            "TimeoutStopSec" | "TimeoutSec" => {
                match parse_timespan(v) {
                    Some(Some(d)) => svc.stop_timeout_secs = Some(d.as_secs() + u64::from(d.subsec_nanos() > 0)),
                    Some(None) => self.warn(e, "an infinite stop timeout is not honoured: Tandem kills the service's cgroup after stop_timeout_secs (default 10)".into()),
                    None => self.error(e, format!("`{}={v}` is not a time span", e.key)),
                }
                if e.key == "TimeoutSec" {
                    self.start_timeout(e);
                }
            }
            "TimeoutStartSec" => self.start_timeout(e),
            "Environment" => match exec::parse_environment(v) {
                Ok(pairs) if pairs.is_empty() => svc.env.clear(),
                Ok(pairs) => svc.env.extend(pairs),
                Err(err) => self.error(e, format!("`Environment=`: {err}")),
            },
            "EnvironmentFile" => {
                if v.is_empty() {
                    svc.extensions.environment_files.clear();
                } else {
                    let (optional, path) = v.strip_prefix('-').map_or((false, v), |p| (true, p));
                    if !path.starts_with('/') {
                        self.error(
                            e,
                            format!("`EnvironmentFile={v}`: the path must be absolute"),
                        );
                    }
                    svc.extensions.environment_files.push(EnvironmentFile {
                        path: path.to_string(),
                        optional,
                    });
                }
            }
            "User" | "Group" => {
                let numeric = v.parse::<u32>().ok();
                let (id, name) = if e.key == "User" {
                    (&mut svc.user, &mut svc.extensions.user_name)
                } else {
                    (&mut svc.group, &mut svc.extensions.group_name)
                };
                match numeric {
                    Some(n) => *id = Some(n),
                    None if v.is_empty() => (*id, *name) = (None, None),
                    None if crate::files::is_account_name(v) => *name = Some(v.to_string()),
                    None => self.error(e, format!("`{}={v}` is not a user or group name", e.key)),
                }
            }
            "WorkingDirectory" => {
                let path = v.strip_prefix('-').unwrap_or(v);
                if path.starts_with('/') {
                    svc.working_directory = Some(path.to_string());
                } else if !path.is_empty() {
                    self.not_honoured(
                        e,
                        "Tandem needs an absolute directory (`~` is not expanded)",
                    );
                }
            }
            // A oneshot that exited with status 0 stays `exited`, which is
            // RemainAfterExit=yes; for a simple service it changes nothing.
            "RemainAfterExit" => {}
            "StandardOutput" | "StandardError" => match v {
                "journal" | "syslog" | "kmsg" | "inherit" | "journal+console"
                | "syslog+console" | "kmsg+console" => {
                    if v.ends_with("+console") {
                        svc.stdio = Some(Stdio::Console);
                    }
                }
                "console" | "tty" => svc.stdio = Some(Stdio::Console),
                "null" => svc.stdio = Some(Stdio::Null),
                _ => self.not_honoured(
                    e,
                    "Tandem writes a service's output to its log, the console or nowhere (stdio)",
                ),
            },
            "KillMode" if v == "control-group" => {}
            "KillMode" => self.not_honoured(
                e,
                "Tandem always kills the service's whole cgroup when it stops (control-group)",
            ),
            _ => return false,
        }
        true
    }

    fn start_timeout(&mut self, e: &Entry) {
        if !matches!(
            parse_timespan(&e.value),
            Some(None) | Some(Some(Duration::ZERO))
        ) {
            self.not_honoured(
                e,
                "Tandem has no start timeout (a service starts when its process is spawned)",
            );
        }
    }

    fn check_command(&mut self, e: &Entry, c: &Command) {
        if let Some(program) = c.argv.first()
            && !program.starts_with('/')
        {
            self.error(
                e,
                format!(
                    "`{}=`: the program {program:?} must be an absolute path",
                    e.key
                ),
            );
        }
        for p in &c.unhonoured_prefixes {
            let why = if p == "@" {
                "Tandem cannot set argv[0]; the word after the program is dropped"
            } else {
                "the command runs with the service's user and privileges"
            };
            self.warn(
                e,
                format!("`{}=`: the prefix `{p}` is not honoured: {why}", e.key),
            );
        }
        if c.needs_env_expansion {
            self.warn(
                e,
                format!("`{}=` uses `$VAR`: Tandem passes arguments unchanged today; kept as written and marked as needing expansion", e.key),
            );
        }
    }
}

/// A systemd time span (`5`, `5s`, `500ms`, `1min 30s`, `2h`); `Some(None)`
/// for `infinity`, `None` when it is not one.
pub fn parse_timespan(text: &str) -> Option<Option<Duration>> {
    let t = text.trim();
    if t == "infinity" {
        return Some(None);
    }
    if t.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let micros: u64 = match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1_000_000,
            "us" | "usec" => 1,
            "ms" | "msec" => 1_000,
            "m" | "min" | "minute" | "minutes" => 60_000_000,
            "h" | "hr" | "hour" | "hours" => 3_600_000_000,
            "d" | "day" | "days" => 86_400_000_000,
            "w" | "week" | "weeks" => 604_800_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(Duration::from_micros(n.saturating_mul(micros)));
    }
    Some(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, text: &str, a: Activation, units: &[&str]) -> Translation {
        let unit = UnitFile::parse(text, 0).expect("parses");
        let units: Vec<String> = units.iter().map(|s| s.to_string()).collect();
        translate(
            name,
            &unit,
            a,
            &Context {
                units: &units,
                image_services: None,
            },
        )
    }

    fn start() -> Activation {
        Activation {
            command: Some(UnitCommand::Start),
            ..Activation::default()
        }
    }

    fn messages(t: &Translation) -> Vec<String> {
        t.findings
            .iter()
            .map(|f| format!("{}: {}", f.line, f.message))
            .collect()
    }

    #[test]
    fn worker_hello_service() {
        let text = "[Unit]\nDescription=Say hello every minute\nAfter=network-online.target\n\n[Service]\nExecStart=/bin/sh -c 'while true; do echo hello from $(hostname); sleep 60; done'\nRestart=always\n";
        let t = run("hello.service", text, start(), &["hello.service"]);
        assert!(t.findings.is_empty(), "{:?}", messages(&t));
        let s = t.service.expect("translated");
        assert_eq!(s.name, "hello");
        assert_eq!(s.description.as_deref(), Some("Say hello every minute"));
        assert_eq!(s.kind, ServiceType::Simple);
        assert_eq!(
            s.exec,
            [
                "/bin/sh",
                "-c",
                "while true; do echo hello from $(hostname); sleep 60; done"
            ]
        );
        assert_eq!(s.restart, Restart::Always);
        assert!(s.after_network);
        assert!(s.after.is_empty());
        assert!(s.enabled);
        assert!(s.extensions.is_empty());
    }

    #[test]
    fn docker_run_unit() {
        let text = "[Unit]\nDescription=web\nAfter=docker.service\nRequires=docker.service\n\n[Service]\nTimeoutStartSec=0\nEnvironmentFile=/etc/environment\nExecStartPre=-/usr/bin/docker rm -f x\nExecStartPre=/usr/bin/docker pull nginx\nExecStart=/usr/bin/docker run --name x -p ${COREOS_PRIVATE_IPV4}:80:80 nginx\nExecStop=/usr/bin/docker stop x\nRestartSec=5s\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n";
        let a = Activation {
            enable: Some(true),
            ..Activation::default()
        };
        let t = run("web.service", text, a, &["web.service"]);
        let s = t.service.clone().expect("translated");
        assert_eq!(s.after, ["docker"]);
        assert_eq!(s.restart, Restart::OnFailure);
        assert_eq!(s.restart_delay_ms, Some(5000));
        assert!(s.enabled, "enable: true with WantedBy=multi-user.target");
        assert_eq!(
            s.extensions.exec_start_pre,
            [
                Command {
                    argv: vec![
                        "/usr/bin/docker".into(),
                        "rm".into(),
                        "-f".into(),
                        "x".into()
                    ],
                    ignore_failure: true,
                    ..Command::default()
                },
                Command {
                    argv: vec!["/usr/bin/docker".into(), "pull".into(), "nginx".into()],
                    ..Command::default()
                }
            ]
        );
        assert_eq!(
            s.extensions.exec_stop[0].argv,
            ["/usr/bin/docker", "stop", "x"]
        );
        assert_eq!(
            s.extensions.environment_files,
            [EnvironmentFile {
                path: "/etc/environment".into(),
                optional: false
            }]
        );
        assert!(s.extensions.exec_needs_env_expansion);
        assert_eq!(s.exec[5], "${COREOS_PRIVATE_IPV4}:80:80");
        let m = messages(&t);
        assert!(
            m.iter()
                .any(|m| m.starts_with("3: `docker.service` is not in this config")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m.starts_with("4: `Requires=` is read as ordering")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m.starts_with("11: `ExecStart=` uses `$VAR`")),
            "{m:?}"
        );
        assert!(t.findings.iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn optional_environment_file_and_resets() {
        let text = "[Service]\nEnvironmentFile=-/etc/default/x\nEnvironment=A=1 B=2\nEnvironment=\nEnvironment=\"C=three words\"\nExecStart=/bin/x\nExecStart=\nExecStart=/bin/y\n";
        let s = run("x.service", text, start(), &[])
            .service
            .expect("translated");
        assert!(s.extensions.environment_files[0].optional);
        assert_eq!(s.extensions.environment_files[0].path, "/etc/default/x");
        assert_eq!(
            s.env.into_iter().collect::<Vec<_>>(),
            [("C".to_string(), "three words".to_string())]
        );
        assert_eq!(s.exec, ["/bin/y"]);
    }

    #[test]
    fn activation_semantics() {
        let text = "[Service]\nExecStart=/bin/x\n[Install]\nWantedBy=multi-user.target\n";
        let enabled = |a: Activation| {
            run("x.service", text, a, &[])
                .service
                .expect("translated")
                .enabled
        };
        assert!(enabled(start()));
        assert!(
            !enabled(Activation::default()),
            "neither started nor enabled"
        );
        assert!(enabled(Activation {
            enable: Some(true),
            ..Activation::default()
        }));
        assert!(!enabled(Activation {
            mask: true,
            ..start()
        }));
        assert!(!enabled(Activation {
            command: Some(UnitCommand::Stop),
            enable: Some(true),
            mask: false
        }));
        assert!(!enabled(Activation {
            command: Some(UnitCommand::TryRestart),
            ..Activation::default()
        }));
        let no_install = run(
            "x.service",
            "[Service]\nExecStart=/bin/x\n",
            Activation {
                enable: Some(true),
                ..Activation::default()
            },
            &[],
        );
        assert!(!no_install.service.clone().expect("translated").enabled);
        assert!(messages(&no_install)[0].contains("enables nothing"));
    }

    #[test]
    fn types_and_oneshot_commands() {
        let text = "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/a\nExecStart=/bin/b\nExecStartPost=/bin/c\n";
        let s = run("x.service", text, start(), &[])
            .service
            .expect("translated");
        assert_eq!(s.kind, ServiceType::Oneshot);
        assert_eq!(s.exec, ["/bin/a"]);
        let post: Vec<_> = s
            .extensions
            .exec_start_post
            .iter()
            .map(|c| c.argv[0].as_str())
            .collect();
        assert_eq!(post, ["/bin/b", "/bin/c"]);
        let t = run(
            "x.service",
            "[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n",
            start(),
            &[],
        );
        assert!(
            t.findings
                .iter()
                .any(|f| f.severity == Severity::Error && f.line == 3)
        );
        let t = run(
            "x.service",
            "[Service]\nType=forking\nExecStart=/usr/sbin/d\n",
            start(),
            &[],
        );
        assert_eq!(
            t.service.clone().expect("translated").kind,
            ServiceType::Simple
        );
        assert!(messages(&t)[0].contains("foreground"));
        let t = run(
            "x.service",
            "[Service]\nType=notify\nExecStart=/usr/sbin/d\n",
            start(),
            &[],
        );
        assert!(messages(&t)[0].starts_with("2: `Type=notify` is run as `simple`"));
    }

    #[test]
    fn not_honoured_directives_named_with_lines() {
        let text = "[Unit]\nDescription=x\nBefore=y.service\nWants=z.service\n[Service]\nExecStart=/bin/x %i\nLimitNOFILE=4096\nUser=core\nGroup=100\n[Timer]\nOnCalendar=daily\n";
        let t = run("x.service", text, start(), &[]);
        let m = messages(&t);
        assert!(
            m.iter()
                .any(|m| m.starts_with("3: `Before=y.service` is not honoured")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m.starts_with("4: `Wants=z.service` is not honoured")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|m| m.starts_with("6: the specifier `%i`")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m.starts_with("7: `LimitNOFILE=4096` is not honoured")),
            "{m:?}"
        );
        assert!(
            m.iter().any(|m| m.starts_with("11: section [Timer]")),
            "{m:?}"
        );
        let s = t.service.expect("translated");
        assert_eq!(s.extensions.user_name.as_deref(), Some("core"));
        assert_eq!(s.group, Some(100));
    }

    #[test]
    fn ordering_after_units_of_the_config_and_the_image() {
        let text = "[Unit]\nAfter=db.service network.target multi-user.target\nAfter=docker.service\n[Service]\nExecStart=/bin/x\n";
        let unit = UnitFile::parse(text, 0).expect("parses");
        let units = vec!["db.service".to_string()];
        let image = vec!["sshd".to_string()];
        let t = translate(
            "x.service",
            &unit,
            start(),
            &Context {
                units: &units,
                image_services: Some(&image),
            },
        );
        let s = t.service.clone().expect("translated");
        assert_eq!(s.after, ["db"]);
        assert!(s.after_network);
        assert!(messages(&t)[0].contains("the ordering is dropped"));
    }

    #[test]
    fn missing_exec_and_relative_programs_are_errors() {
        let t = run("x.service", "[Unit]\nDescription=x\n", start(), &[]);
        assert!(t.service.is_none());
        assert_eq!(t.findings[0].severity, Severity::Error);
        let t = run(
            "x.service",
            "[Service]\nExecStart=docker run x\n",
            start(),
            &[],
        );
        assert!(
            t.findings
                .iter()
                .any(|f| f.severity == Severity::Error && f.message.contains("absolute"))
        );
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("5"), Some(Some(Duration::from_secs(5))));
        assert_eq!(
            parse_timespan("500ms"),
            Some(Some(Duration::from_millis(500)))
        );
        assert_eq!(
            parse_timespan("1min 30s"),
            Some(Some(Duration::from_secs(90)))
        );
        assert_eq!(parse_timespan("2h"), Some(Some(Duration::from_secs(7200))));
        assert_eq!(parse_timespan("infinity"), Some(None));
        assert_eq!(parse_timespan("soon"), None);
        assert_eq!(parse_timespan(""), None);
    }
}
