//! The factory /etc: the packages' and the image's `/etc` files, kept in
//! /usr at [`FACTORY_ETC`], are copied to the node's `/etc` where missing.
//! Nothing that exists is overwritten or touched, whatever its type: an
//! administrator's edit, deletion-by-replacement or link wins. (A file an
//! administrator deletes comes back at the next boot; to keep a package's
//! file out, replace it with an empty file or a link.)
//!
//! What is missing, and so what is made, is the contract's rule
//! ([`etc::plan_copy`]), which the image builder also carries out on the
//! ROOT it makes: a node's first boot finds nothing missing. This module
//! carries it out on the node, for a ROOT that lacks parts (a wiped ROOT,
//! a new /usr's new factory file).
//!
//! Cheap when nothing is missing: the walk reads each directory of both
//! trees once (`getdents`, whose entry types say what is a directory) and
//! looks at no file. New files are written under a temporary name, synced
//! to disk together (one `syncfs`), then renamed into place, so a crash
//! leaves each file either complete or missing (and copied at the next
//! boot); directories and links are created in place.
//!
//! [`copy_missing`] is also what `tmpfiles.d`'s `C` lines use.

use std::ffi::{OsStr, OsString};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tandem_contract::etc::{self, DirTree, EntryKind, Side};

use crate::error::Error;

/// Where the image keeps the factory /etc.
pub use tandem_contract::etc::FACTORY_ETC;

/// What a copy created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Regular files.
    pub files: usize,
    /// Symbolic links.
    pub links: usize,
    /// Directories.
    pub dirs: usize,
}

impl Copied {
    /// Whether nothing was created.
    pub fn is_empty(&self) -> bool {
        *self == Copied::default()
    }
}

/// Copies the missing parts of the factory /etc of `root` into its /etc
/// (`root` is `/` on a node).
pub fn populate_etc(root: &Path) -> (Copied, Vec<Error>) {
    let src = root.join(FACTORY_ETC.trim_start_matches('/'));
    if !src.is_dir() {
        return (Copied::default(), Vec::new());
    }
    copy_missing(&src, &root.join("etc"))
}

/// Copies what of `src` (a file, link or directory tree) is missing at
/// `dst`, descending into directories that exist on both sides and never
/// replacing anything: the contract's rule ([`etc::plan_copy`]), carried
/// out on disk. Modes are kept; the owner is the caller (root).
pub fn copy_missing(src: &Path, dst: &Path) -> (Copied, Vec<Error>) {
    let (src_tree, dst_tree) = (DirTree(src), DirTree(dst));
    let plan = etc::plan_copy(&src_tree, &dst_tree);
    let mut job = Job::default();
    for e in plan.errors {
        let tree = match e.side {
            Side::Factory => src_tree,
            Side::Target => dst_tree,
        };
        job.read_err(&tree.at(&e.path), e.error);
    }
    // A directory that could not be made: nothing under it is tried.
    let mut failed: Option<PathBuf> = None;
    for c in plan.create {
        if failed.as_ref().is_some_and(|f| c.path.starts_with(f)) {
            continue;
        }
        if !job.create(&src_tree.at(&c.path), &dst_tree.at(&c.path), c.kind)
            && c.kind == EntryKind::Dir
        {
            failed = Some(c.path);
        }
    }
    for rel in plan.unsupported {
        job.errors.push(Error::Write {
            path: dst_tree.at(&rel),
            err: std::io::Error::other(format!(
                "{} is neither a file, a directory nor a link: not copied",
                src_tree.at(&rel).display()
            )),
        });
    }
    job.finish(dst);
    (job.copied, job.errors)
}

#[derive(Default)]
struct Job {
    copied: Copied,
    errors: Vec<Error>,
    /// Files written under a temporary name: (temporary, final).
    pending: Vec<(PathBuf, PathBuf)>,
}

/// The temporary name of a file on its way to `name`.
fn temporary(dst: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(dst.file_name().unwrap_or(OsStr::new("file")));
    name.push(".tandem-new");
    dst.with_file_name(name)
}

impl Job {
    fn read_err(&mut self, path: &Path, err: std::io::Error) {
        self.errors.push(Error::Read {
            path: path.into(),
            err,
        });
    }

    fn write_err(&mut self, path: &Path, err: std::io::Error) {
        self.errors.push(Error::Write {
            path: path.into(),
            err,
        });
    }

    /// `dst` does not exist: make it like `src` (a directory without its
    /// entries, which the plan lists after it). Returns whether it was
    /// made (a file: staged).
    fn create(&mut self, src: &Path, dst: &Path, kind: EntryKind) -> bool {
        match kind {
            EntryKind::Symlink => {
                let target = match std::fs::read_link(src) {
                    Ok(t) => t,
                    Err(err) => {
                        self.read_err(src, err);
                        return false;
                    }
                };
                match std::os::unix::fs::symlink(&target, dst) {
                    Ok(()) => self.copied.links += 1,
                    Err(err) => {
                        self.write_err(dst, err);
                        return false;
                    }
                }
            }
            EntryKind::Dir => {
                let mode = match std::fs::symlink_metadata(src) {
                    Ok(m) => m.permissions().mode() & 0o7777,
                    Err(err) => {
                        self.read_err(src, err);
                        return false;
                    }
                };
                let made = std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dst)
                    .and_then(|()| std::fs::set_permissions(dst, PermissionsExt::from_mode(mode)));
                if let Err(err) = made {
                    self.write_err(dst, err);
                    return false;
                }
                self.copied.dirs += 1;
            }
            EntryKind::File => {
                let tmp = temporary(dst);
                // std::fs::copy keeps the permission bits (set on the open file).
                match std::fs::copy(src, &tmp) {
                    Ok(_) => self.pending.push((tmp, dst.to_path_buf())),
                    Err(err) => {
                        let _ = std::fs::remove_file(&tmp);
                        self.write_err(dst, err);
                        return false;
                    }
                }
            }
            // The plan lists these apart.
            EntryKind::Other => return false,
        }
        true
    }

    /// Makes the new files durable together, then gives them their names.
    fn finish(&mut self, dst: &Path) {
        if self.pending.is_empty() {
            return;
        }
        let anchor = if dst.is_dir() {
            dst
        } else {
            dst.parent().unwrap_or(Path::new("/"))
        };
        match std::fs::File::open(anchor) {
            // SAFETY: syncfs on a descriptor we own.
            Ok(f) => {
                if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                    self.write_err(anchor, std::io::Error::last_os_error());
                }
            }
            Err(err) => self.read_err(anchor, err),
        }
        for (tmp, name) in std::mem::take(&mut self.pending) {
            match std::fs::rename(&tmp, &name) {
                Ok(()) => self.copied.files += 1,
                Err(err) => {
                    let _ = std::fs::remove_file(&tmp);
                    self.write_err(&name, err);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).expect("chmod");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    }

    fn factory(root: &Path) -> PathBuf {
        root.join(FACTORY_ETC.trim_start_matches('/'))
    }

    #[test]
    fn missing_things_are_copied_with_their_modes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let f = factory(root);
        write(&f.join("ssh/sshd_config"), "Port 22\n", 0o644);
        write(&f.join("sudoers"), "root ALL\n", 0o440);
        write(&f.join("security/limits.d/x.conf"), "", 0o600);
        std::fs::create_dir_all(f.join("empty.d")).expect("mkdir");
        std::fs::set_permissions(f.join("empty.d"), PermissionsExt::from_mode(0o750))
            .expect("chmod");
        symlink("../proc/self/mounts", f.join("mtab")).expect("link");
        symlink("ssh/sshd_config", f.join("dangling-ok")).expect("link");
        let (copied, errors) = populate_etc(root);
        assert!(errors.is_empty(), "{errors:?}");
        // etc itself (an emptied ROOT), ssh, security, limits.d, empty.d.
        assert_eq!(
            copied,
            Copied {
                files: 3,
                links: 2,
                dirs: 5
            }
        );
        let etc = root.join("etc");
        assert_eq!(
            std::fs::read_to_string(etc.join("ssh/sshd_config")).expect("read"),
            "Port 22\n"
        );
        assert_eq!(mode(&etc.join("sudoers")), 0o440);
        assert_eq!(mode(&etc.join("security/limits.d/x.conf")), 0o600);
        assert_eq!(mode(&etc.join("empty.d")), 0o750);
        assert_eq!(
            std::fs::read_link(etc.join("mtab")).expect("link"),
            Path::new("../proc/self/mounts")
        );
        // No temporary files left.
        let names: Vec<String> = std::fs::read_dir(etc.join("ssh"))
            .expect("ls")
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, ["sshd_config"]);
        // Twice: nothing to do.
        let (again, errors) = populate_etc(root);
        assert!(
            errors.is_empty() && again.is_empty(),
            "{again:?} {errors:?}"
        );
    }

    #[test]
    fn what_exists_is_never_touched() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let f = factory(root);
        write(&f.join("ssh/sshd_config"), "factory\n", 0o644);
        write(&f.join("ssh/moduli"), "factory\n", 0o644);
        write(&f.join("default/x"), "factory\n", 0o644);
        write(&f.join("linked.d/a"), "factory\n", 0o644);
        write(&f.join("hosts"), "factory\n", 0o644);
        let etc = root.join("etc");
        // The administrator's file, mode, a file where a directory was,
        // a link where a directory was, a link where a file was.
        write(&etc.join("ssh/sshd_config"), "mine\n", 0o600);
        write(&etc.join("default"), "a file\n", 0o644);
        std::fs::create_dir_all(root.join("elsewhere")).expect("mkdir");
        symlink("../elsewhere", etc.join("linked.d")).expect("link");
        symlink("/dev/null", etc.join("hosts")).expect("link");
        let (copied, errors) = populate_etc(root);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            copied,
            Copied {
                files: 1,
                links: 0,
                dirs: 0
            },
            "only ssh/moduli"
        );
        assert_eq!(
            std::fs::read_to_string(etc.join("ssh/sshd_config")).expect("read"),
            "mine\n"
        );
        assert_eq!(mode(&etc.join("ssh/sshd_config")), 0o600);
        assert_eq!(
            std::fs::read_to_string(etc.join("default")).expect("read"),
            "a file\n"
        );
        assert!(!root.join("elsewhere/a").exists(), "links are not followed");
        assert!(
            std::fs::symlink_metadata(etc.join("hosts"))
                .expect("stat")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_stale_temporary_file_is_reused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        write(&factory(root).join("a.conf"), "new\n", 0o644);
        write(&root.join("etc/.a.conf.tandem-new"), "half", 0o644);
        let (copied, errors) = populate_etc(root);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(copied.files, 1);
        assert_eq!(
            std::fs::read_to_string(root.join("etc/a.conf")).expect("read"),
            "new\n"
        );
        assert!(!root.join("etc/.a.conf.tandem-new").exists());
    }

    #[test]
    fn no_factory_nothing_to_do() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (copied, errors) = populate_etc(tmp.path());
        assert!(copied.is_empty() && errors.is_empty());
        assert!(!tmp.path().join("etc").exists());
    }

    #[test]
    fn a_single_file_or_a_tree_to_a_new_place() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        write(&src.join("d/f"), "x", 0o644);
        let (copied, errors) = copy_missing(&src, &tmp.path().join("new"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            copied,
            Copied {
                files: 1,
                links: 0,
                dirs: 2
            }
        );
        assert!(tmp.path().join("new/d/f").is_file());
        let (copied, _) = copy_missing(&src.join("d/f"), &tmp.path().join("one"));
        assert_eq!(copied.files, 1);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("one")).expect("read"),
            "x"
        );
    }
}
