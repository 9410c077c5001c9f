//! Reading the fleet: node records, failed versions and reboot semaphores
//! from etcd (the agent's own client and keys), channel pointers from the
//! update repository (a directory, or a URL read with the node's own HTTP
//! client). Nothing is written anywhere.

use std::collections::BTreeSet;
use std::path::PathBuf;

use agent::etcd::Etcd;
use agent::fleet;
use agent::lock::Lock;
use agent::semaphore;
use repository::keys::PublicKey;
use repository::repo::{self, ChannelPointer, Envelope, MAX_METADATA_BYTES};
use updater::http::{Fetch, Http};
use updater::transport::Transport;

use crate::memory::Memory;
use crate::view::{ChannelInput, LockInput, Snapshot};

/// Where the channel pointers are.
#[derive(Clone, Debug)]
pub enum Repo {
    /// A repository directory (its channels are listed).
    Dir(PathBuf),
    /// A repository URL (the channels the nodes follow are read).
    Url(String),
}

impl Repo {
    /// `http://…` or `https://…` is a URL, anything else a directory.
    pub fn parse(text: &str) -> Repo {
        if text.starts_with("http://") || text.starts_with("https://") {
            Repo::Url(text.trim_end_matches('/').to_string())
        } else {
            Repo::Dir(PathBuf::from(text))
        }
    }

    fn describe(&self) -> String {
        match self {
            Repo::Dir(p) => p.display().to_string(),
            Repo::Url(u) => u.clone(),
        }
    }

    /// The `(image, channel)` pairs a directory serves.
    fn list(&self) -> Result<Vec<(String, String)>, String> {
        let Repo::Dir(root) = self else {
            return Ok(Vec::new());
        };
        let images =
            std::fs::read_dir(root).map_err(|e| format!("repository {}: {e}", root.display()))?;
        let mut out = Vec::new();
        for image in images.flatten() {
            let Ok(channels) = std::fs::read_dir(image.path().join("channels")) else {
                continue;
            };
            for ch in channels.flatten() {
                let name = ch.file_name().to_string_lossy().into_owned();
                if let Some(channel) = name.strip_suffix(".json") {
                    out.push((
                        image.file_name().to_string_lossy().into_owned(),
                        channel.to_string(),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A channel's pointer, read and parsed (and its signature checked
    /// against `trusted`, when some are given).
    fn pointer(
        &self,
        image: &str,
        channel: &str,
        trusted: &[PublicKey],
    ) -> (Result<ChannelPointer, String>, Option<bool>) {
        let path = repo::pointer_path(image, channel);
        let bytes = match self {
            Repo::Dir(root) => {
                let p = root.join(&path);
                std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
            }
            Repo::Url(base) => Http::new(base, &Transport::host())
                .get(&path, MAX_METADATA_BYTES)
                .map_err(|e| e.to_string()),
        };
        let env: Envelope = match bytes
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("{path}: {e}")))
        {
            Ok(env) => env,
            Err(e) => return (Err(e), None),
        };
        let verified = (!trusted.is_empty())
            .then(|| repository::policy::verify_envelope(&env, trusted).is_ok());
        let pointer = serde_json::from_str(&env.signed)
            .map_err(|e| format!("{path}: not a channel pointer ({e})"));
        (pointer, verified)
    }
}

/// What the dashboard reads.
#[derive(Debug)]
pub struct Source {
    /// The cluster's etcd.
    pub etcd: Etcd,
    /// The update repository, if any.
    pub repo: Option<Repo>,
    /// Keys the pointers' signatures are checked against (none: not checked).
    pub trusted: Vec<PublicKey>,
}

impl Source {
    /// Reads everything once. Failures become problems in the snapshot
    /// (the page says what it could not read) rather than errors.
    pub fn snapshot(&self, memory: &mut Memory, now: u64) -> Snapshot {
        let mut s = Snapshot {
            now,
            etcd_up: true,
            ..Snapshot::default()
        };
        match fleet::nodes(&self.etcd) {
            Ok((nodes, bad)) => {
                s.problems.extend(bad);
                s.departed = memory.update(now, &nodes);
                s.nodes = nodes;
            }
            Err(e) => {
                s.etcd_up = false;
                s.problems.push(format!("etcd: {e}"));
            }
        }
        if s.etcd_up {
            match fleet::failed(&self.etcd) {
                Ok((failed, bad)) => {
                    s.failed = failed;
                    s.problems.extend(bad);
                }
                Err(e) => s.problems.push(format!("etcd: {e}")),
            }
            let groups: BTreeSet<&str> = std::iter::once(semaphore::DEFAULT_GROUP)
                .chain(
                    s.nodes
                        .iter()
                        .map(|r| r.group.as_str())
                        .filter(|g| !g.is_empty()),
                )
                .collect();
            for group in groups {
                let lock = Lock::new(&self.etcd, group);
                s.locks.push(LockInput {
                    group: group.to_string(),
                    key: lock.key().to_string(),
                    semaphore: lock
                        .status()
                        .map(|st| st.semaphore)
                        .map_err(|e| e.to_string()),
                });
            }
        }
        if let Some(repo) = &self.repo {
            let mut up = true;
            let mut pairs: BTreeSet<(String, String)> = match repo.list() {
                Ok(l) => l.into_iter().collect(),
                Err(e) => {
                    up = false;
                    s.problems.push(e);
                    BTreeSet::new()
                }
            };
            pairs.extend(
                s.nodes
                    .iter()
                    .filter_map(|r| Some((r.image.clone()?, r.channel.clone()?))),
            );
            for (image, channel) in pairs {
                let (pointer, verified) = repo.pointer(&image, &channel, &self.trusted);
                if let Err(e) = &pointer {
                    up = false;
                    s.problems.push(format!(
                        "channel {image}/{channel} in {}: {e}",
                        repo.describe()
                    ));
                }
                s.channels.push(ChannelInput {
                    image,
                    channel,
                    pointer,
                    verified,
                });
            }
            s.repository_up = Some(up);
        }
        s
    }
}
