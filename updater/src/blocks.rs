//! Block-level deltas: a chunk the node cannot copy whole is assembled from
//! 4 KiB blocks, most of them local, the rest fetched one range each from
//! the uncompressed image the repository publishes beside the payload
//! (`usr.img`, named in the signed manifest).
//!
//! What tells the node which blocks it lacks is the new slot's own
//! dm-verity hash tree, a Merkle index of every block under the root hash
//! the manifest signs. The node walks it from the top: each hash block is
//! looked up by its digest in the inactive slot (at its own offset: left by
//! an interrupted attempt) and in the running slot (anywhere: hashed with
//! the new salt), and fetched only if neither has it. Images of one name
//! share a salt (the builder sees to it), so an unchanged part of the tree
//! is found locally and only the hash blocks over changed data are
//! fetched: a handful for a one-file change. The bottom level then names
//! every data block; those found locally are copied, the others fetched.
//!
//! Every block is checked against its digest before any of its bytes are
//! written, and the assembled chunk against the manifest's sha256 too.
//! Fetched tree blocks are written to the slot at once, so a power cut
//! does not cost them again; data blocks go out with their chunk.
//!
//! The choices ([`choose`], [`fetch_runs`], [`worth_patching`]) are pure;
//! [`Patcher`] does the I/O.

use std::collections::HashMap;
use std::io::Read;

use repository::repo::{Chunk, FileRef, UsrImage};
use tandem_slot::verity;

use crate::apply::{Counters, Digest32, disk_err};
use crate::disk::Region;
use crate::error::Error;
use crate::http::Fetch;

/// Block size of data and hash tree.
pub const BLOCK: u64 = verity::BLOCK_SIZE as u64;

/// Where one block of the new image comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    /// The inactive slot holds it at its own offset.
    InPlace,
    /// The running slot holds it at this byte offset.
    Local(u64),
    /// Fetched from the uncompressed image.
    Fetch,
}

/// The source of a block whose digest is `want`: in place when the
/// inactive slot's block at its offset has that digest (`in_place`), else
/// local when the running slot has it somewhere, else fetched.
pub fn choose(
    want: &Digest32,
    in_place: Option<&Digest32>,
    local: &HashMap<Digest32, u64>,
) -> BlockSource {
    if in_place == Some(want) {
        BlockSource::InPlace
    } else if let Some(&at) = local.get(want) {
        BlockSource::Local(at)
    } else {
        BlockSource::Fetch
    }
}

/// Runs of adjacent fetched blocks, as `(first, count)` indexes into
/// `sources`: one HTTP Range request each.
pub fn fetch_runs(sources: &[BlockSource]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        if *s != BlockSource::Fetch {
            continue;
        }
        match out.last_mut() {
            Some((first, count)) if *first + *count == i => *count += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// Bytes a Range request costs beyond its body (request and response
/// headers), so that many scattered blocks do not beat one compressed chunk
/// on paper only.
pub const REQUEST_COST: u64 = 512;

/// Whether fetching a chunk's missing blocks (`sources`) costs fewer bytes
/// than its compressed form.
pub fn worth_patching(sources: &[BlockSource], compressed_size: u64) -> bool {
    let fetched = sources.iter().filter(|s| **s == BlockSource::Fetch).count() as u64;
    let requests = fetch_runs(sources).len() as u64;
    fetched * BLOCK + requests * REQUEST_COST < compressed_size
}

/// Whether a manifest's image can be patched block by block: it publishes
/// the uncompressed image, and the image is exactly its data and tree.
pub fn patchable(usr: &UsrImage) -> Option<&FileRef> {
    let raw = usr.raw.as_ref()?;
    let v = &usr.verity;
    let whole = v.data_blocks.checked_mul(BLOCK)? + verity::tree_size(v.data_blocks);
    (v.data_blocks > 1 && whole == usr.size && raw.size == usr.size).then_some(raw)
}

/// What blocks are got for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// The hash tree, before any chunk: fetched blocks are written to the
    /// slot at once (a power cut does not cost them again); local ones are
    /// counted with the chunk they belong to.
    Tree,
    /// A chunk, written and counted as a whole by the caller.
    Chunk,
}

/// Assembles chunks of the new image from blocks: local ones, and fetched
/// ones from `raw`.
pub struct Patcher<'a> {
    raw: FileRef,
    salt: Vec<u8>,
    target: &'a Region,
    running: &'a Region,
    /// The running slot's blocks by their digest under the new salt.
    local: HashMap<Digest32, u64>,
    /// Where the tree starts in the image.
    tree_at: u64,
    /// The new image's whole tree, verified from the root.
    tree: Vec<u8>,
    /// The digest of every data block (the tree's bottom level).
    leaves: Vec<Digest32>,
}

impl std::fmt::Debug for Patcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patcher")
            .field("raw", &self.raw.path)
            .field("local_blocks", &self.local.len())
            .field("leaves", &self.leaves.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Patcher<'a> {
    /// Hashes the running slot's image (`running_size` bytes) block by block
    /// with the new image's salt, then gets the new image's hash tree: its
    /// blocks from the inactive slot, the running slot or `fetch`, each
    /// checked from the root hash down. `None` when `usr` cannot be
    /// patched ([`patchable`]).
    pub fn new(
        usr: &UsrImage,
        target: &'a Region,
        running: (&'a Region, u64),
        fetch: &mut dyn Fetch,
        counters: &mut Counters,
    ) -> Result<Option<Self>, Error> {
        let Some(raw) = patchable(usr).cloned() else {
            return Ok(None);
        };
        let v = &usr.verity;
        let (Ok(salt), Some(root)) = (hex::decode(&v.salt), crate::apply::digest(&v.root_hash))
        else {
            return Ok(None);
        };
        let (region, size) = running;
        let local = index_blocks(region, size, &salt)
            .map_err(|e| disk_err(region, "reading the running slot", e))?;
        let mut p = Patcher {
            raw,
            salt,
            target,
            running: region,
            local,
            tree_at: v.data_blocks * BLOCK,
            tree: Vec::new(),
            leaves: Vec::new(),
        };
        p.leaves = p.resolve_tree(root, v.data_blocks, fetch, counters)?;
        Ok(Some(p))
    }

    /// Walks the tree from the top, level by level; returns the bottom
    /// level's digests (one per data block).
    fn resolve_tree(
        &mut self,
        root: Digest32,
        data_blocks: u64,
        fetch: &mut dyn Fetch,
        counters: &mut Counters,
    ) -> Result<Vec<Digest32>, Error> {
        let mut want = vec![root];
        let mut fetched_any = false;
        for level in verity::levels(data_blocks) {
            let at = self.tree_at + level.first * BLOCK;
            let mut bytes = vec![0u8; (level.blocks * BLOCK) as usize];
            fetched_any |= self.blocks(at, &want, &mut bytes, fetch, counters, Use::Tree)?;
            want = bytes
                .chunks_exact(verity::BLOCK_SIZE)
                .flat_map(|b| verity::digests_in(b, verity::DIGESTS_PER_HASH_BLOCK as usize))
                .take(level.digests as usize)
                .collect();
            self.tree.extend_from_slice(&bytes);
        }
        if fetched_any {
            self.target
                .sync()
                .map_err(|e| disk_err(self.target, "syncing the inactive slot", e))?;
        }
        Ok(want)
    }

    /// Fills `out` with the blocks at image offset `at` whose digests are
    /// `want`, from wherever they are. Returns whether any block was fetched.
    fn blocks(
        &self,
        at: u64,
        want: &[Digest32],
        out: &mut [u8],
        fetch: &mut dyn Fetch,
        counters: &mut Counters,
        usage: Use,
    ) -> Result<bool, Error> {
        let b = verity::BLOCK_SIZE;
        let mut sources = Vec::with_capacity(want.len());
        for (i, (d, buf)) in want.iter().zip(out.chunks_exact_mut(b)).enumerate() {
            let pos = at + i as u64 * BLOCK;
            let here = self.read_checked(self.target, pos, buf, "reading the inactive slot")?;
            let source = match choose(d, here.as_ref(), &self.local) {
                BlockSource::Local(from) => {
                    match self.read_checked(self.running, from, buf, "reading the running slot")? {
                        // The running slot is read raw, not through
                        // dm-verity: a block that does not check is fetched.
                        Some(got) if got == *d => BlockSource::Local(from),
                        _ => BlockSource::Fetch,
                    }
                }
                s => s,
            };
            match (source, usage) {
                (BlockSource::InPlace, Use::Chunk) => counters.present += BLOCK,
                (BlockSource::Local(_), Use::Chunk) => counters.copied += BLOCK,
                _ => {}
            }
            sources.push(source);
        }
        let runs = fetch_runs(&sources);
        for &(first, count) in &runs {
            let start = at + first as u64 * BLOCK;
            let end = start + count as u64 * BLOCK;
            let into = &mut out[first * b..(first + count) * b];
            counters.range_requests += 1;
            counters.requested_blocks.push((start, end));
            fetch
                .range(&self.raw.path, start, end)?
                .read_exact(into)
                .map_err(|e| Error::Http {
                    url: fetch.url(&self.raw.path),
                    msg: format!("reading bytes {start}..{end}: {e}"),
                })?;
            counters.downloaded += end - start;
            counters.blocks_fetched += count as u64;
            for (k, (block, d)) in into.chunks_exact(b).zip(&want[first..]).enumerate() {
                let got = verity::digest(&self.salt, block);
                if got != *d {
                    return Err(Error::BlockCorrupt {
                        path: self.raw.path.clone(),
                        offset: start + k as u64 * BLOCK,
                        detail: format!(
                            "digest {}, the hash tree says {}",
                            hex::encode(got),
                            hex::encode(d)
                        ),
                    });
                }
            }
            if usage == Use::Tree {
                self.target
                    .write_at(start, into)
                    .map_err(|e| disk_err(self.target, "writing the inactive slot", e))?;
            }
        }
        Ok(!runs.is_empty())
    }

    /// Reads one block and returns its digest (`None` past the region's
    /// end, as a short or unreadable slot just has nothing to offer).
    fn read_checked(
        &self,
        region: &Region,
        pos: u64,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<Option<Digest32>, Error> {
        if pos + BLOCK > region.len() {
            return Ok(None);
        }
        region
            .read_at(pos, buf)
            .map_err(|e| disk_err(region, what, e))?;
        Ok(Some(verity::digest(&self.salt, buf)))
    }

    /// The sources of chunk `c`'s data blocks, without reading the slots:
    /// what a patch of it would fetch at most.
    pub fn plan_chunk(&self, c: &Chunk) -> Vec<BlockSource> {
        self.data_digests(c)
            .map(|d| choose(d, None, &self.local))
            .collect()
    }

    fn data_digests(&self, c: &Chunk) -> impl Iterator<Item = &Digest32> {
        let first = (c.offset / BLOCK) as usize;
        let end = (c.offset + c.length).min(self.tree_at).div_ceil(BLOCK) as usize;
        self.leaves
            .get(first..end.max(first))
            .unwrap_or_default()
            .iter()
    }

    /// The bytes of chunk `c`, assembled: tree blocks from the verified
    /// tree, data blocks in place, copied or fetched.
    pub fn chunk(
        &self,
        c: &Chunk,
        fetch: &mut dyn Fetch,
        counters: &mut Counters,
    ) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; c.length as usize];
        let want: Vec<Digest32> = self.data_digests(c).copied().collect();
        let data_len = want.len() * verity::BLOCK_SIZE;
        if data_len > out.len() {
            // Only a chunk that is not whole blocks; images always are.
            return Err(Error::Node {
                what: format!("chunk at {} does not end on a block boundary", c.offset),
            });
        }
        self.blocks(
            c.offset,
            &want,
            &mut out[..data_len],
            fetch,
            counters,
            Use::Chunk,
        )?;
        if data_len < out.len() {
            let from = (c.offset + data_len as u64 - self.tree_at) as usize;
            let tail = &mut out[data_len..];
            let src = self
                .tree
                .get(from..from + tail.len())
                .ok_or_else(|| Error::Node {
                    what: format!("chunk at {} reaches past the hash tree", c.offset),
                })?;
            tail.copy_from_slice(src);
        }
        Ok(out)
    }
}

/// The digest under `salt` of every block of the first `size` bytes of
/// `region` → its first offset.
pub fn index_blocks(
    region: &Region,
    size: u64,
    salt: &[u8],
) -> std::io::Result<HashMap<Digest32, u64>> {
    let size = size.min(region.len()) / BLOCK * BLOCK;
    let mut out = HashMap::with_capacity((size / BLOCK) as usize);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < size {
        let len = (buf.len() as u64).min(size - at) as usize;
        region.read_at(at, &mut buf[..len])?;
        for (i, block) in buf[..len].chunks_exact(verity::BLOCK_SIZE).enumerate() {
            out.entry(verity::digest(salt, block))
                .or_insert(at + i as u64 * BLOCK);
        }
        at += len as u64;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BlockSource::*;

    #[test]
    fn in_place_beats_local_beats_fetch() {
        let local = HashMap::from([([1u8; 32], 8192)]);
        assert_eq!(choose(&[1; 32], Some(&[1; 32]), &local), InPlace);
        assert_eq!(choose(&[1; 32], Some(&[2; 32]), &local), Local(8192));
        assert_eq!(choose(&[1; 32], None, &local), Local(8192));
        assert_eq!(choose(&[3; 32], Some(&[1; 32]), &local), Fetch);
        assert_eq!(choose(&[3; 32], None, &HashMap::new()), Fetch);
    }

    #[test]
    fn adjacent_fetches_make_one_request() {
        assert_eq!(fetch_runs(&[]), []);
        assert_eq!(fetch_runs(&[InPlace, Local(0)]), []);
        assert_eq!(
            fetch_runs(&[Fetch, Fetch, Local(0), Fetch, InPlace, Fetch, Fetch, Fetch]),
            [(0, 2), (3, 1), (5, 3)]
        );
    }

    #[test]
    fn a_chunk_is_patched_only_when_its_blocks_cost_less() {
        let mut s = vec![Local(0); 256];
        assert!(worth_patching(&s, 100));
        s[10] = Fetch;
        assert!(worth_patching(&s, BLOCK + REQUEST_COST + 1));
        assert!(!worth_patching(&s, BLOCK + REQUEST_COST));
        // Scattered blocks cost a request each.
        let mut s = vec![Local(0); 256];
        for i in (0..256).step_by(4) {
            s[i] = Fetch;
        }
        assert!(!worth_patching(&s, 64 * BLOCK + 10 * REQUEST_COST));
        assert!(worth_patching(&s, 65 * BLOCK + 64 * REQUEST_COST));
    }

    #[test]
    fn only_images_of_data_and_tree_with_a_raw_copy_are_patchable() {
        let mut usr = repository::repo::testing::sample().usr;
        usr.verity.data_blocks = 700;
        usr.size = 700 * BLOCK + verity::tree_size(700);
        usr.raw.as_mut().expect("raw").size = usr.size;
        assert!(patchable(&usr).is_some());
        let mut other = usr.clone();
        other.size += BLOCK;
        assert!(
            patchable(&other).is_none(),
            "a tail the tree does not cover"
        );
        let mut other = usr.clone();
        other.raw = None;
        assert!(patchable(&other).is_none(), "published before usr.img");
        let mut other = usr;
        other.verity.data_blocks = 1;
        assert!(patchable(&other).is_none(), "no tree to walk");
    }
}
