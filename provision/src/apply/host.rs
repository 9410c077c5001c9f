//! The host name ([`HOSTNAME_FILE`], which PID 1 sets unless
//! `/etc/hostname` names one) and, with `manage_etc_hosts: localhost`,
//! `/etc/hosts`, rewritten at every boot from cloud-init's Debian template
//! (`hosts.debian.tmpl`): the name on 127.0.1.1 (Debian's address for the
//! host's own name), localhost on 127.0.0.1 and ::1, and the IPv6 lines.
//!
//! The config's `hostname` wins over the platform's. A name longer than
//! the kernel takes (64 bytes) is cut to its first label, as cloud-init
//! does for `/etc/hostname` with a fully qualified name.

use std::path::Path;

use cloud_config::CloudConfig;
use cloud_config::model::ManageEtcHosts;
use tandem_contract::provision::HOSTNAME_FILE;

use super::write::{Perm, same, under, write_atomic};
use super::{Out, Severity};
use crate::Metadata;

/// `/etc/hosts`.
pub const HOSTS: &str = "/etc/hosts";
/// The longest host name Linux takes (`HOST_NAME_MAX`).
pub const MAX_LEN: usize = 64;

/// Whether `h` is an RFC 1123 host name (the validator's rule).
pub fn valid(h: &str) -> bool {
    cloud_config::validate::valid_hostname(h)
}

/// The host name to set, or why the platform's is not used.
pub fn choose(c: &CloudConfig, meta: &Metadata) -> Result<Option<String>, String> {
    let (name, from) = match (&c.hostname, &meta.hostname) {
        (Some(h), _) => (h.trim(), "the config's"),
        (None, Some(h)) => (h.trim(), "the platform's"),
        (None, None) => return Ok(None),
    };
    if !valid(name) {
        return Err(format!(
            "{from} host name {name:?} is not a valid host name (letters, digits and -, labels between dots): set `hostname` in the config"
        ));
    }
    if name.len() > MAX_LEN {
        return Ok(name.split('.').next().map(str::to_string));
    }
    Ok(Some(name.to_string()))
}

/// `/etc/hosts` for `hostname` (a short name or a fully qualified one).
pub fn hosts(hostname: &str) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let names = if short == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {short}")
    };
    format!(
        "# Written by tandem-provision at every boot because the config sets\n\
         # manage_etc_hosts; to keep changes, remove manage_etc_hosts from it.\n\
         127.0.1.1 {names}\n\
         127.0.0.1 localhost\n\
         \n\
         # The following lines are desirable for IPv6 capable hosts\n\
         ::1 localhost ip6-localhost ip6-loopback\n\
         ff02::1 ip6-allnodes\n\
         ff02::2 ip6-allrouters\n"
    )
}

/// Writes the host name and `/etc/hosts`; returns the host name.
pub(crate) fn apply(
    root: &Path,
    c: &CloudConfig,
    meta: &Metadata,
    out: &mut Out<'_>,
) -> Option<String> {
    let name = match choose(c, meta) {
        Ok(n) => n,
        Err(why) => {
            out.problem(
                Severity::Warning,
                "hostname",
                format!("host name not set: {why}"),
            );
            None
        }
    };
    if let Some(n) = &name {
        match write_atomic(&under(root, HOSTNAME_FILE), format!("{n}\n").as_bytes(), Perm::root(0o644)) {
            Ok(()) => out.done(format!("host name {n}")),
            Err(e) => out.problem(Severity::Error, "hostname", format!(
                "host name not written to {HOSTNAME_FILE}: {e}: check that /run is a writable tmpfs"
            )),
        }
    }
    if c.manage_etc_hosts == Some(ManageEtcHosts::Localhost) {
        match &name {
            None => out.problem(
                Severity::Warning,
                "manage_etc_hosts",
                format!("{HOSTS} not written: there is no host name to put in it; set `hostname`"),
            ),
            Some(n) => {
                let text = hosts(n);
                let path = under(root, HOSTS);
                if !same(&path, text.as_bytes(), Perm::root(0o644)) {
                    match write_atomic(&path, text.as_bytes(), Perm::root(0o644)) {
                        Ok(()) => out.done(format!("wrote {HOSTS} ({n})")),
                        Err(e) => out.problem(
                            Severity::Error,
                            "manage_etc_hosts",
                            format!("{HOSTS} not written: {e}: check that /etc is writable"),
                        ),
                    }
                }
            }
        }
    }
    name
}
