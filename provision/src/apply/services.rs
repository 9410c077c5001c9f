//! Services: the translated units and `tandem.services`, each rendered
//! through the contract's [`ServiceFile`] to [`SERVICES_DIR`] (the layer
//! between the image's services and the administrator's), and an etcd
//! member from `coreos.etcd2` when the image carries etcd.
//!
//! A unit without content names a service of the image; its `command`,
//! `enable` and `mask` cannot change that service (its file is the
//! image's), so asking for one is a warning saying what to do instead.

use std::path::Path;

use cloud_config::Validation;
use cloud_config::model::{Etcd2, Unit};
use tandem_contract::provision::SERVICES_DIR;
use tandem_contract::service::{Restart, ServiceFile};

use super::write::{Perm, under, write_atomic};
use super::{Out, Severity};

/// The etcd server Debian's `etcd-server` installs.
pub const ETCD: &str = "/usr/bin/etcd";
/// The service name of the member from `coreos.etcd2`.
pub const ETCD_SERVICE: &str = "etcd";
/// etcd's data directory when `data-dir` is not given (Debian's).
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

/// CoreOS's own services: the validator already said what replaces them.
const COREOS_UNITS: &[&str] = &[
    "fleet.service",
    "flanneld.service",
    "etcd.service",
    "etcd2.service",
    "etcd-member.service",
    "locksmithd.service",
    "update-engine.service",
];

/// The etcd member's service: `--flag=value` in the config's order,
/// `--data-dir` and `--name` (the host name) when not given.
pub fn etcd_service(e: &Etcd2, hostname: Option<&str>) -> ServiceFile {
    let mut exec = vec![ETCD.to_string()];
    let given = |flag: &str| e.flags.iter().any(|(f, _)| f == flag);
    if let Some(h) = hostname.filter(|_| !given("name")) {
        exec.push(format!("--name={h}"));
    }
    exec.extend(e.flags.iter().map(|(f, v)| format!("--{f}={v}")));
    if !given("data-dir") {
        exec.push(format!("--data-dir={ETCD_DATA_DIR}"));
    }
    ServiceFile {
        description: Some("etcd member (coreos.etcd2)".into()),
        exec,
        restart: Some(Restart::Always),
        after_network: Some(true),
        ..ServiceFile::default()
    }
}

/// The warning for a unit without content that asks for something of an
/// image service, `None` when it asks nothing.
pub fn image_unit_note(u: &Unit) -> Option<String> {
    if u.content.is_some()
        || !u.name.ends_with(".service")
        || COREOS_UNITS.contains(&u.name.as_str())
    {
        return None;
    }
    let name = u.name.trim_end_matches(".service");
    let on = u.command.is_some_and(|c| c.starts()) || u.enable == Some(true);
    let off = u.mask || u.enable == Some(false) || u.command.is_some_and(|c| !c.starts());
    if on && !u.mask {
        Some(format!(
            "not applied: `{}` has no content, so it names the image's service {name}, which the config cannot start or enable; image services start unless disabled: if {name} is disabled, give /etc/tandem/services/{name}.toml `enabled = true` (with its exec), or give the unit's content here",
            u.name
        ))
    } else if off {
        Some(format!(
            "not applied: `{}` has no content, so it names the image's service {name}, which the config cannot stop, disable or mask; to turn it off write /etc/tandem/services/{name}.toml with `enabled = false` (e.g. with write_files)",
            u.name
        ))
    } else {
        None
    }
}

/// Writes the services; returns whether an etcd member runs on this node.
pub(crate) fn apply(
    root: &Path,
    v: &Validation,
    hostname: Option<&str>,
    out: &mut Out<'_>,
) -> bool {
    let c = &v.config;
    let dir = under(root, SERVICES_DIR);
    let unit_pos = |name: &str| {
        c.coreos
            .units
            .iter()
            .find(|u| u.name.trim_end_matches(".service") == name)
            .map(|u| u.pos)
    };
    let write = |out: &mut Out<'_>,
                 name: &str,
                 text: Result<String, String>,
                 at: Option<cloud_config::yaml::Pos>,
                 at_text: &str| {
        let result = text.and_then(|t| {
            write_atomic(
                &dir.join(format!("{name}.toml")),
                t.as_bytes(),
                Perm::root(0o644),
            )
            .map_err(|e| format!("{e}: check that /run is a writable tmpfs"))
        });
        match result {
            Ok(()) => out.done(format!("service {name}")),
            Err(why) => {
                let message = format!("service {name} not written to {SERVICES_DIR}: {why}");
                match at {
                    Some(pos) => out.problem_at(Severity::Error, pos, message),
                    None => out.problem(Severity::Error, at_text, message),
                }
            }
        }
    };
    for s in &v.services {
        let text = s.render().map_err(|e| format!("{e}: correct the service"));
        write(
            out,
            &s.name,
            text,
            unit_pos(&s.name),
            &format!("tandem.services.{}", s.name),
        );
    }
    for u in &c.coreos.units {
        if let Some(note) = image_unit_note(u) {
            out.problem_at(Severity::Warning, u.pos, note);
        }
    }
    let Some(e) = &c.coreos.etcd2 else {
        return false;
    };
    if v.services.iter().any(|s| s.name == ETCD_SERVICE) {
        out.problem(Severity::Error, "coreos.etcd2", format!(
            "the etcd member is not written: the config already defines a service named {ETCD_SERVICE}; keep one of the two"
        ));
        return false;
    }
    if !under(root, ETCD).exists() {
        out.problem(Severity::Error, "coreos.etcd2", format!(
            "the image has no etcd (Debian's etcd-server, {ETCD}): add it to [usr] packages of the image definition, or remove coreos.etcd2"
        ));
        return false;
    }
    let text = etcd_service(e, hostname)
        .render()
        .map_err(|e| e.to_string());
    write(out, ETCD_SERVICE, text, None, "coreos.etcd2");
    true
}
