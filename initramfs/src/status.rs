//! What the inits publish under /run/tandem, shared by the writer (early and
//! system init) and the reader (`tandemctl status`) so they cannot drift.
//!
//! - `/run/tandem/early.json` ([`EarlyBoot`]): written by the early init into
//!   the tmpfs it mounts on /run and carries across the switch root;
//! - `/run/tandem/status.json` ([`Status`]): written by the system init at
//!   "system ready" and whenever the network or a service changes.
//!
//! Times are microseconds of `CLOCK_BOOTTIME` (time since the kernel started,
//! the clock of the kernel log's timestamps).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

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

/// Records steps as they finish.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline(pub Vec<Step>);

impl Timeline {
    /// Notes that `step` just finished.
    pub fn step(&mut self, step: &str) {
        self.0.push(Step {
            step: step.to_string(),
            at_us: crate::sys::boottime_us(),
        });
    }
}

/// What the early init found and when.
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
    /// `running`, `waiting to restart`, `exited`, `failed`, `disabled`.
    pub state: String,
    /// PID while running.
    pub pid: Option<i32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// How it last ended (`exit status 1`, `killed by signal 9`).
    pub last_exit: Option<String>,
}

/// The node's status.
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

/// Writes `value` as JSON to `path` atomically (temporary file + rename), so
/// a reader never sees half a file.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let fail = |err| Error::Write {
        path: path.to_path_buf(),
        err,
    };
    let text = serde_json::to_vec_pretty(value).map_err(|e| fail(e.into()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(fail)?;
    f.write_all(&text)
        .and_then(|()| f.write_all(b"\n"))
        .map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Reads a JSON status file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read(path).map_err(|err| Error::Read {
        path: path.to_path_buf(),
        err,
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::Status {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Microseconds as seconds with millisecond precision (`2.714 s`).
pub fn secs(us: u64) -> String {
    format!("{}.{:03} s", us / 1_000_000, (us % 1_000_000) / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        let s = Status {
            format: FORMAT,
            slot: Some("A".into()),
            version: Some("1.0.0".into()),
            boot: BootTimes {
                initramfs_started_us: Some(2_714_000),
                system_started_us: 3_000_000,
                ..Default::default()
            },
            services: vec![ServiceStatus {
                name: "console".into(),
                state: "running".into(),
                pid: Some(42),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = serde_json::to_string(&s).expect("serialise");
        let back: Status = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, s);
    }

    #[test]
    fn write_then_read() {
        let dir = std::env::temp_dir().join(format!("tandem-status-test-{}", std::process::id()));
        let path = dir.join("status.json");
        let s = Status {
            format: FORMAT,
            hostname: Some("n1".into()),
            ..Default::default()
        };
        write_json(&path, &s).expect("write");
        assert_eq!(read_json::<Status>(&path).expect("read"), s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn seconds() {
        assert_eq!(secs(2_714_123), "2.714 s");
        assert_eq!(secs(5_000), "0.005 s");
    }
}
