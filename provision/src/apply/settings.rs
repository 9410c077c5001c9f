//! `update.toml` from `coreos.update` and `agent.toml` from
//! `coreos.locksmith` (and `coreos.etcd2`), layers between the OEM
//! partition's and the administrator's. Only the keys the config gives are
//! written, and a file only when it has one, so the other layers keep the
//! rest. The etcd password goes to its own file (0600) for `password-file`.

use std::path::Path;

use cloud_config::CloudConfig;
use tandem_contract::provision::{AGENT_CONFIG, DIR, UPDATE_CONFIG};
use toml::{Table, Value};

use super::write::{Perm, under, write_atomic};
use super::{Out, Severity};

/// Where the etcd password from `locksmith.etcd_password` is written.
pub const ETCD_PASSWORD: &str = "/run/tandem/provisioned/etcd-password";
/// The endpoint of the local etcd member (`coreos.etcd2`) for the agent.
pub const LOCAL_ETCD: &str = "http://127.0.0.1:2379";

/// `update.toml`'s text, `None` when the config gives none of its keys.
/// `has_etcd`: the agent has an etcd (locksmith endpoints, or a member
/// from `coreos.etcd2` runs here), for `best-effort`.
pub fn update_toml(c: &CloudConfig, has_etcd: bool) -> Option<String> {
    let u = c.coreos.update.as_ref()?;
    let mut t = Table::new();
    if let Some(s) = &u.server {
        t.insert("server".into(), Value::String(s.clone()));
    }
    if let Some(g) = &u.group {
        t.insert("channel".into(), Value::String(g.clone()));
    }
    if let Some(p) = &u.proxy {
        t.insert("proxy".into(), Value::String(p.clone()));
    }
    if let Some(s) = u.reboot_strategy {
        t.insert(
            "reboot-strategy".into(),
            Value::String(s.tandem(has_etcd).as_str().into()),
        );
    }
    render(t)
}

/// `agent.toml`'s text, `None` when there is nothing for it.
/// `local_etcd`: a member from `coreos.etcd2` runs here (the endpoint
/// when locksmith names none).
pub fn agent_toml(c: &CloudConfig, local_etcd: bool) -> Option<String> {
    let l = c.coreos.locksmith.clone().unwrap_or_default();
    let mut t = Table::new();
    if let Some(g) = &l.group {
        t.insert("group".into(), Value::String(g.clone()));
    }
    let mut window = Table::new();
    if let Some(s) = &l.window_start {
        window.insert("start".into(), Value::String(s.clone()));
    }
    if let Some(d) = l.window_length {
        window.insert(
            "length".into(),
            Value::String(tandem_contract::time::format_duration(d)),
        );
    }
    if !window.is_empty() {
        t.insert("window".into(), Value::Table(window));
    }
    let mut etcd = Table::new();
    let endpoints = if !l.endpoints.is_empty() {
        l.endpoints.clone()
    } else if local_etcd {
        vec![LOCAL_ETCD.to_string()]
    } else {
        Vec::new()
    };
    if !endpoints.is_empty() {
        etcd.insert(
            "endpoints".into(),
            Value::Array(endpoints.into_iter().map(Value::String).collect()),
        );
    }
    let mut put = |key: &str, v: &Option<String>| {
        if let Some(v) = v {
            etcd.insert(key.into(), Value::String(v.clone()));
        }
    };
    put("username", &l.etcd_username);
    put("ca-file", &l.etcd_cafile);
    put("cert-file", &l.etcd_certfile);
    put("key-file", &l.etcd_keyfile);
    if l.etcd_password.is_some() {
        etcd.insert("password-file".into(), Value::String(ETCD_PASSWORD.into()));
    }
    if !etcd.is_empty() {
        t.insert("etcd".into(), Value::Table(etcd));
    }
    render(t)
}

fn render(t: Table) -> Option<String> {
    if t.is_empty() {
        return None;
    }
    let body = toml::to_string(&t).ok()?;
    Some(format!(
        "# Written by tandem-provision from the config, at every boot.\n{body}"
    ))
}

/// The `applied` line for a file: its keys and values, a table's keys
/// prefixed with its name (`window.start Thu 04:00`).
fn summary(name: &str, text: &str) -> String {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{s}.");
            continue;
        }
        // A proxy URL's password never reaches the status or the console.
        keys.push(format!(
            "{section}{}",
            tandem_contract::log::redact(&line.replace(" = ", " ").replace('"', ""))
        ));
    }
    format!("{name}: {}", keys.join(", "))
}

pub(crate) fn apply(root: &Path, c: &CloudConfig, local_etcd: bool, out: &mut Out<'_>) {
    let has_etcd = local_etcd
        || c.coreos
            .locksmith
            .as_ref()
            .is_some_and(|l| !l.endpoints.is_empty());
    if let Some(text) = update_toml(c, has_etcd) {
        match write_atomic(
            &under(root, UPDATE_CONFIG),
            text.as_bytes(),
            Perm::root(0o644),
        ) {
            Ok(()) => out.done(
                summary("update.toml", &text)
                    .replace(" = ", " ")
                    .replace('"', ""),
            ),
            Err(e) => out.problem(
                Severity::Error,
                "coreos.update",
                format!("{UPDATE_CONFIG} not written: {e}: check that {DIR} is writable"),
            ),
        }
    }
    let password = c
        .coreos
        .locksmith
        .as_ref()
        .and_then(|l| l.etcd_password.as_ref());
    if let Some(p) = password
        && let Err(e) = write_atomic(
            &under(root, ETCD_PASSWORD),
            format!("{p}\n").as_bytes(),
            Perm::root(0o600),
        )
    {
        out.problem(
            Severity::Error,
            "coreos.locksmith.etcd_password",
            format!("{ETCD_PASSWORD} not written: {e}: check that {DIR} is writable"),
        );
    }
    if let Some(text) = agent_toml(c, local_etcd) {
        let shown = if password.is_some() {
            "agent.toml (etcd password in etcd-password)"
        } else {
            "agent.toml"
        };
        match write_atomic(
            &under(root, AGENT_CONFIG),
            text.as_bytes(),
            Perm::root(0o644),
        ) {
            Ok(()) => out.done(summary(shown, &text)),
            Err(e) => out.problem(
                Severity::Error,
                "coreos.locksmith",
                format!("{AGENT_CONFIG} not written: {e}: check that {DIR} is writable"),
            ),
        }
    }
}
