//! Incidents: what went wrong with a slot, written on ROOT by the program
//! that saw it (the early init when a boot fails, the system init when
//! /usr turns out corrupt at run time) and read by the update engine of the
//! next boot, which reports them and tells a failed release from a boot
//! that was merely cut short. One JSON file per incident under
//! [`DIR`]; the reader removes what it has taken in.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Slot;
use crate::node::state_enum;

/// The directory, relative to ROOT's mount point (`/` on a running node,
/// `/sysroot` in the initramfs).
pub const DIR: &str = "var/lib/tandem/incidents";
/// Version of the file format.
pub const FORMAT: u32 = 1;

state_enum! {
    /// What happened.
    IncidentKind, "incident kind" {
        /// The early init of the slot failed (`tandem-init: FATAL`).
        BootFailed = "boot-failed",
        /// Blocks of the slot's /usr failed dm-verity: the disk holds
        /// other bytes than the release.
        UsrCorrupt = "usr-corrupt",
    }
}

/// One incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// [`FORMAT`].
    pub format: u32,
    /// The slot it happened to.
    pub slot: Slot,
    /// What happened.
    pub kind: IncidentKind,
    /// The details, as printed on the console.
    pub what: String,
    /// What was done about it ("slot B given up; slot A boots next").
    pub action: String,
    /// When (Unix seconds; the machine's clock, which may be off before
    /// the network is up).
    pub at: u64,
}

impl Incident {
    /// Writes the incident under `root`/[`DIR`] durably: a temporary file,
    /// fsync, rename, fsync of the directory. Returns the file's path.
    pub fn write(&self, root: &Path) -> std::io::Result<PathBuf> {
        let dir = root.join(DIR);
        std::fs::create_dir_all(&dir)?;
        let name = format!("{}-{}-{}.json", self.at, self.slot.letter(), self.kind);
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(path)
    }

    /// Every incident under `root`/[`DIR`], oldest first, with its file;
    /// a file that cannot be read or parsed is reported as such.
    pub fn read_all(root: &Path) -> Vec<(PathBuf, Result<Incident, String>)> {
        let Ok(entries) = std::fs::read_dir(root.join(DIR)) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let parsed = std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    .map_err(|e| format!("{}: {e}", p.display()));
                (p, parsed)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_incidents_read_back_in_order() {
        let root = tempfile::tempdir().expect("tmp");
        assert!(Incident::read_all(root.path()).is_empty());
        let mut a = Incident {
            format: FORMAT,
            slot: Slot::B,
            kind: IncidentKind::BootFailed,
            what: "mounting /usr: unknown file system".into(),
            action: "slot B given up; slot A boots next".into(),
            at: 200,
        };
        a.write(root.path()).expect("write");
        let b = Incident {
            slot: Slot::A,
            kind: IncidentKind::UsrCorrupt,
            at: 100,
            ..a.clone()
        };
        b.write(root.path()).expect("write");
        std::fs::write(root.path().join(DIR).join("300-x.json"), "{").expect("junk");
        let all = Incident::read_all(root.path());
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].1, Ok(b));
        a.format = FORMAT;
        assert_eq!(all[1].1, Ok(a));
        assert!(all[2].1.as_ref().is_err_and(|e| e.contains("300-x.json")));
    }
}
