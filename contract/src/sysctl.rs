//! Kernel settings (`sysctl.d`) in systemd's syntax: what an image declares
//! (its definition's `[kernel] sysctl` table, written by the image builder
//! to [`IMAGE_FILE`], and packages' files in [`IMAGE_DIR`]) and what the
//! administrator sets in [`ADMIN_DIR`] or [`ADMIN_FILE`], applied by the
//! system init at every boot, before the network and the services start.
//!
//! ```text
//! # comment
//! net.ipv4.ip_forward = 1
//! -net.ipv4.conf.*.rp_filter = 2     # `-`: a failure is not reported
//! kernel/yama/ptrace_scope = 1       # slashes work too
//! ```
//!
//! Files are read in file-name order across the directories; a file in
//! `/etc/sysctl.d` replaces the image's file of the same name (a link to
//! `/dev/null` turns it off); `/etc/sysctl.conf` comes last. A later
//! setting of the same key wins.

use crate::sysusers::LineError;

/// Packages' and the image's settings.
pub const IMAGE_DIR: &str = "/usr/lib/sysctl.d";
/// Settings made at run time by programs on the node.
pub const RUN_DIR: &str = "/run/sysctl.d";
/// The administrator's settings; a file here replaces the file of the same
/// name in [`IMAGE_DIR`] or [`RUN_DIR`].
pub const ADMIN_DIR: &str = "/etc/sysctl.d";
/// The administrator's classic single file, read after every directory.
pub const ADMIN_FILE: &str = "/etc/sysctl.conf";
/// The settings of the image definition's `[kernel] sysctl` table.
pub const IMAGE_FILE: &str = "/usr/lib/sysctl.d/50-tandem-image.conf";
/// Where the kernel exposes its settings.
pub const PROC_SYS: &str = "/proc/sys";

/// One setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key as a path below [`PROC_SYS`] (`net/ipv4/ip_forward`); may hold
    /// glob characters.
    pub key: String,
    /// The value written, without surrounding blanks.
    pub value: String,
    /// A leading `-`: failing to write it (a key this kernel lacks) is not
    /// reported.
    pub ignore_failure: bool,
}

/// The settings of a file with their 1-based line numbers, and the lines
/// that could not be read.
pub fn parse(text: &str) -> (Vec<(usize, Setting)>, Vec<LineError>) {
    let mut settings = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';']) {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            errors.push(LineError {
                line: line_no,
                reason: "not `key = value`".into(),
            });
            continue;
        };
        let (key, ignore_failure) = match key.trim().strip_prefix('-') {
            Some(k) => (k, true),
            None => (key.trim(), false),
        };
        match key_path(key) {
            Ok(key) => settings.push((
                line_no,
                Setting {
                    key,
                    value: value.trim().to_string(),
                    ignore_failure,
                },
            )),
            Err(reason) => errors.push(LineError {
                line: line_no,
                reason,
            }),
        }
    }
    (settings, errors)
}

/// A key as a path below [`PROC_SYS`]. As in sysctl(8): if the first
/// separator is a dot, dots separate and slashes stand for dots in a name
/// (`net.ipv4.conf.eth0/100.forwarding` is `net/ipv4/conf/eth0.100/forwarding`);
/// if it is a slash, the key is a path already.
pub fn key_path(key: &str) -> Result<String, String> {
    let key = key.trim_start_matches('/');
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if key.contains(char::is_whitespace) {
        return Err(format!("the key {key:?} holds a blank"));
    }
    let path: String = match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    };
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!("the key {key:?} is not a setting's name"));
    }
    Ok(path)
}

/// The text of [`IMAGE_FILE`] for the image definition's settings, in the
/// order given. Keys and values are checked: a key must be a setting's name
/// ([`key_path`]), a value one line.
pub fn render<'a>(
    settings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, String> {
    let mut out =
        String::from("# [kernel] sysctl of the image definition (written by tandem build)\n");
    for (key, value) in settings {
        key_path(key)?;
        if key.starts_with('-') {
            return Err(format!("the key {key:?} starts with `-`"));
        }
        if value.contains(['\n', '\r']) {
            return Err(format!("the value of {key} is more than one line"));
        }
        out.push_str(&format!("{key} = {}\n", value.trim()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_paths_as_sysctl_reads_them() {
        for (key, want) in [
            ("net.ipv4.ip_forward", "net/ipv4/ip_forward"),
            ("kernel/yama/ptrace_scope", "kernel/yama/ptrace_scope"),
            ("/kernel/pid_max", "kernel/pid_max"),
            (
                "net.ipv4.conf.eth0/100.forwarding",
                "net/ipv4/conf/eth0.100/forwarding",
            ),
            (
                "net/ipv4/conf/eth0.100/forwarding",
                "net/ipv4/conf/eth0.100/forwarding",
            ),
            ("net.ipv4.conf.*.rp_filter", "net/ipv4/conf/*/rp_filter"),
            ("vm", "vm"),
        ] {
            assert_eq!(key_path(key).as_deref(), Ok(want), "{key}");
        }
        for bad in [
            "",
            "/",
            "net..ipv4",
            "net.ipv4.",
            "a b",
            "net/../x",
            "../etc",
        ] {
            assert!(key_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn files_are_read_with_comments_failures_allowed_and_errors_by_line() {
        let text = "# c\n; c\n\nnet.ipv4.ip_forward = 1\n -vm.swappiness=10 \nkernel.domainname =\nno equals\n a b = 1\nnet.core.somaxconn = 4096 # not a comment\n";
        let (settings, errors) = parse(text);
        let got: Vec<_> = settings
            .iter()
            .map(|(n, s)| (*n, s.key.as_str(), s.value.as_str(), s.ignore_failure))
            .collect();
        assert_eq!(
            got,
            [
                (4, "net/ipv4/ip_forward", "1", false),
                (5, "vm/swappiness", "10", true),
                (6, "kernel/domainname", "", false),
                (9, "net/core/somaxconn", "4096 # not a comment", false),
            ]
        );
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [7, 8]);
    }

    #[test]
    fn the_image_file_is_what_parse_reads_back() {
        let text = render([
            ("net.ipv4.ip_forward", "1"),
            ("fs.inotify.max_user_instances", " 8192 "),
        ])
        .unwrap();
        let (settings, errors) = parse(&text);
        assert!(errors.is_empty());
        let got: Vec<_> = settings
            .iter()
            .map(|(_, s)| (s.key.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("net/ipv4/ip_forward", "1"),
                ("fs/inotify/max_user_instances", "8192")
            ]
        );
        assert!(render([("a b", "1")]).is_err());
        assert!(render([("-vm.swappiness", "1")]).is_err());
        assert!(render([("vm.swappiness", "1\nkernel.x = 2")]).is_err());
    }
}
