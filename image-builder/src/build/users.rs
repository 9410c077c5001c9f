//! The image's users and groups, resolved at build time with stable ids,
//! in place of the maintainer scripts' `adduser` calls that never run.
//!
//! Sources, in this order (the first to name a user or group decides its
//! id): (a) Debian's fixed users and groups, base-passwd's
//! `/usr/share/base-passwd/{passwd,group}.master` in the /usr tree, or a
//! built-in minimum (root, nobody, nogroup) without base-passwd; (b) the
//! packages' `/usr/lib/sysusers.d/*.conf`, in file name order; (c) the
//! definition's `[[groups]]` and `[[users]]`. Ids given as `-` are
//! allocated by [`tandem_contract::sysusers::allocate`]: the same name gets
//! the same id in every build unless another entry holds it.
//!
//! The result goes to [`RESOLVED`] (numeric ids only), which the system
//! init applies to a node's /etc at boot, and the definition users' SSH
//! keys to `/usr/share/factory/etc/ssh/authorized_keys.d/<user>`.
//! [`resolve`] is pure; [`install`] reads and writes the tree.

use std::path::{Path, PathBuf};

use tandem_contract::accounts::{Accounts, Change};
use tandem_contract::sysusers::{self, Entry, User};

use crate::build::definition::Definition;
use crate::build::usr_tree;
use crate::error::{Error, IoContext, Result};

pub use tandem_contract::sysusers::RESOLVED;

/// base-passwd's users, relative to /usr.
pub const BASE_PASSWD: &str = "share/base-passwd/passwd.master";
/// base-passwd's groups, relative to /usr.
pub const BASE_GROUP: &str = "share/base-passwd/group.master";
/// The users an image without base-passwd gets.
pub const MINIMAL_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
/// The groups an image without base-passwd gets.
pub const MINIMAL_GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// A `sysusers.d` file of the tree: its path (for messages) and text.
#[derive(Clone, Debug)]
pub struct SysusersFile {
    /// Path as shown in notes (`/usr/lib/sysusers.d/dbus.conf`).
    pub path: String,
    /// Its text.
    pub text: String,
}

/// What [`resolve`] needs from the /usr tree.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// base-passwd's `passwd.master` and `group.master`, if present.
    pub base_passwd: Option<(String, String)>,
    /// The packages' `sysusers.d` files, in file name order.
    pub sysusers: Vec<SysusersFile>,
    /// Whether an absolute path exists in the image (for shells).
    pub shells: Vec<String>,
}

/// Resolves the image's accounts (pure). Notes say what was skipped or
/// moved in the packages' files; a definition entry that cannot be honoured
/// as written is an error.
pub fn resolve(def: &Definition, src: &Sources, notes: &mut Vec<String>) -> Result<Accounts> {
    let (passwd, group) = match &src.base_passwd {
        Some((p, g)) => (p.as_str(), g.as_str()),
        None => {
            notes.push(
                "no base-passwd in the image: users and groups start from root, nobody and nogroup"
                    .into(),
            );
            (MINIMAL_PASSWD, MINIMAL_GROUP)
        }
    };
    let mut base = Accounts::parse(passwd, group, "", "").to_entries();
    // base-passwd gives root bash, which a small image may lack.
    for e in &mut base {
        if let Entry::User(u) = e
            && u.uid == Some(0)
            && let Some(shell) = &u.shell
            && !src.shells.contains(shell)
            && src.shells.iter().any(|s| s == sysusers::LOGIN_SHELL)
        {
            notes.push(format!(
                "{}'s shell {shell} is not in the image: {} instead",
                u.name,
                sysusers::LOGIN_SHELL
            ));
            u.shell = Some(sysusers::LOGIN_SHELL.into());
        }
    }
    let mut accounts = Accounts::default();
    accounts.apply(&base);

    // (b) the packages' files, as one batch (as systemd-sysusers reads them).
    let mut origin = Vec::new();
    let mut entries = Vec::new();
    for f in &src.sysusers {
        let (parsed, errors) = sysusers::parse(&f.text);
        for e in errors {
            notes.push(format!(
                "{}:{}: {} (line skipped)",
                f.path, e.line, e.reason
            ));
        }
        for (line, entry) in parsed {
            origin.push(format!("{}:{line}", f.path));
            entries.push(entry);
        }
    }
    for o in accounts.apply(&entries) {
        match o.change {
            Change::Moved { .. } | Change::Failed { .. } => {
                notes.push(format!("{}: {}", origin[o.entry], describe(&o.change)));
            }
            _ => {}
        }
    }

    // (c) the definition.
    let (entries, fields) = definition_entries(def, &accounts, notes)?;
    for o in accounts.apply(&entries) {
        if matches!(o.change, Change::Moved { .. } | Change::Failed { .. }) {
            return Err(Error::DefinitionValue {
                path: def.path.clone(),
                field: fields[o.entry].clone(),
                message: describe(&o.change),
            });
        }
    }
    for p in accounts.passwd.records() {
        if sysusers::may_log_in(p.uid) && !src.shells.contains(&p.shell) {
            notes.push(format!(
                "{}'s shell {} is not in the image: logins as {} fail",
                p.name, p.shell, p.name
            ));
        }
    }
    Ok(accounts)
}

/// The definition's groups, users and memberships as entries, with the
/// definition field each comes from; errors for conflicts with what base-
/// passwd and the packages already declare, and for unknown groups.
fn definition_entries(
    def: &Definition,
    accounts: &Accounts,
    notes: &mut Vec<String>,
) -> Result<(Vec<Entry>, Vec<String>)> {
    let invalid = |field: String, message: String| Error::DefinitionValue {
        path: def.path.clone(),
        field,
        message,
    };
    let mut entries = Vec::new();
    let mut fields = Vec::new();
    for (i, g) in def.groups.iter().enumerate() {
        if let (Some(want), Some(have)) = (g.gid, accounts.gid(&g.name))
            && want != have
        {
            return Err(invalid(
                format!("groups[{i}].gid"),
                format!(
                    "group {} already has gid {have} (from base-passwd or a package's sysusers.d)",
                    g.name
                ),
            ));
        }
        entries.push(Entry::Group(sysusers::Group {
            name: g.name.clone(),
            gid: g.gid,
        }));
        fields.push(format!("groups[{i}]"));
    }
    for (i, u) in def.users.iter().enumerate() {
        if let Some(have) = accounts.uid(&u.name) {
            if u.uid.is_some_and(|want| want != have) {
                return Err(invalid(
                    format!("users[{i}].uid"),
                    format!(
                        "user {} already has uid {have} (from base-passwd or a package's sysusers.d)",
                        u.name
                    ),
                ));
            }
            notes.push(format!(
                "user {} comes from base-passwd or a package; the definition adds its groups and keys only",
                u.name
            ));
        }
        entries.push(Entry::User(User {
            name: u.name.clone(),
            uid: u.uid,
            group: None,
            gecos: u.gecos.clone(),
            home: u.home.clone(),
            shell: u.shell.clone(),
            login: !u.system,
        }));
        fields.push(format!("users[{i}]"));
    }
    for (i, u) in def.users.iter().enumerate() {
        for group in &u.groups {
            let known = accounts.group.contains(group)
                || def.groups.iter().any(|g| &g.name == group)
                || def.users.iter().any(|u| &u.name == group);
            if !known {
                return Err(invalid(
                    format!("users[{i}].groups"),
                    format!(
                        "group {group:?} is neither in [[groups]] nor made by base-passwd or a package"
                    ),
                ));
            }
            entries.push(Entry::Member {
                user: u.name.clone(),
                group: group.clone(),
            });
            fields.push(format!("users[{i}].groups"));
        }
    }
    Ok((entries, fields))
}

/// One line for an account change (build notes and errors).
pub(crate) fn describe(change: &Change) -> String {
    match change {
        Change::Moved {
            kind,
            name,
            wanted,
            holder,
            got,
        } => format!("{kind} {name}: id {wanted} is {holder}'s; got {got}"),
        Change::Failed { name, reason } => format!("{name}: {reason}"),
        Change::AddedUser { name, uid } => format!("user {name} ({uid})"),
        Change::AddedGroup { name, gid } => format!("group {name} ({gid})"),
        Change::AddedMember { user, group } => format!("{user} in {group}"),
    }
}

/// The text of [`RESOLVED`].
pub fn render_resolved(accounts: &Accounts) -> String {
    format!(
        "# The image's users and groups with their ids, resolved by tandem build from\n\
         # base-passwd, the packages' sysusers.d and the image definition. At every\n\
         # boot the system init adds what is missing to /etc/passwd, group, shadow and\n\
         # gshadow; it never changes an entry that is there.\n{}",
        sysusers::render(&accounts.to_entries())
    )
}

/// An `authorized_keys.d/<user>` file.
pub fn authorized_keys(keys: &[String]) -> String {
    let mut text = String::from(
        "# written by tandem build from the image definition (users.ssh-authorized-keys)\n",
    );
    for k in keys {
        text.push_str(k.trim());
        text.push('\n');
    }
    text
}

/// Resolves the accounts of the /usr tree `usr` and the definition, writes
/// [`RESOLVED`] and the users' authorized keys (factory copies).
pub fn install(def: &Definition, usr: &Path, notes: &mut Vec<String>) -> Result<()> {
    let read = |rel: &str| -> Result<Option<String>> {
        let p = usr.join(rel);
        match std::fs::read_to_string(&p) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io("read", p),
        }
    };
    let base_passwd = match (read(BASE_PASSWD)?, read(BASE_GROUP)?) {
        (Some(p), Some(g)) => Some((p, g)),
        _ => None,
    };
    let dir = in_usr(usr, sysusers::IMAGE_DIR);
    let mut names: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).io("read", dir),
    };
    names.sort();
    let mut sysusers_files = Vec::new();
    for p in names {
        let text = std::fs::read_to_string(&p).io("read", &p)?;
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        sysusers_files.push(SysusersFile {
            path: format!("{}/{}", sysusers::IMAGE_DIR, name.unwrap_or_default()),
            text,
        });
    }
    let mut shells: Vec<String> = Vec::new();
    let mut candidates: Vec<&str> = vec![sysusers::LOGIN_SHELL];
    let user_shells: Vec<String> = Accounts::parse(
        base_passwd.as_ref().map_or(MINIMAL_PASSWD, |(p, _)| p),
        "",
        "",
        "",
    )
    .passwd
    .records()
    .map(|p| p.shell.clone())
    .chain(def.users.iter().filter_map(|u| u.shell.clone()))
    .collect();
    candidates.extend(user_shells.iter().map(String::as_str));
    for shell in candidates {
        if !shells.iter().any(|s| s == shell) && exists_in_image(usr, shell) {
            shells.push(shell.to_string());
        }
    }
    let sources = Sources {
        base_passwd,
        sysusers: sysusers_files,
        shells,
    };
    let accounts = resolve(def, &sources, notes)?;
    let resolved = in_usr(usr, RESOLVED);
    write(&resolved, render_resolved(&accounts).as_bytes())?;

    let keys_dir = in_usr(
        usr,
        &format!(
            "{}{}",
            tandem_contract::etc::FACTORY_ETC,
            tandem_contract::etc::AUTHORIZED_KEYS_DIR.trim_start_matches("/etc")
        ),
    );
    for (i, u) in def.users.iter().enumerate() {
        if u.ssh_authorized_keys.is_empty() {
            continue;
        }
        let path = keys_dir.join(&u.name);
        if std::fs::symlink_metadata(&path).is_ok() {
            return Err(Error::DefinitionValue {
                path: def.path.clone(),
                field: format!("users[{i}].ssh-authorized-keys"),
                message: format!(
                    "{} is also placed by usr.files or a package: give the keys in one place",
                    path.display()
                ),
            });
        }
        write(&path, authorized_keys(&u.ssh_authorized_keys).as_bytes())?;
    }
    Ok(())
}

/// `path` (absolute in the image, under /usr) in the tree `usr`.
fn in_usr(usr: &Path, path: &str) -> PathBuf {
    usr.join(path.trim_start_matches("/usr/"))
}

/// Whether an absolute path of the running system exists in the /usr tree
/// (merged /usr: `/bin/sh` is `/usr/bin/sh`); links count.
fn exists_in_image(usr: &Path, path: &str) -> bool {
    let rel = path
        .strip_prefix("/usr/")
        .or_else(|| path.strip_prefix('/'))
        .unwrap_or(path);
    std::fs::symlink_metadata(usr.join(rel)).is_ok()
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        usr_tree::mkdirs(parent)?;
    }
    std::fs::write(path, bytes).io("write", path)?;
    usr_tree::set_mode(path, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_MASTER: &str = "root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsync:*:4:65534:sync:/bin:/bin/sync\n_apt:*:42:65534::/nonexistent:/usr/sbin/nologin\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP_MASTER: &str = "root:*:0:\ndaemon:*:1:\nadm:*:4:\nsudo:*:27:\nshadow:*:42:\nusers:*:100:\nnogroup:*:65534:\n";

    fn def(extra: &str) -> Definition {
        Definition::parse(
            &format!("[image]\nname = \"d\"\nversion = \"1\"\n{extra}"),
            Path::new("image.toml"),
            Path::new("."),
        )
        .expect("valid definition")
    }

    fn sources(files: &[(&str, &str)]) -> Sources {
        Sources {
            base_passwd: Some((PASSWD_MASTER.into(), GROUP_MASTER.into())),
            sysusers: files
                .iter()
                .map(|(name, text)| SysusersFile {
                    path: format!("/usr/lib/sysusers.d/{name}"),
                    text: (*text).into(),
                })
                .collect(),
            shells: vec!["/bin/sh".into(), "/usr/sbin/nologin".into()],
        }
    }

    const USERS: &str = "[[groups]]\nname = \"ops\"\n\
        [[users]]\nname = \"core\"\ngecos = \"Core user\"\ngroups = [\"ops\", \"sudo\"]\n\
        [[users]]\nname = \"sshd\"\nsystem = true\nhome = \"/run/sshd\"\n";

    #[test]
    fn three_sources_in_order() {
        let mut notes = Vec::new();
        let a = resolve(
            &def(USERS),
            &sources(&[
                ("dbus.conf", "u messagebus - \"System Message Bus\"\n"),
                ("bad.conf", "u ok -\nbogus line\n"),
            ]),
            &mut notes,
        )
        .expect("resolved");
        assert_eq!(a.uid("root"), Some(0));
        assert_eq!(
            a.passwd.get("root").map(|p| p.shell.as_str()),
            Some("/bin/sh")
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("root's shell /bin/bash is not in the image"))
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("/usr/lib/sysusers.d/bad.conf:2:")),
            "{notes:?}"
        );
        assert!(a.uid("ok").is_some());
        let core = a.passwd.get("core").expect("core");
        assert!(sysusers::is_login_id(core.uid));
        assert_eq!(core.uid, core.gid);
        assert_eq!(
            (core.home.as_str(), core.shell.as_str()),
            ("/home/core", "/bin/sh")
        );
        assert_eq!(core.gecos, "Core user");
        let sshd = a.passwd.get("sshd").expect("sshd");
        assert!(sysusers::SYSTEM_IDS.contains(&sshd.uid));
        assert_eq!(
            (sshd.home.as_str(), sshd.shell.as_str()),
            ("/run/sshd", "/usr/sbin/nologin")
        );
        assert!(sysusers::SYSTEM_IDS.contains(&a.gid("ops").expect("ops")));
        for g in ["ops", "sudo"] {
            assert_eq!(
                a.group.get(g).map(|g| g.members.clone()),
                Some(vec!["core".to_string()]),
                "{g}"
            );
        }
        assert_eq!(
            a.uid("messagebus"),
            sysusers::allocate("messagebus", &[sysusers::SYSTEM_IDS], |_| true)
        );
    }

    #[test]
    fn the_resolved_file_is_stable_and_reads_back() {
        let d = def(USERS);
        let src = sources(&[("dbus.conf", "u messagebus -\ng systemd-journal -\n")]);
        let a = resolve(&d, &src, &mut Vec::new()).expect("resolved");
        let text = render_resolved(&a);
        let b = resolve(&d, &src, &mut Vec::new()).expect("resolved");
        assert_eq!(render_resolved(&b), text, "the same inputs, the same bytes");
        let (entries, errors) = sysusers::parse(&text);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(entries.iter().all(|(_, e)| match e {
            Entry::User(u) => u.uid.is_some() && u.group.is_some(),
            Entry::Group(g) => g.gid.is_some(),
            Entry::Member { .. } => true,
            Entry::Range(..) => false,
        }));
        assert!(text.contains("\nu core "), "{text}");
        assert!(text.contains("\nm core ops\n"), "{text}");
        // A new package user elsewhere in the alphabet leaves the others'
        // ids alone.
        let mut more = src.clone();
        more.sysusers.push(SysusersFile {
            path: "/usr/lib/sysusers.d/zz.conf".into(),
            text: "u zzz-new -\n".into(),
        });
        let c = resolve(&d, &more, &mut Vec::new()).expect("resolved");
        for name in ["messagebus", "core", "sshd"] {
            assert_eq!(c.uid(name), a.uid(name), "{name}");
        }
    }

    #[test]
    fn without_base_passwd_a_minimum() {
        let mut src = sources(&[]);
        src.base_passwd = None;
        let mut notes = Vec::new();
        let a = resolve(&def(""), &src, &mut notes).expect("resolved");
        assert_eq!(a.uid("root"), Some(0));
        assert_eq!(a.uid("nobody"), Some(65534));
        assert_eq!(a.gid("nogroup"), Some(65534));
        assert!(notes[0].contains("no base-passwd"), "{notes:?}");
    }

    #[test]
    fn conflicts_in_the_definition_are_errors() {
        let src = sources(&[("svc.conf", "u svc 150\n")]);
        for (extra, needle) in [
            (
                "[[users]]\nname = \"core\"\ngroups = [\"wheel\"]",
                "group \"wheel\" is neither",
            ),
            (
                "[[users]]\nname = \"svc\"\nsystem = true\nuid = 151",
                "already has uid 150",
            ),
            ("[[groups]]\nname = \"adm\"\ngid = 5", "already has gid 4"),
            (
                "[[users]]\nname = \"other\"\nsystem = true\nuid = 150",
                "id 150 is svc's",
            ),
        ] {
            let e = resolve(&def(extra), &src, &mut Vec::new()).expect_err(needle);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
        let mut notes = Vec::new();
        let a = resolve(
            &def("[[users]]\nname = \"svc\"\ngroups = [\"adm\"]\n[[users]]\nname = \"b\"\ngroups = [\"svc\"]"),
            &src,
            &mut notes,
        )
        .expect("a package user gets groups from the definition");
        assert_eq!(a.uid("svc"), Some(150));
        assert!(
            notes.iter().any(|n| n.contains("user svc comes from")),
            "{notes:?}"
        );
        assert_eq!(
            a.group.get("adm").map(|g| g.members.clone()),
            Some(vec!["svc".to_string()])
        );
    }

    #[test]
    fn install_writes_the_resolved_file_and_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let usr = dir.path().join("usr");
        for (rel, text) in [
            (BASE_PASSWD, PASSWD_MASTER),
            (BASE_GROUP, GROUP_MASTER),
            ("lib/sysusers.d/dbus.conf", "u messagebus -\n"),
            ("bin/sh", ""),
        ] {
            let p = usr.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let d = def(
            "[[users]]\nname = \"core\"\nssh-authorized-keys = [\"ssh-ed25519 AAAAC3 me@host\", \"ssh-rsa AAAAB3 other\"]",
        );
        let mut notes = Vec::new();
        install(&d, &usr, &mut notes).expect("install");
        let text = std::fs::read_to_string(usr.join("lib/tandem/sysusers.conf")).expect("resolved");
        assert!(text.contains("u messagebus "), "{text}");
        assert!(text.contains("u core "), "{text}");
        let keys = usr.join("share/factory/etc/ssh/authorized_keys.d/core");
        let k = std::fs::read_to_string(&keys).expect("keys");
        assert!(
            k.ends_with("ssh-ed25519 AAAAC3 me@host\nssh-rsa AAAAB3 other\n"),
            "{k}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        // Keys in two places are refused.
        let e = install(&d, &usr, &mut notes).expect_err("keys exist");
        assert!(e.to_string().contains("give the keys in one place"), "{e}");
    }
}
