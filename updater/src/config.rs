//! `update.toml`: the updater's and the agent's settings, in four layers
//! merged key by key, later layers winning:
//!
//! 1. `/usr/lib/tandem/update.toml`: the image's defaults;
//! 2. `update.toml` on the OEM partition: the platform's (the FAT partition
//!    6, read in place; tests point nodes at their server this way);
//! 3. `/run/tandem/provisioned/update.toml`: the node's cloud-config's
//!    (`coreos.update`), written at every boot;
//! 4. `/etc/tandem/update.toml`: the administrator's.
//!
//! `[[health-check]]` entries of all layers are combined; an entry with the
//! name of an earlier one replaces it. Unknown keys are errors: a layer
//! with an error is reported and the last good configuration stays in force.
//!
//! Merging ([`merge`]) and editing ([`set_channel`]) are pure functions of
//! the text; [`read_layers`] reads the files and the OEM partition,
//! [`write_admin_channel`] writes the administrator's file.

use std::path::{Path, PathBuf};
use std::time::Duration;
use tandem_contract::Partition;

use serde::{Deserialize, Serialize};

use crate::clock::parse_duration;
use crate::disk::BootDisk;
use crate::error::Error;
use crate::esp;
use crate::transport::ProxySetting;

pub use tandem_contract::RebootStrategy;

/// An administrator's health check: a program whose exit status 0 means
/// the node works.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Name, for status and logs.
    pub name: String,
    /// Program (absolute path) and arguments.
    pub exec: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

/// The merged configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Base URLs of the update repository (`http://host:port/path` or
    /// `https://…`), tried in order: a site mirror first, the origin last.
    pub servers: Vec<String>,
    /// Extra CA certificates (PEM) for `https://` servers, beside the
    /// image's roots.
    pub ca_file: Option<PathBuf>,
    /// The proxy.
    pub proxy: ProxySetting,
    /// The channel to follow; `None` = the image's (`TANDEM_CHANNEL`).
    pub channel: Option<String>,
    /// Time between checks (±10 % jitter).
    pub check_interval: Duration,
    /// The agent's reboot strategy.
    pub reboot_strategy: RebootStrategy,
    /// Whether the channel may move this node to a lower version.
    pub allow_downgrade: bool,
    /// How long system and services must be up before a new slot is
    /// confirmed.
    pub health_grace: Duration,
    /// How long after boot a new slot may take to become healthy before it
    /// is given up and the old slot booted again.
    pub health_deadline: Duration,
    /// The administrator's checks.
    pub health_checks: Vec<HealthCheck>,
}

/// Default check interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Default health grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default health deadline.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
/// Default timeout of a health check program.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest check interval accepted.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: Vec::new(),
            ca_file: None,
            proxy: ProxySetting::Environment,
            channel: None,
            check_interval: DEFAULT_INTERVAL,
            reboot_strategy: RebootStrategy::default(),
            allow_downgrade: false,
            health_grace: DEFAULT_GRACE,
            health_deadline: DEFAULT_DEADLINE,
            health_checks: Vec::new(),
        }
    }
}

/// One file's content, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Layer {
    server: Option<ServerList>,
    ca_file: Option<String>,
    proxy: Option<String>,
    channel: Option<String>,
    check_interval: Option<String>,
    reboot_strategy: Option<RebootStrategy>,
    allow_downgrade: Option<bool>,
    health_grace: Option<String>,
    health_deadline: Option<String>,
    #[serde(default)]
    health_check: Vec<HealthCheckSpec>,
}

/// `server = "http://…"` or `server = ["http://mirror/", "https://origin/"]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum ServerList {
    One(String),
    Many(Vec<String>),
}

impl ServerList {
    fn into_vec(self) -> Vec<String> {
        match self {
            ServerList::One(s) => vec![s],
            ServerList::Many(v) => v,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckSpec {
    name: String,
    exec: Vec<String>,
    timeout: Option<String>,
}

/// A layer's text and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Path or description, for messages.
    pub origin: String,
    /// The TOML text.
    pub text: String,
}

pub use repository::repo::valid_channel;

/// Merges layers in order. Every layer is checked; any error makes the
/// whole result an error (the caller keeps its last good configuration).
pub fn merge(sources: &[Source]) -> Result<Config, Vec<Error>> {
    let mut cfg = Config::default();
    let mut errors = Vec::new();
    for src in sources {
        if let Err(e) = apply_layer(&mut cfg, src) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

fn apply_layer(cfg: &mut Config, src: &Source) -> Result<(), Error> {
    let err = |msg: String| Error::Config {
        origin: src.origin.clone(),
        msg,
    };
    let layer: Layer =
        toml::from_str(&src.text).map_err(|e| err(e.to_string().trim_end().replace('\n', " ")))?;
    let dur = |key: &str, v: &Option<String>| -> Result<Option<Duration>, Error> {
        v.as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|m| err(format!("{key}: {m}")))
    };
    // Check everything before changing anything: a bad layer changes nothing.
    let interval = dur("check-interval", &layer.check_interval)?;
    if interval.is_some_and(|i| i < MIN_INTERVAL) {
        return Err(err("check-interval must be at least 1s".into()));
    }
    let grace = dur("health-grace", &layer.health_grace)?;
    let deadline = dur("health-deadline", &layer.health_deadline)?;
    let servers = layer.server.map(ServerList::into_vec);
    if let Some(list) = &servers {
        if list.is_empty() {
            return Err(err("server is an empty list: give at least one URL".into()));
        }
        if let Some(s) = list
            .iter()
            .find(|s| !(s.starts_with("http://") || s.starts_with("https://")))
        {
            return Err(err(format!(
                "server {s:?} must start with http:// or https://"
            )));
        }
    }
    let ca_file = match layer.ca_file.as_deref() {
        Some(f) if !f.starts_with('/') => {
            return Err(err(format!(
                "ca-file {f:?} must be an absolute path (a PEM file of CA certificates)"
            )));
        }
        f => f.map(PathBuf::from),
    };
    let proxy = layer
        .proxy
        .as_deref()
        .map(ProxySetting::parse)
        .transpose()
        .map_err(err)?;
    if let Some(c) = &layer.channel
        && !valid_channel(c)
    {
        return Err(err(format!(
            "channel {c:?} may only contain a-z, 0-9, '.', '_' and '-'"
        )));
    }
    let mut checks = Vec::new();
    for spec in &layer.health_check {
        if spec.exec.first().is_none_or(|p| !p.starts_with('/')) {
            return Err(err(format!(
                "health-check {:?}: exec must be a non-empty list whose first element is an absolute path",
                spec.name
            )));
        }
        let timeout = dur("health-check timeout", &spec.timeout)?.unwrap_or(DEFAULT_CHECK_TIMEOUT);
        checks.push(HealthCheck {
            name: spec.name.clone(),
            exec: spec.exec.clone(),
            timeout,
        });
    }
    if let Some(s) = servers {
        cfg.servers = s;
    }
    if let Some(f) = ca_file {
        cfg.ca_file = Some(f);
    }
    if let Some(p) = proxy {
        cfg.proxy = p;
    }
    if let Some(c) = layer.channel {
        cfg.channel = Some(c);
    }
    if let Some(i) = interval {
        cfg.check_interval = i;
    }
    if let Some(r) = layer.reboot_strategy {
        cfg.reboot_strategy = r;
    }
    if let Some(a) = layer.allow_downgrade {
        cfg.allow_downgrade = a;
    }
    if let Some(g) = grace {
        cfg.health_grace = g;
    }
    if let Some(d) = deadline {
        cfg.health_deadline = d;
    }
    for c in checks {
        cfg.health_checks.retain(|old| old.name != c.name);
        cfg.health_checks.push(c);
    }
    Ok(())
}

/// `text` with its top-level `channel` set to `channel`: an existing
/// `channel = …` line before the first table is replaced, else one is
/// added at the top. Comments and every other line are kept.
pub fn set_channel(text: &str, channel: &str) -> String {
    let new_line = format!("channel = \"{channel}\"");
    let mut out = Vec::new();
    let mut done = false;
    let mut in_table = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            in_table = true;
        }
        let is_channel = !in_table
            && t.strip_prefix("channel")
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_channel && !done {
            out.push(new_line.clone());
            done = true;
        } else if !is_channel {
            out.push(line.to_string());
        }
    }
    if !done {
        // Before the first table (or at the end), after leading comments.
        let at = out
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(out.len());
        out.insert(at, new_line);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// A configuration file as a layer; `None` when it does not exist.
pub fn file_source(path: &std::path::Path) -> Result<Option<Source>, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(Source {
            origin: path.display().to_string(),
            text,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(Error::Read {
            path: path.into(),
            err,
        }),
    }
}

/// The OEM partition's `update.toml` on the boot disk `disk_path` as a
/// configuration layer; `None` without an OEM partition or file.
pub fn read_oem_config(disk_path: &Path) -> Result<Option<Source>, Error> {
    read_oem_layer(disk_path, "update.toml")
}

/// The file `name` on the OEM partition of the boot disk `disk_path` as a
/// configuration layer (`update.toml`, the agent's `agent.toml`), its
/// origin `<partition> (OEM partition): <name>`; `None` without an OEM
/// partition or file.
pub fn read_oem_layer(disk_path: &Path, name: &str) -> Result<Option<Source>, Error> {
    let disk = BootDisk::open(disk_path, false)?;
    let Ok(oem) = disk.partition(Partition::Oem) else {
        return Ok(None);
    };
    Ok(esp::read_oem_file(&oem, name)?.map(|text| Source {
        origin: format!("{} (OEM partition): {name}", oem.name()),
        text,
    }))
}

/// The layers that exist, in merge order (image, OEM partition of
/// `oem_disk` if the boot disk is known, provisioned, administrator), and
/// the errors of those that cannot be read.
pub fn read_layers(
    image: &Path,
    oem_disk: Option<&Path>,
    provisioned: &Path,
    admin: &Path,
) -> (Vec<Source>, Vec<Error>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    let oem = oem_disk.map(read_oem_config).unwrap_or(Ok(None));
    for layer in [
        file_source(image),
        oem,
        file_source(provisioned),
        file_source(admin),
    ] {
        match layer {
            Ok(s) => sources.extend(s),
            Err(e) => errors.push(e),
        }
    }
    (sources, errors)
}

/// Sets `channel` in the administrator's `update.toml` at `path`
/// ([`set_channel`]), keeping everything else, after checking that the
/// result is a valid layer; written atomically, so a failure leaves the
/// file as it was.
pub fn write_admin_channel(path: &Path, channel: &str) -> Result<(), Error> {
    if !valid_channel(channel) {
        return Err(Error::Usage(format!(
            "{channel:?} is not a channel name: use a-z, 0-9, '.', '_' and '-'"
        )));
    }
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            return Err(Error::Read {
                path: path.into(),
                err,
            });
        }
    };
    let new = set_channel(&old, channel);
    merge(&[Source {
        origin: path.display().to_string(),
        text: new.clone(),
    }])
    .map_err(|es| {
        es.into_iter()
            .next()
            .unwrap_or(Error::Usage("invalid".into()))
    })?;
    crate::state::write_durable(path, new.as_bytes())
}

/// Modification time and size of a file, to notice edits.
pub fn fingerprint(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(origin: &str, text: &str) -> Source {
        Source {
            origin: origin.into(),
            text: text.into(),
        }
    }

    #[test]
    fn servers_ca_file_and_proxy() {
        let cfg = merge(&[
            src("image", "server = \"https://origin.example/repo\"\n"),
            src(
                "oem",
                "server = [\"http://mirror.site/\", \"https://origin.example/repo\"]\nca-file = \"/etc/tandem/ca.pem\"\nproxy = \"http://u:p@proxy:3128\"\n",
            ),
        ])
        .expect("valid");
        assert_eq!(
            cfg.servers,
            ["http://mirror.site/", "https://origin.example/repo"]
        );
        assert_eq!(
            cfg.ca_file.as_deref(),
            Some(Path::new("/etc/tandem/ca.pem"))
        );
        assert_eq!(cfg.proxy, ProxySetting::Url("http://u:p@proxy:3128".into()));
        let cfg = merge(&[src("admin", "proxy = \"none\"\n")]).expect("valid");
        assert_eq!(cfg.proxy, ProxySetting::Off);
        assert!(cfg.servers.is_empty());
    }

    #[test]
    fn layers_merge_key_by_key() {
        let cfg = merge(&[
            src("image", "server = \"http://a\"\nchannel = \"stable\"\ncheck-interval = \"1h\"\nreboot-strategy = \"reboot\"\n[[health-check]]\nname = \"x\"\nexec = [\"/bin/true\"]\n"),
            src("oem", "server = \"http://10.0.2.2:8080\"\n"),
            src("admin", "channel = \"beta\"\nallow-downgrade = true\nhealth-grace = \"3s\"\n[[health-check]]\nname = \"x\"\nexec = [\"/bin/false\"]\ntimeout = \"5s\"\n[[health-check]]\nname = \"y\"\nexec = [\"/bin/y\"]\n"),
        ])
        .expect("valid");
        assert_eq!(cfg.servers, ["http://10.0.2.2:8080"]);
        assert_eq!(cfg.channel.as_deref(), Some("beta"));
        assert_eq!(cfg.check_interval, Duration::from_secs(3600));
        assert!(cfg.allow_downgrade);
        assert_eq!(cfg.health_grace, Duration::from_secs(3));
        assert_eq!(cfg.health_deadline, DEFAULT_DEADLINE);
        assert_eq!(cfg.health_checks.len(), 2);
        assert_eq!(cfg.health_checks[0].exec, ["/bin/false"]);
        assert_eq!(cfg.health_checks[0].timeout, Duration::from_secs(5));
        assert_eq!(cfg.health_checks[1].timeout, DEFAULT_CHECK_TIMEOUT);
    }

    #[test]
    fn errors_name_the_layer() {
        let errs =
            merge(&[src("/etc/tandem/update.toml", "chanel = \"beta\"\n")]).expect_err("typo");
        let msg = errs[0].to_string();
        assert!(msg.starts_with("/etc/tandem/update.toml: "), "{msg}");
        assert!(msg.contains("chanel"), "{msg}");
        for bad in [
            "check-interval = \"soon\"",
            "reboot-strategy = \"sometimes\"",
            "server = \"ftp://x\"",
            "server = []",
            "server = [\"http://a\", \"x\"]",
            "ca-file = \"relative.pem\"",
            "proxy = \"proxy:3128\"",
            "channel = \"../x\"",
            "check-interval = \"0s\"",
            "[[health-check]]\nname = \"a\"\nexec = [\"relative\"]",
        ] {
            assert!(merge(&[src("f", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn strategies_parse() {
        for (text, want) in [
            ("reboot", RebootStrategy::Reboot),
            ("off", RebootStrategy::Off),
            ("etcd-lock", RebootStrategy::EtcdLock),
            ("fleetlock", RebootStrategy::Fleetlock),
        ] {
            let cfg = merge(&[src("f", &format!("reboot-strategy = \"{text}\""))]).expect("ok");
            assert_eq!(cfg.reboot_strategy, want);
            assert_eq!(want.to_string(), text);
        }
    }

    #[test]
    fn channel_edits_keep_the_rest() {
        assert_eq!(set_channel("", "beta"), "channel = \"beta\"\n");
        let t = "# mine\nserver = \"http://x\"\nchannel = \"stable\" # old\n[[health-check]]\nname = \"channel\"\nexec = [\"/a\"]\n";
        let out = set_channel(t, "beta");
        assert_eq!(
            out,
            "# mine\nserver = \"http://x\"\nchannel = \"beta\"\n[[health-check]]\nname = \"channel\"\nexec = [\"/a\"]\n"
        );
        let t = "# c\n[[health-check]]\nname = \"a\"\nexec = [\"/a\"]\nchannel = \"in a table\"\n";
        let out = set_channel(t, "beta");
        assert!(
            out.starts_with("# c\nchannel = \"beta\"\n[[health-check]]"),
            "{out}"
        );
        assert!(out.contains("channel = \"in a table\""), "{out}");
        assert!(merge(&[src("x", &set_channel("server = \"http://a\"\n", "edge"))]).is_ok());
    }

    #[test]
    fn channel_names() {
        for ok in ["stable", "beta-2", "a.b_c"] {
            assert!(valid_channel(ok), "{ok}");
        }
        for bad in ["", "Stable", "../x", ".hidden", "a/b", "a b"] {
            assert!(!valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn layers_are_read_in_order_and_the_admin_channel_is_written() {
        let dir = tempfile::tempdir().expect("tmp");
        let image = dir.path().join("image.toml");
        let admin = dir.path().join("etc/update.toml");
        std::fs::write(&image, "channel = \"beta\"\n").expect("write");
        let (sources, errors) = read_layers(&image, None, Path::new("/nonexistent"), &admin);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(sources.len(), 1, "a missing admin file is no layer");

        assert!(matches!(
            write_admin_channel(&admin, "../x"),
            Err(Error::Usage(_))
        ));
        assert!(!admin.exists(), "nothing written for a bad name");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(&admin, "# mine\ncheck-interval = \"1h\"\n").expect("write");
        write_admin_channel(&admin, "stable").expect("write");
        let (sources, errors) = read_layers(&image, None, Path::new("/nonexistent"), &admin);
        assert!(errors.is_empty(), "{errors:?}");
        let c = merge(&sources).expect("valid");
        assert_eq!(c.channel.as_deref(), Some("stable"), "the admin layer wins");
        assert_eq!(c.check_interval, Duration::from_secs(3600));
        let text = std::fs::read_to_string(&admin).expect("read");
        assert!(text.starts_with("# mine\n"), "{text}");

        // An unreadable layer is an error, the others still count.
        let (sources, errors) = read_layers(dir.path(), None, Path::new("/nonexistent"), &admin);
        assert_eq!((sources.len(), errors.len()), (1, 1));
        assert!(matches!(errors[0], Error::Read { .. }), "{:?}", errors[0]);
    }
}
