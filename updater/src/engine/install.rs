//! The whole apply of one offer into the inactive slot, runnable on its own
//! thread: it needs only an [`InstallContext`], a fetcher and the shared
//! status.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};
use tandem_contract::Partition;
use tandem_contract::esp::SlotFiles;

use repository::policy;
use repository::repo::FileRef;

use crate::apply::{self, SlotJob};
use crate::clock::now_unix;
use crate::disk::BootDisk;
use crate::error::Error;
use crate::esp;
use crate::http::Fetch;
use crate::node::{BootFacts, Identity, Paths};
use crate::state::{Pending, State};
use crate::status::{ApplyReport, Transfer, UpdateState};

use super::{Offer, Shared};

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
    let version = m.version.clone();
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
            version: version.to_string(),
        });
    }
    let esp_region = disk.partition(Partition::Esp)?;
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
        .and_then(|c| c.usr_verity())
        .map(|v| v.data_blocks)
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
                slot: inactive,
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
            slot: inactive,
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
            slot: inactive,
            step: step.to_string(),
        })
    };
    let mut downloaded = counters.downloaded;
    let mut copied = counters.copied;
    let mut range_requests = counters.range_requests;
    let downloads = ctx.paths.downloads_dir();
    let mut files = Vec::new();
    let (here, there) = (SlotFiles::of(running), SlotFiles::of(inactive));
    for (f, local) in [
        (&m.kernel, [here.kernel.as_str(), there.kernel.as_str()]),
        (&m.initrd, [here.initrd.as_str(), there.initrd.as_str()]),
    ] {
        // A kernel often does not change between releases: the one on the
        // ESP serves when its sha256 is the manifest's.
        let same = |b: &[u8]| policy::check_file(b, f).is_ok();
        if let Some(bytes) = esp::find_file(&esp_region, &local, same)? {
            finalizing(&format!("{} is on the ESP already", f.path));
            copied += bytes.len() as u64;
            files.push(bytes);
            continue;
        }
        finalizing(&format!("downloading {}", f.path));
        let (bytes, got) = download(&downloads, f, fetch, &mut range_requests)?;
        downloaded += got;
        files.push(bytes);
    }
    let conf = esp::slot_conf(&version.to_string(), &m.usr.verity);
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
    let _ = std::fs::remove_dir_all(&downloads);
    Ok(ApplyReport {
        version,
        slot: inactive,
        image_bytes: m.usr.size,
        downloaded_bytes: downloaded,
        copied_bytes: copied,
        present_bytes: counters.present,
        chunks: counters.chunks,
        range_requests,
        blocks_fetched: counters.blocks_fetched,
        seconds: started.elapsed().as_secs(),
    })
}

/// Downloads `f` into `dir` with one Range request, for the part that an
/// interrupted attempt did not leave there; checks the whole against the
/// manifest before it is used (a file that does not check is deleted, so
/// the next attempt starts over). Returns its bytes and the bytes fetched.
fn download(
    dir: &Path,
    f: &FileRef,
    fetch: &mut dyn Fetch,
    range_requests: &mut usize,
) -> Result<(Vec<u8>, u64), Error> {
    let part = dir.join(format!("{}.part", f.sha256));
    let write_err = |err| Error::Write {
        path: part.clone(),
        err,
    };
    std::fs::create_dir_all(dir).map_err(|err| Error::Write {
        path: dir.to_path_buf(),
        err,
    })?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part)
        .map_err(write_err)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|err| Error::Read {
        path: part.clone(),
        err,
    })?;
    if bytes.len() as u64 > f.size {
        bytes.clear();
        file.set_len(0).map_err(write_err)?;
    }
    let have = bytes.len() as u64;
    if have < f.size {
        // Streamed to the file as it comes, so a cut keeps what arrived.
        *range_requests += 1;
        let mut stream = fetch.range(&f.path, have, f.size)?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = stream.read(&mut buf).map_err(|e| Error::Http {
                url: fetch.url(&f.path),
                msg: format!("reading from byte {}: {e}", bytes.len()),
            })?;
            if n == 0 || bytes.len() as u64 >= f.size {
                break;
            }
            let n = n.min((f.size - bytes.len() as u64) as usize);
            file.write_all(&buf[..n]).map_err(write_err)?;
            bytes.extend_from_slice(&buf[..n]);
        }
        file.sync_data().map_err(write_err)?;
    }
    if let Err(detail) = policy::check_file(&bytes, f) {
        let _ = std::fs::remove_file(&part);
        return Err(Error::FileCorrupt {
            path: f.path.clone(),
            detail,
        });
    }
    let fetched = bytes.len() as u64 - have;
    Ok((bytes, fetched))
}
