//! dm-verity hash trees, format 1: sha256, 4096-byte data and hash blocks,
//! the salt prepended to every hashed block, 128 digests per hash block,
//! levels stored top level first. Byte-compatible with
//! `veritysetup format --no-superblock`.

use std::io;

use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK_SIZE: usize = 4096;
const DIGEST_SIZE: usize = 32;
const DIGESTS_PER_BLOCK: usize = BLOCK_SIZE / DIGEST_SIZE;

/// A computed hash tree and its root.
#[derive(Clone, PartialEq, Eq)]
pub struct HashTree {
    /// The tree as stored after the data: top level first, each level padded
    /// to whole blocks.
    pub tree: Vec<u8>,
    /// sha256(salt ‖ top block).
    pub root: [u8; DIGEST_SIZE],
    /// Number of 4096-byte data blocks the tree covers.
    pub data_blocks: u64,
}

impl std::fmt::Debug for HashTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashTree")
            .field("root", &hex(&self.root))
            .field("data_blocks", &self.data_blocks)
            .field("tree_bytes", &self.tree.len())
            .finish()
    }
}

/// Number of hash blocks on each level, bottom level first. A single data
/// block needs no tree: its salted digest is the root.
pub fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut levels = Vec::new();
    let mut count = data_blocks;
    while count > 1 {
        let blocks = count.div_ceil(DIGESTS_PER_BLOCK as u64);
        levels.push(blocks);
        count = blocks;
    }
    levels
}

/// One level of a stored tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Its first block, counted in blocks from the start of the tree.
    pub first: u64,
    /// Its blocks.
    pub blocks: u64,
    /// Digests its blocks hold (the blocks of the level below, or the data
    /// blocks for the bottom level); the rest of its last block is zeros.
    pub digests: u64,
}

/// The levels of the tree over `data_blocks` blocks as stored: top level
/// first (one block, whose salted digest is the root), bottom level last.
pub fn levels(data_blocks: u64) -> Vec<Level> {
    let counts = level_blocks(data_blocks);
    let mut first = 0;
    let mut out = Vec::with_capacity(counts.len());
    for (i, &blocks) in counts.iter().enumerate().rev() {
        let digests = if i == 0 { data_blocks } else { counts[i - 1] };
        out.push(Level {
            first,
            blocks,
            digests,
        });
        first += blocks;
    }
    out
}

/// The salted digest of one block, as the tree holds it.
pub fn digest(salt: &[u8], block: &[u8]) -> [u8; DIGEST_SIZE] {
    Sha256::new()
        .chain_update(salt)
        .chain_update(block)
        .finalize()
        .into()
}

/// The `count` digests a hash block holds, in order.
pub fn digests_in(block: &[u8], count: usize) -> impl Iterator<Item = [u8; DIGEST_SIZE]> + '_ {
    block
        .chunks_exact(DIGEST_SIZE)
        .take(count)
        .filter_map(|d| d.try_into().ok())
}

/// Digests per hash block.
pub const DIGESTS_PER_HASH_BLOCK: u64 = DIGESTS_PER_BLOCK as u64;

/// Size in bytes of the tree for `data_blocks` blocks of data.
pub fn tree_size(data_blocks: u64) -> u64 {
    level_blocks(data_blocks).iter().sum::<u64>() * BLOCK_SIZE as u64
}

/// Builds the tree over `data_blocks` blocks read from `data` in order.
/// `progress` is called with the number of data bytes hashed so far.
pub fn build(
    data: &mut impl io::Read,
    data_blocks: u64,
    salt: &[u8],
    mut progress: impl FnMut(u64),
) -> io::Result<HashTree> {
    let salted = {
        let mut h = Sha256::new();
        h.update(salt);
        h
    };
    let hash_block = |block: &[u8]| -> [u8; DIGEST_SIZE] {
        let mut h = salted.clone();
        h.update(block);
        h.finalize().into()
    };

    // Bottom level: one digest per data block. Read in large batches and
    // hash them on all cores: this is the part that scales with /usr.
    let mut bottom = Vec::with_capacity(data_blocks as usize * DIGEST_SIZE);
    let batch_blocks = 256usize; // 1 MiB per batch and thread
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut buf = vec![0u8; batch_blocks * BLOCK_SIZE * threads];
    let mut done: u64 = 0;
    while done < data_blocks {
        let blocks = ((data_blocks - done) as usize).min(batch_blocks * threads);
        let bytes = &mut buf[..blocks * BLOCK_SIZE];
        data.read_exact(bytes)?;
        let parts: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = bytes
                .chunks(batch_blocks * BLOCK_SIZE)
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .chunks(BLOCK_SIZE)
                            .flat_map(&hash_block)
                            .collect::<Vec<u8>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for p in parts {
            bottom.extend_from_slice(&p);
        }
        done += blocks as u64;
        progress(done * BLOCK_SIZE as u64);
    }
    if bottom.len() != data_blocks as usize * DIGEST_SIZE {
        return Err(io::Error::other("hashing thread failed"));
    }

    if data_blocks <= 1 {
        return Ok(HashTree {
            tree: Vec::new(),
            root: bottom
                .get(..DIGEST_SIZE)
                .and_then(|d| d.try_into().ok())
                .unwrap_or_default(),
            data_blocks,
        });
    }
    // Upper levels: digests of the padded blocks of the level below.
    let mut levels: Vec<Vec<u8>> = vec![pad_to_block(bottom)];
    while levels.last().map_or(0, Vec::len) > BLOCK_SIZE {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let above: Vec<u8> = below.chunks(BLOCK_SIZE).flat_map(hash_block).collect();
        levels.push(pad_to_block(above));
    }
    let top = levels.last().map(Vec::as_slice).unwrap_or_default();
    let root = hash_block(top);
    let tree = levels.iter().rev().flatten().copied().collect();
    Ok(HashTree {
        tree,
        root,
        data_blocks,
    })
}

fn pad_to_block(mut level: Vec<u8>) -> Vec<u8> {
    let len = level.len().max(1).next_multiple_of(BLOCK_SIZE);
    level.resize(len, 0);
    level
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(blocks: usize) -> Vec<u8> {
        (0..blocks * BLOCK_SIZE)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect()
    }

    #[test]
    fn level_sizes() {
        assert_eq!(level_blocks(1), [0u64; 0]);
        assert_eq!(level_blocks(2), [1]);
        assert_eq!(level_blocks(128), [1]);
        assert_eq!(level_blocks(129), [2, 1]);
        assert_eq!(level_blocks(128 * 128 + 1), [129, 2, 1]);
        assert_eq!(tree_size(129), 3 * 4096);
    }

    #[test]
    fn single_block_has_no_tree_and_its_digest_is_the_root() {
        let d = data(1);
        let salt = [9u8; 32];
        let t = build(&mut d.as_slice(), 1, &salt, |_| {}).expect("build");
        let leaf: [u8; 32] = Sha256::new()
            .chain_update(salt)
            .chain_update(&d)
            .finalize()
            .into();
        assert!(t.tree.is_empty());
        assert_eq!(t.root, leaf);
    }

    #[test]
    fn two_blocks_make_one_level() {
        let d = data(2);
        let t = build(&mut d.as_slice(), 2, b"s", |_| {}).expect("build");
        assert_eq!(t.tree.len(), BLOCK_SIZE);
        let root: [u8; 32] = Sha256::new()
            .chain_update(b"s")
            .chain_update(&t.tree)
            .finalize()
            .into();
        assert_eq!(t.root, root);
    }

    #[test]
    fn multi_level_layout_is_top_first() {
        let blocks = 300; // 3 leaf hash blocks, 1 top block
        let d = data(blocks);
        let t = build(&mut d.as_slice(), blocks as u64, b"salt", |_| {}).expect("build");
        assert_eq!(t.tree.len(), 4 * BLOCK_SIZE);
        // The top block holds the digests of the three leaf-level blocks.
        let leaf_level = &t.tree[BLOCK_SIZE..];
        for i in 0..3 {
            let want: [u8; 32] = Sha256::new()
                .chain_update(b"salt")
                .chain_update(&leaf_level[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE])
                .finalize()
                .into();
            assert_eq!(&t.tree[i * 32..(i + 1) * 32], &want);
        }
    }

    #[test]
    fn levels_locate_every_stored_block_and_its_digests() {
        let blocks = 128 * 128 + 5;
        let d = data(blocks);
        let salt = b"salt";
        let t = build(&mut d.as_slice(), blocks as u64, salt, |_| {}).expect("build");
        let ls = levels(blocks as u64);
        assert_eq!(
            ls,
            [
                Level {
                    first: 0,
                    blocks: 1,
                    digests: 2
                },
                Level {
                    first: 1,
                    blocks: 2,
                    digests: 129
                },
                Level {
                    first: 3,
                    blocks: 129,
                    digests: blocks as u64
                },
            ]
        );
        let block = |i: u64| &t.tree[i as usize * BLOCK_SIZE..][..BLOCK_SIZE];
        assert_eq!(digest(salt, block(0)), t.root);
        // Each level's digests are the salted digests of the level below.
        for pair in ls.windows(2) {
            let (up, down) = (pair[0], pair[1]);
            let below: Vec<_> = (0..up.blocks)
                .flat_map(|b| digests_in(block(up.first + b), 128).collect::<Vec<_>>())
                .take(up.digests as usize)
                .collect();
            let want: Vec<_> = (0..down.blocks)
                .map(|b| digest(salt, block(down.first + b)))
                .collect();
            assert_eq!(below, want);
        }
        let bottom = ls[2];
        let last = digests_in(block(bottom.first + bottom.blocks - 1), 5).collect::<Vec<_>>();
        let want: Vec<_> = (blocks - 5..blocks)
            .map(|b| digest(salt, &d[b * BLOCK_SIZE..][..BLOCK_SIZE]))
            .collect();
        assert_eq!(last, want);
        assert!(levels(1).is_empty());
    }

    #[test]
    fn short_input_is_an_error() {
        let d = data(2);
        assert!(build(&mut d.as_slice(), 3, b"", |_| {}).is_err());
    }
}
