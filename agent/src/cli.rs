//! The operators' commands on the cluster, shared by the node's
//! `tandemctl` and the host's `tandem`:
//!
//! ```text
//! cluster status [--json]           the fleet: versions, states, lock holders, failed versions
//! cluster forget-failed <version>   let the cluster install a version that rolled back
//! lock status [--json]              the reboot semaphore of the group
//! lock lock [<id>]                  take a slot (for this machine, or for <id>)
//! lock unlock <id>                  give <id>'s slot back (a node that is gone)
//! lock set-max <n>                  how many nodes may reboot at once
//! options: --etcd <url> (repeatable; default: agent.toml's [etcd]), --group <name>
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tandem_contract::Version;
use updater::clock::{format_duration, format_unix, now_unix};

use crate::config::{ConfigPaths, DEFAULT_GROUP};
use crate::etcd::{self, Auth, Etcd, Tls};
use crate::fleet::{self, FailedRecord, KEEPALIVE_EVERY, NodeRecord};
use crate::lock::{self, Lock, Locked, Unlocked};
use crate::semaphore::Semaphore;

/// Usage text.
pub const USAGE: &str = "cluster status [--json]           the fleet: versions, update and agent states, lock holders, failed versions
cluster forget-failed <version>   let the cluster install a version that rolled back again
lock status [--json]              the reboot semaphore of the group
lock lock [<id>]                  take a slot of the semaphore (for this machine, or <id>)
lock unlock <id>                  give <id>'s slot back (e.g. a node that is gone for good)
lock set-max <n>                  how many nodes of the group may reboot at once
options: --etcd <url> (repeatable; default: [etcd] of agent.toml), --group <name> (default: agent.toml's, else default)";

/// What the commands can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong.
    #[error("{0}\nusage:\n{USAGE}")]
    Usage(#[source] Usage),
    /// No etcd endpoint given or configured.
    #[error(
        "no etcd: pass --etcd http://<host>:2379, or set [etcd] endpoints in /etc/tandem/agent.toml"
    )]
    NoEtcd,
    /// agent.toml's `[etcd]` is not usable (password file, TLS files).
    #[error(transparent)]
    Setup(#[from] crate::error::Error),
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] etcd::Error),
    /// The lock operation failed.
    #[error(transparent)]
    Lock(#[from] lock::Error),
}

/// What is wrong with a command line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Usage {
    /// An option without its value.
    #[error("{option} needs {what}")]
    MissingValue {
        /// The option.
        option: &'static str,
        /// What it needs.
        what: &'static str,
    },
    /// An option that does not exist.
    #[error("unknown option {0}")]
    UnknownOption(String),
    /// `lock lock` without an id where there is no machine id.
    #[error("lock lock: give the holder id (no machine id here)")]
    NoHolderId,
    /// `lock lock` with more than one id.
    #[error("lock lock takes at most one id")]
    TooManyIds,
    /// `forget-failed` with something else than a version.
    #[error("forget-failed: {0}")]
    NotAVersion(#[source] tandem_contract::version::VersionError),
    /// `set-max` with something else than a number.
    #[error("set-max: {0:?} is not a number")]
    NotANumber(String),
    /// No command.
    #[error("a command is needed")]
    NoCommand,
    /// A command that does not exist.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
}

/// Where the defaults come from.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// agent.toml layers (on a node); `None` on the host.
    pub config: Option<ConfigPaths>,
    /// This machine's id, for `lock lock` without an id.
    pub machine_id: Option<String>,
}

struct Args<'a> {
    words: Vec<&'a str>,
    json: bool,
    endpoints: Vec<String>,
    group: Option<String>,
}

fn parse<'a>(args: &[&'a str]) -> Result<Args<'a>, Error> {
    let mut a = Args {
        words: Vec::new(),
        json: false,
        endpoints: Vec::new(),
        group: None,
    };
    let mut it = args.iter();
    while let Some(w) = it.next() {
        match *w {
            "--json" => a.json = true,
            "--etcd" => a.endpoints.extend(
                it.next()
                    .ok_or(Error::Usage(Usage::MissingValue {
                        option: "--etcd",
                        what: "a URL",
                    }))?
                    .split(',')
                    .map(str::to_string),
            ),
            "--group" => {
                a.group = Some(
                    it.next()
                        .ok_or(Error::Usage(Usage::MissingValue {
                            option: "--group",
                            what: "a name",
                        }))?
                        .to_string(),
                )
            }
            other if other.starts_with("--") => {
                return Err(Error::Usage(Usage::UnknownOption(other.to_string())));
            }
            other => a.words.push(other),
        }
    }
    Ok(a)
}

/// Runs `cluster …` or `lock …` (`args` starts with the word); the exit
/// code.
pub fn run(args: &[&str], defaults: &Defaults) -> Result<u8, Error> {
    let a = parse(args)?;
    let config = defaults.config.as_ref().and_then(|p| p.load().ok());
    let group = a
        .group
        .clone()
        .or_else(|| config.as_ref().map(|c| c.group.clone()))
        .unwrap_or_else(|| DEFAULT_GROUP.into());
    let etcd = || -> Result<Etcd, Error> {
        if !a.endpoints.is_empty() {
            return Ok(Etcd::new(&a.endpoints, Auth::None, &Tls::default())?);
        }
        match config.as_ref().and_then(|c| c.etcd.as_ref()) {
            Some(s) => Ok(crate::daemon::connect(s)?),
            None => Err(Error::NoEtcd),
        }
    };
    match a.words.as_slice() {
        ["cluster", "status"] => {
            let view = ClusterView::read(&etcd()?, &group)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
            } else {
                print!("{}", view.render(now_unix()));
            }
            Ok(0)
        }
        ["cluster", "forget-failed", version] => {
            let version: Version = version
                .parse()
                .map_err(|e| Error::Usage(Usage::NotAVersion(e)))?;
            if fleet::forget_failed(&etcd()?, &version)? {
                println!("{version}: failed record deleted; nodes may install it again");
            } else {
                println!("{version}: no failed record (nothing to do)");
            }
            Ok(0)
        }
        ["lock", "status"] => {
            let e = etcd()?;
            let s = Lock::new(&e, &group).status()?;
            if a.json {
                println!("{}", lock_json(&group, &s.key, &s.semaphore));
            } else {
                println!("{}", render_lock(&group, &s.key, &s.semaphore, &[]));
            }
            Ok(0)
        }
        ["lock", "lock", rest @ ..] => {
            let id = match rest {
                [id] => id.to_string(),
                [] => defaults
                    .machine_id
                    .clone()
                    .ok_or(Error::Usage(Usage::NoHolderId))?,
                _ => return Err(Error::Usage(Usage::TooManyIds)),
            };
            let e = etcd()?;
            match Lock::new(&e, &group).lock(&id)? {
                Locked::Acquired { state } => {
                    println!("{id} took a slot of {}", state.key);
                    Ok(0)
                }
                Locked::AlreadyHeld { state } => {
                    println!("{id} holds a slot of {} already", state.key);
                    Ok(0)
                }
                Locked::Full { state } => {
                    println!(
                        "{} is full: held by {} (max {})",
                        state.key,
                        state.semaphore.holders.join(", "),
                        state.semaphore.max
                    );
                    Ok(1)
                }
            }
        }
        ["lock", "unlock", id] => {
            let e = etcd()?;
            match Lock::new(&e, &group).unlock(id)? {
                Unlocked::Released { state } => {
                    println!("{id} gave back its slot of {}", state.key)
                }
                Unlocked::NotHeld { state } => println!("{id} holds no slot of {}", state.key),
            }
            Ok(0)
        }
        ["lock", "set-max", n] => {
            let max: i64 = n
                .parse()
                .map_err(|_| Error::Usage(Usage::NotANumber(n.to_string())))?;
            let e = etcd()?;
            let (before, after) = Lock::new(&e, &group).set_max(max)?;
            println!(
                "{}: max {} (was {})",
                after.key,
                after.semaphore.max,
                before.map_or_else(|| "not a semaphore".into(), |b| b.max.to_string())
            );
            Ok(0)
        }
        [] => Err(Error::Usage(Usage::NoCommand)),
        other => Err(Error::Usage(Usage::UnknownCommand(other.join(" ")))),
    }
}

/// A group's semaphore as shown.
#[derive(Clone, Debug, Serialize)]
pub struct GroupLock {
    /// The group.
    pub group: String,
    /// Its key.
    pub key: String,
    /// Slots.
    pub max: i64,
    /// Holders.
    pub holders: Vec<String>,
}

/// Everything `cluster status` shows.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// The endpoint that answered.
    pub etcd: String,
    /// etcd's revision at the read.
    pub revision: u64,
    /// The semaphore of every group seen.
    pub locks: Vec<GroupLock>,
    /// Node records (live leases), by host name.
    pub nodes: Vec<NodeRecord>,
    /// Failed versions.
    pub failed: Vec<FailedRecord>,
    /// Records that are not Tandem's.
    pub unreadable: Vec<String>,
}

impl ClusterView {
    /// Reads the fleet (the group `group` is always shown).
    pub fn read(etcd: &Etcd, group: &str) -> Result<ClusterView, Error> {
        let revision = etcd.revision()?;
        let (mut nodes, mut unreadable) = fleet::nodes(etcd)?;
        nodes.sort_by(|a, b| (&a.hostname, &a.machine_id).cmp(&(&b.hostname, &b.machine_id)));
        let (failed, bad) = fleet::failed(etcd)?;
        unreadable.extend(bad);
        let mut groups: Vec<String> = nodes.iter().map(|n| n.group.clone()).collect();
        groups.push(group.to_string());
        groups.sort();
        groups.dedup();
        let mut locks = Vec::new();
        for g in groups {
            let s = Lock::new(etcd, &g).status()?;
            locks.push(GroupLock {
                group: g,
                key: s.key,
                max: s.semaphore.max,
                holders: s.semaphore.holders,
            });
        }
        Ok(ClusterView {
            etcd: etcd.endpoint().to_string(),
            revision,
            locks,
            nodes,
            failed,
            unreadable,
        })
    }

    /// The text shown to people.
    pub fn render(&self, now: u64) -> String {
        let mut out = format!("etcd:     {} (revision {})\n", self.etcd, self.revision);
        // Unknown versions (`None`) sort first, as the empty text did.
        let mut versions: BTreeMap<Option<&Version>, usize> = BTreeMap::new();
        for n in &self.nodes {
            *versions.entry(n.version.as_ref()).or_default() += 1;
        }
        let vs: Vec<String> = versions
            .iter()
            .map(|(v, n)| format!("{n} on {}", v.map_or("?".into(), Version::to_string)))
            .collect();
        out.push_str(&format!(
            "nodes:    {} ({})\n",
            self.nodes.len(),
            if vs.is_empty() {
                "none".into()
            } else {
                vs.join(", ")
            }
        ));
        for l in &self.locks {
            let since: Vec<(String, Option<u64>)> = l
                .holders
                .iter()
                .map(|h| {
                    let n = self.nodes.iter().find(|n| &n.machine_id == h);
                    (h.clone(), n.and_then(|n| n.lock_since))
                })
                .collect();
            out.push_str(&format!(
                "{}\n",
                render_lock(
                    &l.group,
                    &l.key,
                    &Semaphore {
                        semaphore: l.max - l.holders.len() as i64,
                        max: l.max,
                        holders: l.holders.clone(),
                    },
                    &since
                        .iter()
                        .map(|(h, s)| (h.as_str(), *s, self.name_of(h), now))
                        .collect::<Vec<_>>()
                )
            ));
        }
        if !self.nodes.is_empty() {
            out.push_str(&format!(
                "\n{:<16} {:<12} {:<9} {:<4} {:<22} {:<18} {:<5} {}\n",
                "HOST", "MACHINE", "VERSION", "SLOT", "UPDATE", "AGENT", "LOCK", "SEEN"
            ));
            for n in &self.nodes {
                let update_state = text_or_empty(n.update_state.as_ref());
                let update = match &n.pending_version {
                    Some(v) => format!("{update_state} {v}"),
                    None => update_state,
                };
                let seen = now.saturating_sub(n.last_seen);
                let stale = if seen > 2 * KEEPALIVE_EVERY.as_secs() {
                    " NOT SEEN"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "{:<16} {:<12} {:<9} {:<4} {:<22} {:<18} {:<5} {} ago{stale}\n",
                    n.hostname,
                    short(&n.machine_id),
                    text_or_empty(n.version.as_ref()),
                    text_or_empty(n.slot.as_ref()),
                    update,
                    text_or_empty(n.agent_state.as_ref()),
                    if n.lock { "held" } else { "-" },
                    format_duration(Duration::from_secs(seen)),
                ));
            }
        }
        let broken: Vec<&NodeRecord> = self
            .nodes
            .iter()
            .filter(|n| !n.config_errors.is_empty())
            .collect();
        if !broken.is_empty() {
            out.push_str("\nconfigs with errors (`tandemctl config show` on the node):\n");
            for n in broken {
                out.push_str(&format!(
                    "  {} ({}): config {}\n",
                    n.hostname,
                    short(&n.machine_id),
                    text_or_empty(n.config.as_ref())
                ));
                for e in &n.config_errors {
                    out.push_str(&format!("    {e}\n"));
                }
            }
        }
        if !self.failed.is_empty() {
            out.push_str("\nfailed versions (no node installs them; `cluster forget-failed <v>` allows them again):\n");
            for f in &self.failed {
                out.push_str(&format!(
                    "  {} on {} ({}) at {}: {}\n",
                    f.version,
                    f.hostname,
                    short(&f.machine_id),
                    format_unix(f.at),
                    f.reason
                ));
            }
        }
        for u in &self.unreadable {
            out.push_str(&format!("warning:  {u}\n"));
        }
        out
    }

    fn name_of(&self, id: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.machine_id == id)
            .map(|n| n.hostname.clone())
    }
}

/// A record's value as text; an unknown one as the empty text it was
/// written as.
fn text_or_empty(v: Option<&impl std::fmt::Display>) -> String {
    v.map(ToString::to_string).unwrap_or_default()
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn lock_json(group: &str, key: &str, s: &Semaphore) -> String {
    serde_json::to_string_pretty(&GroupLock {
        group: group.into(),
        key: key.into(),
        max: s.max,
        holders: s.holders.clone(),
    })
    .unwrap_or_default()
}

/// `lock:     group default (key): 1 of 1 held`, then one line per
/// holder: (id, since, host name, now).
fn render_lock(
    group: &str,
    key: &str,
    s: &Semaphore,
    known: &[(&str, Option<u64>, Option<String>, u64)],
) -> String {
    let mut out = format!(
        "lock:     group {group} ({key}): {} of {} held",
        s.holders.len(),
        s.max
    );
    for h in &s.holders {
        let info = known.iter().find(|k| k.0 == h);
        let name = match info.and_then(|k| k.2.clone()) {
            Some(n) => format!(" ({n})"),
            None if known.is_empty() => String::new(),
            None => " (no live node record: gone? `lock unlock <id>` frees its slot)".into(),
        };
        let since = match info {
            Some((_, Some(t), _, now)) => format!(
                " since {} ({} ago)",
                format_unix(*t),
                format_duration(Duration::from_secs(now.saturating_sub(*t)))
            ),
            _ => String::new(),
        };
        out.push_str(&format!("\n            {h}{name}{since}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_contract::{AgentState, UpdateStateKind};

    fn v(text: &str) -> Version {
        text.parse().expect("a version")
    }

    #[test]
    fn options_anywhere() {
        let a = parse(&[
            "lock",
            "--json",
            "status",
            "--etcd",
            "http://a:1,http://b:2",
            "--group",
            "g",
        ])
        .expect("parses");
        assert_eq!(a.words, ["lock", "status"]);
        assert!(a.json);
        assert_eq!(a.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(a.group.as_deref(), Some("g"));
        assert!(matches!(parse(&["--etcd"]), Err(Error::Usage(_))));
        assert!(matches!(parse(&["--bogus"]), Err(Error::Usage(_))));
        // Not a version: said before etcd is asked (there is none here).
        let e = run(&["cluster", "forget-failed", "v1.1"], &Defaults::default())
            .expect_err("not a version");
        assert!(
            matches!(e, Error::Usage(Usage::NotAVersion(_)))
                && e.to_string().contains("\"v1.1\" is not a version"),
            "{e}"
        );
    }

    #[test]
    fn cluster_view_renders_holders_and_failures() {
        let view = ClusterView {
            etcd: "http://h:2379".into(),
            revision: 7,
            locks: vec![GroupLock {
                group: "default".into(),
                key: crate::semaphore::DEFAULT_KEY.into(),
                max: 1,
                holders: vec!["aaaa".into(), "gone".into()],
            }],
            nodes: vec![NodeRecord {
                machine_id: "aaaa".into(),
                hostname: "node-1".into(),
                version: Some(v("1.0.0")),
                update_state: Some(UpdateStateKind::UpdatedNeedReboot),
                pending_version: Some(v("1.1.0")),
                agent_state: Some(AgentState::Rebooting),
                lock: true,
                lock_since: Some(100),
                last_seen: 100,
                config: Some(tandem_contract::provision::ProvisionState::Failed),
                config_errors: vec!["user-data:3:1: units: misplaced".into()],
                ..Default::default()
            }],
            failed: vec![FailedRecord {
                version: v("1.2.0"),
                machine_id: String::new(),
                hostname: "node-3".into(),
                reason: "boot failed".into(),
                at: 0,
            }],
            unreadable: vec![],
        };
        let text = view.render(160);
        for want in [
            "nodes:    1 (1 on 1.0.0)",
            "2 of 1 held",
            "aaaa (node-1) since",
            "gone (no live node record",
            "updated-need-reboot 1.1.0",
            "1.2.0 on node-3",
            "1m ago",
            "  node-1 (aaaa): config failed\n    user-data:3:1: units: misplaced\n",
        ] {
            assert!(text.contains(want), "{want:?} missing in:\n{text}");
        }
    }
}
