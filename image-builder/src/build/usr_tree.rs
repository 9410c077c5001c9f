//! Assembling the /usr tree on the build host: unpacked packages merged into
//! /usr (Debian's `bin`, `sbin`, `lib*` folded in as on merged-/usr systems),
//! kernel modules, Tandem's node binaries, files from the definition,
//! os-release and the update trust root.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::build::definition::FileEntry;
use crate::build::maintscripts::Alternative;
use crate::build::manifest::{NoteKind, PackageNote};
use crate::error::{Error, IoContext, Result};

/// Where a package's top-level directory lands inside /usr, if anywhere.
fn usr_destination(top: &str) -> Option<PathBuf> {
    match top {
        "usr" => Some(PathBuf::new()),
        "bin" | "sbin" | "lib" | "lib32" | "lib64" | "libx32" => Some(PathBuf::from(top)),
        // Package defaults for /etc are kept as factory copies; /etc itself
        // lives on ROOT and belongs to the node.
        "etc" => Some(PathBuf::from("share/factory/etc")),
        _ => None,
    }
}

/// What a package ships outside /usr and /etc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outside {
    /// Entries under /var, declared for boot time (see [`crate::build::tmpfiles`]);
    /// files among them are copied to /usr/share/factory/var.
    pub var: Vec<VarEntry>,
    /// Other top-level directories (`opt`, `srv`, `boot`, …) and how many
    /// files and links each holds: not in the image.
    pub skipped: Vec<(String, usize)>,
}

/// Something a package ships under /var.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum VarEntry {
    /// A directory and its permission bits.
    Dir(String, u32),
    /// A file, copied to /usr/share/factory + its path.
    File(String),
    /// A symbolic link and its target.
    Link(String, String),
}

impl VarEntry {
    /// The path under /var.
    pub fn path(&self) -> &str {
        match self {
            VarEntry::Dir(p, _) | VarEntry::File(p) | VarEntry::Link(p, _) => p,
        }
    }
}

/// Where /var files wait in /usr for boot time.
pub const FACTORY_VAR: &str = "share/factory/var";

/// Copies an unpacked package's files into the /usr tree: /usr and the
/// merged-/usr directories into /usr, /etc defaults to
/// /usr/share/factory/etc, /var files to /usr/share/factory/var (declared
/// in what it returns). Other top-level directories (opt, srv, boot, …)
/// are left out and returned.
pub fn merge_package(
    pkg: &str,
    root: &Path,
    usr: &Path,
    notes: &mut Vec<String>,
) -> Result<Outside> {
    let entries = std::fs::read_dir(root).io("read unpacked package", root)?;
    let mut tops: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    tops.sort();
    let mut outside = Outside::default();
    for top in tops {
        let name = top
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match usr_destination(&name) {
            Some(rel) => {
                let dst = usr.join(&rel);
                merge(&top, &dst, notes)?;
                if name == "etc" {
                    drop_node_secrets(pkg, &dst, notes)?;
                }
            }
            None if name == "var" => {
                merge_var(&top, "/var", usr, &mut outside.var)?;
            }
            None => outside.skipped.push((name, count_entries(&top))),
        }
    }
    Ok(outside)
}

/// Copies the files under `dir` (the package's `var/`) into
/// /usr/share/factory/var and lists every entry, parents first.
fn merge_var(dir: &Path, at: &str, usr: &Path, out: &mut Vec<VarEntry>) -> Result<()> {
    let entries = std::fs::read_dir(dir).io("read", dir)?;
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let Some(name) = child.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let path = format!("{at}/{name}");
        let meta = std::fs::symlink_metadata(&child).io("stat", &child)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&child).io("read link", &child)?;
            out.push(VarEntry::Link(path, target.to_string_lossy().into_owned()));
        } else if meta.is_dir() {
            out.push(VarEntry::Dir(
                path.clone(),
                meta.permissions().mode() & 0o7777,
            ));
            merge_var(&child, &path, usr, out)?;
        } else {
            let rel = path.trim_start_matches("/var/");
            let dst = usr.join(FACTORY_VAR).join(rel);
            if let Some(parent) = dst.parent() {
                mkdirs(parent)?;
            }
            copy_tree(&child, &dst)?;
            out.push(VarEntry::File(path));
        }
    }
    Ok(())
}

/// Files and links in a tree (directories not counted).
fn count_entries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 1;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => count_entries(&p),
                _ => 1,
            }
        })
        .sum()
}

/// Whether the unpacked package ships a sysusers.d file (its users and
/// groups are then declared for boot time, whatever its scripts do).
pub fn ships_sysusers(root: &Path) -> bool {
    ["usr/lib/sysusers.d", "lib/sysusers.d"].iter().any(|d| {
        std::fs::read_dir(root.join(d)).is_ok_and(|mut it| {
            it.any(|e| {
                e.ok()
                    .is_some_and(|e| e.path().extension().is_some_and(|x| x == "conf"))
            })
        })
    })
}

/// Where an absolute path of a Debian system lands in the /usr tree
/// (`/bin/x` and `/usr/bin/x` → `bin/x`), if it lands there at all.
pub fn in_usr(path: &str) -> Option<PathBuf> {
    let rel = path.strip_prefix('/')?;
    if rel.split('/').any(|c| c == ".." || c == ".") {
        return None;
    }
    let (top, rest) = rel.split_once('/').unwrap_or((rel, ""));
    match usr_destination(top) {
        Some(base) if !rest.is_empty() => Some(base.join(rest)),
        _ => None,
    }
}

/// Sets up alternatives (`update-alternatives --install` in maintainer
/// scripts) in /usr directly: for each name, of the alternatives whose path
/// is in the image, the highest priority wins (equal priorities: the
/// smaller path), and its link and slave links point straight at it (no
/// /etc/alternatives: /usr is read-only and the choice is the image's).
/// `alternatives` are (package, alternative). Returns how many names were
/// set up, and a note for each that could not be.
pub fn apply_alternatives(
    usr: &Path,
    alternatives: &[(String, Alternative)],
) -> Result<(usize, Vec<PackageNote>)> {
    let exists =
        |p: &str| in_usr(p).is_some_and(|rel| std::fs::symlink_metadata(usr.join(rel)).is_ok());
    let mut names: Vec<&str> = alternatives.iter().map(|(_, a)| a.name.as_str()).collect();
    names.sort();
    names.dedup();
    let mut notes = Vec::new();
    let mut done = 0;
    for name in names {
        let mut candidates: Vec<&(String, Alternative)> = alternatives
            .iter()
            .filter(|(_, a)| a.name == name)
            .collect();
        candidates.sort_by(|(_, a), (_, b)| b.priority.cmp(&a.priority).then(a.path.cmp(&b.path)));
        let Some((pkg, alt)) = candidates.iter().find(|(_, a)| exists(&a.path)).copied() else {
            if let Some((pkg, alt)) = candidates.first() {
                notes.push(alternative_note(
                    pkg,
                    format!(
                        "alternative `{name}`: {} is not in the image, so {} is not linked: provide {} with [[usr.files]] if it is needed",
                        alt.path, alt.link, alt.link
                    ),
                ));
            }
            continue;
        };
        let link = match in_usr(&alt.link) {
            Some(rel) if !alt.link.starts_with("/etc/") => rel,
            _ => {
                notes.push(alternative_note(
                    pkg,
                    format!(
                        "alternative `{name}` links {} outside /usr, which the build does not write: provide {} → {} yourself if it is needed",
                        alt.link, alt.link, alt.path
                    ),
                ));
                continue;
            }
        };
        if std::fs::symlink_metadata(usr.join(&link)).is_ok() {
            notes.push(alternative_note(
                pkg,
                format!(
                    "alternative `{name}`: {} is already a file of the image, kept as it is (not linked to {})",
                    alt.link, alt.path
                ),
            ));
            continue;
        }
        link_to(usr, &link, &alt.path)?;
        for (slave_link, _, slave_path) in &alt.slaves {
            if let Some(rel) = in_usr(slave_link).filter(|_| !slave_link.starts_with("/etc/"))
                && exists(slave_path)
                && std::fs::symlink_metadata(usr.join(&rel)).is_err()
            {
                link_to(usr, &rel, slave_path)?;
            }
        }
        done += 1;
    }
    Ok((done, notes))
}

fn link_to(usr: &Path, link: &Path, target: &str) -> Result<()> {
    let target = in_usr(target).map_or_else(
        || target.to_string(),
        |rel| format!("/usr/{}", rel.display()),
    );
    let dst = usr.join(link);
    if let Some(parent) = dst.parent() {
        mkdirs(parent)?;
    }
    symlink(target, &dst).io("create link", &dst)
}

fn alternative_note(package: &str, message: String) -> PackageNote {
    PackageNote {
        package: package.to_string(),
        kind: NoteKind::Alternative,
        message,
    }
}

/// Removes what a package put in the factory /etc that is a per-node
/// secret or identity (SSH host keys, the machine id): every node would
/// share it. Nodes make their own at first boot.
pub fn drop_node_secrets(pkg: &str, factory_etc: &Path, notes: &mut Vec<String>) -> Result<()> {
    let mut found = Vec::new();
    for dir in ["", "ssh"] {
        let Ok(entries) = std::fs::read_dir(factory_etc.join(dir)) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let rel = Path::new(dir).join(e.file_name());
            if tandem_contract::etc::node_secret(&rel.to_string_lossy()) {
                found.push(rel);
            }
        }
    }
    found.sort();
    for rel in found {
        let p = factory_etc.join(&rel);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&p).io("remove", &p)?;
        } else {
            std::fs::remove_file(&p).io("remove", &p)?;
        }
        notes.push(format!(
            "{pkg}: dropped /etc/{} (a per-node secret or identity: nodes make their own at first boot)",
            rel.display()
        ));
    }
    Ok(())
}

/// Copies `src` to `dst`, merging directories; a file that already exists
/// is replaced (the later package wins) and noted. Always copies, never
/// hard-links into the cache: link counts end up in the file system image,
/// and they would depend on what else links the cache at the time.
pub fn merge(src: &Path, dst: &Path, notes: &mut Vec<String>) -> Result<()> {
    let src_meta = std::fs::symlink_metadata(src).io("stat", src)?;
    match std::fs::symlink_metadata(dst) {
        Err(_) => {
            if let Some(parent) = dst.parent() {
                mkdirs(parent)?;
            }
            copy_tree(src, dst)
        }
        Ok(dst_meta) if src_meta.is_dir() && dst_meta.is_dir() => {
            let entries = std::fs::read_dir(src).io("read", src)?;
            let mut children: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            for child in children {
                if let Some(name) = child.file_name() {
                    merge(&child, &dst.join(name), notes)?;
                }
            }
            Ok(())
        }
        Ok(dst_meta) => {
            if dst_meta.is_dir() {
                std::fs::remove_dir_all(dst).io("replace", dst)?;
            } else {
                std::fs::remove_file(dst).io("replace", dst)?;
            }
            notes.push(format!("{} replaced by a later package", dst.display()));
            copy_tree(src, dst)
        }
    }
}

/// Creates `dir` and missing parents with mode 0755 whatever the umask.
pub fn mkdirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdirs(parent)?;
    }
    std::fs::create_dir(dir).io("create directory", dir)?;
    set_mode(dir, 0o755)
}

/// Sets permission bits.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .io("set permissions of", path)
}

/// Copies a definition file entry (file or directory tree) to `dst`.
pub fn copy_entry(entry: &FileEntry, src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        mkdirs(parent)?;
    }
    copy_tree(src, dst)?;
    if let Some(mode) = entry.mode_bits() {
        set_mode(dst, mode)?;
    }
    Ok(())
}

/// Copies a file, symlink or directory tree, keeping permission bits.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(src).io("stat", src)?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).io("read link", src)?;
        let _ = std::fs::remove_file(dst);
        symlink(target, dst).io("create link", dst)
    } else if meta.is_dir() {
        if !dst.is_dir() {
            std::fs::create_dir(dst).io("create directory", dst)?;
        }
        set_mode(dst, meta.permissions().mode() & 0o7777)?;
        let entries = std::fs::read_dir(src).io("read", src)?;
        for e in entries.filter_map(|e| e.ok()) {
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
        Ok(())
    } else {
        let _ = std::fs::remove_file(dst);
        std::fs::copy(src, dst).io("copy to", dst)?;
        set_mode(dst, meta.permissions().mode() & 0o7777)
    }
}

/// Places a symlink at `link` (relative target), replacing nothing.
pub fn link_if_absent(link: &Path, target: &str) -> Result<()> {
    if std::fs::symlink_metadata(link).is_ok() {
        return Ok(());
    }
    if let Some(parent) = link.parent() {
        mkdirs(parent)?;
    }
    symlink(target, link).io("create link", link)
}

/// Links every applet of `/usr/bin/busybox` into /usr/bin or /usr/sbin.
/// The applet list comes from running the (static) binary on the build host.
pub fn busybox_applets(usr: &Path) -> Result<usize> {
    let busybox = usr.join("bin/busybox");
    if !busybox.is_file() {
        return Err(Error::DefinitionValue {
            path: PathBuf::new(),
            field: "usr.busybox-applets".into(),
            message: "no /usr/bin/busybox in the image: add busybox-static to usr.packages".into(),
        });
    }
    let out = std::process::Command::new(&busybox)
        .arg("--list-full")
        .output()
        .io("run", &busybox)?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut n = 0;
    for applet in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let rel = applet.strip_prefix("usr/").unwrap_or(applet);
        let (dir, name) = match rel.split_once('/') {
            Some(("bin", name)) => ("bin", name),
            Some(("sbin", name)) => ("sbin", name),
            _ => continue,
        };
        if name.contains('/') || name == "busybox" {
            continue;
        }
        let target = if dir == "bin" {
            "busybox"
        } else {
            "../bin/busybox"
        };
        link_if_absent(&usr.join(dir).join(name), target)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_mapping() {
        assert_eq!(usr_destination("usr"), Some(PathBuf::new()));
        assert_eq!(usr_destination("bin"), Some(PathBuf::from("bin")));
        assert_eq!(
            usr_destination("etc"),
            Some(PathBuf::from("share/factory/etc"))
        );
        assert_eq!(usr_destination("var"), None);
    }

    #[test]
    fn packages_merge_into_usr() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pkg = dir.path().join("pkg");
        let usr = dir.path().join("usr");
        for f in [
            "bin/busybox",
            "usr/share/doc/x/copyright",
            "usr/lib/sysusers.d/x.conf",
            "etc/x.conf",
            "var/lib/x/state",
            "opt/x/bin/x",
            "opt/x/lib/y",
        ] {
            let p = pkg.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        std::fs::create_dir_all(pkg.join("var/cache/x")).expect("mkdir");
        set_mode(&pkg.join("var/cache/x"), 0o2775).expect("chmod");
        symlink("../../run/x", pkg.join("var/lib/x/run")).expect("link");
        std::fs::create_dir_all(usr.join("share/doc")).expect("mkdir");
        let mut notes = Vec::new();
        let outside = merge_package("x", &pkg, &usr, &mut notes).expect("merge");
        assert!(usr.join("bin/busybox").is_file());
        assert!(usr.join("share/doc/x/copyright").is_file());
        assert!(usr.join("share/factory/etc/x.conf").is_file());
        assert!(usr.join("share/factory/var/lib/x/state").is_file());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(outside.skipped, [("opt".to_string(), 2)]);
        assert_eq!(
            outside.var,
            [
                VarEntry::Dir("/var/cache".into(), 0o755),
                VarEntry::Dir("/var/cache/x".into(), 0o2775),
                VarEntry::Dir("/var/lib".into(), 0o755),
                VarEntry::Dir("/var/lib/x".into(), 0o755),
                VarEntry::Link("/var/lib/x/run".into(), "../../run/x".into()),
                VarEntry::File("/var/lib/x/state".into()),
            ]
        );
        assert!(ships_sysusers(&pkg));
        assert!(!ships_sysusers(&usr.join("share")));
    }

    #[test]
    fn alternatives_link_the_highest_priority_present() {
        let dir = tempfile::tempdir().expect("tempdir");
        let usr = dir.path();
        for f in ["bin/mawk", "bin/gawk", "share/man/man1/mawk.1.gz", "bin/vi"] {
            let p = usr.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        let alt = |name: &str, link: &str, path: &str, priority: i64| Alternative {
            name: name.into(),
            link: link.into(),
            path: path.into(),
            priority,
            slaves: Vec::new(),
        };
        let mut mawk = alt("awk", "/usr/bin/awk", "/usr/bin/mawk", 5);
        mawk.slaves.push((
            "/usr/share/man/man1/awk.1.gz".into(),
            "awk.1.gz".into(),
            "/usr/share/man/man1/mawk.1.gz".into(),
        ));
        let alts = vec![
            (
                "original-awk".to_string(),
                alt("awk", "/usr/bin/awk", "/usr/bin/original-awk", 50),
            ),
            ("mawk".to_string(), mawk),
            (
                "gawk".to_string(),
                alt("awk", "/usr/bin/awk", "/usr/bin/gawk", 5),
            ),
            (
                "nano".to_string(),
                alt("editor", "/usr/bin/editor", "/bin/nano", 40),
            ),
            (
                "vim".to_string(),
                alt("vi", "/usr/bin/vi", "/usr/bin/mawk", 30),
            ),
            ("x".to_string(), alt("x", "/etc/x", "/usr/bin/mawk", 1)),
        ];
        let (done, notes) = apply_alternatives(usr, &alts).expect("apply");
        assert_eq!(done, 1);
        // Equal priorities: the smaller path (gawk) wins; original-awk is not there.
        assert_eq!(
            std::fs::read_link(usr.join("bin/awk")).expect("link"),
            PathBuf::from("/usr/bin/gawk")
        );
        assert!(std::fs::symlink_metadata(usr.join("share/man/man1/awk.1.gz")).is_err());
        let messages: Vec<&str> = notes.iter().map(|n| n.message.as_str()).collect();
        assert_eq!(notes.len(), 3, "{messages:?}");
        assert!(
            messages[0].contains("/bin/nano is not in the image"),
            "{messages:?}"
        );
        assert!(messages[1].contains("already a file"), "{messages:?}");
        assert!(messages[2].contains("/etc/x outside /usr"), "{messages:?}");
    }

    #[test]
    fn debian_paths_in_the_usr_tree() {
        assert_eq!(in_usr("/usr/bin/mawk"), Some(PathBuf::from("bin/mawk")));
        assert_eq!(in_usr("/bin/sh"), Some(PathBuf::from("bin/sh")));
        assert_eq!(in_usr("/etc/x"), Some(PathBuf::from("share/factory/etc/x")));
        assert_eq!(in_usr("/var/x"), None);
        assert_eq!(in_usr("/usr/../etc"), None);
        assert_eq!(in_usr("usr/bin/x"), None);
        assert_eq!(in_usr("/usr"), None);
    }

    #[test]
    fn host_keys_never_reach_the_factory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pkg = dir.path().join("pkg");
        let usr = dir.path().join("usr");
        for f in [
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_ed25519_key.pub",
            "etc/ssh/sshd_config",
            "etc/machine-id",
        ] {
            let p = pkg.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        let mut notes = Vec::new();
        merge_package("openssh-server", &pkg, &usr, &mut notes).expect("merge");
        let ssh = usr.join("share/factory/etc/ssh");
        assert!(ssh.join("sshd_config").is_file());
        assert!(!ssh.join("ssh_host_ed25519_key").exists());
        assert!(!ssh.join("ssh_host_ed25519_key.pub").exists());
        assert!(!usr.join("share/factory/etc/machine-id").exists());
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes
                .iter()
                .all(|n| n.starts_with("openssh-server: dropped /etc/")),
            "{notes:?}"
        );
    }
}
