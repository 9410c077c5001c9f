//! Users from `users` and the user `core`, added to the account files by
//! PID 1's add-only rule ([`tandem_contract::accounts`]) and written the
//! way PID 1 writes them (staged, synced once, renamed:
//! [`initramfs::system::users::write_accounts`]).
//!
//! **Add-only.** A user that exists is never changed: not its password,
//! groups, shell or home. cloud-init skips existing users the same way
//! (it logs "already exists, skipping"); coreos-cloudinit also skipped
//! every field of an existing user except `passwd` and the keys, which it
//! set again at every boot. Tandem does not reset a password (the node's
//! own `passwd` wins); a `passwd` that differs from an existing user's is a
//! warning. Keys are not part of the account: they are written at every
//! boot ([`super::keys`]).
//!
//! **A new user** gets a uid from the login range (1000–59999), or the
//! system range with `system: true`; `gecos`; `homedir` (default
//! `/home/NAME`; `/` for a system user); `shell` (default `/bin/sh`, or
//! nologin for a system user); as primary group `primary_group` (created
//! if missing), else a group of its name, or with `no_user_group` the
//! group `users` (as useradd's `-N`); each of `groups` as a supplementary
//! group, **created as a system group when missing** (as cloud-init does;
//! useradd alone would refuse). Its home is made 0700 and its own, unless
//! `no_create_home` or `system`.
//!
//! **Passwords.** `passwd` (a crypt hash) goes to shadow as given, as in
//! coreos-cloudinit (which never implemented `lock_passwd`). Without one,
//! a login user gets `*` (no password matches, key logins work: Tandem's
//! sshd runs without PAM and refuses any account whose hash starts with
//! `!`), a system user `!*`. `lock_passwd: true` with a `passwd` stores
//! `!` before the hash, as cloud-init's `passwd -l`; that also shuts out
//! the user's key logins, which is said as a warning.
//!
//! **core** is added (a login user, home `/home/core`, shell `/bin/bash`
//! when the image has bash, else `/bin/sh`) when the config's top-level
//! `ssh_authorized_keys` or the platform's keys are not empty and the node
//! has no `core`.

use std::path::Path;

use cloud_config::CloudConfig;
use cloud_config::model::User;
use cloud_config::yaml::Pos;
use initramfs::system::users::{ensure_home, read_accounts, write_accounts};
use tandem_contract::accounts::{Accounts, Change, Shadow};
use tandem_contract::sysusers::{self, Entry, GroupRef};

use super::{Out, Severity};
use crate::Metadata;

/// The user the top-level keys and the platform's keys are for.
pub const CORE: &str = "core";
/// The primary group of a user with `no_user_group` and no `primary_group`
/// (useradd's default group, base-passwd's gid 100).
pub const USERS_GROUP: &str = "users";

/// One user to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Name.
    pub name: String,
    /// Where the `users` entry is; `None` for `core` from the keys.
    pub pos: Option<Pos>,
    /// The shadow hash when not the default (`*` or `!*`).
    pub hash: Option<String>,
    /// The home to make, if any.
    pub home: Option<String>,
}

/// The users to add and the `sysusers.d` entries that add them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Users, groups, memberships.
    pub entries: Vec<Entry>,
    /// For each entry, the index of its user in `users`.
    pub owner: Vec<usize>,
    /// The users, in the config's order (`core` from the keys last).
    pub users: Vec<Planned>,
}

/// The shadow hash `u` asks for, `None` for the default.
pub fn hash(u: &User) -> Option<String> {
    let h = u.passwd.as_ref()?;
    Some(match u.lock_passwd {
        Some(true) if !h.starts_with('!') => format!("!{h}"),
        _ => h.clone(),
    })
}

/// Whether `core` is to be added for the keys.
fn wants_core(c: &CloudConfig, meta: &Metadata, accounts: &Accounts) -> bool {
    (!c.ssh_authorized_keys.is_empty() || !meta.ssh_keys.is_empty())
        && !accounts.passwd.contains(CORE)
        && !c.users.iter().any(|u| u.name == CORE)
}

/// Which users to add, and how: every `users` entry the node lacks, and
/// `core` for the keys. `has_bash`: the image has `/usr/bin/bash`.
pub fn plan(c: &CloudConfig, meta: &Metadata, accounts: &Accounts, has_bash: bool) -> Plan {
    let mut p = Plan::default();
    for u in &c.users {
        if accounts.passwd.contains(&u.name) || p.users.iter().any(|x| x.name == u.name) {
            continue;
        }
        let i = p.users.len();
        let login = !u.system;
        let group = match (&u.primary_group, u.no_user_group) {
            (Some(g), _) => Some(GroupRef::Name(g.clone())),
            (None, true) => Some(GroupRef::Name(USERS_GROUP.into())),
            (None, false) => None,
        };
        let user = sysusers::User {
            name: u.name.clone(),
            uid: None,
            group,
            gecos: u.gecos.clone().unwrap_or_default(),
            home: u.homedir.clone(),
            shell: u.shell.clone(),
            login,
        };
        let home = (login && !u.no_create_home).then(|| user.home_or_default());
        p.entries.push(Entry::User(user));
        p.owner.push(i);
        for g in &u.groups {
            p.entries.push(Entry::Member {
                user: u.name.clone(),
                group: g.clone(),
            });
            p.owner.push(i);
        }
        p.users.push(Planned {
            name: u.name.clone(),
            pos: Some(u.pos),
            hash: hash(u),
            home,
        });
    }
    if wants_core(c, meta, accounts) {
        let user = sysusers::User {
            shell: Some(
                if has_bash {
                    "/bin/bash"
                } else {
                    sysusers::LOGIN_SHELL
                }
                .into(),
            ),
            login: true,
            ..sysusers::User::new(CORE)
        };
        p.owner.push(p.users.len());
        p.users.push(Planned {
            name: CORE.into(),
            pos: None,
            hash: None,
            home: Some(user.home_or_default()),
        });
        p.entries.push(Entry::User(user));
    }
    p
}

/// Warnings for `users` entries that name an existing user and ask for
/// what add-only does not do: (position, message).
pub fn kept(c: &CloudConfig, accounts: &Accounts) -> Vec<(Pos, String)> {
    let mut out = Vec::new();
    for u in &c.users {
        if !accounts.passwd.contains(&u.name) {
            continue;
        }
        let Some(h) = hash(u) else { continue };
        if accounts.shadow.get(&u.name).is_some_and(|s| s.hash == h) {
            continue;
        }
        out.push((u.pos, format!(
            "not applied: user {} exists, and an existing user is never changed, its password neither; change it on the node with `passwd {}`, or leave `passwd` out",
            u.name, u.name
        )));
    }
    out
}

/// Adds the users, makes their homes, and returns the accounts as they
/// are now (for `write_files` owners).
pub(crate) fn apply(root: &Path, c: &CloudConfig, meta: &Metadata, out: &mut Out<'_>) -> Accounts {
    let (mut accounts, errors) = read_accounts(root);
    let p = plan(c, meta, &accounts, root.join("usr/bin/bash").exists());
    let at = |out: &mut Out<'_>, pos: Option<Pos>, message: String| match pos {
        Some(pos) => out.problem_at(Severity::Error, pos, message),
        None => out.problem(Severity::Error, "ssh_authorized_keys", message),
    };
    if !errors.is_empty() {
        let why: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for u in &p.users {
            at(
                out,
                u.pos,
                format!(
                    "user {} not added: {}: nothing is written to an account file that cannot be read; repair it",
                    u.name,
                    why.join("; ")
                ),
            );
        }
        return accounts;
    }
    for (pos, message) in kept(c, &accounts) {
        out.problem_at(Severity::Warning, pos, message);
    }
    for u in &c.users {
        let new = p.users.iter().any(|x| x.name == u.name);
        if new && u.passwd.is_some() && u.lock_passwd == Some(true) {
            out.problem_at(Severity::Warning, u.pos, format!(
                "lock_passwd: true locks {}'s password (`!` before the hash), and Tandem's sshd (no PAM) then refuses {}'s key logins too; set lock_passwd: false to log in with keys",
                u.name, u.name
            ));
        }
    }
    if p.users.is_empty() {
        return accounts;
    }
    // A hash goes in before its user: adding a user keeps a shadow line
    // that is there. Only for users the entries will add (a trial run
    // says which), so a user that cannot be added leaves no line behind.
    let mut trial = accounts.clone();
    trial.apply(&p.entries);
    for u in &p.users {
        if let Some(h) = &u.hash
            && trial.passwd.contains(&u.name)
            && !accounts.shadow.contains(&u.name)
        {
            accounts.shadow.push(Shadow {
                name: u.name.clone(),
                hash: h.clone(),
                ageing: Default::default(),
            });
        }
    }
    let mut lines = Vec::new();
    for o in accounts.apply(&p.entries) {
        let u = p.owner.get(o.entry).and_then(|i| p.users.get(*i));
        let pos = u.and_then(|u| u.pos);
        match o.change {
            Change::AddedUser { name, uid } => lines.push(format!("user {name} added (uid {uid})")),
            Change::AddedGroup { name, gid } => {
                lines.push(format!("group {name} added (gid {gid})"))
            }
            Change::AddedMember { user, group } => {
                lines.push(format!("user {user} in group {group}"))
            }
            Change::Moved { name, got, .. } => lines.push(format!("{name}: id {got}")),
            Change::Failed { name, reason } => at(
                out,
                pos,
                format!("{name} not added: {reason}: remove accounts the node no longer needs"),
            ),
        }
    }
    match write_accounts(root, &accounts) {
        Ok(_) => lines.into_iter().for_each(|l| out.done(l)),
        Err(e) => {
            for u in &p.users {
                at(
                    out,
                    u.pos,
                    format!(
                        "user {} not added: {e}: check that / is writable and not full",
                        u.name
                    ),
                );
            }
            return read_accounts(root).0;
        }
    }
    for u in &p.users {
        let (Some(home), Some(pw)) = (&u.home, accounts.passwd.get(&u.name)) else {
            continue;
        };
        if !home.starts_with('/') || home == "/" {
            continue;
        }
        match ensure_home(root, home, pw.uid, pw.gid) {
            Ok(true) => out.done(format!("home {home} made (0700 {})", u.name)),
            Ok(false) => {}
            Err(e) => at(
                out,
                u.pos,
                format!(
                    "home {home} of {} not made: {e}: make it by hand (0700, owned by the user), or set no_create_home",
                    u.name
                ),
            ),
        }
    }
    accounts
}
