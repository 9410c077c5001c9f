//! A systemd `.service` unit (with its drop-ins merged) translated into a
//! Tandem service file, and every directive that could not be honoured
//! named with its line.
//!
//! The output, [`TranslatedService`], is the service's name and a
//! [`ServiceFile`] of the contract (`tandem_contract::service`): the same
//! type the image builder writes and PID 1 reads, so a translated unit is
//! rendered and checked by the node's own code
//! ([`TranslatedService::render`], [`TranslatedService::check`]). What the
//! service format does not have (`ExecStartPost=`, a oneshot's second
//! `ExecStart=`, `-` on `ExecStart=`, ...) is a warning of the
//! [`Translation`], not part of the service.
//!
//! Semantics kept from systemd where Tandem's defaults differ: no
//! `Restart=` is `restart = "never"` (systemd's default), not Tandem's
//! `on-failure`.

use std::time::Duration;

use tandem_contract::run::ServiceType;
use tandem_contract::service::{
    EnvironmentFile, ExtraCommand, NameOrId, Restart, ServiceFile, ServiceFileError, ServiceSpec,
    StdioMode,
};

use crate::diagnostics::Severity;
use crate::exec::{self, Command};
use crate::model::UnitCommand;
use crate::unit::{Entry, UnitFile};

/// A translated service: its name and its service file.
#[derive(Clone, Debug, PartialEq)]
pub struct TranslatedService {
    /// The service's name: the unit name without `.service` (the file
    /// name without `.toml`).
    pub name: String,
    /// The service file, as the node reads it.
    pub file: ServiceFile,
}

impl TranslatedService {
    /// A service with no command yet and every key at its default.
    pub fn new(name: &str) -> TranslatedService {
        TranslatedService {
            name: name.to_string(),
            file: ServiceFile::default(),
        }
    }

    /// The service file's text, checked as PID 1 checks it.
    pub fn render(&self) -> Result<String, ServiceFileError> {
        self.file.render()
    }

    /// The service as PID 1 would run it (defaults applied).
    pub fn check(&self) -> Result<ServiceSpec, ServiceFileError> {
        self.file.clone().check()
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
#[derive(Clone, Debug, PartialEq)]
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
        pre: Vec::new(),
        stop: Vec::new(),
    };
    let service = t.run(name, unit, activation, ctx);
    Translation {
        service,
        findings: t.findings,
    }
}

struct Translator {
    findings: Vec<Finding>,
    /// `ExecStartPre=` as parsed, with their lines (for `expand_env`).
    pre: Vec<(Command, Entry)>,
    /// `ExecStop=` likewise.
    stop: Vec<(Command, Entry)>,
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
        let mut svc = ServiceFile {
            // systemd's default is Restart=no.
            restart: Some(Restart::Never),
            ..ServiceFile::default()
        };
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
        let oneshot = svc.kind == Some(ServiceType::Oneshot);
        for (_, e) in commands {
            if oneshot {
                // systemd runs them in order after the first.
                self.warn(&e, format!("`ExecStart={}` is not honoured: Tandem's service format runs one command (`exec`); a oneshot's further `ExecStart=` are not run (put them in a script)", e.value));
            } else {
                self.error(
                    &e,
                    "more than one `ExecStart=` is only allowed with `Type=oneshot`".into(),
                );
            }
        }
        if main.ignore_failure {
            self.warn(&main_entry, "`-` on `ExecStart=` is not honoured: Tandem's service format has no such setting, so a failure exit status counts as a failure".into());
        }
        let pre = std::mem::take(&mut self.pre);
        let stop = std::mem::take(&mut self.stop);
        let extra = || pre.iter().chain(&stop).map(|(c, e)| (c, e));
        let expand = main.needs_env_expansion || extra().any(|(c, _)| c.needs_env_expansion);
        if expand {
            // `expand_env` is one setting for every command: a command
            // written with `:` (no expansion) is expanded too.
            let unexpanded: Vec<Entry> = extra()
                .chain(std::iter::once((&main, &main_entry)))
                .filter(|(c, _)| {
                    !c.needs_env_expansion && c.argv.iter().skip(1).any(|a| exec::uses_env(a))
                })
                .map(|(_, e)| e.clone())
                .collect();
            for e in unexpanded {
                self.warn(&e, format!("`{}=`: the `:` prefix is not honoured: Tandem's `expand_env` expands every command of a service, and another one uses `$VAR`", e.key));
            }
        }
        svc.expand_env = expand.then_some(true);
        let commands = |list: Vec<(Command, Entry)>| -> Vec<ExtraCommand> {
            list.into_iter()
                .map(|(c, _)| ExtraCommand {
                    exec: c.argv,
                    ignore_failure: c.ignore_failure,
                })
                .collect()
        };
        svc.exec_start_pre = commands(pre);
        svc.exec_stop = commands(stop);
        svc.exec = main.argv;
        // The node's own check: what cannot be written is not translated.
        if let Err(err) = svc.clone().check() {
            if !self.findings.iter().any(|f| f.severity == Severity::Error) {
                self.push(
                    Severity::Error,
                    0,
                    0,
                    format!("`{name}` translates into a service file the node refuses: {err}"),
                );
            }
            return None;
        }
        Some(TranslatedService {
            name: short.to_string(),
            file: svc,
        })
    }

    fn activation(
        &mut self,
        svc: &mut ServiceFile,
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
        let enabled =
            !a.mask && a.command != Some(UnitCommand::Stop) && (started || enabled_by_install);
        svc.enabled = (!enabled).then_some(false);
    }

    /// `[Unit]`; false when the key is unknown.
    fn unit_entry(&mut self, e: &Entry, svc: &mut ServiceFile, ctx: &Context<'_>) -> bool {
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

    fn order_after(&mut self, e: &Entry, other: &str, svc: &mut ServiceFile, ctx: &Context<'_>) {
        if NETWORK.contains(&other) {
            svc.after_network = Some(true);
            return;
        }
        if IMPLIED_TARGETS.contains(&other) {
            return;
        }
        let Some(service) = other.strip_suffix(".service") else {
            self.warn(e, format!("`{other}` is not a service: Tandem orders services only after services and the network"));
            return;
        };
        let push = |svc: &mut ServiceFile| {
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
        svc: &mut ServiceFile,
        exec_start: &mut Vec<(Command, Entry)>,
    ) -> bool {
        let v = e.value.as_str();
        match e.key.as_str() {
            "Type" => {
                svc.kind = Some(match v {
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
                })
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
                    "ExecStartPre" if v.is_empty() => self.pre.clear(),
                    "ExecStartPre" => self
                        .pre
                        .extend(commands.into_iter().map(|c| (c, e.clone()))),
                    "ExecStop" if v.is_empty() => self.stop.clear(),
                    "ExecStop" => self
                        .stop
                        .extend(commands.into_iter().map(|c| (c, e.clone()))),
                    _ if v.is_empty() => {}
                    _ => self.not_honoured(
                        e,
                        "Tandem's service format has no commands after the program starts",
                    ),
                }
            }
            "Restart" => {
                svc.restart = Some(match v {
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
                })
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
                    svc.environment_files.clear();
                } else if EnvironmentFile::parse(v).is_some() {
                    svc.environment_files.push(v.to_string());
                } else {
                    self.error(
                        e,
                        format!("`EnvironmentFile={v}`: the path must be absolute"),
                    );
                }
            }
            "User" | "Group" => {
                let who = match v.parse::<u32>() {
                    Ok(n) if n != u32::MAX => Some(NameOrId::Id(n)),
                    _ if v.is_empty() => None,
                    _ if tandem_contract::sysusers::valid_name(v) => {
                        Some(NameOrId::Name(v.to_string()))
                    }
                    _ => {
                        self.error(e, format!("`{}={v}` is not a user or group name", e.key));
                        return true;
                    }
                };
                if e.key == "User" {
                    svc.user = who;
                } else {
                    svc.group = who;
                }
            }
            "WorkingDirectory" => {
                let path = v.strip_prefix('-').unwrap_or(v);
                if path.starts_with('/') {
                    svc.working_directory = Some(path.into());
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
                        svc.stdio = Some(StdioMode::Console);
                    }
                }
                "console" | "tty" => svc.stdio = Some(StdioMode::Console),
                "null" => svc.stdio = Some(StdioMode::Null),
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
    use tandem_contract::service;

    fn run(name: &str, text: &str, a: Activation, units: &[&str]) -> Translation {
        let unit = UnitFile::parse(text, 0).expect("parses");
        let units: Vec<String> = units.iter().map(|s| s.to_string()).collect();
        let t = translate(
            name,
            &unit,
            a,
            &Context {
                units: &units,
                image_services: None,
            },
        );
        round_trips(&t);
        t
    }

    /// A translated service renders, and the text parses back (through
    /// the node's own `service::parse`) into the same service.
    fn round_trips(t: &Translation) {
        if let Some(s) = &t.service {
            let text = s.render().expect("renders");
            assert_eq!(service::parse(&text), s.check(), "{text}");
        }
    }

    /// The service as the node runs it.
    fn spec(t: &Translation) -> ServiceSpec {
        t.service
            .as_ref()
            .expect("translated")
            .check()
            .expect("checks")
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
        assert_eq!(t.service.as_ref().expect("translated").name, "hello");
        let s = spec(&t);
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
        assert!(!s.needs_launcher());
    }

    #[test]
    fn docker_run_unit() {
        let text = "[Unit]\nDescription=web\nAfter=docker.service\nRequires=docker.service\n\n[Service]\nTimeoutStartSec=0\nEnvironmentFile=/etc/environment\nExecStartPre=-/usr/bin/docker rm -f x\nExecStartPre=/usr/bin/docker pull nginx\nExecStart=/usr/bin/docker run --name x -p ${COREOS_PRIVATE_IPV4}:80:80 nginx\nExecStop=/usr/bin/docker stop x\nRestartSec=5s\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n";
        let a = Activation {
            enable: Some(true),
            ..Activation::default()
        };
        let t = run("web.service", text, a, &["web.service"]);
        let s = spec(&t);
        assert_eq!(s.after, ["docker"]);
        assert_eq!(s.restart, Restart::OnFailure);
        assert_eq!(s.restart_delay_ms, 5000);
        assert!(s.enabled, "enable: true with WantedBy=multi-user.target");
        assert_eq!(
            s.exec_start_pre,
            [
                ExtraCommand {
                    exec: vec![
                        "/usr/bin/docker".into(),
                        "rm".into(),
                        "-f".into(),
                        "x".into()
                    ],
                    ignore_failure: true,
                },
                ExtraCommand {
                    exec: vec!["/usr/bin/docker".into(), "pull".into(), "nginx".into()],
                    ignore_failure: false,
                }
            ]
        );
        assert_eq!(
            s.environment_files,
            [EnvironmentFile {
                path: "/etc/environment".into(),
                optional: false
            }]
        );
        assert!(s.expand_env);
        assert!(s.needs_launcher());
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
        assert_eq!(
            s.exec_stop,
            [ExtraCommand {
                exec: vec!["/usr/bin/docker".into(), "stop".into(), "x".into()],
                ignore_failure: false,
            }]
        );
        assert!(!m.iter().any(|m| m.starts_with("12:")), "{m:?}");
        assert!(t.findings.iter().all(|f| f.severity == Severity::Warning));
    }

    #[test]
    fn optional_environment_file_and_resets() {
        let text = "[Service]\nEnvironmentFile=-/etc/default/x\nEnvironment=A=1 B=2\nEnvironment=\nEnvironment=\"C=three words\"\nExecStart=/bin/x\nExecStart=\nExecStart=/bin/y\n";
        let s = spec(&run("x.service", text, start(), &[]));
        assert!(s.environment_files[0].optional);
        assert_eq!(
            s.environment_files[0].path,
            std::path::Path::new("/etc/default/x")
        );
        assert_eq!(
            s.env.into_iter().collect::<Vec<_>>(),
            [("C".to_string(), "three words".to_string())]
        );
        assert_eq!(s.exec, ["/bin/y"]);
    }

    #[test]
    fn activation_semantics() {
        let text = "[Service]\nExecStart=/bin/x\n[Install]\nWantedBy=multi-user.target\n";
        let enabled = |a: Activation| spec(&run("x.service", text, a, &[])).enabled;
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
        assert!(!spec(&no_install).enabled);
        assert!(messages(&no_install)[0].contains("enables nothing"));
    }

    #[test]
    fn types_and_oneshot_commands() {
        let text = "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/a\nExecStart=/bin/b\nExecStartPost=/bin/c\n";
        let t = run("x.service", text, start(), &[]);
        let s = spec(&t);
        assert_eq!(s.kind, ServiceType::Oneshot);
        assert_eq!(s.exec, ["/bin/a"]);
        assert_eq!(s.restart, Restart::Never);
        let m = messages(&t);
        assert!(
            m.iter()
                .any(|m| m.starts_with("5: `ExecStart=/bin/b` is not honoured")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|m| m.starts_with("6: `ExecStartPost=/bin/c` is not honoured")),
            "{m:?}"
        );
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
        assert_eq!(spec(&t).kind, ServiceType::Simple);
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
        let s = spec(&t);
        assert_eq!(s.user, Some(NameOrId::Name("core".into())));
        assert_eq!(s.group, Some(NameOrId::Id(100)));
        assert!(s.needs_launcher());
    }

    #[test]
    fn expansion_is_one_setting_for_every_command() {
        let text = "[Service]\nExecStartPre=:/bin/echo ${A}\nExecStartPre=/bin/echo ${B}\nExecStart=/bin/x\n";
        let t = run("x.service", text, start(), &[]);
        assert!(spec(&t).expand_env);
        let m = messages(&t);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("2: `ExecStartPre=`: the `:` prefix is not honoured"));
        let t = run(
            "x.service",
            "[Service]\nExecStart=:/bin/echo ${A}\n",
            start(),
            &[],
        );
        assert!(!spec(&t).expand_env);
        assert!(t.findings.is_empty());
        let t = run("x.service", "[Service]\nExecStart=-/bin/x\n", start(), &[]);
        assert!(messages(&t)[0].starts_with("2: `-` on `ExecStart=` is not honoured"));
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
        round_trips(&t);
        let s = spec(&t);
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
