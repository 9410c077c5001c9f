//! The rules for `write_files` entries: where a file may go, its mode, its
//! owner, and how its content is encoded. Pure checks returning what is
//! wrong as a sentence; the validator adds the position.

use std::io::Read;

use base64::Engine;

use crate::error::Error;

/// How a file's `content` is encoded (coreos-cloudinit's spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `b64`, `base64`.
    Base64,
    /// `gz`, `gzip`: the content is gzip data (rare in YAML, which is text).
    Gzip,
    /// `gz+b64`, `gzip+base64`, `gz+base64`, `gzip+b64`.
    GzipBase64,
}

impl Encoding {
    /// The encoding for a name, or what is accepted.
    pub fn parse(name: &str) -> Result<Encoding, String> {
        match name {
            "b64" | "base64" => Ok(Encoding::Base64),
            "gz" | "gzip" => Ok(Encoding::Gzip),
            "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64" => Ok(Encoding::GzipBase64),
            _ => Err(format!(
                "unknown encoding {name:?}: use b64 (base64), gz (gzip) or gz+b64 (gzip+base64), or leave it out for plain text"
            )),
        }
    }
}

/// The most a gzip content may expand to: a config is not a disk image.
pub const MAX_DECODED: u64 = 64 << 20;

/// Decodes a content; base64 may be split over lines (whitespace is dropped).
pub fn decode(content: &str, encoding: Option<Encoding>, name: &str) -> Result<Vec<u8>, Error> {
    let fail = |reason: String| Error::Content {
        encoding: name.to_string(),
        reason,
    };
    let b64 = |text: &str| {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| fail(e.to_string()))
    };
    let gunzip = |data: &[u8]| {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .take(MAX_DECODED + 1)
            .read_to_end(&mut out)
            .map_err(|e| fail(e.to_string()))?;
        if out.len() as u64 > MAX_DECODED {
            return Err(fail(format!("it expands to more than {MAX_DECODED} bytes")));
        }
        Ok(out)
    };
    match encoding {
        None => Ok(content.as_bytes().to_vec()),
        Some(Encoding::Base64) => b64(content),
        Some(Encoding::Gzip) => gunzip(content.as_bytes()),
        Some(Encoding::GzipBase64) => gunzip(&b64(content)?),
    }
}

/// A mode from a quoted string (`'0644'`, `'644'`, `'0o644'`), read as octal.
pub fn permissions_from_str(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(8)) {
        return Err(format!(
            "permissions {text:?} is not an octal mode: write e.g. '0644' (quoted)"
        ));
    }
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("permissions {text:?} is larger than 07777"))?;
    check_mode(mode, text)
}

/// A mode from an unquoted integer as written: CoreOS users wrote
/// `permissions: 0644` meaning octal, which YAML 1.2 reads as decimal 644,
/// so the digits as written are read as octal (`0644` → 0o644).
pub fn permissions_from_int(written: &str) -> Result<u32, String> {
    if let Some(o) = written.strip_prefix("0o") {
        return permissions_from_str(&format!("0o{o}"));
    }
    if !written.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "permissions {written} is not an octal mode: write e.g. '0644' (quoted)"
        ));
    }
    permissions_from_str(written)
}

fn check_mode(mode: u32, text: &str) -> Result<u32, String> {
    if mode > 0o7777 {
        return Err(format!(
            "permissions {text} is larger than 07777 (modes have four octal digits at most)"
        ));
    }
    Ok(mode)
}

/// Where a file may not be written, and why.
const FORBIDDEN: &[(&str, &str)] = &[
    (
        "/usr",
        "/usr is the read-only, verified image (dm-verity); ship such files in the image",
    ),
    ("/proc", "/proc is the kernel's process filesystem"),
    (
        "/sys",
        "/sys is the kernel's sysfs; use [kernel.sysctl] in the image, or a oneshot service",
    ),
    ("/dev", "/dev holds device nodes made by the kernel"),
];

/// Checks a file path: absolute, no `.`/`..` components, not a directory,
/// not under /usr, /proc, /sys or /dev.
pub fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path {path:?} is not absolute"));
    }
    if path.ends_with('/') {
        return Err(format!("path {path:?} names a directory, not a file"));
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err(format!("path {path:?} has `.` or `..` components"));
    }
    if path.contains('\0') {
        return Err("path has a NUL byte".into());
    }
    let normal: String = {
        let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        format!("/{}", parts.join("/"))
    };
    for (dir, why) in FORBIDDEN {
        if normal == *dir || normal.starts_with(&format!("{dir}/")) {
            return Err(format!("cannot write {path}: {why}"));
        }
    }
    Ok(())
}

/// A file's owner, `user` or `user:group`, each a name or a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// User name or uid.
    pub user: String,
    /// Group name or gid; `None` is the user's primary group.
    pub group: Option<String>,
}

/// Parses `user[:group]`.
pub fn parse_owner(text: &str) -> Result<Owner, String> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let ok =
        |s: &str| is_account_name(s) || (!s.is_empty() && s.chars().all(|c| c.is_ascii_digit()));
    if !ok(user) || !group.is_none_or(ok) {
        return Err(format!(
            "owner {text:?} is not `user` or `user:group` (names or numbers)"
        ));
    }
    Ok(Owner {
        user: user.to_string(),
        group: group.map(str::to_string),
    })
}

/// A user or group name as useradd accepts it: `[a-z_][a-z0-9_-]*$?`, at
/// most 32 characters.
pub fn is_account_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut chars = body.chars();
    s.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_lowercase())
        && chars.all(|c| c == '_' || c == '-' || c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        for (name, e) in [
            ("b64", Encoding::Base64),
            ("base64", Encoding::Base64),
            ("gz", Encoding::Gzip),
            ("gzip", Encoding::Gzip),
            ("gz+b64", Encoding::GzipBase64),
            ("gzip+base64", Encoding::GzipBase64),
            ("gz+base64", Encoding::GzipBase64),
            ("gzip+b64", Encoding::GzipBase64),
        ] {
            assert_eq!(Encoding::parse(name), Ok(e));
        }
        assert!(Encoding::parse("hex").is_err());
        assert!(Encoding::parse("B64").is_err());
    }

    #[test]
    fn decoding() {
        assert_eq!(
            decode("c2VjcmV0LXRva2VuLTEyMwo=", Some(Encoding::Base64), "b64").expect("decodes"),
            b"secret-token-123\n"
        );
        assert_eq!(
            decode(
                "c2VjcmV0\nLXRva2VuLTEyMwo=\n",
                Some(Encoding::Base64),
                "b64"
            )
            .expect("decodes"),
            b"secret-token-123\n"
        );
        let gz = decode(
            "H4sIAAAAAAAAA8tIzcnJVyjPL8pJ4QIALTsIrwwAAAA=",
            Some(Encoding::GzipBase64),
            "gz+b64",
        )
        .expect("decodes");
        assert_eq!(gz, b"hello world\n");
        assert_eq!(decode("plain", None, "").expect("decodes"), b"plain");
        assert!(matches!(
            decode("not base64!", Some(Encoding::Base64), "b64"),
            Err(Error::Content { .. })
        ));
        assert!(matches!(
            decode("aGVsbG8=", Some(Encoding::GzipBase64), "gz+b64"),
            Err(Error::Content { .. })
        ));
    }

    #[test]
    fn permissions() {
        assert_eq!(permissions_from_str("0644"), Ok(0o644));
        assert_eq!(permissions_from_str("600"), Ok(0o600));
        assert_eq!(permissions_from_str("4755"), Ok(0o4755));
        assert_eq!(permissions_from_str("0o750"), Ok(0o750));
        assert!(permissions_from_str("0844").is_err());
        assert!(permissions_from_str("rw-r--r--").is_err());
        assert!(permissions_from_str("17777").is_err());
        assert!(permissions_from_str("").is_err());
        assert_eq!(permissions_from_int("0644"), Ok(0o644));
        assert_eq!(permissions_from_int("644"), Ok(0o644));
        assert_eq!(permissions_from_int("0o644"), Ok(0o644));
        assert!(permissions_from_int("0x1a4").is_err());
        assert!(permissions_from_int("-644").is_err());
        assert!(permissions_from_int("0999").is_err());
        assert!(permissions_from_int("77777").is_err());
    }

    #[test]
    fn paths() {
        assert!(check_path("/etc/motd.d/role").is_ok());
        assert!(check_path("/var/lib/app/x").is_ok());
        assert!(check_path("/usrlocal/x").is_ok());
        assert!(check_path("etc/x").is_err());
        assert!(check_path("/etc/").is_err());
        assert!(check_path("/etc/../usr/x").is_err());
        for p in [
            "/usr/bin/x",
            "/usr",
            "//usr/lib/x",
            "/proc/sys/x",
            "/sys/x",
            "/dev/sda",
        ] {
            assert!(check_path(p).is_err(), "{p}");
        }
        assert!(check_path("/usr/bin/x").unwrap_err().contains("read-only"));
    }

    #[test]
    fn owners() {
        assert_eq!(
            parse_owner("root:root"),
            Ok(Owner {
                user: "root".into(),
                group: Some("root".into())
            })
        );
        assert_eq!(parse_owner("elroy").map(|o| o.group), Ok(None));
        assert!(parse_owner("1000:1000").is_ok());
        for bad in ["", ":root", "root:", "Root", "a b", "root:wheel:x", "a.b"] {
            assert!(parse_owner(bad).is_err(), "{bad:?}");
        }
    }
}
