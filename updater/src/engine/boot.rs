//! The engine on this boot: noticing what became of a pending update
//! (classified by [`super::classify_boot`]), confirming a healthy new slot
//! or giving it up, withdrawing an update that failed elsewhere, and
//! forgetting failed versions. Reads and writes the slot table and
//! `state.json`.

use tandem_contract::Partition;
use tandem_contract::incident::Incident;
use tandem_slot::{Slot, TRIAL_BOOTS};

use crate::clock::{self, now_unix};
use crate::disk::BootDisk;
use crate::error::Error;
use crate::health::{self, Step};
use crate::node::{self, BootFacts};
use crate::state::State;
use crate::status::{BootHealth, Rollback, TrialBoot, UpdateState};
use crate::version::Version;

use super::{BootOutcome, Engine, RebootFn, classify_boot, rollback_reason, trial_boot};

impl Engine {
    /// Looks at this boot once, at start: a pending update that came up,
    /// still waits for its reboot, or rolled back.
    pub fn boot_outcome(&mut self) -> Result<BootOutcome, Error> {
        let b = self.boot()?.clone();
        let pair = BootDisk::open(&b.disk, false)?.slots()?;
        let file = self.paths.state_file();
        let mut state = State::load(&file)?;
        let incidents = self.take_incidents(&mut state)?;
        let outcome = classify_boot(state.pending.as_ref(), b.slot, pair);
        match (&outcome, state.pending.clone()) {
            (BootOutcome::WaitingForReboot, Some(p)) => {
                // Waiting for its reboot: the pending slot is the other one.
                self.status.set_state(UpdateState::UpdatedNeedReboot {
                    version: p.version.clone(),
                    slot: b.slot.other(),
                });
            }
            (BootOutcome::RolledBack, Some(p)) => {
                let (reason, evidence) = rollback_reason(&p, b.slot, &incidents);
                crate::log!("{} rolled back: {reason} (evidence: {evidence})", p.version);
                state.add_failed(p.version.clone(), now_unix(), reason.clone());
                state.pending = None;
                state.save(&file)?;
                let rb = Rollback {
                    version: p.version.clone(),
                    reason: reason.clone(),
                    at: now_unix(),
                    evidence,
                };
                self.status.update(|s| {
                    s.rollback = Some(rb);
                    s.failed_versions = state.failed_versions();
                });
                self.status.set_state(UpdateState::RolledBack {
                    version: p.version.clone(),
                    reason,
                });
            }
            (BootOutcome::BootedNew, Some(p)) if !pair.get(b.slot).successful() => {
                let boot = trial_boot(pair.get(b.slot).tries());
                if boot > 1 {
                    crate::log!(
                        "trial boot {boot} of {TRIAL_BOOTS} of {} in slot {}: the {} before ended before confirming it and recorded no failure (a power cut, a reset or a hang), which says nothing against the release",
                        p.version,
                        b.slot,
                        if boot == 2 { "boot" } else { "boots" }
                    );
                }
                self.status.update(|s| {
                    s.trial = Some(TrialBoot {
                        boot,
                        of: TRIAL_BOOTS,
                    })
                });
            }
            (BootOutcome::BootedNew, Some(p)) => {
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
            s.failed_versions = state.failed_versions();
            s.incidents = state.incidents.clone();
            s.boot = if pair.get(b.slot).successful() {
                BootHealth::Confirmed
            } else {
                s.boot.clone()
            };
        });
        Ok(outcome)
    }

    /// Checks the ESP's FAT at start and repairs what a power cut during
    /// an earlier write left, before anything writes it again (the
    /// firmware and the bootloader only read it). A repair is logged and
    /// shown as `esp_repair` in the status.
    pub fn repair_esp(&mut self) -> Result<(), Error> {
        let b = self.boot()?.clone();
        let esp = BootDisk::open(&b.disk, true)?.partition(Partition::Esp)?;
        let repair = crate::esp::check_and_repair_esp(&esp)?;
        if !repair.is_clean() {
            let text = format!("{repair} (at {})", clock::format_unix(now_unix()));
            self.status.update(|s| s.esp_repair = Some(text));
        }
        Ok(())
    }

    /// Takes in the incidents the init left on ROOT: logged, kept in
    /// `state.json` (saved here) and removed from ROOT. Returns them.
    fn take_incidents(&mut self, state: &mut State) -> Result<Vec<Incident>, Error> {
        let found = Incident::read_all(&self.paths.root);
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut taken = Vec::new();
        for (_, incident) in &found {
            match incident {
                Ok(i) => {
                    crate::log!(
                        "incident: slot {} {} at {}: {}; {}",
                        i.slot,
                        i.kind,
                        clock::format_unix(i.at),
                        i.what,
                        i.action
                    );
                    state.add_incident(i.clone());
                    taken.push(i.clone());
                }
                Err(e) => crate::log!("warning: unreadable incident ignored: {e}"),
            }
        }
        state.save(&self.paths.state_file())?;
        for (path, _) in found {
            if let Err(e) = std::fs::remove_file(&path) {
                crate::log!("warning: cannot remove {}: {e}", path.display());
            }
        }
        Ok(taken)
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
        self.status.update(|s| {
            s.boot = BootHealth::Confirmed;
            s.trial = None;
        });
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
    pub fn withdraw_pending(&mut self, version: &Version) -> Result<(), Error> {
        let UpdateState::UpdatedNeedReboot { version: v, slot } = self.status.get().state else {
            return Ok(());
        };
        if v != *version {
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
            && v == version
        {
            self.status.set_state(UpdateState::Idle);
        }
        self.status
            .update(|s| s.failed_versions = state.failed_versions());
        Ok(found)
    }
}
