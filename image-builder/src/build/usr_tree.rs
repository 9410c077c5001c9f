//! Assembling the /usr tree on the build host: unpacked packages merged into
//! /usr (Debian's `bin`, `sbin`, `lib*` folded in as on merged-/usr systems),
//! kernel modules, Tandem's node binaries, files from the definition,
//! os-release and the update trust root.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::build::definition::FileEntry;
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

/// Copies an unpacked package's files into the /usr tree. Top-level
/// directories that cannot live in /usr (var, opt, boot, …) are skipped and
/// reported in `notes`.
pub fn merge_package(pkg: &str, root: &Path, usr: &Path, notes: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(root).io("read unpacked package", root)?;
    let mut tops: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    tops.sort();
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
            None => notes.push(format!(
                "{pkg}: skipped /{name} (only /usr and /etc defaults go into the image)"
            )),
        }
    }
    Ok(())
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
            "etc/x.conf",
            "var/lib/x/state",
        ] {
            let p = pkg.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, f).expect("write");
        }
        std::fs::create_dir_all(usr.join("share/doc")).expect("mkdir");
        let mut notes = Vec::new();
        merge_package("x", &pkg, &usr, &mut notes).expect("merge");
        assert!(usr.join("bin/busybox").is_file());
        assert!(usr.join("share/doc/x/copyright").is_file());
        assert!(usr.join("share/factory/etc/x.conf").is_file());
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("/var"));
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
