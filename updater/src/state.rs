//! What the updater keeps on ROOT (`/var/lib/tandem/updater`), written
//! atomically and durably (temporary file, fsync, rename, fsync of the
//! directory):
//!
//! - `state.json` ([`State`]): the activation waiting for its first boot
//!   (`pending`) and the versions that failed to come up here (`failed`);
//! - `progress.json` ([`Progress`]): which chunks of the inactive slot are
//!   written, synced and verified for which manifest, so an interrupted
//!   update resumes from the last verified chunk.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tandem_contract::incident::Incident;

use crate::error::Error;
use crate::version::Version;

/// Format of both files.
pub const FORMAT: u32 = 1;

/// `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`FORMAT`].
    pub format: u32,
    /// An installed update that has not proven itself yet.
    #[serde(default)]
    pub pending: Option<Pending>,
    /// Versions that did not come up on this node; never installed again
    /// automatically (`tandemctl update forget-failed` removes one).
    #[serde(default)]
    pub failed: Vec<Failed>,
    /// The channel this node follows when no configuration names one: the
    /// channel of the image it was first installed with, recorded by its
    /// first update. A version promoted from another channel (built with
    /// that channel's name) must not move the node to that channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// The last [`MAX_INCIDENTS`] incidents the init left on ROOT (failed
    /// early boots, corrupt /usr), oldest first.
    #[serde(default)]
    pub incidents: Vec<Incident>,
}

/// Incidents kept in `state.json`.
pub const MAX_INCIDENTS: usize = 10;

/// An activated update waiting for its first healthy boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// The installed version.
    pub version: Version,
    /// The slot it was written to (`A`/`B`).
    pub slot: String,
    /// The version that installed it.
    pub from_version: Version,
    /// The slot that installed it.
    pub from_slot: String,
    /// When it was activated (Unix seconds).
    pub activated_at: u64,
    /// Why the new slot gave up on itself, written by its updater before it
    /// asked for the reboot back (health check failure).
    #[serde(default)]
    pub failure: Option<String>,
}

/// A version that failed to come up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failed {
    /// The version.
    pub version: Version,
    /// When the rollback was noticed (Unix seconds).
    pub at: u64,
    /// Why.
    pub reason: String,
}

impl State {
    /// Reads `state.json`; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<State, Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Format {
                path: path.into(),
                msg: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                format: FORMAT,
                ..State::default()
            }),
            Err(err) => Err(Error::Read {
                path: path.into(),
                err,
            }),
        }
    }

    /// Writes `state.json` durably ([`write_durable`]). If the state
    /// cannot be serialised or written, the previous file stays as it was
    /// and the error says why.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let mut text = to_json(path, serde_json::to_vec_pretty(self))?;
        text.push(b'\n');
        write_durable(path, &text)
    }

    /// The failed versions, for [`repository::policy::NodeFacts::failed`].
    pub fn failed_versions(&self) -> Vec<Version> {
        self.failed.iter().map(|f| f.version.clone()).collect()
    }

    /// Records a failed version (once).
    pub fn add_failed(&mut self, version: Version, at: u64, reason: String) {
        self.failed.retain(|f| f.version != version);
        self.failed.push(Failed {
            version,
            at,
            reason,
        });
    }

    /// Keeps `incident`, dropping the oldest beyond [`MAX_INCIDENTS`].
    pub fn add_incident(&mut self, incident: Incident) {
        self.incidents.push(incident);
        let extra = self.incidents.len().saturating_sub(MAX_INCIDENTS);
        self.incidents.drain(..extra);
    }

    /// Forgets a failed version; whether it was recorded.
    pub fn forget_failed(&mut self, version: &Version) -> bool {
        let before = self.failed.len();
        self.failed.retain(|f| f.version != *version);
        self.failed.len() != before
    }
}

/// One bit per chunk: set = written, synced and verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bitmap {
    bits: Vec<u8>,
    len: usize,
}

impl Bitmap {
    /// `len` clear bits.
    pub fn new(len: usize) -> Bitmap {
        Bitmap {
            bits: vec![0; len.div_ceil(8)],
            len,
        }
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i` (false beyond the end).
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bits[i / 8] & (1 << (i % 8)) != 0
    }

    /// Sets bit `i` (ignored beyond the end).
    pub fn set(&mut self, i: usize) {
        if i < self.len {
            self.bits[i / 8] |= 1 << (i % 8);
        }
    }

    /// Number of set bits.
    pub fn count(&self) -> usize {
        self.bits.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Whether every bit is set.
    pub fn all(&self) -> bool {
        self.count() == self.len
    }

    /// Hex of the bytes, bit 0 = least significant bit of the first byte.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.bits)
    }

    /// Parses [`Bitmap::to_hex`] output for `len` bits; bits beyond `len`
    /// must be clear.
    pub fn from_hex(text: &str, len: usize) -> Option<Bitmap> {
        let bits = hex::decode(text).ok()?;
        if bits.len() != len.div_ceil(8) {
            return None;
        }
        let b = Bitmap { bits, len };
        let stray = (len..b.bits.len() * 8).any(|i| b.bits[i / 8] & (1 << (i % 8)) != 0);
        (!stray).then_some(b)
    }
}

/// `progress.json`: how far the write of one manifest into one slot got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// [`FORMAT`].
    pub format: u32,
    /// The version being written.
    pub version: Version,
    /// sha256 of its manifest (the exact manifest, not just the version).
    pub manifest_sha256: String,
    /// The slot written (`A`/`B`).
    pub slot: String,
    /// Number of chunks in the manifest.
    pub chunks: usize,
    /// [`Bitmap::to_hex`] of the verified chunks.
    pub verified: String,
}

impl Progress {
    /// Reads `progress.json`; `None` when missing or unusable (the update
    /// then starts afresh; in-place checks still find what is there).
    pub fn load(path: &Path) -> Option<Progress> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The verified chunks if this record is about `version`'s manifest
    /// `manifest_sha256` in `slot` with `chunks` chunks.
    pub fn bitmap_for(&self, manifest_sha256: &str, slot: &str, chunks: usize) -> Option<Bitmap> {
        if self.format != FORMAT
            || self.manifest_sha256 != manifest_sha256
            || self.slot != slot
            || self.chunks != chunks
        {
            return None;
        }
        Bitmap::from_hex(&self.verified, chunks)
    }

    /// Writes `progress.json` durably ([`write_durable`]); on failure the
    /// previous file stays as it was.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        write_durable(path, &to_json(path, serde_json::to_vec(self))?)
    }
}

/// The serialised bytes, or an error naming the file that was not written.
fn to_json(path: &Path, r: Result<Vec<u8>, serde_json::Error>) -> Result<Vec<u8>, Error> {
    r.map_err(|e| Error::Serialize {
        path: path.into(),
        msg: e.to_string(),
    })
}

/// Writes `bytes` to `path` so that after a crash the file is either the
/// old or the new content: temporary file, fsync, rename, fsync of the
/// directory. If any step fails, the previous file is untouched, the
/// temporary file is removed and the error names `path`.
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_durable_with(path, |f| f.write_all(bytes))
}

/// [`write_durable`] with the content written by `fill`.
fn write_durable_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), Error> {
    let fail = |err| Error::Write {
        path: path.into(),
        err,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per writer: two threads saving the same file must not share
    // (and truncate) one temporary file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        fill(&mut f)?;
        f.sync_all()
    });
    if let Err(err) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(err));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_round_trip() {
        let mut b = Bitmap::new(11);
        assert_eq!(b.to_hex(), "0000");
        for i in [0, 3, 10, 11, 99] {
            b.set(i);
        }
        assert!(b.get(0) && b.get(3) && b.get(10));
        assert!(!b.get(1) && !b.get(11));
        assert_eq!(b.count(), 3);
        assert_eq!(b.to_hex(), "0904");
        assert_eq!(Bitmap::from_hex("0904", 11), Some(b.clone()));
        assert_eq!(Bitmap::from_hex("0904", 20), None, "wrong length");
        assert_eq!(Bitmap::from_hex("09fc", 11), None, "stray bits");
        assert_eq!(Bitmap::from_hex("zz", 2), None);
        let mut full = Bitmap::new(3);
        (0..3).for_each(|i| full.set(i));
        assert!(full.all());
        assert!(Bitmap::new(0).all());
    }

    #[test]
    fn progress_must_match_the_manifest_and_slot() {
        let p = Progress {
            format: FORMAT,
            version: "1.1".parse().expect("v"),
            manifest_sha256: "ab".into(),
            slot: "B".into(),
            chunks: 4,
            verified: "05".into(),
        };
        assert_eq!(p.bitmap_for("ab", "B", 4).map(|b| b.count()), Some(2));
        assert_eq!(p.bitmap_for("cd", "B", 4), None);
        assert_eq!(p.bitmap_for("ab", "A", 4), None);
        assert_eq!(p.bitmap_for("ab", "B", 5), None);
    }

    #[test]
    fn state_files_round_trip() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/state.json");
        let mut s = State::load(&path).expect("missing is empty");
        assert_eq!(s.format, FORMAT);
        s.add_failed("1.1".parse().expect("v"), 5, "did not boot".into());
        s.add_failed("1.1.0".parse().expect("v"), 6, "again".into());
        assert_eq!(s.failed.len(), 1, "1.1 == 1.1.0");
        s.save(&path).expect("save");
        let back = State::load(&path).expect("load");
        assert_eq!(back, s);
        assert_eq!(
            back.failed_versions(),
            vec!["1.1.0".parse::<Version>().expect("v")]
        );
        let mut back = back;
        assert!(back.forget_failed(&"1.1".parse().expect("v")));
        assert!(!back.forget_failed(&"1.1".parse().expect("v")));
        std::fs::write(&path, "{").expect("write");
        assert!(matches!(State::load(&path), Err(Error::Format { .. })));
    }

    #[test]
    fn a_failed_write_keeps_the_previous_state() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("state.json");
        let mut s = State::load(&path).expect("missing is empty");
        s.channel = Some("stable".into());
        s.save(&path).expect("save");
        let before = std::fs::read(&path).expect("read");
        // The write breaks off half way.
        let e = write_durable_with(&path, |f| {
            f.write_all(b"{\"format\": 1, \"pen")?;
            Err(std::io::Error::other("disk full"))
        })
        .expect_err("must fail");
        assert!(
            matches!(&e, Error::Write { path: p, .. } if *p == path),
            "{e}"
        );
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
        assert_eq!(State::load(&path).expect("load"), s);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        // A rename that fails (a directory in the way) also says so.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("x")).expect("mkdir");
        assert!(matches!(s.save(&blocked), Err(Error::Write { .. })));
        assert!(blocked.join("x").is_dir());
    }
}
