//! What the updater reads of the node: the status files under /run/tandem
//! (their types are defined in `tandem_contract::run`, re-exported here),
//! `/usr/lib/os-release`, and where everything lives ([`Paths`], rooted
//! elsewhere in tests).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tandem_slot::Slot;

use crate::error::Error;

pub use tandem_contract::run::{
    BootTimes, EARLY_FILE, EarlyBoot, NetworkStatus, STATUS_FILE, ServiceState, ServiceStatus,
    Status, UPDATER_SOCKET,
};

use tandem_contract::os_release;
pub use tandem_contract::os_release::value as os_release_value;

/// Where the updater finds and keeps things. [`Paths::default`] is the
/// node's layout; [`Paths::under`] roots every path in a directory (tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// The image's defaults: `/usr/lib/tandem/update.toml`.
    pub image_config: PathBuf,
    /// The node's provisioned settings (from its cloud-config):
    /// `/run/tandem/provisioned/update.toml`.
    pub provisioned_config: PathBuf,
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
    /// ROOT's mount point, under which the init leaves incidents
    /// ([`tandem_contract::incident::DIR`]): `/`.
    pub root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            image_config: "/usr/lib/tandem/update.toml".into(),
            provisioned_config: tandem_contract::provision::UPDATE_CONFIG.into(),
            admin_config: "/etc/tandem/update.toml".into(),
            trust_dir: "/usr/lib/tandem/trust".into(),
            os_release: os_release::PATH.into(),
            machine_id: "/etc/machine-id".into(),
            state_dir: "/var/lib/tandem/updater".into(),
            socket: UPDATER_SOCKET.into(),
            early: EARLY_FILE.into(),
            status: STATUS_FILE.into(),
            root: "/".into(),
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
            provisioned_config: r(d.provisioned_config),
            admin_config: r(d.admin_config),
            trust_dir: r(d.trust_dir),
            os_release: r(d.os_release),
            machine_id: r(d.machine_id),
            state_dir: r(d.state_dir),
            socket: r(d.socket),
            early: r(d.early),
            status: r(d.status),
            root: r(d.root),
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

    /// Kernels and initramfs images being downloaded, kept across power
    /// cuts so that a download resumes where it stopped.
    pub fn downloads_dir(&self) -> PathBuf {
        self.state_dir.join("downloads")
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
        let image = os_release_value(text, os_release::IMAGE_ID).ok_or(
            "no IMAGE_ID (the image builder writes it): cannot tell which image to update",
        )?;
        let version = os_release_value(text, os_release::VERSION_ID)
            .ok_or("no VERSION_ID: cannot tell which version runs")?;
        let version = version
            .parse()
            .map_err(|e: crate::version::VersionError| e.to_string())?;
        Ok(Identity {
            image,
            version,
            arch: os_release_value(text, os_release::ARCH)
                .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            channel: os_release_value(text, os_release::CHANNEL),
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
        if early.disk.is_empty() {
            return Err(Error::Node {
                what: format!("{} names no boot disk", paths.early.display()),
            });
        }
        Ok(BootFacts {
            disk: early.disk.into(),
            slot: early.slot,
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
