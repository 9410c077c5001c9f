//! Users and groups at boot: the image's resolved users
//! ([`sysusers::RESOLVED`], made by the image builder) and the
//! administrator's `/etc/sysusers.d/*.conf` are added to `/etc/passwd`,
//! `/etc/group`, `/etc/shadow` and `/etc/gshadow` where missing, by the
//! one add-only rule of [`tandem_contract::accounts`]: an existing entry is
//! never changed or removed; groups only gain the members `m` lines give.
//!
//! A file is written only when something was added, atomically: every
//! changed file is staged beside its target, the file system synced once,
//! then each renamed into place (a failure while staging changes nothing).
//! `passwd` and `group` 0644, `shadow` and `gshadow`
//! 0640 root:shadow (0600 without a `shadow` group). A login user's
//! missing home directory is made 0700 and given to the user: Debian's
//! adduser has made homes 0700 since bookworm (`DIR_MODE`), since a home
//! holds keys and histories that nobody else should read.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tandem_contract::accounts::{self, Accounts, Batch, Change};
use tandem_contract::sysusers;

use crate::error::Error;

/// What [`ensure_accounts`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Users added.
    pub users: usize,
    /// Groups added.
    pub groups: usize,
    /// Memberships added.
    pub members: usize,
    /// Files written.
    pub written: Vec<&'static str>,
    /// Home directories made.
    pub homes: Vec<PathBuf>,
    /// Entries whose id was taken and that got another (for the log).
    pub moved: Vec<String>,
}

impl Report {
    /// One line for the console, `None` when nothing changed.
    pub fn summary(&self) -> Option<String> {
        if self.written.is_empty() && self.homes.is_empty() {
            return None;
        }
        let mut text = format!(
            "users: added {} users, {} groups, {} memberships",
            self.users, self.groups, self.members
        );
        if !self.homes.is_empty() {
            text.push_str(&format!(", {} home directories", self.homes.len()));
        }
        Some(text)
    }
}

/// Reads one `sysusers.d` file into `into`; unreadable lines are warnings.
fn read_sysusers(path: &Path, shown: &Path, into: &mut Batch, warnings: &mut Vec<Error>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            return warnings.push(Error::Read {
                path: shown.into(),
                err,
            });
        }
    };
    for e in into.add(shown, &text) {
        warnings.push(Error::ConfigLine {
            path: shown.into(),
            line: e.line,
            reason: format!("{} (line skipped)", e.reason),
        });
    }
}

/// The `*.conf` files of `dir`, sorted by name.
pub(crate) fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => return Err(err),
    };
    files.sort();
    Ok(files)
}

/// The `*.conf` files of the directories `dirs` (absolute on the node)
/// under `root`, in file-name order across them; a file of a later
/// directory replaces the file of the same name of an earlier one, and a
/// link to `/dev/null` turns the name off. (Real path, shown path.)
pub(crate) fn merged_conf_files(
    root: &Path,
    dirs: &[&str],
) -> (Vec<(PathBuf, PathBuf)>, Vec<Error>) {
    let mut errors = Vec::new();
    let mut by_name: std::collections::BTreeMap<std::ffi::OsString, Option<(PathBuf, PathBuf)>> =
        std::collections::BTreeMap::new();
    for dir in dirs {
        match conf_files(&under(root, dir)) {
            Ok(files) => {
                for f in files {
                    let name = f.file_name().unwrap_or_default().to_os_string();
                    let masked = std::fs::read_link(&f).is_ok_and(|t| t == Path::new("/dev/null"));
                    let shown = Path::new(dir).join(&name);
                    by_name.insert(name, (!masked).then_some((f, shown)));
                }
            }
            Err(err) => errors.push(Error::Read {
                path: (*dir).into(),
                err,
            }),
        }
    }
    (by_name.into_values().flatten().collect(), errors)
}

/// `path` (absolute on the node) under `root`.
pub(crate) fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Adds the missing users and groups to the account files under `root`
/// (`/` on a node) and makes login users' missing homes. Returns the
/// accounts as they now are (for `tmpfiles.d`'s user and group names).
/// If an account file cannot be read (other than missing), nothing is
/// written: writing it would lose its entries.
pub fn ensure_accounts(root: &Path) -> (Accounts, Report, Vec<Error>) {
    let mut warnings = Vec::new();
    let mut report = Report::default();
    let (mut accounts, unreadable) = read_accounts(root);
    if !unreadable.is_empty() {
        warnings.extend(unreadable);
        return (accounts, report, warnings);
    }

    let mut image = Batch::default();
    read_sysusers(
        &under(root, sysusers::RESOLVED),
        Path::new(sysusers::RESOLVED),
        &mut image,
        &mut warnings,
    );
    let mut admin = Batch::default();
    match conf_files(&under(root, sysusers::ADMIN_DIR)) {
        Ok(files) => {
            for f in files {
                let shown = Path::new(sysusers::ADMIN_DIR).join(f.file_name().unwrap_or_default());
                read_sysusers(&f, &shown, &mut admin, &mut warnings);
            }
        }
        Err(err) => warnings.push(Error::Read {
            path: sysusers::ADMIN_DIR.into(),
            err,
        }),
    }
    let merge = accounts.add_at_boot(&image, &admin);
    report.users = merge.users;
    report.groups = merge.groups;
    report.members = merge.members;
    for n in merge.moved {
        if let Change::Moved {
            kind,
            name,
            wanted,
            holder,
            got,
        } = n.change
        {
            report.moved.push(format!(
                "{}:{}: {kind} {name} gets id {got}: {wanted} is {holder}'s on this node",
                n.file.display(),
                n.line
            ));
        }
    }
    for n in merge.failed {
        if let Change::Failed { name, reason } = n.change {
            warnings.push(Error::ConfigLine {
                path: n.file,
                line: n.line,
                reason: format!("{name}: {reason}"),
            });
        }
    }

    match write_accounts(root, &accounts) {
        Ok(written) => report.written = written,
        Err(err) => warnings.push(err),
    }

    for home in merge.homes {
        match ensure_home(root, &home.path, home.uid, home.gid) {
            Ok(true) => report.homes.push(PathBuf::from(&home.path)),
            Ok(false) => {}
            Err(err) => warnings.push(Error::Write {
                path: PathBuf::from(&home.path),
                err,
            }),
        }
    }
    (accounts, report, warnings)
}

/// Reads the four account files under `root` (a missing file is empty),
/// with an error for each file that cannot be read (other than missing).
/// After an error the caller must not write the accounts back: that would
/// lose the unreadable file's entries.
pub fn read_accounts(root: &Path) -> (Accounts, Vec<Error>) {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for file in [
        accounts::PASSWD,
        accounts::GROUP,
        accounts::SHADOW,
        accounts::GSHADOW,
    ] {
        match std::fs::read_to_string(under(root, file)) {
            Ok(t) => texts.push(t),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => texts.push(String::new()),
            Err(err) => {
                texts.push(String::new());
                errors.push(Error::Read {
                    path: file.into(),
                    err,
                });
            }
        }
    }
    let accounts = Accounts::parse(&texts[0], &texts[1], &texts[2], &texts[3]);
    (accounts, errors)
}

/// Writes the account files of `accounts` that changed since they were
/// read, under `root`, in the order and with the modes and groups of
/// [`Accounts::files`] (`passwd` and `group` 0644, `shadow` and `gshadow`
/// 0640 root:shadow, 0600 without a `shadow` group). Every changed file is
/// staged beside its target, the file system synced once, then each renamed
/// into place; a failure while staging leaves every file as it was. Returns
/// the files written (none when nothing changed).
pub fn write_accounts(root: &Path, accounts: &Accounts) -> Result<Vec<&'static str>, Error> {
    // One sync instead of one per file: on a first boot all four change.
    let mut staged = Vec::new();
    for f in &accounts.changed_files() {
        match stage(&under(root, f.path), f.text.as_bytes(), f.mode, f.group) {
            Ok(s) => staged.push((f.path, s)),
            Err(err) => {
                for (_, s) in &staged {
                    s.discard();
                }
                return Err(Error::Write {
                    path: f.path.into(),
                    err,
                });
            }
        }
    }
    commit(&staged).map_err(|(file, err)| Error::Write {
        path: file.into(),
        err,
    })?;
    Ok(staged.iter().map(|(f, _)| *f).collect())
}

/// Makes the home directory `home` (absolute on the node, under `root`)
/// 0700 owned by `uid:gid`, unless something is already there (which is
/// left as it is). Returns whether it was made.
pub fn ensure_home(root: &Path, home: &str, uid: u32, gid: u32) -> std::io::Result<bool> {
    let path = under(root, home);
    if std::fs::symlink_metadata(&path).is_ok() {
        return Ok(false);
    }
    make_home(&path, uid, gid).map(|()| true)
}

fn make_home(home: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    if let Some(parent) = home.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::DirBuilder::new()
        .mode(accounts::HOME_MODE)
        .create(home)?;
    std::os::unix::fs::chown(home, Some(uid), Some(gid))?;
    // The umask cannot have widened 0700; set it anyway in case it was
    // narrowed below the owner's bits.
    std::fs::set_permissions(
        home,
        std::os::unix::fs::PermissionsExt::from_mode(accounts::HOME_MODE),
    )
}

/// A file written beside its target, not yet in place.
#[derive(Debug)]
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    file: std::fs::File,
}

impl Staged {
    fn discard(&self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Writes `bytes` to a temporary file beside `path`, owner root (group
/// `gid` if given), `mode`; [`commit`] puts it in place.
fn stage(path: &Path, bytes: &[u8], mode: u32, gid: Option<u32>) -> std::io::Result<Staged> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = {
        let mut name = std::ffi::OsString::from(".");
        name.push(path.file_name().unwrap_or_default());
        name.push(".tandem-new");
        path.with_file_name(name)
    };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        if let Some(g) = gid {
            std::os::unix::fs::fchown(&f, Some(0), Some(g))?;
        }
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(bytes)?;
        Ok(f)
    })();
    match result {
        Ok(file) => Ok(Staged {
            tmp,
            target: path.to_path_buf(),
            file,
        }),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Syncs the staged files' file system once, then renames each into place
/// in the order given. On failure, names the target that was not written
/// and removes the temporary files not yet renamed.
fn commit<'a>(staged: &[(&'a str, Staged)]) -> Result<(), (&'a str, std::io::Error)> {
    let Some((first, s)) = staged.first() else {
        return Ok(());
    };
    // SAFETY: syncfs on a descriptor we own.
    if unsafe { libc::syncfs(s.file.as_raw_fd()) } != 0 {
        let err = std::io::Error::last_os_error();
        staged.iter().for_each(|(_, s)| s.discard());
        return Err((first, err));
    }
    for (i, (name, s)) in staged.iter().enumerate() {
        if let Err(err) = std::fs::rename(&s.tmp, &s.target) {
            staged[i..].iter().for_each(|(_, s)| s.discard());
            return Err((name, err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use tandem_contract::sysusers::Entry;

    const RESOLVED: &str = "g root 0\ng adm 4\ng shadow 42\ng nogroup 65534\ng messagebus 321\ng core 1234\n\
        u root 0:0 root /root /bin/sh\nu nobody 65534:65534 nobody /nonexistent /usr/sbin/nologin\n\
        u messagebus 321:321 \"System Message Bus\" / /usr/sbin/nologin\n\
        u core 1234:1234 \"Core user\" /home/core /bin/sh\nm core adm\n";

    fn node(resolved: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = under(tmp.path(), sysusers::RESOLVED);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, resolved).expect("write");
        std::fs::create_dir_all(tmp.path().join("etc")).expect("mkdir");
        tmp
    }

    fn read(root: &Path, file: &str) -> String {
        std::fs::read_to_string(under(root, file)).unwrap_or_default()
    }

    #[test]
    fn first_boot_writes_everything() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        let (acc, report, warnings) = ensure_accounts(root);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((report.users, report.groups, report.members), (4, 6, 1));
        assert_eq!(
            report.written,
            [
                accounts::GSHADOW,
                accounts::GROUP,
                accounts::SHADOW,
                accounts::PASSWD
            ]
        );
        assert_eq!(
            read(root, accounts::PASSWD),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             messagebus:x:321:321:System Message Bus:/:/usr/sbin/nologin\ncore:x:1234:1234:Core user:/home/core:/bin/sh\n"
        );
        assert!(read(root, accounts::GROUP).contains("\nadm:x:4:core\n"));
        let shadow = read(root, accounts::SHADOW);
        assert!(shadow.contains("core:*:::::::\n"), "{shadow}");
        assert!(shadow.contains("messagebus:!*:::::::\n"), "{shadow}");
        let meta = std::fs::metadata(under(root, accounts::SHADOW)).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(meta.gid(), 42);
        let meta = std::fs::metadata(under(root, accounts::PASSWD)).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
        assert_eq!(acc.uid("core"), Some(1234));
        // core's home, core's own.
        assert_eq!(report.homes, [PathBuf::from("/home/core")]);
        let home = std::fs::metadata(root.join("home/core")).expect("home");
        assert_eq!(
            (home.uid(), home.gid(), home.permissions().mode() & 0o7777),
            (1234, 1234, 0o700)
        );
        assert!(
            !root.join("nonexistent").exists(),
            "system users get no home"
        );
        assert_eq!(
            report.summary().as_deref(),
            Some("users: added 4 users, 6 groups, 1 memberships, 1 home directories")
        );
        // The next boot changes nothing.
        let stamp = std::fs::metadata(under(root, accounts::PASSWD))
            .expect("stat")
            .modified()
            .ok();
        let (_, again, warnings) = ensure_accounts(root);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(again, Report::default());
        assert_eq!(again.summary(), None);
        assert_eq!(
            std::fs::metadata(under(root, accounts::PASSWD))
                .expect("stat")
                .modified()
                .ok(),
            stamp
        );
    }

    #[test]
    fn the_administrators_entries_win() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        let passwd = "root:x:0:0:Boss:/root:/bin/zsh\ncore:x:1234:1234:mine:/srv/core:/bin/bash\n";
        let shadow = "root:$6$hash:19000:0:99999:7:::\ncore:$6$other:19000:0:99999:7:::\n";
        let group = "root:x:0:\nadm:x:4:\ncore:x:1234:\n";
        std::fs::write(root.join("etc/passwd"), passwd).expect("write");
        std::fs::write(root.join("etc/shadow"), shadow).expect("write");
        std::fs::write(root.join("etc/group"), group).expect("write");
        std::fs::create_dir_all(root.join("srv/core")).expect("home");
        let (_, report, warnings) = ensure_accounts(root);
        assert!(warnings.is_empty(), "{warnings:?}");
        let now = read(root, accounts::PASSWD);
        assert!(now.starts_with(passwd), "{now}");
        assert!(now.contains("\nmessagebus:x:321:"), "{now}");
        assert!(read(root, accounts::SHADOW).starts_with(shadow));
        assert!(
            read(root, accounts::GROUP).contains("\nadm:x:4:core\n"),
            "members are added"
        );
        assert!(
            report.homes.is_empty(),
            "core's home is where passwd says, and exists"
        );
        assert!(!root.join("home/core").exists());
    }

    #[test]
    fn the_administrators_sysusers_files() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        let dir = root.join("etc/sysusers.d");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("10-app.conf"),
            "u app - \"App\" /var/lib/app\nm app adm\nx bogus -\n",
        )
        .expect("write");
        std::fs::write(
            dir.join("20-ops.conf"),
            "u ops 2000 \"Ops\" /home/ops\ng messagebus 999\n",
        )
        .expect("write");
        std::fs::write(dir.join("ignored.txt"), "u nope -\n").expect("write");
        let (acc, report, warnings) = ensure_accounts(root);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(
            warnings[0].to_string(),
            "/etc/sysusers.d/10-app.conf:3: unknown type \"x\" (u, g, m and r are supported) (line skipped)"
        );
        let app = acc.uid("app").expect("app");
        assert!(sysusers::SYSTEM_IDS.contains(&app));
        assert_eq!(
            acc.group.get("adm").map(|g| g.members.clone()),
            Some(vec!["core".into(), "app".into()])
        );
        assert_eq!(acc.uid("ops"), Some(2000));
        assert_eq!(acc.gid("messagebus"), Some(321), "the image's came first");
        assert!(acc.uid("nope").is_none());
        assert!(report.homes.contains(&PathBuf::from("/home/ops")));
        assert!(
            !root.join("var/lib/app").exists(),
            "system users get no home"
        );
    }

    #[test]
    fn ids_taken_on_the_node_move() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        std::fs::write(root.join("etc/passwd"), "old:x:321:321::/:/bin/sh\n").expect("write");
        std::fs::write(root.join("etc/group"), "old:x:321:\n").expect("write");
        let (acc, report, warnings) = ensure_accounts(root);
        assert!(warnings.is_empty(), "{warnings:?}");
        let got = acc.uid("messagebus").expect("messagebus");
        assert_ne!(got, 321);
        assert_eq!(acc.gid("messagebus"), Some(got));
        assert_eq!(
            acc.passwd.get("messagebus").map(|p| p.gid),
            Some(got),
            "its group by name"
        );
        assert!(
            report
                .moved
                .iter()
                .any(|m| m.contains("user messagebus gets id")),
            "{:?}",
            report.moved
        );
    }

    #[test]
    fn an_unreadable_account_file_stops_everything() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        std::fs::create_dir_all(root.join("etc/passwd"))
            .expect("a directory where passwd should be");
        let (_, report, warnings) = ensure_accounts(root);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .to_string()
                .starts_with("reading /etc/passwd failed"),
            "{}",
            warnings[0]
        );
        assert!(report.written.is_empty());
        assert!(!root.join("etc/group").exists());
    }

    #[test]
    fn a_file_that_cannot_be_staged_leaves_every_file_as_it_was() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
        // shadow is staged third, after gshadow and group.
        std::fs::create_dir_all(root.join("etc/.shadow.tandem-new")).expect("in the way");
        let (_, report, warnings) = ensure_accounts(root);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0]
                .to_string()
                .starts_with("writing /etc/shadow failed"),
            "{}",
            warnings[0]
        );
        assert!(report.written.is_empty());
        assert_eq!(read(root, "/etc/group"), "root:x:0:\n");
        assert!(!root.join("etc/gshadow").exists());
        assert!(!root.join("etc/passwd").exists());
        let left: Vec<_> = std::fs::read_dir(root.join("etc"))
            .expect("etc")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tandem-new") && n != ".shadow.tandem-new")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn the_pieces_add_other_entries_the_same_way() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        ensure_accounts(root);
        let (mut acc, errors) = read_accounts(root);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            write_accounts(root, &acc).expect("nothing to write"),
            Vec::<&str>::new()
        );
        let mut u = sysusers::User::new("elroy");
        u.login = true;
        acc.apply(&[Entry::User(u)]);
        let uid = acc.uid("elroy").expect("added");
        assert!(sysusers::is_login_id(uid));
        let written = write_accounts(root, &acc).expect("written");
        assert_eq!(
            written,
            [
                accounts::GSHADOW,
                accounts::GROUP,
                accounts::SHADOW,
                accounts::PASSWD
            ]
        );
        assert!(read(root, accounts::PASSWD).contains(&format!("\nelroy:x:{uid}:")));
        assert!(ensure_home(root, "/home/elroy", uid, uid).expect("home"));
        assert!(!ensure_home(root, "/home/elroy", uid, uid).expect("there"));
        let home = std::fs::metadata(root.join("home/elroy")).expect("home");
        assert_eq!(
            (home.uid(), home.permissions().mode() & 0o7777),
            (uid, 0o700)
        );
    }

    #[test]
    fn read_accounts_names_each_unreadable_file() {
        let tmp = node(RESOLVED);
        let root = tmp.path();
        std::fs::create_dir_all(root.join("etc/passwd")).expect("dir");
        std::fs::create_dir_all(root.join("etc/shadow")).expect("dir");
        let (_, errors) = read_accounts(root);
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("reading /etc/passwd failed"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("reading /etc/shadow failed"),
            "{shown:?}"
        );
    }

    #[test]
    fn without_a_shadow_group_shadow_is_root_only() {
        let tmp = node("g root 0\nu root 0:0 root /root /bin/sh\n");
        let root = tmp.path();
        let (_, _, warnings) = ensure_accounts(root);
        assert!(warnings.is_empty(), "{warnings:?}");
        let meta = std::fs::metadata(under(root, accounts::GSHADOW)).expect("stat");
        assert_eq!((meta.permissions().mode() & 0o7777, meta.gid()), (0o600, 0));
    }
}
