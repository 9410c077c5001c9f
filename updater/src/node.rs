//! What the node's init publishes and the updater reads: the status files
//! under /run/tandem (written by the early and the system init, crate
//! `initramfs`, which re-exports these types), `/usr/lib/os-release`, and
//! where everything lives ([`Paths`], rooted elsewhere in tests).
//!
//! Times in the status files are microseconds of `CLOCK_BOOTTIME` (time
//! since the kernel started, the clock of the kernel log's timestamps).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tandem_slot::Slot;

use crate::error::Error;

/// Directory of the status files.
pub const RUN_DIR: &str = "/run/tandem";
/// The early init's hand-over.
pub const EARLY_FILE: &str = "/run/tandem/early.json";
/// The system status.
pub const STATUS_FILE: &str = "/run/tandem/status.json";
/// Version of the status format; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

/// One boot step and when it ended, for "where did the time go".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What was done.
    pub step: String,
    /// When it was done.
    pub at_us: u64,
}

/// What the early init found and when (`/run/tandem/early.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyBoot {
    /// When `/init` started.
    pub initramfs_started_us: u64,
    /// Just before the switch root.
    pub switch_root_us: u64,
    /// Slot booted (`A`/`B`).
    pub slot: String,
    /// The boot disk (`/dev/vda`).
    pub disk: String,
    /// The /usr partition (`/dev/vda3`).
    pub usr_partition: String,
    /// The verity device mounted on /usr (`/dev/dm-0`).
    pub usr_device: String,
    /// The ROOT partition (`/dev/vda9`).
    pub root_partition: String,
    /// Modules of the initramfs list that failed to load, with the reason.
    #[serde(default)]
    pub modules_failed: Vec<String>,
    /// What growing ROOT did on this boot, if anything.
    #[serde(default)]
    pub root_grow: Option<String>,
    /// The early init's steps.
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// Boot timestamps, microseconds of `CLOCK_BOOTTIME`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTimes {
    /// The initramfs `/init` started.
    pub initramfs_started_us: Option<u64>,
    /// The early init switched root.
    pub switch_root_us: Option<u64>,
    /// The system init started.
    pub system_started_us: u64,
    /// "system ready" was printed.
    pub system_ready_us: Option<u64>,
    /// The system init's steps up to "system ready".
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// The network as configured by DHCP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Interface name.
    pub interface: String,
    /// MAC address.
    pub mac: String,
    /// `state`: `configured`, `waiting` (no lease yet) or `failed: …`.
    pub state: String,
    /// Address with prefix length (`10.0.2.15/24`).
    pub address: Option<String>,
    /// Default gateway.
    pub gateway: Option<String>,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<String>,
    /// The DHCP server.
    pub dhcp_server: Option<String>,
    /// Lease length in seconds.
    pub lease_seconds: Option<u32>,
}

/// One supervised service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Name (file name without `.toml`).
    pub name: String,
    /// The file it came from (or `built-in`).
    pub source: String,
    /// `starting`, `running`, `waiting to restart`, `stopping`, `exited`,
    /// `failed`, `disabled`.
    pub state: String,
    /// PID while running.
    pub pid: Option<i32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// How it last ended (`exit status 1`, `killed by signal 9`).
    pub last_exit: Option<String>,
}

/// The node's status (`/run/tandem/status.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`FORMAT`].
    pub format: u32,
    /// Booted slot (`A`/`B`), from `tandem.slot`.
    pub slot: Option<String>,
    /// `VERSION_ID` of /usr/lib/os-release.
    pub version: Option<String>,
    /// /etc/machine-id.
    pub machine_id: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Boot timestamps.
    pub boot: BootTimes,
    /// What the early init found.
    pub early: Option<EarlyBoot>,
    /// The network.
    pub network: Option<NetworkStatus>,
    /// Services.
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    /// Problems worth a look (a module that failed, an invalid service file).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The value of `key` in an os-release file (quotes removed).
pub fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        (k == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
    })
}

/// Where the updater finds and keeps things. [`Paths::default`] is the
/// node's layout; [`Paths::under`] roots every path in a directory (tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// The image's defaults: `/usr/lib/tandem/update.toml`.
    pub image_config: PathBuf,
    /// The administrator's settings: `/etc/tandem/update.toml`.
    pub admin_config: PathBuf,
    /// Trusted signing keys: `/usr/lib/tandem/trust/*.pub`.
    pub trust_dir: PathBuf,
    /// `/usr/lib/os-release` (image name, version, architecture).
    pub os_release: PathBuf,
    /// `/etc/machine-id` (rollout position).
    pub machine_id: PathBuf,
    /// `/var/lib/tandem/updater`: `state.json`, `progress.json`.
    pub state_dir: PathBuf,
    /// `/run/tandem/updater.sock`.
    pub socket: PathBuf,
    /// `/run/tandem/early.json` (boot disk, booted slot).
    pub early: PathBuf,
    /// `/run/tandem/status.json` (system ready, services).
    pub status: PathBuf,
}

/// The updater's socket on a node.
pub const SOCKET: &str = "/run/tandem/updater.sock";

impl Default for Paths {
    fn default() -> Self {
        Paths {
            image_config: "/usr/lib/tandem/update.toml".into(),
            admin_config: "/etc/tandem/update.toml".into(),
            trust_dir: "/usr/lib/tandem/trust".into(),
            os_release: "/usr/lib/os-release".into(),
            machine_id: "/etc/machine-id".into(),
            state_dir: "/var/lib/tandem/updater".into(),
            socket: SOCKET.into(),
            early: EARLY_FILE.into(),
            status: STATUS_FILE.into(),
        }
    }
}

impl Paths {
    /// Every default path with `root` in front (`/x` → `<root>/x`).
    pub fn under(root: &Path) -> Paths {
        let d = Paths::default();
        let r = |p: PathBuf| root.join(p.strip_prefix("/").unwrap_or(&p));
        Paths {
            image_config: r(d.image_config),
            admin_config: r(d.admin_config),
            trust_dir: r(d.trust_dir),
            os_release: r(d.os_release),
            machine_id: r(d.machine_id),
            state_dir: r(d.state_dir),
            socket: r(d.socket),
            early: r(d.early),
            status: r(d.status),
        }
    }

    /// `state.json`: pending activation and failed versions.
    pub fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }

    /// `progress.json`: which chunks of the inactive slot are verified.
    pub fn progress_file(&self) -> PathBuf {
        self.state_dir.join("progress.json")
    }
}

/// What the image says about itself in os-release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `IMAGE_ID`.
    pub image: String,
    /// `VERSION_ID`.
    pub version: crate::Version,
    /// `TANDEM_ARCH` (default `x86_64`).
    pub arch: String,
    /// `TANDEM_CHANNEL`: the channel the image was built for.
    pub channel: Option<String>,
}

impl Identity {
    /// Reads the os-release file.
    pub fn read(path: &Path) -> Result<Identity, Error> {
        let text = std::fs::read_to_string(path).map_err(|err| Error::Read {
            path: path.into(),
            err,
        })?;
        Identity::parse(&text).map_err(|msg| Error::Node {
            what: format!("{}: {msg}", path.display()),
        })
    }

    /// Parses os-release text.
    pub fn parse(text: &str) -> Result<Identity, String> {
        let image = os_release_value(text, "IMAGE_ID").ok_or(
            "no IMAGE_ID (the image builder writes it): cannot tell which image to update",
        )?;
        let version = os_release_value(text, "VERSION_ID")
            .ok_or("no VERSION_ID: cannot tell which version runs")?;
        let version = version
            .parse()
            .map_err(|e: crate::version::VersionError| e.to_string())?;
        Ok(Identity {
            image,
            version,
            arch: os_release_value(text, "TANDEM_ARCH")
                .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            channel: os_release_value(text, "TANDEM_CHANNEL"),
        })
    }
}

/// The boot disk and the slot the bootloader booted, from the early init's
/// hand-over (`early.json`; the system init's `status.json` carries a copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFacts {
    /// The whole boot disk (`/dev/vda`).
    pub disk: PathBuf,
    /// The running slot.
    pub slot: Slot,
}

impl BootFacts {
    /// Reads `early.json`, else the copy in `status.json`.
    pub fn read(paths: &Paths) -> Result<BootFacts, Error> {
        let early = read_json::<EarlyBoot>(&paths.early).or_else(|first| {
            read_json::<Status>(&paths.status)
                .ok()
                .and_then(|s| s.early)
                .ok_or(first)
        })?;
        let slot = Slot::parse(&early.slot).ok_or_else(|| Error::Node {
            what: format!(
                "{} names no slot ({:?}): was this node booted by the Tandem initramfs?",
                paths.early.display(),
                early.slot
            ),
        })?;
        if early.disk.is_empty() {
            return Err(Error::Node {
                what: format!("{} names no boot disk", paths.early.display()),
            });
        }
        Ok(BootFacts {
            disk: early.disk.into(),
            slot,
        })
    }
}

/// Reads a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read(path).map_err(|err| Error::Read {
        path: path.into(),
        err,
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::Format {
        path: path.into(),
        msg: e.to_string(),
    })
}

/// The machine id (`/etc/machine-id`, trimmed).
pub fn machine_id(path: &Path) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|err| Error::Read {
        path: path.into(),
        err,
    })?;
    let id = text.trim().to_string();
    if id.is_empty() {
        return Err(Error::Node {
            what: format!("{} is empty", path.display()),
        });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let text = "NAME=\"Tandem\"\nID=tandem\nVERSION_ID=1.0.0\nPRETTY_NAME='Tandem 1.0.0'\nIMAGE_ID=tandem-minimal\nTANDEM_ARCH=x86_64\nTANDEM_CHANNEL=stable\n";
        assert_eq!(
            os_release_value(text, "VERSION_ID").as_deref(),
            Some("1.0.0")
        );
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Tandem 1.0.0")
        );
        assert_eq!(os_release_value(text, "VERSION"), None);
        let id = Identity::parse(text).expect("identity");
        assert_eq!(id.image, "tandem-minimal");
        assert_eq!(id.version.to_string(), "1.0.0");
        assert_eq!(id.channel.as_deref(), Some("stable"));
        assert!(
            Identity::parse("VERSION_ID=1\n")
                .unwrap_err()
                .contains("IMAGE_ID")
        );
    }

    #[test]
    fn paths_under_a_root() {
        let p = Paths::under(Path::new("/tmp/x"));
        assert_eq!(p.admin_config, Path::new("/tmp/x/etc/tandem/update.toml"));
        assert_eq!(
            p.state_file(),
            Path::new("/tmp/x/var/lib/tandem/updater/state.json")
        );
        assert_eq!(p.socket, Path::new("/tmp/x/run/tandem/updater.sock"));
    }
}
