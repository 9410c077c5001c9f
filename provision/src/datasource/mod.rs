//! Where the user-data comes from: the datasources, tried in order until
//! one has user-data (the first wins; nothing is merged).
//!
//! 1. `tandem.config.url=http://…` on the kernel command line ([`url`]);
//! 2. QEMU's fw_cfg ([`fw_cfg`]);
//! 3. a NoCloud volume labelled `cidata` ([`nocloud`]);
//! 4. an OpenStack config drive labelled `config-2` ([`config_drive`]);
//! 5. `user-data` on the boot disk's OEM partition ([`oem`]);
//! 6. the EC2 instance metadata service, on EC2 only ([`ec2`]).
//!
//! `tandem.datasource=a,b` replaces the order ([`order`]). A source that is
//! absent adds a line to `tried` and the search goes on; one that is there
//! but broken, or configured and unreachable, stops it with an [`Error`]:
//! booting with another source's config, or none, would hide the mistake.
//!
//! The pure parts (labels, metadata formats, the order) are apart from the
//! I/O; the system paths come from [`Env`], so tests point them at temp
//! directories and image files.

pub mod config_drive;
pub mod dmi;
pub mod ec2;
mod error;
pub mod fat;
pub mod fw_cfg;
pub mod http;
pub mod iso9660;
mod kmod;
pub mod label;
pub mod network;
pub mod nocloud;
pub mod oem;
pub mod order;
pub mod url;
pub mod volume;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::Error;
use order::Source;

/// What the node gives the search; tests fill it with temp paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: String,
    /// Where sysfs is (`/sys`).
    pub sys: PathBuf,
    /// Where the device nodes are (`/dev`).
    pub dev: PathBuf,
    /// The boot disk (`early.json`'s `disk`); its partitions are never
    /// datasources, except the OEM partition.
    pub boot_disk: Option<PathBuf>,
    /// A live boot from a Tandem ISO (`early.json`'s `live`): the boot
    /// disk is the ISO, which has no OEM partition.
    pub live: bool,
    /// The running kernel's modules (`/usr/lib/modules/<release>`), to load
    /// `qemu_fw_cfg` when needed; `None` loads nothing.
    pub modules: Option<PathBuf>,
    /// How long a network datasource waits for an IPv4 address.
    pub network_wait: Duration,
}

/// The default [`Env::network_wait`].
pub const NETWORK_WAIT: Duration = Duration::from_secs(30);
const MODULES_BASE: &str = "/usr/lib/modules";

impl Env {
    /// The running node's values: `/proc/cmdline`, the boot disk from
    /// `/run/tandem/early.json`, the modules of the running kernel.
    pub fn node() -> Env {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let early = std::fs::read(tandem_contract::run::EARLY_FILE)
            .ok()
            .and_then(|b| serde_json::from_slice::<tandem_contract::run::EarlyBoot>(&b).ok());
        let live = early.as_ref().is_some_and(|e| e.live);
        let boot_disk = early
            .map(|e| PathBuf::from(e.disk))
            .filter(|d| !d.as_os_str().is_empty());
        let modules = initramfs::modules::modules_dir(Path::new(MODULES_BASE))
            .ok()
            .filter(|d| d.is_dir());
        Env {
            cmdline: cmdline.trim().to_string(),
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
            boot_disk,
            live,
            modules,
            network_wait: NETWORK_WAIT,
        }
    }
}

/// User-data found, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where, for people (`NoCloud volume /dev/vdb (label cidata)`).
    pub source: String,
    /// The file's name on the datasource, for diagnostics (`user-data`,
    /// `openstack/latest/user_data`).
    pub file_name: String,
    /// The bytes as found.
    pub user_data: Vec<u8>,
    /// What the datasource says about the node.
    pub metadata: crate::Metadata,
}

/// Tries the datasources in order; the first with user-data wins. Each
/// source tried adds a line to `tried` (`fw_cfg: absent`). `Ok(None)`: no
/// source has user-data.
pub fn find(env: &Env, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    let plan = order::plan(&env.cmdline)?;
    if plan.sources.is_empty() {
        tried.push("none: tandem.datasource names no datasource".to_string());
    }
    for source in plan.sources {
        let found = match source {
            Source::Url => url::find(env, tried)?,
            Source::FwCfg => fw_cfg::find(env, tried)?,
            Source::NoCloud => nocloud::find(env, tried)?,
            Source::ConfigDrive => config_drive::find(env, tried)?,
            Source::Oem => oem::find(env, tried)?,
            Source::Ec2 => ec2::find(env, plan.ec2_named, tried)?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iso9660::tests::{Style, image};
    use volume::tests::{add_device, env};

    /// A config drive as `sr0` and a NoCloud volume as `sr1`.
    fn both_seeds(env: &Env) {
        let seed =
            |label: &str, path: &str| image(label, &[(path, b"#cloud-config\n")], Style::Joliet);
        add_device(env, "sr0", None, &seed("config-2", config_drive::USER_DATA));
        add_device(env, "sr1", None, &seed("cidata", "user-data"));
    }

    #[test]
    fn tries_in_order_and_stops_at_the_first() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        both_seeds(&env);
        let mut tried = Vec::new();
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert!(
            found.source.starts_with("NoCloud volume"),
            "{}",
            found.source
        );
        assert_eq!(
            tried,
            [
                "url: no tandem.config.url= on the kernel command line",
                "fw_cfg: not a QEMU machine (DMI)",
                &format!("NoCloud: {}/sr1 (cidata): user-data", env.dev.display()),
            ]
        );
    }

    #[test]
    fn the_command_line_order_wins() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut env = env(tmp.path());
        both_seeds(&env);
        env.cmdline = "quiet tandem.datasource=config-2,nocloud".into();
        let mut tried = Vec::new();
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert_eq!(found.file_name, config_drive::USER_DATA);
        assert_eq!(tried.len(), 1);

        env.cmdline = "tandem.datasource=none".into();
        tried.clear();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert_eq!(tried.len(), 1);

        env.cmdline = "tandem.datasource=cdrom".into();
        assert!(matches!(
            find(&env, &mut tried),
            Err(Error::UnknownDatasource { .. })
        ));
    }

    #[test]
    fn a_bad_url_stops_the_search() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut env = env(tmp.path());
        add_device(
            &env,
            "sr1",
            None,
            &image("cidata", &[("user-data", b"x")], Style::Joliet),
        );
        env.cmdline = "tandem.config.url=https://example.com/u".into();
        let err = find(&env, &mut Vec::new()).expect_err("https");
        assert!(matches!(err, Error::BadUrl { .. }), "{err}");
    }

    #[test]
    fn nothing_anywhere_is_none() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let mut tried = Vec::new();
        assert!(find(&env, &mut tried).expect("find").is_none());
        assert_eq!(tried.len(), 6, "{tried:?}");
        assert_eq!(tried[5], "EC2: not an EC2 machine (DMI)");
    }
}
