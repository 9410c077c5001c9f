//! Kernel settings at every boot: the image's and packages'
//! `/usr/lib/sysctl.d/*.conf`, `/run/sysctl.d`, the administrator's
//! `/etc/sysctl.d` (a file there replaces the one of the same name) and
//! `/etc/sysctl.conf` last, written to `/proc/sys` after the system's
//! modules are loaded (so their settings exist) and before the network and
//! the services start. The syntax is in [`tandem_contract::sysctl`].
//!
//! A later setting of a key wins; a glob (`net.ipv4.conf.*.rp_filter`)
//! sets every matching key not set by name anywhere. A failed write is one
//! warning naming the file and line, unless the key starts with `-`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use tandem_contract::sysctl::{self, ADMIN_DIR, ADMIN_FILE, IMAGE_DIR, RUN_DIR, Setting};

use super::tmpfiles::{expand, has_glob};
use super::users::{merged_conf_files, under};
use crate::error::Error;

/// A setting and where it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The setting.
    pub setting: Setting,
    /// The file, as shown on the node.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl Entry {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::ConfigLine {
            path: self.file.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }
}

/// Every setting under `root` (`/` on a node), the last of each key only,
/// in the order read.
pub fn read_config(root: &Path) -> (Vec<Entry>, Vec<Error>) {
    let (mut files, mut errors) = merged_conf_files(root, &[IMAGE_DIR, RUN_DIR, ADMIN_DIR]);
    let classic = under(root, ADMIN_FILE);
    if classic.exists() {
        files.push((classic, ADMIN_FILE.into()));
    }
    let mut entries: Vec<Entry> = Vec::new();
    for (real, shown) in files {
        let text = match std::fs::read_to_string(&real) {
            Ok(t) => t,
            Err(err) => {
                errors.push(Error::Read { path: shown, err });
                continue;
            }
        };
        let (settings, bad) = sysctl::parse(&text);
        errors.extend(bad.into_iter().map(|e| Error::ConfigLine {
            path: shown.clone(),
            line: e.line,
            reason: e.reason,
        }));
        entries.extend(settings.into_iter().map(|(line, setting)| Entry {
            setting,
            file: shown.clone(),
            line,
        }));
    }
    // The last setting of a key wins, in its own place in the order.
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        last.insert(&e.setting.key, i);
    }
    let keep: HashSet<usize> = last.into_values().collect();
    let entries = entries
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, e)| e)
        .collect();
    (entries, errors)
}

/// Writes the settings below `proc_sys` (`/proc/sys` on a node). Returns how
/// many keys were written and the failures.
pub fn apply(proc_sys: &Path, entries: &[Entry]) -> (usize, Vec<Error>) {
    let named: HashSet<&str> = entries
        .iter()
        .map(|e| e.setting.key.as_str())
        .filter(|k| !has_glob(k))
        .collect();
    let mut written = 0;
    let mut errors = Vec::new();
    for e in entries {
        let s = &e.setting;
        let paths = if has_glob(&s.key) {
            expand(proc_sys, &s.key)
                .into_iter()
                .filter(|p| {
                    p.strip_prefix(proc_sys)
                        .is_ok_and(|rel| !named.contains(rel.to_string_lossy().as_ref()))
                })
                .collect()
        } else {
            vec![proc_sys.join(&s.key)]
        };
        for path in paths {
            // procfs takes the whole value in one write, newline or not.
            match std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| {
                    std::io::Write::write_all(&mut f, format!("{}\n", s.value).as_bytes())
                }) {
                Ok(()) => written += 1,
                Err(_) if s.ignore_failure => {}
                Err(err) => errors.push(e.error(format!(
                    "setting {} to {:?} failed: {err}",
                    path.strip_prefix(proc_sys).unwrap_or(&path).display(),
                    s.value
                ))),
            }
        }
    }
    (written, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, text: &str) {
        let p = under(root, path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(root: &Path, key: &str) -> String {
        std::fs::read_to_string(root.join(key)).unwrap()
    }

    #[test]
    fn files_in_order_etc_replaces_by_name_and_the_last_setting_wins() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "/usr/lib/sysctl.d/10-a.conf",
            "vm.swappiness = 10\nkernel.pid_max = 4096\n",
        );
        write(
            r,
            "/usr/lib/sysctl.d/50-tandem-image.conf",
            "net.ipv4.ip_forward = 1\n",
        );
        write(r, "/usr/lib/sysctl.d/60-off.conf", "kernel.panic = 99\n");
        write(r, "/etc/sysctl.d/20-b.conf", "vm.swappiness = 20\nbroken\n");
        write(
            r,
            "/etc/sysctl.d/50-tandem-image.conf",
            "net.ipv4.ip_forward = 0\n",
        );
        write(r, "/etc/sysctl.conf", "kernel.pid_max = 8192\n");
        std::os::unix::fs::symlink("/dev/null", under(r, "/etc/sysctl.d/60-off.conf")).unwrap();
        let (entries, errors) = read_config(r);
        let got: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.setting.key.as_str(),
                    e.setting.value.as_str(),
                    e.file.display().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("vm/swappiness", "20", "/etc/sysctl.d/20-b.conf".into()),
                (
                    "net/ipv4/ip_forward",
                    "0",
                    "/etc/sysctl.d/50-tandem-image.conf".into()
                ),
                ("kernel/pid_max", "8192", "/etc/sysctl.conf".to_string()),
            ]
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "/etc/sysctl.d/20-b.conf:2: not `key = value`"
        );
    }

    #[test]
    fn settings_are_written_globs_spare_named_keys_and_failures_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let proc_sys = dir.path();
        for key in [
            "net/ipv4/ip_forward",
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/eth0/rp_filter",
            "net/ipv4/conf/lo/rp_filter",
        ] {
            write(proc_sys, key, "0\n");
        }
        let entry = |key: &str, value: &str, ignore_failure: bool, line: usize| Entry {
            setting: Setting {
                key: key.into(),
                value: value.into(),
                ignore_failure,
            },
            file: "/usr/lib/sysctl.d/x.conf".into(),
            line,
        };
        let entries = [
            entry("net/ipv4/ip_forward", "1", false, 1),
            entry("net/ipv4/conf/*/rp_filter", "2", false, 2),
            entry("net/ipv4/conf/lo/rp_filter", "0", false, 3),
            entry("kernel/not_here", "1", false, 4),
            entry("kernel/not_here_either", "1", true, 5),
        ];
        let (written, errors) = apply(proc_sys, &entries);
        assert_eq!(written, 4);
        assert_eq!(read(proc_sys, "net/ipv4/ip_forward"), "1\n");
        assert_eq!(read(proc_sys, "net/ipv4/conf/all/rp_filter"), "2\n");
        assert_eq!(read(proc_sys, "net/ipv4/conf/eth0/rp_filter"), "2\n");
        assert_eq!(read(proc_sys, "net/ipv4/conf/lo/rp_filter"), "0\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let msg = errors[0].to_string();
        assert!(
            msg.starts_with("/usr/lib/sysctl.d/x.conf:4: setting kernel/not_here to \"1\" failed:"),
            "{msg}"
        );
    }
}
