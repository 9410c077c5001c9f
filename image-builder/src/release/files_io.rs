//! File helpers: hashing, synced writes.

#[allow(unused_imports)]
use super::*;

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Size and sha256 of a file.
pub(super) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path).io("open", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).io("read", path)?;
        if n == 0 {
            return Ok((size, hex::encode(h.finalize())));
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
}

/// Size, sha256 and per-chunk (offset, length, sha256) of a file.
pub(super) type ChunkHashes = (u64, String, Vec<(u64, u64, String)>);

pub(super) fn chunk_hashes(path: &Path, chunk_size: u64) -> Result<ChunkHashes> {
    let chunk_size = if chunk_size == 0 {
        CHUNK_SIZE
    } else {
        chunk_size
    };
    let mut f = std::fs::File::open(path).io("open", path)?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; chunk_size as usize];
    let mut offset = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            let k = f.read(&mut buf[n..]).io("read", path)?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        chunks.push((offset, n as u64, sha256_hex(&buf[..n])));
        offset += n as u64;
        if n < buf.len() {
            break;
        }
    }
    Ok((offset, hex::encode(whole.finalize()), chunks))
}

/// Copies `src` to a new file `dst` (synced), hashing on the way.
pub(super) fn copy_hashed(src: &Path, dst: &Path) -> Result<(u64, String)> {
    let mut input = std::fs::File::open(src).io("open", src)?;
    let mut out = std::fs::File::create(dst).io("create", dst)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).io("read", src)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).io("write", dst)?;
        size += n as u64;
    }
    out.sync_all().io("sync", dst)?;
    Ok((size, hex::encode(h.finalize())))
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).io("create", path)?;
    f.write_all(bytes).io("write", path)?;
    f.sync_all().io("sync", path)
}

pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .io("sync directory", dir)
}
