//! The update engine: check the channel, install into the inactive slot,
//! confirm or give up a new boot, notice rollbacks.
//!
//! The decisions are pure functions with unit tests, each in its module:
//! - [`schedule`]: when to check next ([`next_delay`]: interval ±10 %
//!   jitter, bounded exponential backoff after failures);
//! - [`check`]: what a check result leads to ([`after_check`]);
//! - [`boot_outcome`]: what a boot means given `state.json`'s pending
//!   record and the slot table ([`classify_boot`]).
//!
//! The I/O:
//! - [`Engine`] (here) holds the node's facts and configuration (read by
//!   [`crate::config`]), checks the channel and records results; its
//!   boot-side steps (rollback, confirmation, giving up) are in `boot.rs`;
//! - [`install()`] is the whole apply, runnable on its own thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use repository::keys;
use repository::policy::{self, NodeFacts, Offer as PolicyOffer};
use repository::repo;

use crate::clock::{self, now_unix};
use crate::config::{self, Config};
use crate::disk::BootDisk;
use crate::error::Error;
use crate::health::Tracker;
use crate::http::{Fetch, Servers};
use crate::node::{self, BootFacts, Identity, Paths};
use crate::state::State;
use crate::status::{UpdateState, UpdateStatus};
use crate::transport::Transport;
use crate::version::Version;

mod boot;
pub mod boot_outcome;
pub mod check;
pub mod install;
pub mod schedule;

pub use boot_outcome::{BootOutcome, classify_boot, rollback_reason, trial_boot};
use check::same_version;
pub use check::{CheckOutcome, Next, Offer, after_check};
pub use install::{InstallContext, install};
pub use schedule::{FIRST_BACKOFF, MAX_BACKOFF, jitter, next_delay, random_unit};

/// The status, shared between the engine, its install thread and the
/// socket server.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<UpdateStatus>>);

impl Shared {
    /// A copy of the status.
    pub fn get(&self) -> UpdateStatus {
        self.0
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Changes the status.
    pub fn update<T>(&self, f: impl FnOnce(&mut UpdateStatus) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Enters `state` (and notes when).
    pub fn set_state(&self, state: UpdateState) {
        self.update(|s| {
            if s.state.kind() != state.kind() {
                s.since = now_unix();
            }
            s.state = state;
        });
    }
}

/// What a reboot request does (PID 1 on a node; recorded in tests).
pub type RebootFn = dyn Fn(&str) + Send + Sync;

/// The node's update engine.
pub struct Engine {
    /// File locations.
    pub paths: Paths,
    /// The status.
    pub status: Shared,
    config: Config,
    fingerprints: Vec<Option<(std::time::SystemTime, u64)>>,
    identity: Result<Identity, String>,
    boot: Result<BootFacts, String>,
    health: Tracker,
    /// The channel recorded in state.json by the first install (see
    /// [`State::channel`]).
    home_channel: Option<String>,
    /// Checks or installs that failed in a row.
    pub failures: u32,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("paths", &self.paths)
            .field("config", &self.config)
            .finish()
    }
}

impl Engine {
    /// Reads the node's facts and configuration.
    pub fn new(paths: Paths) -> Engine {
        let identity = Identity::read(&paths.os_release).map_err(|e| e.to_string());
        let boot = BootFacts::read(&paths).map_err(|e| e.to_string());
        let mut e = Engine {
            paths,
            status: Shared::default(),
            config: Config::default(),
            fingerprints: Vec::new(),
            identity,
            boot,
            health: Tracker::default(),
            home_channel: None,
            failures: 0,
        };
        e.home_channel = e.load_home_channel();
        e.status.update(|s| {
            s.format = crate::status::FORMAT;
            s.since = now_unix();
            if let Ok(id) = &e.identity {
                s.running_version = Some(id.version.clone());
                s.image = Some(id.image.clone());
            }
            if let Ok(b) = &e.boot {
                s.running_slot = Some(b.slot);
            }
        });
        e.reload_config(true);
        e
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The channel followed: configured (admin or OEM), else the one
    /// recorded on first start, else the image's, else `stable`.
    pub fn channel(&self) -> String {
        self.config
            .channel
            .clone()
            .or_else(|| self.home_channel.clone())
            .or_else(|| self.identity.as_ref().ok().and_then(|i| i.channel.clone()))
            .unwrap_or_else(|| "stable".into())
    }

    /// The channel recorded in state.json by the first install (none
    /// before: until then the running image's own channel is the home one).
    fn load_home_channel(&mut self) -> Option<String> {
        let path = self.paths.state_file();
        match State::load(&path) {
            Ok(state) => state.channel,
            Err(e) => {
                self.status.update(|s| {
                    s.warnings
                        .push(format!("cannot read {}: {e}", path.display()))
                });
                None
            }
        }
    }

    /// Re-reads the configuration if a file changed (or always, with
    /// `force`: the OEM partition has no cheap change marker). An invalid
    /// layer is reported and the last good configuration stays.
    pub fn reload_config(&mut self, force: bool) -> bool {
        let prints = vec![
            config::fingerprint(&self.paths.image_config),
            config::fingerprint(&self.paths.provisioned_config),
            config::fingerprint(&self.paths.admin_config),
        ];
        if !force && prints == self.fingerprints {
            return false;
        }
        self.fingerprints = prints;
        let (sources, errors) = config::read_layers(
            &self.paths.image_config,
            self.boot.as_ref().ok().map(|b| b.disk.as_path()),
            &self.paths.provisioned_config,
            &self.paths.admin_config,
        );
        let mut errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        if errors.is_empty() {
            match config::merge(&sources) {
                Ok(c) => {
                    if c != self.config {
                        crate::log!(
                            "configuration: server {:?}, channel {:?}, check every {}, reboot strategy {}",
                            c.servers,
                            c.channel,
                            clock::format_duration(c.check_interval),
                            c.reboot_strategy
                        );
                    }
                    self.config = c;
                }
                Err(es) => errors.extend(es.iter().map(ToString::to_string)),
            }
        }
        for e in &errors {
            crate::log!("configuration error: {e} (keeping the last good configuration)");
        }
        let channel = self.channel();
        let cfg = self.config.clone();
        self.status.update(|s| {
            s.config_errors = errors;
            s.channel = Some(channel);
            s.server = (!cfg.servers.is_empty()).then(|| cfg.servers.join(", "));
            s.reboot_strategy = cfg.reboot_strategy;
            s.check_interval_secs = cfg.check_interval.as_secs();
        });
        true
    }

    fn identity(&self) -> Result<&Identity, Error> {
        self.identity
            .as_ref()
            .map_err(|e| Error::Node { what: e.clone() })
    }

    fn boot(&self) -> Result<&BootFacts, Error> {
        self.boot
            .as_ref()
            .map_err(|e| Error::Node { what: e.clone() })
    }

    /// What an install needs.
    pub fn install_context(&self) -> Result<InstallContext, Error> {
        Ok(InstallContext {
            paths: self.paths.clone(),
            boot: self.boot()?.clone(),
            identity: self.identity()?.clone(),
        })
    }

    /// A client for the configured servers (in order), with the image's
    /// CA roots, `ca-file` and the proxy.
    pub fn fetcher(&self) -> Result<Servers, Error> {
        if self.config.servers.is_empty() {
            return Err(Error::NoServer);
        }
        let transport = Transport::new(self.config.ca_file.as_deref(), &self.config.proxy)?;
        Servers::new(&self.config.servers, &transport)
    }

    /// Fetches and verifies the channel pointer and, if it offers an
    /// update, the manifest. Writes nothing.
    pub fn check(&mut self, fetch: &mut dyn Fetch) -> Result<CheckOutcome, Error> {
        let id = self.identity()?.clone();
        let channel = self.channel();
        let machine_id = node::machine_id(&self.paths.machine_id)?;
        let state = State::load(&self.paths.state_file())?;
        let mut failed = state.failed_versions();
        // The cluster's failed versions, as the reboot agent last reported them.
        let cluster: Vec<Version> = self
            .status
            .get()
            .agent
            .map(|a| a.cluster_failed)
            .unwrap_or_default();
        for v in cluster {
            if !failed.contains(&v) {
                failed.push(v);
            }
        }
        let (keys, key_errors) = keys::load_trust_dir(&self.paths.trust_dir);
        let mut warnings: Vec<String> = key_errors
            .iter()
            .map(|e| format!("trusted key ignored: {e}"))
            .collect();
        if keys.is_empty() {
            warnings.push(format!(
                "no trusted keys in {}: every channel pointer is refused",
                self.paths.trust_dir.display()
            ));
        }
        self.status.update(|s| {
            s.warnings = warnings;
            s.failed_versions = state.failed_versions();
        });
        let facts = NodeFacts {
            image: &id.image,
            arch: &id.arch,
            channel: &channel,
            running: &id.version,
            now: now_unix(),
            allow_downgrade: self.config.allow_downgrade,
            failed: &failed,
            machine_id: &machine_id,
        };
        let bytes = fetch.get(
            &repo::pointer_path(&id.image, &channel),
            repo::MAX_METADATA_BYTES,
        )?;
        match policy::check_pointer(&bytes, &keys, &facts)? {
            PolicyOffer::UpToDate => Ok(CheckOutcome::UpToDate {
                version: id.version.clone(),
                channel,
            }),
            PolicyOffer::Update {
                pointer,
                eligible_at,
            } => {
                let max = pointer.manifest.size.min(repo::MAX_METADATA_BYTES);
                let mbytes = fetch.get(&pointer.manifest.path, max)?;
                let manifest = policy::check_manifest(&mbytes, &pointer, &facts)?;
                let manifest_sha256 = hex::encode(Sha256::digest(&mbytes));
                Ok(CheckOutcome::Available(Box::new(Offer {
                    pointer,
                    manifest,
                    manifest_sha256,
                    eligible_at,
                })))
            }
        }
    }

    /// Whether the running slot is confirmed (marked successful).
    pub fn running_confirmed(&self) -> Result<bool, Error> {
        let b = self.boot()?;
        Ok(BootDisk::open(&b.disk, false)?
            .slots()?
            .get(b.slot)
            .successful())
    }

    /// Notes a failure: state `error` with what happens next.
    pub fn record_error(&mut self, e: &Error, retry_in: Duration) {
        self.failures += 1;
        let reason = e.to_string();
        crate::log!("error: {reason}");
        let action = match e {
            Error::NoServer | Error::Node { .. } | Error::Config { .. } => {
                format!(
                    "fix the configuration; it is re-read within seconds (next try in {})",
                    clock::format_duration(retry_in)
                )
            }
            _ => format!(
                "retrying in {} ({} failure(s) in a row); `tandemctl update check` tries now",
                clock::format_duration(retry_in),
                self.failures
            ),
        };
        let keep = self.status.update(|s| {
            s.failures = self.failures;
            s.last_check = Some(now_unix());
            s.last_result = Some(format!("error: {reason}"));
            // A rollback stays visible while the channel still offers the
            // failed version; a waiting reboot stays the state.
            match (&s.state, e) {
                (UpdateState::UpdatedNeedReboot { .. }, _) => true,
                (
                    UpdateState::RolledBack { version, .. },
                    Error::Refused(policy::Refusal::FailedBefore { version: v }),
                ) => same_version(&version.to_string(), v),
                _ => false,
            }
        });
        if !keep {
            self.status.set_state(UpdateState::Error { reason, action });
        }
    }

    /// Notes a successful check.
    pub fn record_check(&mut self, outcome: &CheckOutcome) {
        self.failures = 0;
        let result = match outcome {
            CheckOutcome::UpToDate { version, channel } => {
                format!("up to date ({version} on {channel})")
            }
            CheckOutcome::Available(o) => {
                format!("{} available on {}", o.pointer.version, o.pointer.channel)
            }
        };
        crate::log!("check: {result}");
        self.status.update(|s| {
            s.failures = 0;
            s.last_check = Some(now_unix());
            s.last_result = Some(result);
        });
        if let CheckOutcome::UpToDate { .. } = outcome {
            let current = self.status.get().state;
            if !matches!(
                current,
                UpdateState::UpdatedNeedReboot { .. } | UpdateState::RolledBack { .. }
            ) {
                self.status.set_state(UpdateState::Idle);
            }
        }
    }

    /// Writes `channel` into the administrator's update.toml (atomically,
    /// keeping everything else) and re-reads the configuration.
    pub fn set_channel(&mut self, channel: &str) -> Result<(), Error> {
        config::write_admin_channel(&self.paths.admin_config, channel)?;
        self.reload_config(true);
        Ok(())
    }
}
