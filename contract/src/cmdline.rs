//! The kernel command line: the `tandem.*` arguments of docs/boot-chain.md,
//! written by the bootloader (slot and partition) and by whoever writes a
//! `slot-<x>.conf` (the /usr verity arguments), read by the early init and
//! the node tools.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::str::FromStr;

use crate::guid::Guid;
use crate::slot::Slot;

/// Where the kernel publishes its command line.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// `tandem.slot=<a|b>`: the slot the bootloader chose.
pub const SLOT: &str = "tandem.slot";
/// `tandem.usr=PARTUUID=<guid>`: that slot's partition.
pub const USR: &str = "tandem.usr";
/// `tandem.usrhash=<hex>`: the /usr dm-verity root hash.
pub const USR_HASH: &str = "tandem.usrhash";
/// `tandem.usrsalt=<hex|->`: the /usr dm-verity salt.
pub const USR_SALT: &str = "tandem.usrsalt";
/// `tandem.usrblocks=<n>`: /usr file system size in 4096-byte blocks.
pub const USR_BLOCKS: &str = "tandem.usrblocks";
/// `tandem.live`: a live boot from a Tandem ISO ([`crate::live`]); /usr is
/// the ISO's live /usr partition, found by its type, instead of `tandem.usr`.
pub const LIVE: &str = "tandem.live";

/// The arguments Tandem reads; a second, different value for one of them is
/// refused: the OEM cmdline comes last and must not override the verity root
/// hash of a verified /usr.
const TANDEM_KEYS: [&str; 6] = [SLOT, USR, USR_HASH, USR_SALT, USR_BLOCKS, LIVE];

/// A `tandem.*` argument is missing, malformed or given twice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    /// The argument is absent or empty.
    #[error("{0} is missing from the kernel command line (the bootloader's slot .conf sets it)")]
    Missing(&'static str),
    /// The value does not parse.
    #[error("{key}={value} on the kernel command line is invalid: expected {expected}")]
    Invalid {
        /// Argument name.
        key: &'static str,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// The argument appears twice with different values.
    #[error(
        "{key} is given twice on the kernel command line ({first} and {second}); refusing to guess (extra arguments, e.g. the OEM cmdline, must not set tandem.*)"
    )]
    Conflict {
        /// Argument name.
        key: String,
        /// First value.
        first: String,
        /// Second value.
        second: String,
    },
}

/// How a slot's /usr is verified (dm-verity format 1, sha256, 4096-byte
/// blocks): what `slot-<x>.conf` puts on the command line, the early init
/// hands to dm-verity and a release manifest signs (`usr.verity`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "std",
    derive(serde::Serialize, serde::Deserialize),
    serde(deny_unknown_fields)
)]
pub struct UsrVerity {
    /// Root hash, lower-case hex.
    pub root_hash: String,
    /// Salt, lower-case hex, `-` for none.
    pub salt: String,
    /// File system size in 4096-byte blocks; the hash tree starts there.
    pub data_blocks: u64,
}

impl UsrVerity {
    /// `tandem.usrhash=… tandem.usrsalt=… tandem.usrblocks=…`.
    pub fn render(&self) -> String {
        format!(
            "{USR_HASH}={} {USR_SALT}={} {USR_BLOCKS}={}",
            self.root_hash, self.salt, self.data_blocks
        )
    }

    /// The three arguments from a line, if all are there and well formed.
    pub fn from_args(line: &str) -> Option<UsrVerity> {
        let map = tandem_args(line).ok()?;
        verity(&map).ok()
    }
}

/// The slot's arguments the bootloader adds:
/// `tandem.slot=<x> tandem.usr=PARTUUID=<guid>`, the GUID in lower case as
/// Linux writes PARTUUIDs.
pub fn slot_args(slot: Slot, partuuid: Guid) -> String {
    format!(
        "{SLOT}={} {USR}=PARTUUID={}",
        slot.letter(),
        partuuid.to_string().to_ascii_lowercase()
    )
}

/// The arguments of a live boot: slot A's files, /usr on the ISO.
pub fn live_args() -> String {
    format!("{SLOT}=a {LIVE}")
}

/// Where /usr is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsrSource {
    /// `tandem.usr=PARTUUID=`: the slot's partition on the boot disk.
    Partition(Guid),
    /// `tandem.live`: the live /usr partition of a Tandem ISO.
    Live,
}

/// What the early init needs from the command line to set up /usr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootArgs {
    /// `tandem.slot`: the slot the bootloader chose.
    pub slot: Slot,
    /// Where /usr is.
    pub usr: UsrSource,
    /// The /usr verity arguments.
    pub verity: UsrVerity,
}

/// Splits a command line into `key` / `key=value` words as the kernel does:
/// whitespace separates words except inside double quotes, and the quotes
/// themselves are dropped.
pub fn words(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut push = |word: &mut String| {
        if !word.is_empty() {
            let w = core::mem::take(word);
            match w.split_once('=') {
                Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                None => out.push((w, None)),
            }
        }
    };
    for c in cmdline.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => push(&mut word),
            c => word.push(c),
        }
    }
    push(&mut word);
    out
}

/// The `tandem.*` arguments as key → value, refusing conflicting repeats.
pub fn tandem_args(cmdline: &str) -> Result<BTreeMap<String, String>, CmdlineError> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in words(cmdline) {
        if !TANDEM_KEYS.contains(&key.as_str()) {
            continue;
        }
        let value = value.unwrap_or_default();
        if let Some(old) = map.get(&key) {
            if *old != value {
                return Err(CmdlineError::Conflict {
                    key,
                    first: old.clone(),
                    second: value,
                });
            }
            continue;
        }
        map.insert(key, value);
    }
    Ok(map)
}

fn required<'a>(
    map: &'a BTreeMap<String, String>,
    key: &'static str,
) -> Result<&'a str, CmdlineError> {
    match map.get(key) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(CmdlineError::Missing(key)),
    }
}

fn invalid(key: &'static str, value: &str, expected: &'static str) -> CmdlineError {
    CmdlineError::Invalid {
        key,
        value: value.to_string(),
        expected,
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the arguments the early init needs.
pub fn parse(cmdline: &str) -> Result<BootArgs, CmdlineError> {
    let map = tandem_args(cmdline)?;

    let slot_text = required(&map, SLOT)?;
    let slot = match slot_text {
        "a" | "A" => Slot::A,
        "b" | "B" => Slot::B,
        other => return Err(invalid(SLOT, other, "a or b")),
    };

    let usr = if map.contains_key(LIVE) {
        UsrSource::Live
    } else {
        let usr = required(&map, USR)?;
        let guid_text = usr
            .strip_prefix("PARTUUID=")
            .ok_or_else(|| invalid(USR, usr, "PARTUUID=<partition GUID>"))?;
        UsrSource::Partition(
            Guid::from_str(guid_text)
                .map_err(|_| invalid(USR, usr, "PARTUUID=<partition GUID>"))?,
        )
    };

    Ok(BootArgs {
        slot,
        usr,
        verity: verity(&map)?,
    })
}

/// The /usr verity arguments of a map of `tandem.*` arguments.
fn verity(map: &BTreeMap<String, String>) -> Result<UsrVerity, CmdlineError> {
    let hash = required(map, USR_HASH)?;
    if hash.len() != 64 || !is_hex(hash) {
        return Err(invalid(
            USR_HASH,
            hash,
            "64 hex digits (a sha256 root hash)",
        ));
    }

    let salt = required(map, USR_SALT)?;
    // dm-verity takes up to 256 bytes of salt, or `-` for none.
    if salt != "-" && (salt.len() % 2 != 0 || salt.len() > 512 || !is_hex(salt)) {
        return Err(invalid(
            USR_SALT,
            salt,
            "an even number of hex digits (at most 512) or -",
        ));
    }

    let blocks = required(map, USR_BLOCKS)?;
    let data_blocks = match blocks.parse::<u64>() {
        // Sector count n*8 must fit in u64 with room to spare.
        Ok(n) if n > 0 && n < (1 << 50) => n,
        _ => {
            return Err(invalid(
                USR_BLOCKS,
                blocks,
                "a positive number of 4096-byte blocks",
            ));
        }
    };

    Ok(UsrVerity {
        root_hash: hash.to_ascii_lowercase(),
        salt: salt.to_ascii_lowercase(),
        data_blocks,
    })
}

/// The running slot alone, for the system init and tandemctl, which must
/// work even when other arguments are absent (a development boot).
pub fn running_slot(cmdline: &str) -> Option<Slot> {
    let map = tandem_args(cmdline).ok()?;
    Slot::parse(map.get(SLOT)?)
}

/// The `tandem.usr` PARTUUID alone.
pub fn usr_partuuid(cmdline: &str) -> Option<Guid> {
    let map = tandem_args(cmdline).ok()?;
    Guid::from_str(map.get(USR)?.strip_prefix("PARTUUID=")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const SALT: &str = "0011223344556677889900aabbccddeeff00112233445566778899aabbccddee";

    fn good() -> String {
        format!(
            "initrd=\\EFI\\tandem\\initrd-a console=ttyS0,115200 panic=10 tandem.slot=a \
             tandem.usr=PARTUUID=0b4c3a1e-5d6f-4a7b-8c9d-0e1f2a3b4c5d tandem.usrhash={HASH} \
             tandem.usrsalt={SALT} tandem.usrblocks=1234 quiet\n"
        )
    }

    #[test]
    fn parses_the_contract() {
        let args = parse(&good()).expect("valid");
        assert_eq!(args.slot, Slot::A);
        assert_eq!(
            args.usr,
            UsrSource::Partition(
                "0B4C3A1E-5D6F-4A7B-8C9D-0E1F2A3B4C5D"
                    .parse()
                    .expect("guid")
            )
        );
        assert_eq!(args.verity.root_hash, HASH);
        assert_eq!(args.verity.salt, SALT);
        assert_eq!(args.verity.data_blocks, 1234);
    }

    #[test]
    fn a_live_boot_needs_no_partition() {
        let line = format!(
            "console=ttyS0 {} tandem.usrhash={HASH} tandem.usrsalt={SALT} tandem.usrblocks=7",
            live_args()
        );
        let args = parse(&line).expect("valid");
        assert_eq!((args.slot, args.usr), (Slot::A, UsrSource::Live));
        let without = line.replace(" tandem.live", "");
        assert_eq!(parse(&without), Err(CmdlineError::Missing(USR)));
    }

    #[test]
    fn upper_case_hex_is_normalised() {
        let line = good()
            .replace(HASH, &HASH.to_ascii_uppercase())
            .replace("slot=a", "slot=B");
        let args = parse(&line).expect("valid");
        assert_eq!(args.verity.root_hash, HASH);
        assert_eq!(args.slot, Slot::B);
    }

    #[test]
    fn quotes_group_words() {
        let w = words("a=\"x y\" b \"c=d e\"");
        assert_eq!(
            w,
            vec![
                ("a".into(), Some("x y".into())),
                ("b".into(), None),
                ("c".into(), Some("d e".into()))
            ]
        );
    }

    #[test]
    fn missing_arguments_are_named() {
        let line = good().replace("tandem.usrblocks=1234", "");
        assert_eq!(parse(&line), Err(CmdlineError::Missing("tandem.usrblocks")));
        assert_eq!(
            parse("console=ttyS0"),
            Err(CmdlineError::Missing("tandem.slot"))
        );
        let line = good().replace(&format!("tandem.usrhash={HASH}"), "tandem.usrhash");
        assert_eq!(parse(&line), Err(CmdlineError::Missing("tandem.usrhash")));
    }

    #[test]
    fn bad_values_are_refused() {
        for (from, to) in [
            ("slot=a", "slot=c"),
            ("PARTUUID=0b4c", "UUID=0b4c"),
            ("5d6f-4a7b", "5d6f-4a7"),
            (HASH, &HASH[..63]),
            (HASH, &format!("{}g", &HASH[..63])),
            (SALT, &SALT[..63]),
            ("usrblocks=1234", "usrblocks=0"),
            ("usrblocks=1234", "usrblocks=-1"),
            ("usrblocks=1234", "usrblocks=12k"),
        ] {
            let line = good().replacen(from, to, 1);
            assert!(
                matches!(parse(&line), Err(CmdlineError::Invalid { .. })),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn empty_salt_is_dash() {
        let line = good().replace(SALT, "-");
        assert_eq!(parse(&line).expect("valid").verity.salt, "-");
    }

    #[test]
    fn a_later_conflicting_value_cannot_override() {
        let other = "0".repeat(64);
        let line = format!("{} tandem.usrhash={other}", good().trim());
        assert!(
            matches!(parse(&line), Err(CmdlineError::Conflict { key, .. }) if key == "tandem.usrhash")
        );
        // Repeating the same value is harmless.
        let line = format!("{} tandem.usrhash={HASH}", good().trim());
        assert!(parse(&line).is_ok());
    }

    #[test]
    fn lenient_lookups() {
        assert_eq!(running_slot(&good()), Some(Slot::A));
        assert_eq!(running_slot("console=ttyS0"), None);
        assert!(usr_partuuid(&good()).is_some());
    }
}
