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
//!
//! The types are defined in `tandem_contract::run` (the update daemon reads
//! them for the boot disk and for health) and re-exported here.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

pub use tandem_contract::run::{
    BootTimes, EARLY_FILE, EarlyBoot, FORMAT, NetworkStatus, RUN_DIR, STATUS_FILE, ServiceState,
    ServiceStatus, Status, Step,
};

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
            slot: Some(tandem_slot::Slot::A),
            version: Some("1.0.0".into()),
            boot: BootTimes {
                initramfs_started_us: Some(2_714_000),
                system_started_us: 3_000_000,
                ..Default::default()
            },
            services: vec![ServiceStatus {
                name: "console".into(),
                state: ServiceState::Running,
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
