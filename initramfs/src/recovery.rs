//! What the init does about a slot that failed or whose /usr is corrupt:
//! decide with the slot rules ([`SlotPair::after_boot_failure`],
//! [`SlotPair::after_corruption`]), write the decision to the slot table,
//! leave an [`Incident`] on ROOT for the update engine of the next boot,
//! and say it on the console.

use std::path::Path;

use tandem_contract::incident::{FORMAT, Incident, IncidentKind};
use tandem_slot::{FileDisk, Recovery, Slot, SlotPair};

/// What was decided, in words, and whether another slot boots next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What was done.
    pub action: String,
    /// The slot that boots next, if the failed one was given up.
    pub switch_to: Option<Slot>,
}

/// Applies `decide` to the slot table of `disk` for `slot` and describes
/// the result. A table that cannot be read or written changes nothing and
/// is said.
pub fn decide(disk: &Path, slot: Slot, kind: IncidentKind) -> Outcome {
    let change = |p: &mut SlotPair| {
        Ok(match kind {
            IncidentKind::BootFailed => p.after_boot_failure(slot),
            IncidentKind::UsrCorrupt => p.after_corruption(slot),
        })
    };
    let done = FileDisk::open(disk)
        .map_err(|e| e.to_string())
        .and_then(|mut d| tandem_slot::table::modify(&mut d, change).map_err(|e| e.to_string()));
    match done {
        Ok((Recovery::SwitchTo(other), _)) => Outcome {
            action: format!("slot {slot} given up; slot {other} boots next"),
            switch_to: Some(other),
        },
        Ok((Recovery::Stay(why), _)) => Outcome {
            action: format!("slot {slot} kept: {why}"),
            switch_to: None,
        },
        Err(e) => Outcome {
            action: format!(
                "cannot change the slot table of {}: {e}; slot {slot} is kept",
                disk.display()
            ),
            switch_to: None,
        },
    }
}

/// Leaves the incident under `root` (ROOT's mount point) for the next
/// boot's update engine. Best effort: a failure is returned to be printed.
pub fn record(
    root: &Path,
    slot: Slot,
    kind: IncidentKind,
    what: &str,
    outcome: &Outcome,
) -> Result<(), String> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Incident {
        format: FORMAT,
        slot,
        kind,
        what: what.to_string(),
        action: outcome.action.clone(),
        at,
    }
    .write(root)
    .map(|_| ())
    .map_err(|e| {
        format!(
            "cannot record the incident on ROOT ({}): {e}",
            root.display()
        )
    })
}

/// Whether dm-verity saw a corrupt block of /usr (the device-mapper
/// device [`crate::early::DM_NAME`]): `Some` with the kernel's own words
/// (`data block 1234 is corrupted`) once it did. Costs one ioctl while
/// /usr is sound.
pub fn usr_corruption() -> Option<String> {
    let status = crate::devmapper::status(crate::early::DM_NAME).ok()?;
    if !status.iter().any(|s| s.starts_with('C')) {
        return None;
    }
    let lines = verity_kernel_lines();
    Some(summarise(&lines))
}

/// The kernel's `device-mapper: verity: … is corrupted` lines, from
/// /dev/kmsg (read without waiting).
fn verity_kernel_lines() -> Vec<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut kmsg) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    // One record per read; EAGAIN at the end, EPIPE when records were
    // overwritten (then the next read goes on).
    for _ in 0..100_000 {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                let text = rec.split_once(';').map_or(&*rec, |(_, t)| t);
                let text = text.lines().next().unwrap_or_default();
                if text.contains("verity") && text.contains("is corrupted") {
                    out.push(text.to_string());
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    out
}

/// The first corrupted block and how many reports there were, or what
/// dm-verity's status said when the kernel log has nothing.
pub fn summarise(lines: &[String]) -> String {
    match lines {
        [] => "dm-verity reports corrupted blocks".into(),
        [one] => one.trim().to_string(),
        [first, ..] => format!("{} (and {} more reports)", first.trim(), lines.len() - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_cannot_be_opened_keeps_the_slot() {
        let o = decide(
            Path::new("/nonexistent/disk"),
            Slot::B,
            IncidentKind::BootFailed,
        );
        assert_eq!(o.switch_to, None);
        assert!(
            o.action.contains("cannot change the slot table"),
            "{}",
            o.action
        );
    }

    #[test]
    fn corruption_is_summarised_from_the_kernel_lines() {
        assert_eq!(summarise(&[]), "dm-verity reports corrupted blocks");
        let l = |b| format!("device-mapper: verity: 254:0: data block {b} is corrupted");
        assert_eq!(summarise(&[l(7)]), l(7));
        assert_eq!(
            summarise(&[l(7), l(8), l(7)]),
            format!("{} (and 2 more reports)", l(7))
        );
    }
}
