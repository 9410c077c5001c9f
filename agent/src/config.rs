//! `agent.toml`: the reboot agent's settings, in four layers merged key by
//! key, later layers winning (as update.toml):
//!
//! 1. `/usr/lib/tandem/agent.toml`: the image's defaults (`tandem build`,
//!    from the image definition's `[agent]`);
//! 2. `agent.toml` on the OEM partition: the platform's (a lab's etcd);
//! 3. `/run/tandem/provisioned/agent.toml`: the node's cloud-config's
//!    (`coreos.locksmith`, `coreos.etcd2`), written at every boot;
//! 4. `/etc/tandem/agent.toml`: the administrator's.
//!
//! ```toml
//! group = "default"                 # reboot group (semaphore, FleetLock group)
//!
//! [window]                          # optional: no lock, no reboot outside it
//! start = "Thu 23:00"               # or "23:00" (every day); "" removes an earlier layer's window
//! length = "2h"
//! timezone = "UTC"                  # or a fixed offset like "+02:00"
//!
//! [etcd]
//! endpoints = ["http://10.0.2.2:2379"]
//! username = "tandem"               # optional: etcd v3 auth
//! password-file = "/etc/tandem/etcd-password"
//!
//! [fleetlock]
//! url = "http://10.0.2.2:3333"
//! ```
//!
//! The strategy itself (`reboot-strategy`) stays in update.toml: the
//! updater reports it. Unknown keys and invalid values are errors: a layer
//! with an error is reported (the agent's status, the log) and the last
//! good configuration stays in force.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use updater::config::Source;

use crate::error::ConfigProblem;
use crate::fleetlock;
use crate::window::Window;

/// The image's layer.
pub const IMAGE_CONFIG: &str = "/usr/lib/tandem/agent.toml";
/// The administrator's layer.
pub const ADMIN_CONFIG: &str = "/etc/tandem/agent.toml";
/// The file name on the OEM partition.
pub const OEM_FILE: &str = "agent.toml";
/// The default group.
pub const DEFAULT_GROUP: &str = "default";

/// A layer (or their combination) that is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct ConfigError {
    /// The file (or `OEM partition: agent.toml`, or `agent.toml` for the
    /// merged result).
    pub origin: String,
    /// What is wrong and what to write instead.
    #[source]
    pub problem: ConfigProblem,
}

/// How to reach etcd.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs (`http://host:2379`), tried in order.
    pub endpoints: Vec<String>,
    /// etcd v3 user, if auth is on.
    pub username: Option<String>,
    /// File holding that user's password (first line).
    pub password_file: Option<PathBuf>,
    /// CA certificate to check the servers against (TLS).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (TLS client auth).
    pub cert_file: Option<PathBuf>,
    /// Its key.
    pub key_file: Option<PathBuf>,
}

/// The merged configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    /// The reboot group.
    pub group: String,
    /// The reboot window; `None` = any time.
    pub window: Option<Window>,
    /// etcd: the lock (strategy `etcd-lock`), the fleet view and the
    /// cluster's failed versions; `None` = not configured.
    pub etcd: Option<EtcdSettings>,
    /// FleetLock server URL (strategy `fleetlock`).
    pub fleetlock: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            group: DEFAULT_GROUP.into(),
            window: None,
            etcd: None,
            fleetlock: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Layer {
    group: Option<String>,
    window: Option<WindowLayer>,
    etcd: Option<EtcdLayer>,
    fleetlock: Option<FleetLockLayer>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WindowLayer {
    start: Option<String>,
    length: Option<String>,
    timezone: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EtcdLayer {
    endpoints: Option<Vec<String>>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FleetLockLayer {
    url: Option<String>,
}

/// The raw merged keys, checked together at the end.
#[derive(Clone, Debug, Default)]
struct Merged {
    group: Option<String>,
    window: WindowLayer,
    etcd: EtcdLayer,
    fleetlock: Option<String>,
}

/// Checks an `http://` or `https://` URL.
fn check_url(key: &'static str, url: &str) -> Result<(), ConfigProblem> {
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .ok_or_else(|| ConfigProblem::UrlScheme {
            key,
            url: url.to_string(),
        })?;
    if rest.is_empty() || rest.starts_with('/') || rest.chars().any(char::is_whitespace) {
        return Err(ConfigProblem::UrlNoHost {
            key,
            url: url.to_string(),
        });
    }
    Ok(())
}

fn check_path(key: &'static str, p: &Path) -> Result<(), ConfigProblem> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(ConfigProblem::RelativePath {
            key,
            path: p.to_path_buf(),
        })
    }
}

/// Checks one layer on its own: every value that is there must be valid.
fn check_layer(layer: &Layer) -> Result<(), ConfigProblem> {
    if let Some(g) = &layer.group
        && !fleetlock::valid_group(g)
    {
        return Err(ConfigProblem::Group(g.clone()));
    }
    if let Some(w) = &layer.window {
        if let Some(s) = w.start.as_deref().filter(|s| !s.trim().is_empty()) {
            crate::window::Start::parse(s).map_err(ConfigProblem::Window)?;
        }
        if let Some(l) = &w.length {
            updater::clock::parse_duration(l).map_err(ConfigProblem::WindowLength)?;
        }
        if let Some(tz) = &w.timezone {
            crate::window::Offset::parse(tz).map_err(ConfigProblem::Window)?;
        }
    }
    if let Some(e) = &layer.etcd {
        for url in e.endpoints.iter().flatten() {
            check_url("etcd endpoint", url)?;
        }
        if let Some(u) = &e.username
            && (u.is_empty() || u.chars().any(char::is_control))
        {
            return Err(ConfigProblem::Username(u.clone()));
        }
        for (key, p) in [
            ("password-file", &e.password_file),
            ("ca-file", &e.ca_file),
            ("cert-file", &e.cert_file),
            ("key-file", &e.key_file),
        ] {
            if let Some(p) = p {
                check_path(key, p)?;
            }
        }
    }
    if let Some(url) = layer.fleetlock.as_ref().and_then(|f| f.url.as_ref())
        && !url.is_empty()
    {
        check_url("fleetlock url", url)?;
    }
    Ok(())
}

fn apply(m: &mut Merged, layer: Layer) {
    if let Some(g) = layer.group {
        m.group = Some(g);
    }
    if let Some(w) = layer.window {
        if w.start.is_some() {
            m.window.start = w.start;
        }
        if w.length.is_some() {
            m.window.length = w.length;
        }
        if w.timezone.is_some() {
            m.window.timezone = w.timezone;
        }
    }
    if let Some(e) = layer.etcd {
        let t = &mut m.etcd;
        macro_rules! take {
            ($($f:ident),*) => {$( if e.$f.is_some() { t.$f = e.$f; } )*};
        }
        take!(
            endpoints,
            username,
            password_file,
            ca_file,
            cert_file,
            key_file
        );
    }
    if let Some(f) = layer.fleetlock
        && f.url.is_some()
    {
        m.fleetlock = f.url;
    }
}

/// Checks the combination of all layers.
fn finish(m: Merged) -> Result<AgentConfig, ConfigProblem> {
    let window = match m.window.start.as_deref().map(str::trim) {
        None | Some("") => {
            if m.window.start.is_none() && m.window.length.is_some() {
                return Err(ConfigProblem::LengthWithoutStart);
            }
            None
        }
        Some(start) => {
            let length = m
                .window
                .length
                .as_deref()
                .ok_or(ConfigProblem::StartWithoutLength)?;
            Some(
                Window::parse(start, length, m.window.timezone.as_deref())
                    .map_err(ConfigProblem::Window)?,
            )
        }
    };
    let e = m.etcd;
    let endpoints = e.endpoints.clone().unwrap_or_default();
    let etcd = if endpoints.is_empty() {
        if e.username.is_some() || e.ca_file.is_some() || e.cert_file.is_some() {
            return Err(ConfigProblem::EtcdWithoutEndpoints);
        }
        None
    } else {
        if e.username.is_some() != e.password_file.is_some() {
            return Err(ConfigProblem::UsernameWithoutPasswordFile);
        }
        if e.cert_file.is_some() != e.key_file.is_some() {
            return Err(ConfigProblem::CertWithoutKey);
        }
        Some(EtcdSettings {
            endpoints,
            username: e.username,
            password_file: e.password_file,
            ca_file: e.ca_file,
            cert_file: e.cert_file,
            key_file: e.key_file,
        })
    };
    Ok(AgentConfig {
        group: m.group.unwrap_or_else(|| DEFAULT_GROUP.into()),
        window,
        etcd,
        fleetlock: m.fleetlock.filter(|u| !u.is_empty()),
    })
}

/// Merges layers in order. Every layer is checked, then the combination;
/// any error makes the result an error (the caller keeps its last good
/// configuration).
pub fn merge(sources: &[Source]) -> Result<AgentConfig, Vec<ConfigError>> {
    let mut merged = Merged::default();
    let mut errors = Vec::new();
    for src in sources {
        let parsed = toml::from_str::<Layer>(&src.text)
            .map_err(ConfigProblem::Toml)
            .and_then(|l| check_layer(&l).map(|()| l));
        match parsed {
            Ok(layer) => apply(&mut merged, layer),
            Err(problem) => errors.push(ConfigError {
                origin: src.origin.clone(),
                problem,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    finish(merged).map_err(|problem| {
        vec![ConfigError {
            origin: format!(
                "agent.toml (layers {})",
                sources
                    .iter()
                    .map(|s| s.origin.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            problem,
        }]
    })
}

/// Where the layers are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPaths {
    /// The image's layer.
    pub image: PathBuf,
    /// The provisioned layer (from the node's cloud-config).
    pub provisioned: PathBuf,
    /// The administrator's layer.
    pub admin: PathBuf,
    /// The node's facts (the boot disk, for the OEM layer); `None` = no
    /// OEM layer (tests, the host).
    pub node: Option<updater::node::Paths>,
}

impl Default for ConfigPaths {
    fn default() -> Self {
        ConfigPaths {
            image: IMAGE_CONFIG.into(),
            provisioned: tandem_contract::provision::AGENT_CONFIG.into(),
            admin: ADMIN_CONFIG.into(),
            node: Some(updater::node::Paths::default()),
        }
    }
}

impl ConfigPaths {
    /// Every default path with `root` in front, without an OEM layer.
    pub fn under(root: &Path) -> ConfigPaths {
        let r = |p: &str| root.join(p.trim_start_matches('/'));
        ConfigPaths {
            image: r(IMAGE_CONFIG),
            provisioned: r(tandem_contract::provision::AGENT_CONFIG),
            admin: r(ADMIN_CONFIG),
            node: None,
        }
    }

    /// What changes when a file changes (modification time and size).
    pub fn fingerprints(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        vec![
            updater::config::fingerprint(&self.image),
            updater::config::fingerprint(&self.provisioned),
            updater::config::fingerprint(&self.admin),
        ]
    }

    /// Reads every layer that exists; unreadable files are errors.
    pub fn sources(&self) -> (Vec<Source>, Vec<ConfigError>) {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        let file = |p: &Path, sources: &mut Vec<Source>, errors: &mut Vec<ConfigError>| {
            match updater::config::file_source(p) {
                Ok(s) => sources.extend(s),
                Err(e) => errors.push(ConfigError {
                    origin: p.display().to_string(),
                    problem: ConfigProblem::Read(e.into()),
                }),
            }
        };
        file(&self.image, &mut sources, &mut errors);
        if let Some(node) = &self.node {
            match read_oem_layer(node) {
                Ok(s) => sources.extend(s),
                Err(e) => errors.push(e),
            }
        }
        file(&self.provisioned, &mut sources, &mut errors);
        file(&self.admin, &mut sources, &mut errors);
        (sources, errors)
    }

    /// Reads and merges the layers.
    pub fn load(&self) -> Result<AgentConfig, Vec<ConfigError>> {
        let (sources, mut errors) = self.sources();
        match merge(&sources) {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(_) => Err(errors),
            Err(es) => {
                errors.extend(es);
                Err(errors)
            }
        }
    }
}

/// The OEM partition's `agent.toml`, if the node has one. A node whose boot
/// disk is unknown (not booted by Tandem, a container) has no OEM layer.
pub fn read_oem_layer(node: &updater::node::Paths) -> Result<Option<Source>, ConfigError> {
    let Ok(boot) = updater::node::BootFacts::read(node) else {
        return Ok(None);
    };
    updater::config::read_oem_layer(&boot.disk, OEM_FILE).map_err(|e| ConfigError {
        origin: format!("OEM partition of {}: {OEM_FILE}", boot.disk.display()),
        problem: ConfigProblem::Read(e.into()),
    })
}

/// The first line of a password file, without its line end.
pub fn read_password(path: &Path) -> Result<String, crate::error::Error> {
    let text =
        std::fs::read_to_string(path).map_err(|source| crate::error::Error::PasswordFile {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Weekday;

    fn src(origin: &str, text: &str) -> Source {
        Source {
            origin: origin.into(),
            text: text.into(),
        }
    }

    #[test]
    fn nothing_is_the_default() {
        assert_eq!(merge(&[]), Ok(AgentConfig::default()));
        let c = merge(&[src("image", "group = \"default\"\n")]).expect("ok");
        assert_eq!(c, AgentConfig::default());
    }

    #[test]
    fn layers_merge_key_by_key() {
        let c = merge(&[
            src(
                "image",
                "group = \"web\"\n[window]\nstart = \"Thu 23:00\"\nlength = \"2h\"\n",
            ),
            src(
                "oem",
                "[etcd]\nendpoints = [\"http://10.0.2.2:2379\"]\nusername = \"tandem\"\npassword-file = \"/etc/tandem/etcd-password\"\n",
            ),
            src(
                "admin",
                "[window]\ntimezone = \"+02:00\"\n[etcd]\nendpoints = [\"http://a:2379\", \"http://b:2379\"]\n[fleetlock]\nurl = \"http://airlock:3333\"\n",
            ),
        ])
        .expect("valid");
        assert_eq!(c.group, "web");
        let w = c.window.expect("window");
        assert_eq!(w.start.weekday, Some(Weekday::Thu));
        assert_eq!(w.length_secs, 7200);
        assert_eq!(w.offset.seconds(), 7200);
        let e = c.etcd.expect("etcd");
        assert_eq!(e.endpoints, ["http://a:2379", "http://b:2379"]);
        assert_eq!(e.username.as_deref(), Some("tandem"));
        assert_eq!(c.fleetlock.as_deref(), Some("http://airlock:3333"));
    }

    #[test]
    fn a_later_layer_removes_a_window() {
        let c = merge(&[
            src("image", "[window]\nstart = \"23:00\"\nlength = \"1h\"\n"),
            src("admin", "[window]\nstart = \"\"\n"),
        ])
        .expect("valid");
        assert_eq!(c.window, None);
    }

    #[test]
    fn errors_name_the_layer() {
        let errs = merge(&[
            src("/usr/lib/tandem/agent.toml", "group = \"a\"\n"),
            src("/etc/tandem/agent.toml", "grop = \"b\"\n"),
        ])
        .expect_err("typo");
        assert_eq!(errs.len(), 1);
        let m = errs[0].to_string();
        assert!(
            m.starts_with("/etc/tandem/agent.toml: ") && m.contains("grop"),
            "{m}"
        );
        for bad in [
            "group = \"a_b\"",
            "group = \"\"",
            "[window]\nstart = \"Thu 25:00\"",
            "[window]\nlength = \"soon\"",
            "[window]\ntimezone = \"Europe/Berlin\"",
            "[window]\nstrat = \"23:00\"",
            "[etcd]\nendpoints = [\"10.0.2.2:2379\"]",
            "[etcd]\nendpoints = [\"http://\"]",
            "[etcd]\npassword-file = \"relative\"",
            "[etcd]\nendpoint = [\"http://a\"]",
            "[fleetlock]\nurl = \"airlock:3333\"",
            "[fleetlock]\naddress = \"http://airlock\"",
        ] {
            assert!(merge(&[src("f", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn combinations_are_checked() {
        for (bad, want) in [
            ("[window]\nstart = \"23:00\"", "no length"),
            ("[window]\nlength = \"2h\"", "no start"),
            (
                "[window]\nstart = \"23:00\"\nlength = \"25h\"",
                "always be open",
            ),
            ("[etcd]\nusername = \"x\"", "no endpoints"),
            (
                "[etcd]\nendpoints = [\"http://a:2379\"]\nusername = \"x\"",
                "go together",
            ),
            (
                "[etcd]\nendpoints = [\"http://a:2379\"]\ncert-file = \"/c\"",
                "go together",
            ),
        ] {
            let errs = merge(&[src("f", bad)]).expect_err(bad);
            let m = errs[0].to_string();
            assert!(m.contains(want), "{bad}: {m}");
        }
        // The start in one layer and the length in another is fine.
        assert!(
            merge(&[
                src("a", "[window]\nstart = \"23:00\""),
                src("b", "[window]\nlength = \"2h\"")
            ])
            .is_ok()
        );
    }

    #[test]
    fn files_are_read_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let paths = ConfigPaths::under(dir.path());
        assert_eq!(paths.load(), Ok(AgentConfig::default()), "no files");
        std::fs::create_dir_all(paths.image.parent().expect("dir")).expect("mkdir");
        std::fs::create_dir_all(paths.admin.parent().expect("dir")).expect("mkdir");
        std::fs::write(&paths.image, "group = \"image\"\n").expect("write");
        std::fs::write(&paths.admin, "group = \"admin\"\n").expect("write");
        assert_eq!(paths.load().expect("ok").group, "admin");
        let before = paths.fingerprints();
        std::fs::write(&paths.admin, "group = \"admin-2\"\n").expect("write");
        assert_ne!(paths.fingerprints(), before);
        std::fs::write(&paths.admin, "[window]\nstart = 1\n").expect("write");
        let errs = paths.load().expect_err("invalid");
        assert!(
            errs[0].origin.ends_with("etc/tandem/agent.toml"),
            "{errs:?}"
        );
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "secret\nignored\n").expect("write");
        assert_eq!(read_password(&pw).expect("read"), "secret");
        assert!(read_password(&dir.path().join("none")).is_err());
    }
}
