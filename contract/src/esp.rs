//! The files on the EFI system partition and the OEM partition
//! (docs/boot-chain.md): where they live, and the one writer and the one
//! parser of `loader.conf`, `slot-<x>.conf` and the OEM `cmdline` file.
//!
//! The parsers are lenient on purpose: a typo in a text file on the ESP must
//! not stop a machine from booting, so problems become warnings that the
//! bootloader prints, and the rest of the file still counts. Unknown keys are
//! ignored so that older bootloaders can read newer files.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::cmdline::UsrVerity;
use crate::slot::Slot;

/// The removable-media bootloader path the firmware starts.
pub const BOOTLOADER: &str = "EFI/BOOT/BOOTX64.EFI";
/// Directory of Tandem's files on the ESP.
pub const DIR: &str = "EFI/tandem";
/// Options for every boot.
pub const LOADER_CONF: &str = "EFI/tandem/loader.conf";
/// Extra kernel arguments, at the root of the OEM partition.
pub const OEM_CMDLINE: &str = "cmdline";

/// A slot's three files on the ESP. The slot file is written last: the
/// bootloader counts a slot as installed only when all three exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotFiles {
    /// `EFI/tandem/vmlinuz-<x>`.
    pub kernel: String,
    /// `EFI/tandem/initrd-<x>`.
    pub initrd: String,
    /// `EFI/tandem/slot-<x>.conf`.
    pub conf: String,
}

impl SlotFiles {
    /// The files of `slot`, as paths relative to the ESP's root with `/`.
    pub fn of(slot: Slot) -> SlotFiles {
        let x = slot.letter();
        SlotFiles {
            kernel: format!("{DIR}/vmlinuz-{x}"),
            initrd: format!("{DIR}/initrd-{x}"),
            conf: format!("{DIR}/slot-{x}.conf"),
        }
    }

    /// The three, in the order they are written.
    pub fn in_write_order(&self) -> [&str; 3] {
        [&self.kernel, &self.initrd, &self.conf]
    }
}

/// A path relative to the ESP's root (`EFI/tandem/initrd-a`) as UEFI and the
/// kernel's `initrd=` want it: `\EFI\tandem\initrd-a`.
pub fn uefi_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    out.push('\\');
    out.push_str(&path.replace('/', "\\"));
    out
}

/// Name of the component that writes a file, on its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// `tandem build`.
    Builder,
    /// The node's update engine.
    Updater,
}

impl Writer {
    fn comment(self) -> &'static str {
        match self {
            Writer::Builder => "# written by tandem build\n",
            Writer::Updater => "# written by tandem-updated\n",
        }
    }
}

/// A problem in a configuration file; the file was still used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigWarning {
    /// `timeout` is not a whole number of seconds.
    #[error("line {line}: timeout {value:?} is not a whole number of seconds; using 0 (no menu)")]
    BadTimeout {
        /// 1-based line number.
        line: usize,
        /// The text found.
        value: String,
    },
    /// A known key without a value.
    #[error("line {line}: {key} has no value; line ignored")]
    MissingValue {
        /// 1-based line number.
        line: usize,
        /// The key.
        key: &'static str,
    },
    /// The file is not UTF-8.
    #[error("not valid UTF-8; invalid bytes were replaced by U+FFFD")]
    NotUtf8,
}

/// A parsed file and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<T> {
    /// The settings, with defaults where the file said nothing usable.
    pub value: T,
    /// Problems found, in file order.
    pub warnings: Vec<ConfigWarning>,
}

/// `loader.conf`: settings for every boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoaderConf {
    /// Seconds to show the A/B menu; 0 (the default) boots without one.
    pub timeout: u32,
    /// Kernel arguments for every slot; several `options` lines are joined.
    pub options: String,
    /// `live yes`: the ESP of a live ISO ([`crate::cmdline::LIVE`]). There
    /// are no slots to choose from: the bootloader starts slot A's files
    /// and the early init finds /usr on the ISO.
    pub live: bool,
}

impl LoaderConf {
    /// The file's text.
    pub fn render(&self, by: Writer) -> String {
        let live = if self.live { "live yes\n" } else { "" };
        format!(
            "{}timeout {}\noptions {}\n{live}",
            by.comment(),
            self.timeout,
            self.options
        )
    }
}

/// `slot-<x>.conf`: what a slot holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotConf {
    /// Release version of the slot's /usr, shown on the console.
    pub version: Option<String>,
    /// The slot's own kernel arguments (verity root hash and salt).
    pub options: String,
}

impl SlotConf {
    /// The file for a slot holding `version`, whose /usr is `verity`.
    pub fn new(version: &str, verity: &UsrVerity) -> SlotConf {
        SlotConf {
            version: Some(version.into()),
            options: verity.render(),
        }
    }

    /// The file's text.
    pub fn render(&self, by: Writer) -> String {
        let mut text = String::from(by.comment());
        if let Some(v) = &self.version {
            text.push_str(&format!("version {v}\n"));
        }
        text.push_str(&format!("options {}\n", self.options));
        text
    }

    /// The /usr verity arguments of the options, where all three are there
    /// and well formed.
    pub fn usr_verity(&self) -> Option<UsrVerity> {
        UsrVerity::from_args(&self.options)
    }
}

/// Parses `loader.conf`. A repeated `timeout` takes the last value.
pub fn parse_loader_conf(bytes: &[u8]) -> Parsed<LoaderConf> {
    let (text, mut warnings) = decode(bytes);
    let mut conf = LoaderConf::default();
    for (line, key, value) in entries(&text) {
        match key {
            "timeout" => match value.parse::<u32>() {
                Ok(seconds) => conf.timeout = seconds,
                Err(_) if value.is_empty() => warnings.push(ConfigWarning::MissingValue {
                    line,
                    key: "timeout",
                }),
                Err(_) => {
                    conf.timeout = 0;
                    warnings.push(ConfigWarning::BadTimeout {
                        line,
                        value: value.into(),
                    });
                }
            },
            "options" => append(&mut conf.options, value),
            "live" => conf.live = value == "yes",
            _ => {}
        }
    }
    Parsed {
        value: conf,
        warnings,
    }
}

/// Parses `slot-<x>.conf`. A repeated `version` takes the last value.
pub fn parse_slot_conf(bytes: &[u8]) -> Parsed<SlotConf> {
    let (text, mut warnings) = decode(bytes);
    let mut conf = SlotConf::default();
    for (line, key, value) in entries(&text) {
        match key {
            "version" if value.is_empty() => warnings.push(ConfigWarning::MissingValue {
                line,
                key: "version",
            }),
            "version" => conf.version = Some(value.into()),
            "options" => append(&mut conf.options, value),
            _ => {}
        }
    }
    Parsed {
        value: conf,
        warnings,
    }
}

/// Parses the OEM `cmdline` file: lines joined with spaces, `#` starts a
/// comment.
pub fn parse_oem_cmdline(bytes: &[u8]) -> Parsed<String> {
    let (text, warnings) = decode(bytes);
    let mut cmdline = String::new();
    for line in text.lines() {
        append(&mut cmdline, strip_comment(line));
    }
    Parsed {
        value: cmdline,
        warnings,
    }
}

/// Text of a file, tolerating a byte-order mark and invalid UTF-8.
fn decode(bytes: &[u8]) -> (String, Vec<ConfigWarning>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    let warnings = match text {
        alloc::borrow::Cow::Borrowed(_) => Vec::new(),
        alloc::borrow::Cow::Owned(_) => alloc::vec![ConfigWarning::NotUtf8],
    };
    (text.into_owned(), warnings)
}

/// `(line number, key, value)` of each line that is not blank or a comment.
fn entries(text: &str) -> impl Iterator<Item = (usize, &str, &str)> {
    text.lines().enumerate().filter_map(|(i, line)| {
        let line = strip_comment(line);
        if line.is_empty() {
            return None;
        }
        let (key, value) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(k, v)| (k, v.trim()));
        Some((i + 1, key, value))
    })
}

/// The line without its comment and surrounding blanks (`lines` already
/// dropped a CR of a CRLF ending).
fn strip_comment(line: &str) -> &str {
    line.split_once('#')
        .map_or(line, |(before, _)| before)
        .trim()
}

/// Appends kernel arguments, one space between pieces.
fn append(to: &mut String, args: &str) {
    let args = args.trim();
    if args.is_empty() {
        return;
    }
    if !to.is_empty() {
        to.push(' ');
    }
    to.push_str(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_conf_from_the_contract() {
        let text = b"# loader.conf\ntimeout 0                      # seconds to show the A/B menu; 0 = no menu\noptions console=ttyS0,115200 panic=10\n";
        let parsed = parse_loader_conf(text);
        assert_eq!(parsed.warnings, []);
        assert_eq!(
            parsed.value,
            LoaderConf {
                timeout: 0,
                options: "console=ttyS0,115200 panic=10".into(),
                live: false,
            }
        );
    }

    #[test]
    fn options_lines_are_joined_and_unknown_keys_ignored() {
        let text = b"options  a=1  b=2 \r\nfuture-key something\n\ttimeout\t5\r\noptions c=3\n";
        let parsed = parse_loader_conf(text);
        assert_eq!(parsed.warnings, []);
        assert_eq!(parsed.value.options, "a=1  b=2 c=3");
        assert_eq!(parsed.value.timeout, 5);
    }

    #[test]
    fn bad_timeout_warns_and_boots_without_menu() {
        let parsed = parse_loader_conf(b"timeout 5\ntimeout 3s\noptions quiet\n");
        assert_eq!(parsed.value.timeout, 0);
        assert_eq!(parsed.value.options, "quiet");
        assert_eq!(
            parsed.warnings,
            [ConfigWarning::BadTimeout {
                line: 2,
                value: "3s".into()
            }]
        );
        assert_eq!(
            parsed.warnings[0].to_string(),
            "line 2: timeout \"3s\" is not a whole number of seconds; using 0 (no menu)"
        );
        let parsed = parse_loader_conf(b"timeout -1\n");
        assert_eq!(parsed.value.timeout, 0);
        let parsed = parse_loader_conf(b"timeout 99999999999\n");
        assert_eq!(parsed.value.timeout, 0);
        assert_eq!(parsed.warnings.len(), 1);
    }

    #[test]
    fn missing_values_are_named() {
        let parsed = parse_loader_conf(b"timeout 4\ntimeout   # nothing\n");
        assert_eq!(
            parsed.value.timeout, 4,
            "a bare key keeps the earlier value"
        );
        assert_eq!(
            parsed.warnings,
            [ConfigWarning::MissingValue {
                line: 2,
                key: "timeout"
            }]
        );
        let parsed = parse_slot_conf(b"version\n");
        assert_eq!(parsed.value.version, None);
        assert_eq!(parsed.warnings.len(), 1);
    }

    #[test]
    fn empty_or_blank_files_give_defaults() {
        for text in [&b""[..], b"\n\n", b"# only a comment\n", b"   \t  \r\n"] {
            let parsed = parse_loader_conf(text);
            assert_eq!(parsed.value, LoaderConf::default());
            assert_eq!(parsed.warnings, []);
            assert_eq!(parse_slot_conf(text).value, SlotConf::default());
            assert_eq!(parse_oem_cmdline(text).value, "");
        }
    }

    #[test]
    fn slot_conf_from_the_contract() {
        let hash = "a".repeat(64);
        let text = alloc::format!(
            "\u{FEFF}version 1.0.0\noptions tandem.usrhash={hash} tandem.usrsalt={hash} tandem.usrblocks=1234\n"
        );
        let parsed = parse_slot_conf(text.as_bytes());
        assert_eq!(parsed.warnings, []);
        assert_eq!(parsed.value.version.as_deref(), Some("1.0.0"));
        assert_eq!(
            parsed.value.options,
            alloc::format!("tandem.usrhash={hash} tandem.usrsalt={hash} tandem.usrblocks=1234")
        );
    }

    #[test]
    fn slot_conf_round_trips_through_its_one_writer() {
        let verity = UsrVerity {
            root_hash: "ab".repeat(32),
            salt: "cd".repeat(32),
            data_blocks: 1234,
        };
        for by in [Writer::Builder, Writer::Updater] {
            let conf = SlotConf::new("1.2.0", &verity);
            let parsed = parse_slot_conf(conf.render(by).as_bytes());
            assert_eq!(parsed.warnings, []);
            assert_eq!(parsed.value, conf);
            assert_eq!(parsed.value.usr_verity(), Some(verity.clone()));
        }
        let loader = LoaderConf {
            timeout: 3,
            options: "console=ttyS0 panic=10".into(),
            live: false,
        };
        assert_eq!(
            parse_loader_conf(loader.render(Writer::Builder).as_bytes()).value,
            loader
        );
        let live = LoaderConf {
            live: true,
            ..loader.clone()
        };
        assert_eq!(
            parse_loader_conf(live.render(Writer::Builder).as_bytes()).value,
            live
        );
    }

    #[test]
    fn slot_files_and_uefi_paths() {
        let f = SlotFiles::of(Slot::B);
        assert_eq!(
            f.in_write_order(),
            [
                "EFI/tandem/vmlinuz-b",
                "EFI/tandem/initrd-b",
                "EFI/tandem/slot-b.conf"
            ]
        );
        assert_eq!(uefi_path(&f.initrd), r"\EFI\tandem\initrd-b");
        assert_eq!(uefi_path(LOADER_CONF), r"\EFI\tandem\loader.conf");
    }

    #[test]
    fn oem_cmdline_joins_lines_and_drops_comments() {
        let text = b"# extra arguments for this platform\nconsole=tty0\n\n  systemd.foo=1 # trailing\r\n#all comment\nquiet\n";
        let parsed = parse_oem_cmdline(text);
        assert_eq!(parsed.value, "console=tty0 systemd.foo=1 quiet");
        assert_eq!(parsed.warnings, []);
    }

    #[test]
    fn invalid_utf8_is_replaced_and_reported() {
        let parsed = parse_oem_cmdline(b"quiet \xFF\xFE\n");
        assert_eq!(parsed.value, "quiet \u{FFFD}\u{FFFD}");
        assert_eq!(parsed.warnings, [ConfigWarning::NotUtf8]);
    }
}
