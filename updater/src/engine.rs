//! The update engine: check the channel, install into the inactive slot,
//! confirm or give up a new boot, notice rollbacks.
//!
//! The decisions are pure functions with unit tests: when to check next
//! ([`next_delay`]: interval ±10 % jitter, bounded exponential backoff
//! after failures), what a boot means given `state.json`'s pending record
//! and the slot table ([`classify_boot`]), what a check result leads to
//! ([`after_check`]). [`Engine`] holds the node's facts and configuration
//! and does the I/O; [`install`] is the whole apply, runnable on its own
//! thread.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tandem_slot::{Slot, SlotPair};

use crate::apply::{self, SlotJob};
use crate::clock::{self, now_unix};
use crate::config::{self, Config, Source};
use crate::disk::{self, BootDisk};
use crate::error::Error;
use crate::esp;
use crate::health::{self, Step, Tracker};
use crate::http::{Fetch, Http};
use crate::keys;
use crate::node::{self, BootFacts, Identity, Paths};
use crate::policy::{self, NodeFacts, Offer as PolicyOffer};
use crate::repo::{self, ChannelPointer, Manifest};
use crate::state::{Pending, State};
use crate::status::{ApplyReport, BootHealth, Rollback, Transfer, UpdateState, UpdateStatus};
use crate::version::Version;

/// Longest wait between retries after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// First wait after a failure (or the interval, if shorter).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);

/// `d` spread by ±10 %: `r` in [-1, 1] picks where.
pub fn jitter(d: Duration, r: f64) -> Duration {
    d.mul_f64(1.0 + 0.1 * r.clamp(-1.0, 1.0))
}

/// The wait before the next check: the interval after a success; after
/// `failures` failures in a row, `min(30 s, interval)` doubled per further
/// failure, capped at `min(interval, 1 h)` (but never below the first
/// step). Both ±10 % jitter, so a fleet does not check in lockstep.
pub fn next_delay(interval: Duration, failures: u32, r: f64) -> Duration {
    if failures == 0 {
        return jitter(interval, r);
    }
    let first = FIRST_BACKOFF.min(interval);
    let cap = interval.min(MAX_BACKOFF).max(first);
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    jitter(first.saturating_mul(factor).min(cap), r)
}

/// A random number in [-1, 1) for [`jitter`].
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Without randomness, spread by the clock's nanoseconds.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return f64::from(n % 2_000_000) / 1_000_000.0 - 1.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// What this boot means for an earlier update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootOutcome {
    /// No update was pending.
    NoPending,
    /// The update is activated but the node has not rebooted yet.
    WaitingForReboot,
    /// The node runs the pending update's slot.
    BootedNew,
    /// The pending update's slot was tried and gave up; the node is back
    /// on the old slot.
    RolledBack,
    /// The pending record is not backed by an activated slot (the
    /// activation never happened, a later update cleared it, or someone
    /// switched slots by hand): forget it.
    Stale,
}

/// Classifies a boot from the pending record, the running slot and the
/// slot attributes.
pub fn classify_boot(pending: Option<&Pending>, running: Slot, pair: SlotPair) -> BootOutcome {
    let Some(p) = pending else {
        return BootOutcome::NoPending;
    };
    let Some(slot) = Slot::parse(&p.slot) else {
        return BootOutcome::Stale;
    };
    if slot == running {
        return BootOutcome::BootedNew;
    }
    let attrs = pair.get(slot);
    if attrs.priority() == 0 || attrs.successful() {
        BootOutcome::Stale
    } else if attrs.tries() > 0 {
        BootOutcome::WaitingForReboot
    } else {
        BootOutcome::RolledBack
    }
}

/// A verified update the channel offers.
#[derive(Clone, Debug)]
pub struct Offer {
    /// The verified pointer.
    pub pointer: ChannelPointer,
    /// The verified manifest.
    pub manifest: Manifest,
    /// sha256 of the manifest's bytes.
    pub manifest_sha256: String,
    /// When this node's rollout turn comes (Unix seconds).
    pub eligible_at: u64,
}

/// What a check found.
#[derive(Clone, Debug)]
pub enum CheckOutcome {
    /// The channel serves the running version.
    UpToDate {
        /// The version.
        version: Version,
        /// The channel.
        channel: String,
    },
    /// An update.
    Available(Box<Offer>),
}

/// What to do after a successful check.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Nothing: the state to show.
    Show(UpdateState),
    /// Install now.
    Install,
}

/// Decides what a found update leads to: install now (the node's turn has
/// come, or `force`), or wait (for the turn, or for this boot to be
/// confirmed), or nothing (the same version already waits for a reboot).
pub fn after_check(
    offer: &Offer,
    now: u64,
    force: bool,
    confirmed: bool,
    current: &UpdateState,
) -> Next {
    let version = offer.pointer.version.to_string();
    if let UpdateState::UpdatedNeedReboot { version: v, .. } = current
        && same_version(v, &version)
    {
        return Next::Show(current.clone());
    }
    let waiting_for = if !confirmed {
        Some(
            "this boot to be confirmed healthy (its fallback slot must not be overwritten)"
                .to_string(),
        )
    } else if !force && offer.eligible_at > now {
        None
    } else {
        return Next::Install;
    };
    Next::Show(UpdateState::UpdateAvailable {
        version,
        eligible_at: offer.eligible_at,
        waiting_for,
    })
}

/// Whether two version texts (from the status, the agent, a refusal) name
/// the same version: `1.1`, `1.01` and `1.1.0` do.
pub(crate) fn same_version(a: &str, b: &str) -> bool {
    a == b
        || a.parse::<Version>()
            .is_ok_and(|a| b.parse::<Version>().is_ok_and(|b| a == b))
}

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
            if s.state.name() != state.name() {
                s.since = now_unix();
            }
            s.state = state;
        });
    }
}

/// Everything an install needs, cloneable onto a thread.
#[derive(Clone, Debug)]
pub struct InstallContext {
    /// File locations.
    pub paths: Paths,
    /// Boot disk and running slot.
    pub boot: BootFacts,
    /// The running image.
    pub identity: Identity,
}

/// Installs `offer` into the inactive slot and activates it:
///
/// 1. refuse unless the running slot is confirmed;
/// 2. clear the inactive slot's attributes (persisted: both GPT copies,
///    fsync) before the first byte;
/// 3. write it chunk by chunk ([`apply::write_slot`]: verified, in place,
///    copied or downloaded; resumable);
/// 4. re-read it against the verity root hash;
/// 5. kernel, initramfs and `slot-<x>.conf` to the ESP, each verified first;
/// 6. record the pending update in `state.json`, then activate the slot
///    (priority 2, one try; the running slot priority 1).
pub fn install(
    ctx: &InstallContext,
    offer: &Offer,
    fetch: &mut dyn Fetch,
    status: &Shared,
) -> Result<ApplyReport, Error> {
    let started = Instant::now();
    let m = &offer.manifest;
    let version = m.version.to_string();
    let running = ctx.boot.slot;
    let inactive = running.other();
    let slot_name = inactive.to_string();
    let disk = BootDisk::open(&ctx.boot.disk, true)?;
    let pair = disk.slots()?;
    if !pair.get(running).successful() {
        return Err(Error::NotConfirmed { slot: running });
    }
    let target = disk.slot(inactive)?;
    if target.len() < m.usr.size {
        return Err(Error::SlotTooSmall {
            slot: inactive,
            partition: target.len(),
            need: m.usr.size,
            version,
        });
    }
    let esp_region = disk.partition(disk::ESP)?;
    let progress_file = ctx.paths.progress_file();
    if pair.get(inactive).priority() != 0 {
        // The slot was bootable: whatever progress.json says about it is
        // older than its current content. In-place checks still find
        // chunks that are there.
        let _ = std::fs::remove_file(&progress_file);
    }
    let state_file = ctx.paths.state_file();
    let mut state = State::load(&state_file)?;
    if state.pending.as_ref().is_some_and(|p| p.slot == slot_name) {
        state.pending = None;
        state.save(&state_file)?;
    }
    disk.modify("clearing the inactive slot before writing it", |p| {
        p.clear_inactive(running);
        Ok(())
    })?;

    // The running image's size, from its slot file, bounds the local index.
    let running_region = disk.slot(running)?;
    let running_size = esp::read_slot_conf(&esp_region, running)
        .ok()
        .flatten()
        .and_then(|c| c.usr_blocks)
        .map_or(running_region.len(), apply::image_size);
    let job = SlotJob {
        manifest: m,
        manifest_sha256: &offer.manifest_sha256,
        slot: inactive,
        target: &target,
        running: Some((&running_region, running_size)),
        progress_file: &progress_file,
    };
    let mut last: Option<Instant> = None;
    let counters = apply::write_slot(&job, fetch, &mut |c| {
        // Every chunk would be a lot of locking for a status nobody reads
        // that often; a few times a second is plenty.
        if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(200))
            || c.bytes_done == c.bytes_total
        {
            last = Some(Instant::now());
            status.set_state(UpdateState::Downloading(Transfer {
                version: version.clone(),
                slot: slot_name.clone(),
                bytes_done: c.bytes_done,
                bytes_total: c.bytes_total,
                percent: (1000 * c.bytes_done / c.bytes_total.max(1)) as f64 / 10.0,
                downloaded_bytes: c.downloaded,
                copied_bytes: c.copied,
                present_bytes: c.present,
            }));
        }
    })?;

    let total = m.usr.verity.data_blocks * tandem_slot::verity::BLOCK_SIZE as u64;
    let verifying = |done| {
        status.set_state(UpdateState::Verifying {
            version: version.clone(),
            slot: slot_name.clone(),
            bytes_done: done,
            bytes_total: total,
        })
    };
    verifying(0);
    if let Err(detail) = apply::verify_slot(&target, &m.usr, verifying) {
        // Distrust the recorded progress: the next attempt re-checks every chunk.
        let _ = std::fs::remove_file(&progress_file);
        return Err(Error::VerityMismatch {
            slot: inactive,
            detail,
        });
    }

    let finalizing = |step: &str| {
        status.set_state(UpdateState::Finalizing {
            version: version.clone(),
            slot: slot_name.clone(),
            step: step.to_string(),
        })
    };
    let mut downloaded = counters.downloaded;
    let mut files = Vec::new();
    for f in [&m.kernel, &m.initrd] {
        finalizing(&format!("downloading {}", f.path));
        let bytes = fetch.get(&f.path, f.size)?;
        policy::check_file(&bytes, f).map_err(|detail| Error::FileCorrupt {
            path: f.path.clone(),
            detail,
        })?;
        downloaded += bytes.len() as u64;
        files.push(bytes);
    }
    let conf = esp::slot_conf(&version, &m.usr.verity);
    esp::install_slot(
        &esp_region,
        inactive,
        &files[0],
        &files[1],
        &conf,
        &mut |s| finalizing(s),
    )?;

    finalizing(&format!("activating slot {inactive}"));
    state.pending = Some(Pending {
        version: m.version.clone(),
        slot: slot_name.clone(),
        from_version: ctx.identity.version.clone(),
        from_slot: running.to_string(),
        activated_at: now_unix(),
        failure: None,
    });
    // From now on the node may run an image built for another channel
    // (promoted): remember the one it follows (see `State::channel`).
    if state.channel.is_none() {
        state.channel = ctx.identity.channel.clone();
    }
    state.save(&state_file)?;
    disk.modify("activating the updated slot", |p| {
        p.activate_inactive(running);
        Ok(())
    })?;
    let _ = std::fs::remove_file(&progress_file);
    Ok(ApplyReport {
        version,
        slot: slot_name,
        image_bytes: m.usr.size,
        downloaded_bytes: downloaded,
        copied_bytes: counters.copied,
        present_bytes: counters.present,
        chunks: counters.chunks,
        range_requests: counters.range_requests,
        seconds: started.elapsed().as_secs(),
    })
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
                s.running_version = Some(id.version.to_string());
                s.image = Some(id.image.clone());
            }
            if let Ok(b) = &e.boot {
                s.running_slot = Some(b.slot.to_string());
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
            config::fingerprint(&self.paths.admin_config),
        ];
        if !force && prints == self.fingerprints {
            return false;
        }
        self.fingerprints = prints;
        let mut sources: Vec<Source> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        match config::file_source(&self.paths.image_config) {
            Ok(s) => sources.extend(s),
            Err(e) => errors.push(e.to_string()),
        }
        if let Ok(b) = &self.boot {
            match read_oem_config(&b.disk) {
                Ok(s) => sources.extend(s),
                Err(e) => errors.push(e.to_string()),
            }
        }
        match config::file_source(&self.paths.admin_config) {
            Ok(s) => sources.extend(s),
            Err(e) => errors.push(e.to_string()),
        }
        if errors.is_empty() {
            match config::merge(&sources) {
                Ok(c) => {
                    if c != self.config {
                        crate::log!(
                            "configuration: server {:?}, channel {:?}, check every {}, reboot strategy {}",
                            c.server,
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
            s.server = cfg.server.clone();
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

    /// A client for the configured server.
    pub fn fetcher(&self) -> Result<Http, Error> {
        Ok(Http::new(
            self.config.server.as_deref().ok_or(Error::NoServer)?,
        ))
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
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.parse().ok())
            .collect();
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
            s.failed_versions = state
                .failed_versions()
                .iter()
                .map(ToString::to_string)
                .collect();
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
                ) => same_version(version, v),
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

    /// Looks at this boot once, at start: a pending update that came up,
    /// still waits for its reboot, or rolled back.
    pub fn boot_outcome(&mut self) -> Result<BootOutcome, Error> {
        let b = self.boot()?.clone();
        let pair = BootDisk::open(&b.disk, false)?.slots()?;
        let file = self.paths.state_file();
        let mut state = State::load(&file)?;
        let outcome = classify_boot(state.pending.as_ref(), b.slot, pair);
        match (&outcome, state.pending.clone()) {
            (BootOutcome::WaitingForReboot, Some(p)) => {
                self.status.set_state(UpdateState::UpdatedNeedReboot {
                    version: p.version.to_string(),
                    slot: p.slot,
                });
            }
            (BootOutcome::RolledBack, Some(p)) => {
                let reason = p.failure.clone().unwrap_or_else(|| {
                    format!(
                        "slot {} did not confirm a healthy boot of {} within its tries (it did not come up, or nothing confirmed it); the bootloader went back to slot {}",
                        p.slot, p.version, b.slot
                    )
                });
                crate::log!("{} rolled back: {reason}", p.version);
                state.add_failed(p.version.clone(), now_unix(), reason.clone());
                state.pending = None;
                state.save(&file)?;
                let rb = Rollback {
                    version: p.version.to_string(),
                    reason: reason.clone(),
                    at: now_unix(),
                };
                self.status.update(|s| {
                    s.rollback = Some(rb);
                    s.failed_versions =
                        state.failed.iter().map(|f| f.version.to_string()).collect();
                });
                self.status.set_state(UpdateState::RolledBack {
                    version: p.version.to_string(),
                    reason,
                });
            }
            (BootOutcome::BootedNew, Some(p)) if pair.get(b.slot).successful() => {
                // Confirmed before this daemon got to it (`tandemctl slot mark-good`).
                crate::log!("update to {} confirmed", p.version);
                state.pending = None;
                state.save(&file)?;
            }
            (BootOutcome::Stale, Some(p)) => {
                crate::log!(
                    "forgetting the pending record of {} in slot {}: the slot is not activated",
                    p.version,
                    p.slot
                );
                state.pending = None;
                state.save(&file)?;
            }
            _ => {}
        }
        self.status.update(|s| {
            s.failed_versions = state.failed.iter().map(|f| f.version.to_string()).collect();
            s.boot = if pair.get(b.slot).successful() {
                BootHealth::Confirmed
            } else {
                s.boot.clone()
            };
        });
        Ok(outcome)
    }

    /// One health step for an unconfirmed running slot. Returns `true`
    /// once there is nothing more to do (confirmed, or given up).
    pub fn health_tick(&mut self, reboot: &RebootFn) -> Result<bool, Error> {
        let b = self.boot()?.clone();
        let disk = BootDisk::open(&b.disk, false)?;
        let attrs = disk.slots()?.get(b.slot);
        if attrs.successful() {
            self.confirmed(&b, "the running slot is marked successful")?;
            return Ok(true);
        }
        let now = clock::since_boot();
        let node_status: Option<node::Status> = node::read_json(&self.paths.status).ok();
        let system = health::system_ok(node_status.as_ref());
        let (grace, deadline) = (self.config.health_grace, self.config.health_deadline);
        match self.health.observe(now, system, grace, deadline) {
            Step::Wait(detail) => {
                self.status.update(|s| {
                    s.boot = BootHealth::Checking {
                        detail,
                        deadline_secs: deadline.as_secs(),
                    }
                });
                Ok(false)
            }
            Step::RunChecks => match health::run_checks(&self.config.health_checks) {
                Ok(()) => {
                    // Re-read the table and mark only the slot we run on, and
                    // only while it is still on trial.
                    let (marked, _) = BootDisk::open(&b.disk, true)?.modify(
                        "marking the running slot successful",
                        |p| {
                            let a = p.get(b.slot);
                            if a.successful() || a.priority() == 0 {
                                return Ok(false);
                            }
                            p.mark_successful(b.slot);
                            Ok(true)
                        },
                    )?;
                    let how = if marked {
                        "healthy: marked the running slot successful"
                    } else {
                        "the running slot was confirmed meanwhile"
                    };
                    self.confirmed(&b, how)?;
                    Ok(true)
                }
                Err(reason) => {
                    self.health.checks_failed(now, reason.clone());
                    self.status.update(|s| {
                        s.boot = BootHealth::Checking {
                            detail: reason,
                            deadline_secs: deadline.as_secs(),
                        }
                    });
                    Ok(false)
                }
            },
            Step::GiveUp(reason) => {
                self.give_up(
                    &b,
                    &disk,
                    &format!("not healthy {} s after boot: {reason}", deadline.as_secs()),
                    reboot,
                )?;
                Ok(true)
            }
        }
    }

    fn confirmed(&mut self, b: &BootFacts, how: &str) -> Result<(), Error> {
        crate::log!("slot {}: {how}", b.slot);
        self.status.update(|s| s.boot = BootHealth::Confirmed);
        let file = self.paths.state_file();
        let mut state = State::load(&file)?;
        if let Some(p) = state
            .pending
            .take_if(|p| Slot::parse(&p.slot) == Some(b.slot))
        {
            crate::log!("update to {} confirmed", p.version);
            state.save(&file)?;
            self.status.update(|s| {
                s.last_result = Some(format!("updated from {} to {}", p.from_version, p.version))
            });
        }
        Ok(())
    }

    fn give_up(
        &mut self,
        b: &BootFacts,
        disk: &BootDisk,
        reason: &str,
        reboot: &RebootFn,
    ) -> Result<(), Error> {
        let other = b.slot.other();
        if !disk.slots()?.get(other).is_bootable() {
            let msg = format!(
                "{reason}; slot {other} is not bootable, so this slot is kept: fix the node and confirm it with `tandemctl slot mark-good`"
            );
            crate::log!("{msg}");
            self.status
                .update(|s| s.boot = BootHealth::Failed { reason: msg });
            return Ok(());
        }
        let file = self.paths.state_file();
        let mut state = State::load(&file)?;
        if let Some(p) = state
            .pending
            .as_mut()
            .filter(|p| Slot::parse(&p.slot) == Some(b.slot))
        {
            p.failure = Some(reason.to_string());
            state.save(&file)?;
        }
        BootDisk::open(&b.disk, true)?.modify("giving up the running slot", |p| {
            p.mark_unbootable(b.slot);
            Ok(())
        })?;
        let msg = format!(
            "{reason}; slot {} marked unbootable, rebooting into slot {other}",
            b.slot
        );
        crate::log!("{msg}");
        self.status.update(|s| {
            s.boot = BootHealth::Failed {
                reason: msg.clone(),
            }
        });
        reboot(&msg);
        Ok(())
    }

    /// Takes back an installed update that waits for its reboot, because
    /// its version rolled back elsewhere in the cluster: its slot is made
    /// unbootable again (priority 0), so no reboot, planned or not, starts
    /// it. The version stays refused while the cluster's record stands.
    pub fn withdraw_pending(&mut self, version: &str) -> Result<(), Error> {
        let UpdateState::UpdatedNeedReboot { version: v, slot } = self.status.get().state else {
            return Ok(());
        };
        if !same_version(&v, version) {
            return Ok(());
        }
        let b = self.boot()?.clone();
        let disk = BootDisk::open(&b.disk, true)?;
        disk.modify("withdrawing an update that failed elsewhere", |p| {
            p.clear_inactive(b.slot);
            Ok(())
        })?;
        let file = self.paths.state_file();
        let mut state = State::load(&file)?;
        state.pending = None;
        state.save(&file)?;
        let reason = format!(
            "{v} rolled back elsewhere in the cluster: withdrawn from slot {slot} (no longer bootable)"
        );
        crate::log!("{reason}");
        self.status.set_state(UpdateState::Error {
            reason,
            action: format!(
                "`tandemctl cluster status` shows where and why; `tandemctl cluster forget-failed {v}` allows it again"
            ),
        });
        Ok(())
    }

    /// Forgets a failed version; whether it was recorded.
    pub fn forget_failed(&mut self, version: &Version) -> Result<bool, Error> {
        let file = self.paths.state_file();
        let mut state = State::load(&file)?;
        let found = state.forget_failed(version);
        if found {
            state.save(&file)?;
        }
        let current = self.status.get().state;
        if let UpdateState::RolledBack { version: v, .. } = &current
            && v.parse::<Version>().is_ok_and(|v| v == *version)
        {
            self.status.set_state(UpdateState::Idle);
        }
        self.status.update(|s| {
            s.failed_versions = state.failed.iter().map(|f| f.version.to_string()).collect()
        });
        Ok(found)
    }

    /// Writes `channel` into the administrator's update.toml (atomically,
    /// keeping everything else) and re-reads the configuration.
    pub fn set_channel(&mut self, channel: &str) -> Result<(), Error> {
        if !config::valid_channel(channel) {
            return Err(Error::Usage(format!(
                "{channel:?} is not a channel name: use a-z, 0-9, '.', '_' and '-'"
            )));
        }
        let path = self.paths.admin_config.clone();
        let old = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(Error::Read { path, err }),
        };
        let new = config::set_channel(&old, channel);
        config::merge(&[Source {
            origin: path.display().to_string(),
            text: new.clone(),
        }])
        .map_err(|es| {
            es.into_iter()
                .next()
                .unwrap_or(Error::Usage("invalid".into()))
        })?;
        crate::state::write_durable(&path, new.as_bytes())?;
        self.reload_config(true);
        Ok(())
    }
}

/// The OEM partition's `update.toml` as a configuration layer.
pub fn read_oem_config(disk_path: &Path) -> Result<Option<Source>, Error> {
    let disk = BootDisk::open(disk_path, false)?;
    let Ok(oem) = disk.partition(disk::OEM) else {
        return Ok(None);
    };
    Ok(esp::read_oem_file(&oem, "update.toml")?.map(|text| Source {
        origin: format!("{} (OEM partition): update.toml", oem.name()),
        text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{FileRef, Rollout};
    use tandem_slot::GptPrio;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let h = Duration::from_secs(3600);
        let s = Duration::from_secs;
        assert_eq!(next_delay(h, 0, 0.0), h);
        assert_eq!(next_delay(h, 1, 0.0), s(30));
        assert_eq!(next_delay(h, 2, 0.0), s(60));
        assert_eq!(next_delay(h, 5, 0.0), s(480));
        assert_eq!(next_delay(h, 8, 0.0), h);
        assert_eq!(next_delay(h, 1000, 0.0), h);
        // A short interval bounds the backoff too.
        assert_eq!(next_delay(s(10), 1, 0.0), s(10));
        assert_eq!(next_delay(s(10), 9, 0.0), s(10));
        // A long interval still retries errors at least hourly.
        assert_eq!(next_delay(s(86_400), 30, 0.0), h);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let d = Duration::from_secs(1000);
        assert_eq!(jitter(d, -1.0), Duration::from_secs(900));
        assert_eq!(jitter(d, 1.0), Duration::from_secs(1100));
        assert_eq!(jitter(d, 7.0), Duration::from_secs(1100));
        for _ in 0..1000 {
            let r = random_unit();
            assert!((-1.0..1.0).contains(&r), "{r}");
        }
    }

    fn pending(slot: &str) -> Pending {
        Pending {
            version: "1.1".parse().expect("v"),
            slot: slot.into(),
            from_version: "1.0".parse().expect("v"),
            from_slot: "A".into(),
            activated_at: 0,
            failure: None,
        }
    }

    #[test]
    fn boots_are_classified() {
        let good = GptPrio::new(1, 0, true);
        let p = pending("B");
        let pair = |b| SlotPair::new(good, b);
        assert_eq!(
            classify_boot(None, Slot::A, pair(GptPrio::new(0, 0, false))),
            BootOutcome::NoPending
        );
        // Activated, not booted yet.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(2, 1, false))),
            BootOutcome::WaitingForReboot
        );
        // Booted it.
        assert_eq!(
            classify_boot(Some(&p), Slot::B, pair(GptPrio::new(2, 0, false))),
            BootOutcome::BootedNew
        );
        // Tried, never confirmed, back on A.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(2, 0, false))),
            BootOutcome::RolledBack
        );
        // Never activated, or cleared by a later update.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(0, 0, false))),
            BootOutcome::Stale
        );
        // Confirmed once, then the admin went back by hand: not a failure.
        assert_eq!(
            classify_boot(Some(&p), Slot::A, pair(GptPrio::new(1, 0, true))),
            BootOutcome::Stale
        );
        assert_eq!(
            classify_boot(Some(&pending("x")), Slot::A, pair(good)),
            BootOutcome::Stale
        );
    }

    fn offer(version: &str, eligible_at: u64) -> Offer {
        let m = crate::repo::tests::sample();
        Offer {
            pointer: ChannelPointer {
                format: 1,
                image: "demo".into(),
                channel: "stable".into(),
                version: version.parse().expect("v"),
                manifest: FileRef {
                    path: "m".into(),
                    size: 1,
                    sha256: "a".repeat(64),
                },
                rollout: Rollout {
                    start: 0,
                    duration_secs: 0,
                },
                issued: 0,
                expires: 1,
            },
            manifest: m,
            manifest_sha256: String::new(),
            eligible_at,
        }
    }

    #[test]
    fn checks_lead_to_installs_when_due() {
        let idle = UpdateState::Idle;
        assert_eq!(
            after_check(&offer("1.1", 100), 200, false, true, &idle),
            Next::Install
        );
        assert!(matches!(
            after_check(&offer("1.1", 300), 200, false, true, &idle),
            Next::Show(UpdateState::UpdateAvailable {
                eligible_at: 300,
                waiting_for: None,
                ..
            })
        ));
        assert_eq!(
            after_check(&offer("1.1", 300), 200, true, true, &idle),
            Next::Install,
            "apply overrides the wait"
        );
        assert!(matches!(
            after_check(&offer("1.1", 100), 200, true, false, &idle),
            Next::Show(UpdateState::UpdateAvailable {
                waiting_for: Some(_),
                ..
            })
        ));
        let waiting = UpdateState::UpdatedNeedReboot {
            version: "1.1".into(),
            slot: "B".into(),
        };
        assert_eq!(
            after_check(&offer("1.1", 100), 200, true, true, &waiting),
            Next::Show(waiting.clone())
        );
        assert_eq!(
            after_check(&offer("1.2", 100), 200, false, true, &waiting),
            Next::Install
        );
        // The same version spelt differently is still the one waiting.
        for same in ["1.01", "1.1.0"] {
            assert_eq!(
                after_check(&offer(same, 100), 200, true, true, &waiting),
                Next::Show(waiting.clone()),
                "{same}"
            );
        }
        assert!(same_version("1.1", "1.1.0") && !same_version("1.1", "1.10"));
        assert!(!same_version("x", "y") && same_version("x", "x"));
    }
}
