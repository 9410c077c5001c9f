//! Block-level deltas: with the uncompressed image published beside the
//! payload, a node fetches only the 4 KiB blocks it lacks, found by walking
//! the new slot's hash tree from its signed root; each is checked before it
//! is written, and a cut costs nothing already written.

mod common;

use common::{
    CHUNK, Faults, SlotImage, assert_installed, blocks, install, salted_slot_image, world,
};
use tandem_slot::{Slot, verity};
use updater::error::Error;

/// The salt every version of the test image shares, as built images do.
fn salt() -> Vec<u8> {
    b"one salt for every version of the image".to_vec()
}

fn v1() -> SlotImage {
    salted_slot_image(blocks(1, 2000), salt())
}

/// `v1`'s data with the given blocks replaced by new ones.
fn changed(v1: &SlotImage, which: &[usize], salt: Vec<u8>) -> SlotImage {
    let mut data = v1.bytes[..v1.data_blocks as usize * 4096].to_vec();
    for (k, &b) in which.iter().enumerate() {
        data[b * 4096..(b + 1) * 4096].copy_from_slice(&blocks(500 + k as u64, 1));
    }
    salted_slot_image(data, salt)
}

/// Blocks of `new` (data and tree) that `old` does not hold at the same offset.
fn differing_blocks(old: &SlotImage, new: &SlotImage) -> Vec<u64> {
    new.bytes
        .chunks(4096)
        .enumerate()
        .filter(|(i, b)| old.bytes.get(i * 4096..(i + 1) * 4096) != Some(*b))
        .map(|(i, _)| i as u64)
        .collect()
}

#[test]
fn a_few_changed_blocks_are_all_that_is_fetched() {
    let v1 = v1();
    let mut w = world(&v1);
    w.repo.raw = true;
    // Three scattered blocks: three data blocks, the three bottom-level
    // hash blocks over them and the top block change.
    let v2 = changed(&v1, &[150, 900, 1700], salt());
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let report = install(&w).expect("install");
    assert_installed(&w, &v2, &p);

    let want = differing_blocks(&v1, &v2);
    assert_eq!(want.len(), 7, "{want:?}");
    assert!(
        w.server.payload_ranges().is_empty(),
        "no chunk was downloaded whole"
    );
    let ranges = w.server.block_ranges();
    let mut fetched: Vec<u64> = ranges
        .iter()
        .flat_map(|&(a, b)| a / 4096..b / 4096)
        .collect();
    fetched.sort();
    assert_eq!(fetched, want, "exactly the blocks that differ, each once");
    assert_eq!(ranges.len(), 7, "the changed blocks are not adjacent");
    assert_eq!(report.blocks_fetched, 7);
    assert_eq!(
        report.downloaded_bytes,
        7 * 4096 + p.kernel.len() as u64 + p.initrd.len() as u64
    );
    let n = p.manifest.usr.chunks.len();
    assert_eq!(
        report.chunks[0], 3,
        "three chunks had blocks fetched: {report:?}"
    );
    assert_eq!(report.chunks[1], n - 3, "{report:?}");
}

#[test]
fn a_running_slot_with_another_salt_still_lends_its_data_blocks() {
    // Built before images shared a salt: no hash block is alike, every
    // data block still is.
    let old = salted_slot_image(blocks(1, 2000), b"the salt of 1.0.0".to_vec());
    let mut w = world(&old);
    w.repo.raw = true;
    let v2 = changed(&old, &[900], salt());
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let report = install(&w).expect("install");
    assert_installed(&w, &v2, &p);
    let tree_blocks = verity::tree_size(v2.data_blocks) / 4096;
    assert_eq!(report.blocks_fetched, tree_blocks + 1, "{report:?}");
}

#[test]
fn a_chunk_with_many_changed_blocks_is_downloaded_whole() {
    let v1 = v1();
    let mut w = world(&v1);
    w.repo.raw = true;
    let many: Vec<usize> = (300..340).collect();
    let v2 = changed(&v1, &many, salt());
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let report = install(&w).expect("install");
    assert_installed(&w, &v2, &p);
    // Blocks 300..340 lie in one or two chunks: those come compressed.
    let whole: Vec<usize> = w
        .server
        .payload_ranges()
        .iter()
        .flat_map(|&(a, b)| {
            p.manifest
                .usr
                .chunks
                .iter()
                .enumerate()
                .filter(move |(_, c)| c.payload_offset >= a && c.payload_offset < b)
                .map(|(i, _)| i)
        })
        .collect();
    let per_chunk = (CHUNK / 4096) as usize;
    let expect: Vec<usize> = (300 / per_chunk..=339 / per_chunk).collect();
    assert_eq!(whole, expect, "{report:?}");
    // The tree's changed blocks still come as blocks.
    assert!(
        report.blocks_fetched > 0 && report.blocks_fetched < 10,
        "{report:?}"
    );
}

#[test]
fn a_tampered_block_is_refused_before_any_of_it_is_written() {
    let v1 = v1();
    let mut w = world(&v1);
    w.repo.raw = true;
    let v2 = changed(&v1, &[900], salt());
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    w.node.fill_slot(Slot::B, 0xee);
    let raw = p.manifest.usr.raw.clone().expect("raw");
    w.server.set(Faults {
        payload_budget: None,
        flip: Some((raw.path, 900 * 4096 + 17)),
    });
    let err = install(&w).expect_err("tampered");
    assert!(
        matches!(err, Error::BlockCorrupt { offset, .. } if offset == 900 * 4096),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not match the signed manifest"),
        "{err}"
    );
    assert!(
        err.to_string().contains("none of its bytes were written"),
        "{err}"
    );
    let c = p
        .manifest
        .usr
        .chunks
        .iter()
        .find(|c| c.offset <= 900 * 4096 && 900 * 4096 < c.offset + c.length)
        .expect("chunk");
    assert!(
        w.node
            .slot_bytes(Slot::B, c.offset, c.length as usize)
            .iter()
            .all(|&b| b == 0xee),
        "the chunk of the bad block was not written"
    );
    assert_eq!(w.node.slots().b.priority(), 0);

    w.server.set(Faults::default());
    install(&w).expect("install");
    assert_installed(&w, &v2, &p);
}

#[test]
fn a_cut_costs_no_block_already_written() {
    let v1 = v1();
    let mut w = world(&v1);
    w.repo.raw = true;
    // Two changed blocks in each of six chunks.
    let per_chunk = (CHUNK / 4096) as usize;
    let which: Vec<usize> = (1..7)
        .flat_map(|c| [c * per_chunk + 3, c * per_chunk + 40])
        .collect();
    let v2 = changed(&v1, &which, salt());
    let p = w.repo.publish("1.1.0", &v2);
    w.repo.point("stable", &p);
    let want = differing_blocks(&v1, &v2);
    let tree_at = v2.data_blocks;
    let tree_blocks = want.iter().filter(|&&b| b >= tree_at).count() as u64;
    // The server dies after the tree and a few data blocks.
    w.server.set(Faults {
        payload_budget: Some((tree_blocks + 5) * 4096),
        flip: None,
    });
    install(&w).expect_err("interrupted");
    let first: Vec<(u64, u64)> = w.server.block_ranges();
    w.server.set(Faults::default());
    w.server.clear();
    let report = install(&w).expect("resumed");
    assert_installed(&w, &v2, &p);
    let again = w.server.block_ranges();
    // The tree blocks were written when they came: none is fetched again.
    assert!(
        again.iter().all(|&(a, _)| a < tree_at * 4096),
        "tree blocks fetched again: {again:?}"
    );
    let fetched_twice: u64 = again
        .iter()
        .filter(|r| first.contains(r))
        .map(|(a, b)| (b - a) / 4096)
        .sum();
    // At most the blocks of the chunk that was being assembled.
    assert!(
        fetched_twice <= 2,
        "{fetched_twice} blocks fetched twice: {first:?} then {again:?}"
    );
    let data_first: u64 = first
        .iter()
        .filter(|&&(a, _)| a < tree_at * 4096)
        .map(|(a, b)| (b - a) / 4096)
        .sum();
    let data_changed = want.len() as u64 - tree_blocks;
    assert_eq!(
        report.blocks_fetched,
        data_changed - data_first + fetched_twice,
        "every changed data block fetched, {fetched_twice} of them twice: {report:?}"
    );
}
