//! `/usr/lib/tmpfiles.d/tandem-packages.conf`: what packages ship under
//! /var, declared for boot time in standard tmpfiles.d syntax (`d`, `C`,
//! `L`). /var lives on ROOT, which belongs to the node; the image carries
//! the files in /usr/share/factory/var and the node creates what is
//! missing when it boots.

use std::collections::BTreeMap;

use crate::build::usr_tree::{FACTORY_VAR, VarEntry};

/// The file in /usr.
pub const PACKAGES_CONF: &str = "lib/tmpfiles.d/tandem-packages.conf";

/// The configuration for `entries` (from every package; the first entry
/// for a path wins), sorted by path so parents come first. Directories in
/// `existing` (made on ROOT by the build) get no line. Entries whose path
/// cannot be written in tmpfiles.d syntax are returned apart.
pub fn render(entries: &[VarEntry], existing: &[&str]) -> (String, Vec<String>) {
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    let mut unusable = Vec::new();
    for e in entries {
        let path = e.path();
        if lines.contains_key(path) {
            continue;
        }
        if !plain(path) || matches!(e, VarEntry::Link(_, t) if !plain(t)) {
            unusable.push(path.to_string());
            continue;
        }
        let line = match e {
            VarEntry::Dir(p, mode) => {
                if existing.contains(&p.as_str()) {
                    continue;
                }
                format!("d {} {mode:04o} root root -", escape(p))
            }
            VarEntry::File(p) => format!(
                "C {} - - - - /usr/{FACTORY_VAR}/{}",
                escape(p),
                escape(p.trim_start_matches("/var/"))
            ),
            VarEntry::Link(p, target) => format!("L {} - - - - {}", escape(p), escape(target)),
        };
        lines.insert(path.to_string(), line);
    }
    if lines.is_empty() {
        return (String::new(), unusable);
    }
    let mut text = String::from(
        "# What the image's Debian packages ship under /var (written by tandem build).\n\
         # Files are copied from /usr/share/factory/var when missing.\n",
    );
    for line in lines.values() {
        text.push_str(line);
        text.push('\n');
    }
    (text, unusable)
}

/// Whether a path can stand unquoted in a tmpfiles.d line.
fn plain(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\'' && c != '\\')
}

/// `%` starts a specifier in tmpfiles.d; a literal one is `%%`.
fn escape(p: &str) -> String {
    p.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_entries_become_tmpfiles_lines() {
        let entries = [
            VarEntry::Dir("/var/lib".into(), 0o755),
            VarEntry::Dir("/var/lib/x".into(), 0o2775),
            VarEntry::File("/var/lib/x/state".into()),
            VarEntry::Link("/var/lib/x/run".into(), "/run/x".into()),
            VarEntry::Dir("/var/lib/x".into(), 0o700),
            VarEntry::File("/var/lib/x/50%".into()),
            VarEntry::File("/var/lib/x/with space".into()),
        ];
        let (text, unusable) = render(&entries, &["/var", "/var/lib"]);
        assert_eq!(
            text,
            "# What the image's Debian packages ship under /var (written by tandem build).\n\
             # Files are copied from /usr/share/factory/var when missing.\n\
             d /var/lib/x 2775 root root -\n\
             C /var/lib/x/50%% - - - - /usr/share/factory/var/lib/x/50%%\n\
             L /var/lib/x/run - - - - /run/x\n\
             C /var/lib/x/state - - - - /usr/share/factory/var/lib/x/state\n"
        );
        assert_eq!(unusable, ["/var/lib/x/with space"]);
        assert_eq!(render(&[], &[]).0, "");
    }
}
