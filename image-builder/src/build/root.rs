//! ROOT's contents as a node's first boot would leave them, so that the
//! first boot only checks, like any later one: the factory /etc copied
//! ([`copy_factory`], the contract's [`etc::plan_copy`]) and the image's
//! users and groups in the account files with the login users' homes
//! ([`add_accounts`], the contract's [`Accounts::add_at_boot`] and
//! [`Accounts::files`]). The rules are the contract's; this module only
//! carries them out on a [`RootTree`] (the nodes `ext4::build` writes)
//! instead of a mounted file system.
//!
//! What cannot be carried out here (a name debugfs cannot write, an
//! account file that is not a file, a home under a link) is left to the
//! node's first boot, with a note: the system init still fills a ROOT that
//! lacks anything.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tandem_contract::accounts::{self, Accounts, Batch};
use tandem_contract::etc::{self, DirTree, EntryKind, Side, Tree};
use tandem_contract::sysusers;

use crate::build::ext4::{Kind, Node};
use crate::build::users;
use crate::error::{IoContext, Result};

/// The nodes of ROOT, parents before children, found by path.
#[derive(Clone, Debug, Default)]
pub struct RootTree {
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

impl RootTree {
    /// Adds `node`, or replaces the node at its path (which keeps its
    /// place: its parents are before it).
    pub fn put(&mut self, node: Node) {
        match self.index.get(&node.path) {
            Some(&i) => self.nodes[i] = node,
            None => {
                self.index.insert(node.path.clone(), self.nodes.len());
                self.nodes.push(node);
            }
        }
    }

    /// The node at `path` (absolute).
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.index.get(path).map(|&i| &self.nodes[i])
    }

    /// The nodes, in the order added.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The nodes directly under `dir` (absolute, no trailing `/`), by name.
    fn children(&self, dir: &str) -> Vec<(&str, &Node)> {
        let mut out: Vec<(&str, &Node)> = self
            .nodes
            .iter()
            .filter_map(|n| match n.path.rsplit_once('/') {
                Some((parent, name)) if parent == dir => Some((name, n)),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Adds the directories of `path` (absolute) that are missing, 0755
    /// owned by root. `None` (nothing added) when one of them is there but
    /// is not a directory.
    fn parents(&mut self, path: &str) -> Option<()> {
        let mut missing = Vec::new();
        let mut at = String::new();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        for part in parts.split_last().map_or(&[][..], |(_, p)| p) {
            at = format!("{at}/{part}");
            match self.get(&at).map(|n| &n.kind) {
                Some(Kind::Dir(_)) => {}
                Some(_) => return None,
                None => missing.push(at.clone()),
            }
        }
        for dir in missing {
            self.put(Node::dir(dir, 0o755));
        }
        Some(())
    }
}

/// Whether ROOT can hold `path` as written: absolute, no empty, `.` or
/// `..` part, a name debugfs can write.
fn writable(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        rest.split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
    }) && !path.contains(['"', '\n', '\\'])
}

/// `/etc` and a path relative to it (empty: `/etc` itself), if UTF-8.
fn etc_path(rel: &Path) -> Option<String> {
    let rel = rel.to_str()?;
    Some(if rel.is_empty() {
        etc::ETC.to_string()
    } else {
        format!("{}/{rel}", etc::ETC)
    })
}

/// ROOT's `/etc`, as the factory copy sees it.
struct EtcView<'a>(&'a RootTree);

impl Tree for EtcView<'_> {
    type Error = std::io::Error;

    fn kind(&self, rel: &Path) -> std::io::Result<Option<EntryKind>> {
        Ok(etc_path(rel)
            .and_then(|p| self.0.get(&p))
            .map(|n| node_kind(&n.kind)))
    }

    fn list(&self, rel: &Path) -> std::io::Result<Vec<(OsString, EntryKind)>> {
        let Some(dir) = etc_path(rel) else {
            return Ok(Vec::new());
        };
        Ok(self
            .0
            .children(&dir)
            .into_iter()
            .map(|(name, n)| (OsString::from(name), node_kind(&n.kind)))
            .collect())
    }
}

fn node_kind(kind: &Kind) -> EntryKind {
    match kind {
        Kind::Dir(_) => EntryKind::Dir,
        Kind::Symlink(_) => EntryKind::Symlink,
        Kind::File(..) => EntryKind::File,
    }
}

/// Copies to ROOT's `/etc` what of `factory` (the factory /etc in the
/// /usr tree) the system init would copy at first boot: the same files,
/// modes, links and directories, owned by root.
pub fn copy_factory(tree: &mut RootTree, factory: &Path, notes: &mut Vec<String>) -> Result<()> {
    // As on the node: an image without a factory /etc has nothing to copy.
    if !factory.is_dir() {
        return Ok(());
    }
    let factory_tree = DirTree(factory);
    let plan = etc::plan_copy(&factory_tree, &EtcView(tree));
    if let Some(e) = plan.errors.into_iter().next() {
        let path = match e.side {
            Side::Factory => factory_tree.at(&e.path),
            Side::Target => DirTree(Path::new(etc::ETC)).at(&e.path),
        };
        return Err(e.error).io("read", path);
    }
    for rel in &plan.unsupported {
        notes.push(format!(
            "{}/{} is neither a file, a directory nor a link: the node does not copy it to /etc",
            etc::FACTORY_ETC,
            rel.display()
        ));
    }
    // A directory left to the node: nothing under it is placed.
    let mut skipped: Option<PathBuf> = None;
    for c in plan.create {
        if skipped.as_ref().is_some_and(|s| c.path.starts_with(s)) {
            continue;
        }
        let src = factory_tree.at(&c.path);
        let Some(dst) = etc_path(&c.path).filter(|p| writable(p)) else {
            notes.push(format!(
                "{}: a name ROOT cannot hold at build time; the node copies it at first boot",
                src.display()
            ));
            skipped = Some(c.path);
            continue;
        };
        let node = match c.kind {
            EntryKind::Dir | EntryKind::File => {
                let mode = std::fs::symlink_metadata(&src)
                    .io("read", &src)?
                    .permissions()
                    .mode()
                    & 0o7777;
                if c.kind == EntryKind::Dir {
                    Node::dir(dst, mode)
                } else {
                    Node::file(dst, src, mode)
                }
            }
            EntryKind::Symlink => {
                let target = std::fs::read_link(&src).io("read link", &src)?;
                match target.to_str().filter(|t| !t.contains(['"', '\n', '\\'])) {
                    Some(t) => Node::symlink(dst, t),
                    None => {
                        notes.push(format!(
                            "{}: a link target ROOT cannot hold at build time; the node copies it at first boot",
                            src.display()
                        ));
                        continue;
                    }
                }
            }
            // The plan lists these apart.
            EntryKind::Other => continue,
        };
        tree.put(node);
    }
    Ok(())
}

/// Adds to ROOT's account files what the system init would add at first
/// boot (the image's resolved users in the /usr tree `usr`, then ROOT's
/// `/etc/sysusers.d`), with the contract's modes and groups, and makes the
/// login users' homes. The files' texts are written to `scratch` (a
/// directory of the build) for debugfs to copy.
pub fn add_accounts(
    tree: &mut RootTree,
    usr: &Path,
    scratch: &Path,
    notes: &mut Vec<String>,
) -> Result<()> {
    let leave = |notes: &mut Vec<String>, why: String| {
        notes.push(format!(
            "{why}: users and groups are left to the node's first boot"
        ));
    };
    let mut texts = Vec::new();
    for file in [
        accounts::PASSWD,
        accounts::GROUP,
        accounts::SHADOW,
        accounts::GSHADOW,
    ] {
        match tree.get(file).map(|n| &n.kind) {
            None => texts.push(String::new()),
            Some(Kind::File(src, _)) => texts.push(std::fs::read_to_string(src).io("read", src)?),
            Some(_) => {
                leave(notes, format!("{file} on ROOT is not a file"));
                return Ok(());
            }
        }
    }
    let mut acc = Accounts::parse(&texts[0], &texts[1], &texts[2], &texts[3]);

    let mut image = Batch::default();
    let resolved = usr.join(sysusers::RESOLVED.trim_start_matches("/usr/"));
    match std::fs::read_to_string(&resolved) {
        Ok(text) => {
            for e in image.add(Path::new(sysusers::RESOLVED), &text) {
                notes.push(format!(
                    "{}:{}: {} (line skipped)",
                    sysusers::RESOLVED,
                    e.line,
                    e.reason
                ));
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).io("read", resolved),
    }
    let mut admin = Batch::default();
    match tree.get(sysusers::ADMIN_DIR).map(|n| &n.kind) {
        None | Some(Kind::Dir(_)) => {}
        Some(_) => {
            leave(
                notes,
                format!("{} on ROOT is not a directory", sysusers::ADMIN_DIR),
            );
            return Ok(());
        }
    }
    let mut admin_files = Vec::new();
    for (name, node) in tree.children(sysusers::ADMIN_DIR) {
        if !name.ends_with(".conf") || name == ".conf" {
            continue;
        }
        let shown = format!("{}/{name}", sysusers::ADMIN_DIR);
        match &node.kind {
            Kind::File(src, _) => {
                admin_files.push((shown, std::fs::read_to_string(src).io("read", src)?));
            }
            _ => {
                leave(notes, format!("{shown} on ROOT is not a file"));
                return Ok(());
            }
        }
    }
    for (shown, text) in &admin_files {
        for e in admin.add(Path::new(shown), text) {
            notes.push(format!("{shown}:{}: {} (line skipped)", e.line, e.reason));
        }
    }

    let merge = acc.add_at_boot(&image, &admin);
    for n in merge.moved.iter().chain(&merge.failed) {
        notes.push(format!(
            "{}:{}: {}",
            n.file.display(),
            n.line,
            users::describe(&n.change)
        ));
    }
    std::fs::create_dir_all(scratch).io("create directory", scratch)?;
    for f in acc.changed_files() {
        let name = f.path.trim_start_matches("/etc/");
        let host = scratch.join(name);
        std::fs::write(&host, &f.text).io("write", &host)?;
        tree.put(Node::file(f.path, host, f.mode).owned_by(0, f.group.unwrap_or(0)));
    }
    for home in merge.homes {
        if tree.get(&home.path).is_some() {
            continue;
        }
        if !writable(&home.path) || tree.parents(&home.path).is_none() {
            notes.push(format!(
                "{}: ROOT cannot hold this home at build time; the node makes it at first boot",
                home.path
            ));
            continue;
        }
        tree.put(Node::dir(home.path, accounts::HOME_MODE).owned_by(home.uid, home.gid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// A ROOT as the pipeline starts it: /etc, /home, a link in /etc.
    fn root() -> RootTree {
        let mut t = RootTree::default();
        for (p, m) in [("/etc", 0o755), ("/etc/tandem", 0o755), ("/home", 0o755)] {
            t.put(Node::dir(p, m));
        }
        t.put(Node::symlink("/bin", "usr/bin"));
        t.put(Node::symlink("/etc/os-release", "../usr/lib/os-release"));
        t
    }

    fn paths(t: &RootTree) -> Vec<&str> {
        t.nodes().iter().map(|n| n.path.as_str()).collect()
    }

    #[test]
    fn the_factory_lands_in_etc_with_its_modes_around_what_is_there() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("factory");
        write(&f.join("ssh/sshd_config"), "Port 22\n", 0o644);
        write(&f.join("sudoers"), "root ALL\n", 0o440);
        write(&f.join("os-release"), "shadowed by ROOT's link\n", 0o644);
        write(&f.join("tandem/update.toml"), "", 0o600);
        std::fs::create_dir_all(f.join("empty.d")).expect("mkdir");
        std::fs::set_permissions(f.join("empty.d"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::os::unix::fs::symlink("../proc/self/mounts", f.join("mtab")).expect("link");
        let mut t = root();
        let mut notes = Vec::new();
        copy_factory(&mut t, &f, &mut notes).expect("copy");
        assert_eq!(notes, Vec::<String>::new());
        assert_eq!(
            &paths(&t)[5..],
            [
                "/etc/empty.d",
                "/etc/mtab",
                "/etc/ssh",
                "/etc/ssh/sshd_config",
                "/etc/sudoers",
                "/etc/tandem/update.toml",
            ]
        );
        assert_eq!(
            t.get("/etc/empty.d").map(|n| &n.kind),
            Some(&Kind::Dir(0o750))
        );
        assert_eq!(
            t.get("/etc/sudoers").map(|n| &n.kind),
            Some(&Kind::File(f.join("sudoers"), 0o440))
        );
        assert_eq!(
            t.get("/etc/mtab").map(|n| &n.kind),
            Some(&Kind::Symlink("../proc/self/mounts".into()))
        );
        assert_eq!(
            t.get("/etc/os-release").map(|n| &n.kind),
            Some(&Kind::Symlink("../usr/lib/os-release".into())),
            "what ROOT has is kept"
        );
        assert!(t.nodes().iter().all(|n| (n.uid, n.gid) == (0, 0)));
        // Nothing is missing any more: the node's first boot copies nothing.
        let before = t.nodes().len();
        copy_factory(&mut t, &f, &mut notes).expect("again");
        assert_eq!(t.nodes().len(), before);
        // No factory, nothing to do.
        copy_factory(&mut t, &dir.path().join("none"), &mut notes).expect("none");
        assert_eq!(t.nodes().len(), before);
    }

    #[test]
    fn names_debugfs_cannot_write_are_left_to_the_node() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("factory");
        write(&f.join("we\"ird.d/x"), "", 0o644);
        write(&f.join("fine"), "", 0o644);
        let mut t = root();
        let mut notes = Vec::new();
        copy_factory(&mut t, &f, &mut notes).expect("copy");
        assert!(t.get("/etc/fine").is_some());
        assert!(t.nodes().iter().all(|n| !n.path.contains("ird")));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("first boot"), "{notes:?}");
    }

    const RESOLVED: &str = "g root 0\ng adm 4\ng shadow 42\ng core 1234\n\
        u root 0:0 root /root /bin/sh\nu messagebus 321:321 - / /usr/sbin/nologin\n\
        u core 1234:1234 \"Core user\" /home/core /bin/sh\n\
        u ops 1500:1500 - /srv/people/ops /bin/sh\nu odd 1600:1600 - /bin/odd /bin/sh\nm core adm\n";

    fn usr(dir: &Path) -> PathBuf {
        let usr = dir.join("usr");
        write(&usr.join("lib/tandem/sysusers.conf"), RESOLVED, 0o644);
        usr
    }

    fn text(t: &RootTree, path: &str) -> String {
        match t.get(path).map(|n| &n.kind) {
            Some(Kind::File(src, _)) => std::fs::read_to_string(src).expect("read"),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn accounts_and_homes_as_the_first_boot_makes_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let usr = usr(dir.path());
        let mut t = root();
        let mut notes = Vec::new();
        add_accounts(&mut t, &usr, &dir.path().join("scratch"), &mut notes).expect("accounts");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("/bin/odd: ROOT cannot hold this home"),
            "under ROOT's /bin link: {notes:?}"
        );
        // What the node would write, from the same entries.
        let mut image = Batch::default();
        image.add(Path::new(sysusers::RESOLVED), RESOLVED);
        let mut node = Accounts::default();
        let merge = node.add_at_boot(&image, &Batch::default());
        for f in node.files() {
            assert_eq!(text(&t, f.path), f.text, "{}", f.path);
            let n = t.get(f.path).expect("file");
            assert_eq!(
                n.kind,
                Kind::File(dir.path().join("scratch").join(&f.path[5..]), f.mode)
            );
            assert_eq!((n.uid, n.gid), (0, f.group.unwrap_or(0)), "{}", f.path);
        }
        assert_eq!(t.get("/etc/shadow").map(|n| n.gid), Some(42));
        assert_eq!(merge.homes.len(), 3);
        let core = t.get("/home/core").expect("core's home");
        assert_eq!(
            (&core.kind, core.uid, core.gid),
            (&Kind::Dir(0o700), 1234, 1234)
        );
        // Parents made as the node makes them: 0755 root.
        assert_eq!(
            t.get("/srv").map(|n| (&n.kind, n.uid)),
            Some((&Kind::Dir(0o755), 0))
        );
        assert_eq!(t.get("/srv/people/ops").map(|n| n.uid), Some(1500));
        // A second run (the node's first boot) adds nothing.
        let before: Vec<Node> = t.nodes().to_vec();
        add_accounts(&mut t, &usr, &dir.path().join("scratch2"), &mut Vec::new()).expect("again");
        assert_eq!(t.nodes().len(), before.len());
        assert_eq!(
            t.get("/etc/passwd"),
            before.iter().find(|n| n.path == "/etc/passwd")
        );
    }

    #[test]
    fn roots_own_files_and_sysusers_d_are_merged_like_on_the_node() {
        let dir = tempfile::tempdir().expect("tmp");
        let usr = usr(dir.path());
        let given = dir.path().join("given");
        write(
            &given.join("passwd"),
            "root:x:0:0:Boss:/root:/bin/zsh\n",
            0o600,
        );
        write(&given.join("app.conf"), "u app 1700 - /home/app\n", 0o644);
        let mut t = root();
        t.put(Node::file("/etc/passwd", given.join("passwd"), 0o600));
        t.put(Node::dir("/etc/sysusers.d", 0o755));
        t.put(Node::file(
            "/etc/sysusers.d/app.conf",
            given.join("app.conf"),
            0o644,
        ));
        add_accounts(&mut t, &usr, &dir.path().join("scratch"), &mut Vec::new()).expect("accounts");
        let passwd = text(&t, "/etc/passwd");
        assert!(
            passwd.starts_with("root:x:0:0:Boss:/root:/bin/zsh\n"),
            "{passwd}"
        );
        assert!(passwd.contains("\napp:x:1700:"), "{passwd}");
        assert_eq!(
            t.get("/etc/passwd").map(|n| &n.kind),
            Some(&Kind::File(dir.path().join("scratch/passwd"), 0o644))
        );
        let i = paths(&t).iter().position(|p| *p == "/etc/passwd");
        assert_eq!(i, Some(5), "replaced in place");
        assert_eq!(t.get("/home/app").map(|n| n.uid), Some(1700));
    }

    #[test]
    fn an_account_path_that_is_no_file_leaves_accounts_to_the_node() {
        let dir = tempfile::tempdir().expect("tmp");
        let usr = usr(dir.path());
        let mut t = root();
        t.put(Node::dir("/etc/shadow", 0o755));
        let before = t.nodes().len();
        let mut notes = Vec::new();
        add_accounts(&mut t, &usr, &dir.path().join("scratch"), &mut notes).expect("accounts");
        assert_eq!(t.nodes().len(), before);
        assert!(
            notes[0].contains("left to the node's first boot"),
            "{notes:?}"
        );
    }
}
