//! How a node's `/etc` is filled without maintainer scripts: the image
//! carries the packages' `/etc` files as factory copies, which the system
//! init copies into `/etc` when missing (never over anything there); users
//! and groups come from [`crate::sysusers`] and [`crate::accounts`];
//! directories, files and links outside `/etc` from `tmpfiles.d` lines.
//!
//! [`plan_copy`] is the factory copy's rule, carried out by the system init
//! at every boot and by the image builder on the ROOT it makes (so that a
//! node's first boot finds its `/etc` complete).
//!
//! Per-node secrets are never in the image: SSH host keys are made on the
//! node at first boot, the machine id by the system init.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The packages' `/etc` files, as the image builder places them; copied to
/// `/etc` at boot where missing.
pub const FACTORY_ETC: &str = "/usr/share/factory/etc";
/// Where [`FACTORY_ETC`] is copied to.
pub const ETC: &str = "/etc";
/// The image's `tmpfiles.d` lines (packages').
pub const TMPFILES_IMAGE_DIR: &str = "/usr/lib/tmpfiles.d";
/// The administrator's `tmpfiles.d` lines: a file here replaces the image's
/// file of the same name.
pub const TMPFILES_ADMIN_DIR: &str = "/etc/tmpfiles.d";
/// Per-user SSH keys of the image definition's users, one file per user
/// name (as factory copies under [`FACTORY_ETC`]): Tandem's sshd reads
/// `AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u`.
pub const AUTHORIZED_KEYS_DIR: &str = "/etc/ssh/authorized_keys.d";

/// Whether a path relative to `/etc` (`ssh/ssh_host_ed25519_key`) is a
/// per-node secret or identity that an image must not carry: SSH host keys
/// (`ssh/ssh_host_*`) and the machine id.
pub fn node_secret(relative: &str) -> bool {
    let rel = relative.trim_start_matches('/');
    rel == "machine-id"
        || rel
            .strip_prefix("ssh/")
            .is_some_and(|name| name.starts_with("ssh_host_") && !name.contains('/'))
}

/// What an entry of a tree is, as the factory copy sees it (links are
/// not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (a device, a socket, a FIFO): never copied.
    Other,
}

impl EntryKind {
    /// The kind of a file of that type.
    pub fn of(t: std::fs::FileType) -> EntryKind {
        if t.is_symlink() {
            EntryKind::Symlink
        } else if t.is_dir() {
            EntryKind::Dir
        } else if t.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        }
    }
}

/// A tree the factory copy reads ([`FACTORY_ETC`]) or fills ([`ETC`]),
/// seen through its listings: the node's file system for the system init,
/// the ROOT file system being made for the image builder.
pub trait Tree {
    /// Why a look failed.
    type Error;
    /// What is at `rel` (relative to the tree's top; empty for the top
    /// itself), `None` when nothing is.
    fn kind(&self, rel: &Path) -> Result<Option<EntryKind>, Self::Error>;
    /// The entries of the directory at `rel` (any order).
    fn list(&self, rel: &Path) -> Result<Vec<(OsString, EntryKind)>, Self::Error>;
}

/// A directory of the local file system as a [`Tree`] (the factory /etc
/// in /usr, a node's /etc): `kind` is `lstat`, `list` one `getdents` pass
/// whose entry types come with the names.
#[derive(Clone, Copy, Debug)]
pub struct DirTree<'a>(pub &'a Path);

impl DirTree<'_> {
    /// `rel` (empty: the top itself) under the tree's top.
    pub fn at(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.0.to_path_buf()
        } else {
            self.0.join(rel)
        }
    }
}

impl Tree for DirTree<'_> {
    type Error = std::io::Error;

    fn kind(&self, rel: &Path) -> std::io::Result<Option<EntryKind>> {
        match std::fs::symlink_metadata(self.at(rel)) {
            Ok(m) => Ok(Some(EntryKind::of(m.file_type()))),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn list(&self, rel: &Path) -> std::io::Result<Vec<(OsString, EntryKind)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.at(rel))? {
            let entry = entry?;
            out.push((entry.file_name(), EntryKind::of(entry.file_type()?)));
        }
        Ok(out)
    }
}

/// One thing the factory copy creates: `path` relative to the top of both
/// trees (empty: the top itself), made like the factory's entry there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Create {
    /// Where, relative to the tops.
    pub path: PathBuf,
    /// What the factory has there (never [`EntryKind::Other`]).
    pub kind: EntryKind,
}

/// Which tree a look failed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The factory (source).
    Factory,
    /// The tree being filled.
    Target,
}

/// A look at a tree that failed; the planning went on without what it hid.
#[derive(Debug, PartialEq, Eq)]
pub struct LookError<E> {
    /// The tree.
    pub side: Side,
    /// Where, relative to the tops.
    pub path: PathBuf,
    /// Why.
    pub error: E,
}

/// What the factory copy of one tree into another does
/// ([`plan_copy`]).
#[derive(Debug, PartialEq, Eq)]
pub struct CopyPlan<E> {
    /// What to create, parents before children, names in byte order.
    pub create: Vec<Create>,
    /// Factory entries that are neither files, directories nor links:
    /// not copied.
    pub unsupported: Vec<PathBuf>,
    /// Looks that failed.
    pub errors: Vec<LookError<E>>,
}

/// The factory copy's rule, defined once: what of `factory` is missing in
/// `target`, descending into directories that both have and never
/// replacing anything there, whatever its type (an administrator's edit,
/// deletion-by-replacement or link wins). A missing directory is created
/// with everything under it. Modes are the factory's; owners are root.
///
/// Pure over the two [`Tree`]s: the system init carries the plan out on
/// the node at every boot, the image builder on the ROOT it makes, so
/// that a node's first boot finds nothing missing.
pub fn plan_copy<E>(factory: &impl Tree<Error = E>, target: &impl Tree<Error = E>) -> CopyPlan<E> {
    let mut plan = CopyPlan {
        create: Vec::new(),
        unsupported: Vec::new(),
        errors: Vec::new(),
    };
    let top = Path::new("");
    match target.kind(top) {
        Ok(Some(EntryKind::Dir)) => merge(factory, target, top, &mut plan),
        Ok(Some(_)) => {}
        Ok(None) => match factory.kind(top) {
            Ok(Some(kind)) => create(factory, top, kind, &mut plan),
            Ok(None) => {}
            Err(error) => plan.errors.push(LookError {
                side: Side::Factory,
                path: top.into(),
                error,
            }),
        },
        Err(error) => plan.errors.push(LookError {
            side: Side::Target,
            path: top.into(),
            error,
        }),
    }
    plan
}

/// A tree's listing of `rel`, sorted by name (so that the plan does
/// not depend on the order a file system lists).
fn sorted<E>(
    tree: &impl Tree<Error = E>,
    side: Side,
    rel: &Path,
    plan: &mut CopyPlan<E>,
) -> Option<Vec<(OsString, EntryKind)>> {
    match tree.list(rel) {
        Ok(mut entries) => {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Some(entries)
        }
        Err(error) => {
            plan.errors.push(LookError {
                side,
                path: rel.into(),
                error,
            });
            None
        }
    }
}

/// `rel` is a directory in both trees: look at both listings once.
fn merge<E>(
    factory: &impl Tree<Error = E>,
    target: &impl Tree<Error = E>,
    rel: &Path,
    plan: &mut CopyPlan<E>,
) {
    let Some(entries) = sorted(factory, Side::Factory, rel, plan) else {
        return;
    };
    // Name → whether it is a real directory (not a link to one).
    let there: HashMap<OsString, bool> = match target.list(rel) {
        Ok(list) => list
            .into_iter()
            .map(|(name, kind)| (name, kind == EntryKind::Dir))
            .collect(),
        Err(error) => {
            return plan.errors.push(LookError {
                side: Side::Target,
                path: rel.into(),
                error,
            });
        }
    };
    for (name, kind) in entries {
        let path = rel.join(&name);
        match there.get(&name) {
            Some(true) if kind == EntryKind::Dir => merge(factory, target, &path, plan),
            Some(_) => {}
            None => create(factory, &path, kind, plan),
        }
    }
}

/// `rel` is missing in the target: make it like the factory's.
fn create<E>(factory: &impl Tree<Error = E>, rel: &Path, kind: EntryKind, plan: &mut CopyPlan<E>) {
    if kind == EntryKind::Other {
        return plan.unsupported.push(rel.into());
    }
    plan.create.push(Create {
        path: rel.into(),
        kind,
    });
    if kind == EntryKind::Dir {
        for (name, kind) in sorted(factory, Side::Factory, rel, plan).unwrap_or_default() {
            create(factory, &rel.join(name), kind, plan);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree in memory: every path (relative) and its kind.
    struct Mem(std::collections::BTreeMap<PathBuf, EntryKind>);

    impl Mem {
        fn new(entries: &[(&str, EntryKind)]) -> Mem {
            Mem(entries
                .iter()
                .map(|(p, k)| (PathBuf::from(p), *k))
                .collect())
        }
    }

    impl Tree for Mem {
        type Error = String;
        fn kind(&self, rel: &Path) -> Result<Option<EntryKind>, String> {
            Ok(self.0.get(rel).copied())
        }
        fn list(&self, rel: &Path) -> Result<Vec<(OsString, EntryKind)>, String> {
            if rel.ends_with("unreadable") {
                return Err(format!("cannot list {}", rel.display()));
            }
            // Reversed, to show the plan sorts.
            Ok(self
                .0
                .iter()
                .rev()
                .filter(|(p, _)| p.parent() == Some(rel) && !p.as_os_str().is_empty())
                .filter_map(|(p, k)| p.file_name().map(|n| (n.to_os_string(), *k)))
                .collect())
        }
    }

    use EntryKind::{Dir, File, Other, Symlink};

    fn created(plan: &CopyPlan<String>) -> Vec<(String, EntryKind)> {
        plan.create
            .iter()
            .map(|c| (c.path.display().to_string(), c.kind))
            .collect()
    }

    #[test]
    fn the_copy_creates_what_is_missing_and_touches_nothing_there() {
        let factory = Mem::new(&[
            ("", Dir),
            ("hosts", File),
            ("mtab", Symlink),
            ("ssh", Dir),
            ("ssh/moduli", File),
            ("ssh/sshd_config", File),
            ("default", Dir),
            ("default/x", File),
            ("linked.d", Dir),
            ("linked.d/a", File),
            ("new.d", Dir),
            ("new.d/b", File),
            ("new.d/sub", Dir),
            ("new.d/sub/c", Symlink),
            ("fifo", Other),
        ]);
        let target = Mem::new(&[
            ("", Dir),
            ("ssh", Dir),
            ("ssh/sshd_config", File),
            ("default", File),
            ("linked.d", Symlink),
            ("hosts", Symlink),
        ]);
        let plan = plan_copy(&factory, &target);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(
            created(&plan),
            [
                ("mtab".to_string(), Symlink),
                ("new.d".into(), Dir),
                ("new.d/b".into(), File),
                ("new.d/sub".into(), Dir),
                ("new.d/sub/c".into(), Symlink),
                ("ssh/moduli".into(), File),
            ]
        );
        assert_eq!(plan.unsupported, [PathBuf::from("fifo")]);
        // Once done, nothing is missing.
        let mut after = target.0.clone();
        after.extend(plan.create.iter().map(|c| (c.path.clone(), c.kind)));
        assert_eq!(plan_copy(&factory, &Mem(after)).create, []);
    }

    #[test]
    fn a_missing_top_is_created_whole_and_a_file_there_is_kept() {
        let factory = Mem::new(&[("", Dir), ("a", File), ("d", Dir), ("d/b", File)]);
        let plan = plan_copy(&factory, &Mem::new(&[]));
        assert_eq!(
            created(&plan),
            [
                (String::new(), Dir),
                ("a".into(), File),
                ("d".into(), Dir),
                ("d/b".into(), File)
            ]
        );
        let plan = plan_copy(&factory, &Mem::new(&[("", File)]));
        assert_eq!(plan.create, []);
        let plan = plan_copy(&Mem::new(&[]), &Mem::new(&[]));
        assert_eq!((plan.create, plan.errors), (vec![], vec![]));
    }

    #[test]
    fn a_failed_listing_is_reported_and_the_rest_planned() {
        let factory = Mem::new(&[
            ("", Dir),
            ("unreadable", Dir),
            ("unreadable/x", File),
            ("z", File),
        ]);
        let plan = plan_copy(&factory, &Mem::new(&[("", Dir), ("unreadable", Dir)]));
        assert_eq!(created(&plan), [("z".to_string(), File)]);
        assert_eq!(
            plan.errors,
            [LookError {
                side: Side::Factory,
                path: "unreadable".into(),
                error: "cannot list unreadable".into()
            }]
        );
    }

    #[test]
    fn secrets() {
        for secret in [
            "ssh/ssh_host_ed25519_key",
            "ssh/ssh_host_rsa_key.pub",
            "/ssh/ssh_host_ecdsa_key",
            "machine-id",
        ] {
            assert!(node_secret(secret), "{secret}");
        }
        for fine in [
            "ssh/sshd_config",
            "ssh/moduli",
            "ssh/sshd_config.d/ssh_host_keys.conf",
            "sshx/ssh_host_key",
            "machine-info",
            "dbus-1/machine-id",
        ] {
            assert!(!node_secret(fine), "{fine}");
        }
    }

    #[test]
    fn factory_is_under_usr() {
        assert!(FACTORY_ETC.starts_with("/usr/"));
        assert!(FACTORY_ETC.ends_with(ETC));
        assert!(AUTHORIZED_KEYS_DIR.starts_with(ETC));
    }
}
