//! SSH keys: one file per user in [`AUTHORIZED_KEYS_DIR`], which sshd reads
//! besides `~/.ssh/authorized_keys` and `/etc/ssh/authorized_keys.d`. The
//! files are the config's, rewritten at every boot on a tmpfs: a key
//! removed from the config stops working at the next boot. Mode 0644,
//! root's: sshd's `StrictModes` accepts a file owned by root.

use std::path::Path;

use cloud_config::CloudConfig;
use tandem_contract::provision::AUTHORIZED_KEYS_DIR;

use super::users::CORE;
use super::write::{Perm, under, write_atomic};
use super::{Out, Severity};
use crate::Metadata;

/// Each user's keys, in order, without repeats: for `core` the config's
/// top-level keys, then the platform's, then a `users` entry's for `core`;
/// for every other user its entry's. Users without keys are left out.
pub fn key_lists(c: &CloudConfig, meta: &Metadata) -> Vec<(String, Vec<String>)> {
    let mut lists: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |user: &str, keys: &[String]| {
        let i = match lists.iter().position(|(u, _)| u == user) {
            Some(i) => i,
            None => {
                lists.push((user.to_string(), Vec::new()));
                lists.len() - 1
            }
        };
        // A key is one line; a block scalar may have carried several.
        for k in keys.iter().flat_map(|k| k.lines()).map(str::trim) {
            if !k.is_empty() && !lists[i].1.iter().any(|x| x == k) {
                lists[i].1.push(k.to_string());
            }
        }
    };
    add(CORE, &c.ssh_authorized_keys);
    add(CORE, &meta.ssh_keys);
    for u in &c.users {
        add(&u.name, &u.ssh_authorized_keys);
    }
    lists.retain(|(_, keys)| !keys.is_empty());
    lists
}

/// The file's text: one key per line.
pub fn render(keys: &[String]) -> String {
    keys.iter().map(|k| format!("{k}\n")).collect()
}

pub(crate) fn apply(root: &Path, c: &CloudConfig, meta: &Metadata, out: &mut Out<'_>) {
    for (user, keys) in key_lists(c, meta) {
        let path = under(root, AUTHORIZED_KEYS_DIR).join(&user);
        match write_atomic(&path, render(&keys).as_bytes(), Perm::root(0o644)) {
            Ok(()) => out.done(format!("keys for {user}: {}", keys.len())),
            Err(e) => {
                let message = format!(
                    "keys for {user} not written to {AUTHORIZED_KEYS_DIR}/{user}: {e}: check that /run is a writable tmpfs"
                );
                match c.users.iter().find(|u| u.name == user) {
                    Some(u) => out.problem_at(Severity::Error, u.pos, message),
                    None => out.problem(Severity::Error, "ssh_authorized_keys", message),
                }
            }
        }
    }
}
