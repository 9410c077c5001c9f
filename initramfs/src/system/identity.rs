//! The machine's identity: machine id, host name, release.

use std::path::Path;

use tandem_slot::Slot;

use super::warn;
use crate::error::Error;
use crate::sys;
use crate::system_log;

/// The machine's identity.
pub const MACHINE_ID: &str = "/etc/machine-id";
/// Administrator's host name.
pub const HOSTNAME: &str = "/etc/hostname";
/// The image's release file.
pub const OS_RELEASE: &str = tandem_contract::os_release::PATH;

/// Whether `/etc/machine-id` content is a usable id: 32 lower-case hex
/// digits, not all zero.
pub fn valid_machine_id(text: &str) -> bool {
    let t = text.trim();
    t.len() == 32
        && t.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && t.bytes().any(|b| b != b'0')
}

/// A machine id from 16 random bytes, formatted like systemd's (a version 4
/// UUID without dashes).
pub fn format_machine_id(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host name: /etc/hostname's first word if it is a valid name, else
/// `tandem-<first 8 hex digits of the machine id>`.
pub fn choose_hostname(etc_hostname: Option<&str>, machine_id: &str) -> String {
    let from_file = etc_hostname
        .and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
        })
        .filter(|h| valid_hostname(h));
    match from_file {
        Some(h) => h.to_string(),
        None => format!("tandem-{}", machine_id.get(..8).unwrap_or("unknown")),
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && !h.starts_with(['-', '.'])
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The value of `key` in an os-release file (shared with the updater).
pub use tandem_contract::os_release::value as os_release_value;

/// The "system ready" line.
pub fn ready_line(slot: Option<Slot>, version: Option<&str>) -> String {
    format!(
        "system ready (slot {}, version {})",
        slot.map_or("unknown".to_string(), |s| s.to_string()),
        version.unwrap_or("unknown")
    )
}

pub(super) fn ensure_machine_id(warnings: &mut Vec<String>) -> Option<String> {
    let path = Path::new(MACHINE_ID);
    if let Ok(text) = std::fs::read_to_string(path)
        && valid_machine_id(&text)
    {
        return Some(text.trim().to_string());
    }
    let mut bytes = [0u8; 16];
    if let Err(err) = sys::getrandom(&mut bytes) {
        warn(
            warnings,
            &Error::Sys {
                what: "getrandom for the machine id",
                err,
            },
        );
        return None;
    }
    let id = format_machine_id(bytes);
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    match write() {
        Ok(()) => system_log!("first boot: generated machine id {id}"),
        Err(err) => warn(
            warnings,
            &Error::Write {
                path: path.into(),
                err,
            },
        ),
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids() {
        let id = format_machine_id([0xab; 16]);
        assert_eq!(id.len(), 32);
        assert!(valid_machine_id(&id));
        assert_eq!(&id[12..13], "4", "version 4");
        assert!(valid_machine_id("0123456789abcdef0123456789abcdef\n"));
        assert!(!valid_machine_id(""));
        assert!(!valid_machine_id("uninitialized"));
        assert!(!valid_machine_id(&"0".repeat(32)));
        assert!(!valid_machine_id("0123456789ABCDEF0123456789ABCDEF"));
    }

    #[test]
    fn hostnames() {
        let id = "1234abcd5678ef901234abcd5678ef90";
        assert_eq!(choose_hostname(None, id), "tandem-1234abcd");
        assert_eq!(choose_hostname(Some("node-7\n"), id), "node-7");
        assert_eq!(
            choose_hostname(Some("# comment\n\n  web1.example \n"), id),
            "web1.example"
        );
        assert_eq!(choose_hostname(Some("bad name\n"), id), "tandem-1234abcd");
        assert_eq!(choose_hostname(Some(""), id), "tandem-1234abcd");
    }

    #[test]
    fn os_release() {
        let text = "NAME=\"Tandem\"\nID=tandem\nVERSION_ID=1.0.0\nPRETTY_NAME='Tandem 1.0.0'\n";
        assert_eq!(
            os_release_value(text, "VERSION_ID").as_deref(),
            Some("1.0.0")
        );
        assert_eq!(os_release_value(text, "NAME").as_deref(), Some("Tandem"));
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Tandem 1.0.0")
        );
        assert_eq!(os_release_value(text, "VERSION"), None);
    }

    #[test]
    fn ready_marker() {
        assert_eq!(
            ready_line(Some(Slot::A), Some("1.0.0")),
            "system ready (slot A, version 1.0.0)"
        );
        assert_eq!(
            ready_line(None, None),
            "system ready (slot unknown, version unknown)"
        );
    }
}
