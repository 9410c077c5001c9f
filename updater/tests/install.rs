//! Installing an update into a file-backed boot disk from a repository
//! served over HTTP: the happy path, local copies, resume after an
//! interruption, and what must never be written.

mod common;

use std::process::Command;

use common::{
    CHUNK, Faults, Published, SlotImage, World, assert_installed, blocks, install, slot_image, v1,
    world,
};
use tandem_slot::{GptPrio, Slot, SlotPair};
use updater::engine::Engine;
use updater::error::Error;
use updater::state::{Progress, State};

fn chunk_range(p: &Published, i: usize) -> (u64, u64) {
    let c = &p.manifest.usr.chunks[i];
    (c.payload_offset, c.payload_offset + c.compressed_size)
}

fn fsck_esp(w: &World) {
    let copy = w.node.root.join("esp-check.img");
    w.node.esp_copy(&copy);
    let out = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&copy)
        .output()
        .expect("fsck.vfat");
    assert!(
        out.status.success(),
        "fsck.vfat: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn happy_path_copies_unchanged_chunks_and_downloads_the_rest() {
    let v1 = v1();
    let w = world(&v1);
    // 1.1.0 changes 40 blocks in the middle: a chunk or two of data and
    // the hash tree blocks above them.
    let mut data = v1.bytes[..v1.data_blocks as usize * 4096].to_vec();
    data[300 * 4096..340 * 4096].copy_from_slice(&blocks(99, 40));
    let v2 = slot_image(data);
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let untouched_a = w.node.esp_file("EFI/tandem/vmlinuz-a");

    let report = install(&w).expect("install");
    assert_installed(&w, &v2, &p);
    assert_eq!(
        w.node.esp_file("EFI/tandem/vmlinuz-a"),
        untouched_a,
        "the running slot's files are not touched"
    );
    assert!(w.node.esp_file("EFI/tandem/slot-a.conf").is_some());
    fsck_esp(&w);

    let n = p.manifest.usr.chunks.len();
    let [down, copied, present] = report.chunks;
    assert_eq!(down + copied + present, n);
    assert_eq!(present, 0);
    assert!(
        (2..=6).contains(&down),
        "only changed chunks are downloaded: {report:?}"
    );
    assert_eq!(copied, n - down);
    // Exactly the downloaded chunks' bytes were asked for, coalesced.
    let ranges = w.server.payload_ranges();
    let asked: u64 = ranges.iter().map(|(a, b)| b - a).sum();
    let changed: Vec<usize> = (0..n)
        .filter(|&i| {
            let c = &p.manifest.usr.chunks[i];
            v1.bytes
                .get(c.offset as usize..(c.offset + c.length) as usize)
                != Some(&v2.bytes[c.offset as usize..(c.offset + c.length) as usize])
        })
        .collect();
    assert_eq!(changed.len(), down, "{changed:?}");
    let want: u64 = changed
        .iter()
        .map(|&i| p.manifest.usr.chunks[i].compressed_size)
        .sum();
    assert_eq!(asked, want);
    assert!(ranges.len() <= changed.len());
    assert_eq!(
        report.copied_bytes,
        p.manifest.usr.size
            - changed
                .iter()
                .map(|&i| p.manifest.usr.chunks[i].length)
                .sum::<u64>()
    );
    assert_eq!(
        report.downloaded_bytes,
        want + p.kernel.len() as u64 + p.initrd.len() as u64
    );

    // veritysetup agrees with the written slot, independently.
    let slot_file = w.node.root.join("slot-b.img");
    std::fs::write(&slot_file, w.node.slot_bytes(Slot::B, 0, v2.bytes.len())).expect("write");
    let out = Command::new("veritysetup")
        .args(["verify", "--no-superblock"])
        .arg(format!("--hash-offset={}", v2.data_blocks * 4096))
        .arg(format!("--data-blocks={}", v2.data_blocks))
        .arg(format!("--salt={}", hex::encode(&v2.salt)))
        .arg(&slot_file)
        .arg(&slot_file)
        .arg(&v2.root)
        .output();
    if let Ok(out) = out {
        assert!(
            out.status.success(),
            "veritysetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_kernel_already_on_the_esp_is_not_downloaded() {
    let v1 = v1();
    let w = world(&v1);
    // 1.1.0 ships the running slot's kernel unchanged, a new initramfs.
    let running_kernel = w.node.esp_file("EFI/tandem/vmlinuz-a").expect("kernel");
    let p = w.repo.publish_with("1.1.0", &v1, |m| {
        m.kernel.size = running_kernel.len() as u64;
        m.kernel.sha256 = common::sha(&running_kernel);
    });
    std::fs::write(w.repo.dir.join(&p.manifest.kernel.path), &running_kernel).expect("kernel");
    w.repo.point("stable", &p);
    let report = install(&w).expect("install");
    let fetched: Vec<String> = w.server.requests().into_iter().map(|r| r.path).collect();
    assert!(
        !fetched.iter().any(|f| f.ends_with("/vmlinuz")),
        "the kernel was downloaded: {fetched:?}"
    );
    assert!(
        fetched.iter().any(|f| f.ends_with("/initrd")),
        "{fetched:?}"
    );
    assert_eq!(
        w.node.esp_file("EFI/tandem/vmlinuz-b").as_deref(),
        Some(running_kernel.as_slice())
    );
    assert_eq!(
        report.downloaded_bytes,
        p.initrd.len() as u64,
        "only the initramfs"
    );
    assert_eq!(
        report.copied_bytes,
        p.manifest.usr.size + running_kernel.len() as u64,
        "the whole slot and the kernel copied locally"
    );
    fsck_esp(&w);
}

#[test]
fn chunks_found_at_other_offsets_of_the_running_slot_are_copied() {
    let v1 = v1();
    let w = world(&v1);
    // One new chunk in front: every old data chunk moves by one chunk.
    let per_chunk = (CHUNK / 4096) as usize;
    let mut data = blocks(77, per_chunk);
    data.extend_from_slice(&v1.bytes[..(v1.data_blocks as usize - per_chunk) * 4096]);
    let v2 = slot_image(data);
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let report = install(&w).expect("install");
    assert_installed(&w, &v2, &p);
    let data_chunks = (v2.data_blocks * 4096 / CHUNK) as usize;
    assert!(
        report.chunks[1] >= data_chunks - 1,
        "shifted data chunks are copied: {report:?}"
    );
}

/// 1.1.0 with all-new data: everything is downloaded.
fn fresh_v2() -> SlotImage {
    slot_image(blocks(2, 2000))
}

#[test]
fn an_interrupted_install_resumes_and_fetches_only_what_is_missing() {
    let v1 = v1();
    let w = world(&v1);
    let v2 = fresh_v2();
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    // The server dies 40 % into the payload.
    w.server.set(Faults {
        payload_budget: Some(p.payload.len() as u64 * 2 / 5),
        flip: None,
    });
    let err = install(&w).expect_err("interrupted");
    assert!(matches!(err, Error::Http { .. }), "{err}");
    assert_eq!(
        w.node.slots().b.priority(),
        0,
        "the half-written slot stays unbootable"
    );
    assert!(w.node.esp_file("EFI/tandem/slot-b.conf").is_none());
    let n = p.manifest.usr.chunks.len();
    let progress = Progress::load(&w.node.paths.progress_file()).expect("progress.json");
    let done = progress
        .bitmap_for(&common::sha(&p.manifest_bytes), "B", n)
        .expect("bitmap");
    assert!(
        done.count() > 0 && done.count() < n,
        "{} of {n} verified",
        done.count()
    );
    let first_missing = (0..n).find(|&i| !done.get(i)).expect("some missing");
    assert!(
        (0..first_missing).all(|i| done.get(i)),
        "chunks are verified in order"
    );

    w.server.set(Faults::default());
    w.server.clear();
    let report = install(&w).expect("resumed install");
    assert_installed(&w, &v2, &p);
    let ranges = w.server.payload_ranges();
    assert_eq!(
        ranges,
        vec![(chunk_range(&p, first_missing).0, p.payload.len() as u64)],
        "one range from the first missing chunk"
    );
    for i in 0..n {
        if done.get(i) {
            let (a, b) = chunk_range(&p, i);
            assert!(
                ranges.iter().all(|&(s, e)| b <= s || a >= e),
                "verified chunk {i} fetched again"
            );
        }
    }
    assert_eq!(
        report.chunks[2],
        done.count(),
        "verified chunks count as present"
    );
}

#[test]
fn a_cut_kernel_download_resumes_where_it_stopped() {
    let v1 = v1();
    let w = world(&v1);
    let v2 = fresh_v2();
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let half = p.kernel.len() as u64 / 2;
    w.server.set(Faults {
        payload_budget: Some(p.payload.len() as u64 + half),
        flip: None,
    });
    let err = install(&w).expect_err("cut in the kernel");
    assert!(matches!(err, Error::Http { .. }), "{err}");
    w.server.set(Faults::default());
    w.server.clear();
    let report = install(&w).expect("resumed");
    assert_installed(&w, &v2, &p);
    let kernel: Vec<_> = w
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/vmlinuz"))
        .collect();
    assert_eq!(kernel.len(), 1, "{kernel:?}");
    let (start, end) = kernel[0].range.expect("a range request");
    assert!(start > 0 && start <= half, "resumed from {start}");
    assert_eq!(end, p.kernel.len() as u64);
    assert!(
        w.server.payload_ranges().is_empty(),
        "the slot was complete"
    );
    assert_eq!(report.downloaded_bytes, end - start + p.initrd.len() as u64);
    assert!(
        !w.node.paths.downloads_dir().exists(),
        "partial downloads are removed once installed"
    );
}

#[test]
fn chunks_written_before_a_kill_are_found_in_place() {
    let v1 = v1();
    let w = world(&v1);
    let v2 = fresh_v2();
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    w.server.set(Faults {
        payload_budget: Some(p.payload.len() as u64 / 2),
        flip: None,
    });
    install(&w).expect_err("interrupted");
    // A kill leaves no progress record behind.
    std::fs::remove_file(w.node.paths.progress_file()).expect("remove progress");
    w.server.set(Faults::default());
    w.server.clear();
    let report = install(&w).expect("install");
    assert_installed(&w, &v2, &p);
    assert!(
        report.chunks[2] > 0,
        "chunks in place are not fetched again: {report:?}"
    );
    let first = w.server.payload_ranges()[0].0;
    assert!(
        first >= chunk_range(&p, report.chunks[2] - 1).1,
        "fetching starts after the chunks in place"
    );
}

#[test]
fn a_tampered_chunk_is_refused_before_any_of_it_is_written() {
    let v1 = v1();
    let w = world(&v1);
    let v2 = fresh_v2();
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    w.node.fill_slot(Slot::B, 0xee);
    let k = 5;
    let c = p.manifest.usr.chunks[k].clone();
    let payload_path = p.manifest.usr.payload.path.clone();
    w.server.set(Faults {
        payload_budget: None,
        flip: Some((payload_path, c.payload_offset + c.compressed_size / 2)),
    });
    let err = install(&w).expect_err("tampered");
    assert!(
        matches!(err, Error::ChunkCorrupt { index, .. } if index == k),
        "{err}"
    );
    assert!(
        err.to_string().contains("none of its bytes were written"),
        "{err}"
    );
    assert!(
        w.node
            .slot_bytes(Slot::B, c.offset, c.length as usize)
            .iter()
            .all(|&b| b == 0xee),
        "chunk {k} not written"
    );
    let pair = w.node.slots();
    assert_eq!(pair.b, GptPrio::new(0, 0, false));
    assert_eq!(pair.next_boot(), Some(Slot::A));
    assert!(
        State::load(&w.node.paths.state_file())
            .expect("state")
            .pending
            .is_none()
    );

    // With the server fixed, the chunks before the bad one are not fetched again.
    w.server.set(Faults::default());
    w.server.clear();
    install(&w).expect("install");
    assert_eq!(w.server.payload_ranges()[0].0, c.payload_offset);
}

#[test]
fn a_slot_that_does_not_match_the_verity_root_is_not_activated() {
    let v1 = v1();
    let w = world(&v1);
    let v2 = fresh_v2();
    let p = w
        .repo
        .publish_with("1.1.0", &v2, |m| m.usr.verity.root_hash = "0".repeat(64));
    w.repo.point("stable", &p);
    let err = install(&w).expect_err("verity");
    assert!(
        matches!(err, Error::VerityMismatch { slot: Slot::B, .. }),
        "{err}"
    );
    assert_eq!(
        w.node.slots(),
        SlotPair::new(GptPrio::new(1, 0, true), GptPrio::new(0, 0, false))
    );
    assert!(
        !w.node.paths.progress_file().exists(),
        "progress is distrusted after a mismatch"
    );
    assert!(w.node.esp_file("EFI/tandem/slot-b.conf").is_none());
}

#[test]
fn a_chunk_that_decompresses_beyond_its_length_is_refused() {
    let v1 = v1();
    let w = world(&v1);
    let v2 = fresh_v2();
    let p = w.repo.publish("1.1.0", &v2);
    // Replace chunk 0's frame by one that inflates to 64 × its length, and
    // re-sign everything around it: only the size bound can stop it.
    let mut m = p.manifest.clone();
    let bomb =
        zstd::bulk::compress(&vec![0u8; 64 * m.usr.chunks[0].length as usize], 19).expect("zstd");
    let mut payload = bomb.clone();
    payload.extend_from_slice(&p.payload[m.usr.chunks[0].compressed_size as usize..]);
    let delta = bomb.len() as i64 - m.usr.chunks[0].compressed_size as i64;
    m.usr.chunks[0].compressed_size = bomb.len() as u64;
    for c in m.usr.chunks.iter_mut().skip(1) {
        c.payload_offset = (c.payload_offset as i64 + delta) as u64;
    }
    m.usr.payload.size = payload.len() as u64;
    m.usr.payload.sha256 = common::sha(&payload);
    std::fs::write(w.repo.dir.join(&m.usr.payload.path), &payload).expect("payload");
    let mbytes = serde_json::to_vec(&m).expect("json");
    std::fs::write(w.repo.dir.join(p.manifest_ref().path), &mbytes).expect("manifest");
    let bombed = Published {
        manifest: m,
        manifest_bytes: mbytes,
        ..p
    };
    w.repo.point("stable", &bombed);
    let err = install(&w).expect_err("bomb");
    assert!(matches!(err, Error::ChunkCorrupt { index: 0, .. }), "{err}");
    assert_eq!(w.node.slots().b.priority(), 0);
}

#[test]
fn an_update_waits_until_the_running_slot_is_confirmed() {
    let v1 = v1();
    let w = world(&v1);
    let p = w.repo.publish("1.1.0", &fresh_v2());
    w.repo.point("stable", &p);
    // Slot A booted but not confirmed (its try spent); B holds the old fallback.
    w.node.set_slots(SlotPair::new(
        GptPrio::new(2, 0, false),
        GptPrio::new(1, 0, true),
    ));
    w.node.fill_slot(Slot::B, 0x11);
    let err = install(&w).expect_err("not confirmed");
    assert!(
        matches!(err, Error::NotConfirmed { slot: Slot::A }),
        "{err}"
    );
    assert_eq!(
        w.node.slots().b,
        GptPrio::new(1, 0, true),
        "the fallback is untouched"
    );
    assert!(
        w.node
            .slot_bytes(Slot::B, 0, 4096)
            .iter()
            .all(|&b| b == 0x11)
    );
}

/// After its first update a node keeps following the channel of the image
/// it was installed with, even when the new image was built for another
/// channel (a promoted build): `State::channel`.
#[test]
fn the_home_channel_survives_an_image_of_another_channel() {
    let v1 = v1();
    let w = world(&v1);
    let p = w.repo.publish("1.1.0", &fresh_v2());
    w.repo.point("stable", &p);
    install(&w).expect("install");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.node.paths.state_file()).expect("state written"))
            .expect("json");
    assert_eq!(state["channel"], "stable");
    // The new image says it belongs to beta.
    let release = std::fs::read_to_string(&w.node.paths.os_release).expect("os-release");
    std::fs::write(
        &w.node.paths.os_release,
        release.replace("TANDEM_CHANNEL=stable", "TANDEM_CHANNEL=beta"),
    )
    .expect("write");
    assert_eq!(Engine::new(w.node.paths.clone()).channel(), "stable");
}
