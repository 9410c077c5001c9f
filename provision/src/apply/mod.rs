//! Applying a checked cloud-config to the node, at every boot, part by
//! part: a part that fails is a [`Problem`] and the rest is still applied.
//!
//! In order: this boot's output directory ([`DIR`], emptied), users
//! ([`users`]), SSH keys ([`keys`]), `write_files` ([`files`]), the host
//! name and `/etc/hosts` ([`host`]), services ([`services`]), then
//! `update.toml` and `agent.toml` ([`settings`]), and static networking
//! for PID 1 ([`network`]). What the config owns for
//! this boot goes under [`DIR`] (a tmpfs), so removing something from the
//! config removes its effect at the next boot; only users (added, never
//! changed) and `write_files` and `/etc/hosts` (written at every boot) go
//! to `/`.
//!
//! Each module keeps its decisions (which users, which lines, which text)
//! in pure functions apart from the few that write.

pub mod files;
pub mod host;
pub mod keys;
pub mod network;
pub mod services;
pub mod settings;
pub mod users;
pub mod write;

use std::path::Path;

use cloud_config::yaml::Pos;
pub(crate) use tandem_contract::provision::Severity;
use tandem_contract::provision::{DIR, Problem};

use crate::Metadata;

/// What [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// One short line per thing done (`user core added`, `keys for core: 2`).
    pub applied: Vec<String>,
    /// What could not be done (errors) or was not applied (warnings).
    pub problems: Vec<Problem>,
}

impl Applied {
    fn done(&mut self, line: impl Into<String>) {
        self.applied.push(line.into());
    }
}

/// Where problems point: the user-data's name and the position of a part.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place<'a> {
    file_name: &'a str,
}

impl Place<'_> {
    /// `user-data:LINE:COL`.
    fn at(&self, pos: Pos) -> String {
        format!("{}:{}:{}", self.file_name, pos.line, pos.column)
    }
}

/// Collects what was done and what went wrong.
#[derive(Debug)]
pub(crate) struct Out<'a> {
    place: Place<'a>,
    result: Applied,
}

impl Out<'_> {
    pub(crate) fn done(&mut self, line: impl Into<String>) {
        self.result.done(line);
    }

    /// A problem at a position of the file.
    pub(crate) fn problem_at(&mut self, severity: Severity, pos: Pos, message: impl Into<String>) {
        let at = self.place.at(pos);
        self.problem(severity, at, message);
    }

    /// A problem at a part of the config without a position (`coreos.etcd2`).
    pub(crate) fn problem(
        &mut self,
        severity: Severity,
        at: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.result.problems.push(Problem {
            severity,
            at: at.into(),
            message: message.into(),
        });
    }
}

/// Applies `v` (a config without validation errors) to the node whose `/`
/// is `root`. `file_name` is the datasource's name for the user-data, for
/// [`Problem::at`] (`user-data:4:1`).
pub fn apply(
    root: &Path,
    file_name: &str,
    v: &cloud_config::Validation,
    meta: &Metadata,
) -> Applied {
    let mut out = Out {
        place: Place { file_name },
        result: Applied::default(),
    };
    let c = &v.config;
    if let Err(e) = fresh_dir(&write::under(root, DIR)) {
        out.problem(
            Severity::Error,
            file_name,
            format!("cannot empty {DIR}: {e}; keys, host name, services and settings of this config are not applied: check that /run is a writable tmpfs"),
        );
    }
    let accounts = users::apply(root, c, meta, &mut out);
    keys::apply(root, c, meta, &mut out);
    files::apply(root, c, &accounts, &mut out);
    let hostname = host::apply(root, c, meta, &mut out);
    let etcd = services::apply(root, v, hostname.as_deref(), &mut out);
    settings::apply(root, c, etcd, &mut out);
    network::apply(root, &c.tandem.network, &mut out);
    out.result
}

/// Removes `dir` with what is in it and makes it again, empty, 0755.
fn fresh_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write::make_dirs(dir)
}

#[cfg(test)]
mod tests;
