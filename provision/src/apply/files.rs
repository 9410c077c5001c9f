//! `write_files`, in order, at every boot: the config's content wins over
//! what a file holds (an entry is its file's content at each boot, as with
//! coreos-cloudinit). A file that already has the content, owner and mode
//! is left alone.
//!
//! Owners are resolved against the account files after the users were
//! added, so a file may belong to a user of the same config; `user`
//! alone is that user's primary group, a number not in `/etc/passwd` alone
//! keeps group root. An unknown name is a problem and the file is not
//! written. Missing parent directories are made 0755 root:root.
//!
//! **`append: true`** adds the content to the end, and is skipped when the
//! file already ends with exactly that content: applying the config at
//! every boot does not grow the file. A content that changed is appended
//! once more (the old one stays above it).

use std::path::Path;

use cloud_config::CloudConfig;
use cloud_config::files::Owner;
use cloud_config::model::WriteFile;
use tandem_contract::accounts::Accounts;

use super::write::{Perm, same, under, write_atomic};
use super::{Out, Severity};

/// Mode of a file without `permissions`.
pub const DEFAULT_MODE: u32 = 0o644;

/// The uid and gid of `owner` (`None`: root:root), or why not.
pub fn resolve(owner: Option<&Owner>, accounts: &Accounts) -> Result<(u32, u32), String> {
    let Some(o) = owner else { return Ok((0, 0)) };
    let uid = match o.user.parse::<u32>() {
        Ok(n) => n,
        Err(_) => accounts.uid(&o.user).ok_or_else(|| {
            format!(
                "owner {:?}: no user {} on this node: add it under `users`, or name an existing user",
                o.user, o.user
            )
        })?,
    };
    let gid = match &o.group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => accounts.gid(g).ok_or_else(|| {
                format!("owner group {g:?}: no group {g} on this node: name an existing group, or add it (a user's `groups` creates missing ones)")
            })?,
        },
        None => accounts
            .passwd
            .records()
            .find(|p| p.uid == uid)
            .map_or(0, |p| p.gid),
    };
    Ok((uid, gid))
}

/// What to write for `f` given the file's current bytes (`None`: no
/// file): `None` when an append is already there.
pub fn content(f: &WriteFile, current: Option<&[u8]>) -> Option<Vec<u8>> {
    if !f.append {
        return Some(f.content.clone());
    }
    match current {
        Some(cur) if f.content.is_empty() || cur.ends_with(&f.content) => None,
        Some(cur) => Some([cur, f.content.as_slice()].concat()),
        None => Some(f.content.clone()),
    }
}

/// `owner:group` as written in `applied` (names as given, `root:root` by default).
fn shown_owner(o: Option<&Owner>) -> String {
    match o {
        None => "root:root".into(),
        Some(Owner {
            user,
            group: Some(g),
        }) => format!("{user}:{g}"),
        Some(Owner { user, group: None }) => user.clone(),
    }
}

pub(crate) fn apply(root: &Path, c: &CloudConfig, accounts: &Accounts, out: &mut Out<'_>) {
    for f in &c.write_files {
        let (uid, gid) = match resolve(f.owner.as_ref(), accounts) {
            Ok(ids) => ids,
            Err(why) => {
                out.problem_at(
                    Severity::Error,
                    f.pos,
                    format!("{} not written: {why}", f.path),
                );
                continue;
            }
        };
        let perm = Perm {
            uid,
            gid,
            mode: f.permissions.unwrap_or(DEFAULT_MODE),
        };
        let path = under(root, &f.path);
        let current = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) if f.append => {
                out.problem_at(Severity::Error, f.pos, format!(
                    "{} not appended to: reading it failed: {e}: make it a readable file, or drop `append`",
                    f.path
                ));
                continue;
            }
            Err(_) => None,
        };
        let Some(bytes) = content(f, current.as_deref()) else {
            continue;
        };
        if same(&path, &bytes, perm) {
            continue;
        }
        let what = if f.append && current.is_some() {
            "appended to"
        } else {
            "wrote"
        };
        match write_atomic(&path, &bytes, perm) {
            Ok(()) => out.done(format!(
                "{what} {} ({:04o} {})",
                f.path,
                perm.mode,
                shown_owner(f.owner.as_ref())
            )),
            Err(e) => out.problem_at(Severity::Error, f.pos, format!(
                "{} not written: {e}: check that its directory can be made and written (a file in the way, a read-only mount?)",
                f.path
            )),
        }
    }
}
