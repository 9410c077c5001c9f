//! Cutting a /usr slot image into independently compressed chunks (release
//! side), and reading one chunk back (either side).
//!
//! The slot image is cut into [`CHUNK_SIZE`] pieces (the last may be
//! shorter); each is compressed on its own as one zstd frame and the frames
//! are written back to back into the payload file. The result is the chunk
//! list of the manifest ([`Chunk`]: offset, length, sha256 of the
//! uncompressed bytes, payload offset, compressed size), so a node can fetch
//! any chunk with one HTTP Range request and check it before writing it.
//!
//! [`encode`] streams: it reads the image once, hashes it whole on the way
//! (so the caller can check it against the build's record without a second
//! pass), compresses chunks on several threads and writes them in order.
//! Memory stays bounded (a few chunks per thread in flight).
//!
//! ```
//! use repository::payload::{self, Options};
//!
//! let image = vec![7u8; 3 << 20];
//! let mut out = Vec::new();
//! let enc = payload::encode(&image[..], &mut out, &Options::default(), |_| {}).unwrap();
//! assert_eq!(enc.chunks.len(), 3);
//! let c = &enc.chunks[1];
//! let frame = &out[c.payload_offset as usize..][..c.compressed_size as usize];
//! assert_eq!(payload::decode_chunk(1, c, frame).unwrap(), vec![7u8; 1 << 20]);
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

pub use crate::error::PayloadError;
use crate::repo::{CHUNK_SIZE, Chunk, FileRef};

/// zstd level of new payloads. Measured on the example image's 92 MiB
/// /usr on two cores: level 3 makes a 23.2 MiB payload in 0.5 s, level 9
/// 10 % less in 3× the time, level 19 18 % less in 45×. Decompression speed
/// on the node hardly depends on the level. Chunking costs under 1 %
/// against compressing the whole image as one stream.
pub const DEFAULT_LEVEL: i32 = 3;

/// Chunks in flight per compression thread (read ahead + awaiting their
/// turn to be written): bounds memory to about this × threads × 2 MiB.
const IN_FLIGHT_PER_THREAD: usize = 4;

/// How to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// zstd level (1–19).
    pub level: i32,
    /// Compression threads (at least 1).
    pub threads: usize,
    /// Uncompressed chunk size; [`CHUNK_SIZE`] for published payloads.
    pub chunk_size: u64,
}

impl Default for Options {
    /// [`DEFAULT_LEVEL`], one thread per CPU, [`CHUNK_SIZE`].
    fn default() -> Self {
        Options {
            level: DEFAULT_LEVEL,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            chunk_size: CHUNK_SIZE,
        }
    }
}

/// What [`encode`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes of the slot image.
    pub image_size: u64,
    /// sha256 of the whole slot image, hex.
    pub image_sha256: String,
    /// Uncompressed chunk size used.
    pub chunk_size: u64,
    /// Chunks in image order, covering the image exactly.
    pub chunks: Vec<Chunk>,
    /// Bytes of the payload (sum of the compressed sizes).
    pub payload_size: u64,
    /// sha256 of the payload, hex.
    pub payload_sha256: String,
}

impl Encoded {
    /// The payload as a manifest [`FileRef`] at `path` (relative to the
    /// repository root).
    pub fn payload_ref(&self, path: impl Into<String>) -> FileRef {
        FileRef {
            path: path.into(),
            size: self.payload_size,
            sha256: self.payload_sha256.clone(),
        }
    }
}

/// A chunk read from the image, on its way to a compression thread.
struct Raw {
    index: usize,
    offset: u64,
    data: Vec<u8>,
}

/// A compressed chunk on its way to the writer.
struct Done {
    index: usize,
    offset: u64,
    length: u64,
    sha256: String,
    frame: Vec<u8>,
}

/// Cuts `image` into chunks, compresses each on its own and writes the
/// frames back to back to `payload`. `progress` is called with the image
/// bytes done after each chunk is written. Returns the chunk list and the
/// payload's size and hash; `payload` is flushed but not synced.
pub fn encode<R: Read + Send, W: Write>(
    image: R,
    mut payload: W,
    opts: &Options,
    mut progress: impl FnMut(u64),
) -> Result<Encoded, PayloadError> {
    if opts.threads == 0 {
        return Err(PayloadError::Options("threads must be at least 1".into()));
    }
    if opts.chunk_size == 0 || opts.chunk_size > 64 << 20 {
        return Err(PayloadError::Options(format!(
            "chunk size {} is not in 1 B..64 MiB",
            opts.chunk_size
        )));
    }
    let in_flight = opts.threads * IN_FLIGHT_PER_THREAD;
    // Tokens bound the chunks between reader and writer: the reader takes
    // one per chunk, the writer gives it back once the chunk is written.
    let (token_tx, token_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        // Cannot fail: the channel has room for every token and is open.
        let _ = token_tx.send(());
    }
    let (raw_tx, raw_rx) = sync_channel::<Raw>(in_flight);
    let (done_tx, done_rx) = sync_channel::<Result<Done, PayloadError>>(in_flight);
    // Shared by the workers only: when they have all stopped, the reader's
    // sends fail and it stops too.
    let raw_rx = Arc::new(Mutex::new(raw_rx));
    let chunk_size = opts.chunk_size;

    std::thread::scope(|s| {
        let reader = s.spawn(move || read_chunks(image, chunk_size, &token_rx, &raw_tx));
        let workers: Vec<_> = (0..opts.threads)
            .map(|_| {
                let done_tx = done_tx.clone();
                let raw_rx = Arc::clone(&raw_rx);
                s.spawn(move || compress_chunks(&raw_rx, &done_tx, opts.level))
            })
            .collect();
        drop(done_tx);
        drop(raw_rx);

        let written = write_in_order(&done_rx, &token_tx, &mut payload, &mut progress);
        // Unblock everyone on an early exit: the reader waits for tokens,
        // the workers for room to send.
        drop(token_tx);
        drop(done_rx);
        let read = reader.join().map_err(|_| PayloadError::Worker)?;
        for w in workers {
            w.join().map_err(|_| PayloadError::Worker)?;
        }
        // The writer's error explains a reader stopped by it; otherwise the
        // reader's error is the cause.
        let (chunks, payload_size, payload_sha256) = written?;
        let (image_size, image_sha256) = read?;
        let covered: u64 = chunks.iter().map(|c| c.length).sum();
        if covered != image_size {
            // Only if a worker vanished without a result.
            return Err(PayloadError::Worker);
        }
        payload.flush().map_err(|cause| PayloadError::Write {
            offset: payload_size,
            cause,
        })?;
        Ok(Encoded {
            image_size,
            image_sha256,
            chunk_size,
            chunks,
            payload_size,
            payload_sha256,
        })
    })
}

/// Reader thread: whole-image hash and chunks out, one token per chunk.
fn read_chunks<R: Read>(
    mut image: R,
    chunk_size: u64,
    tokens: &Receiver<()>,
    out: &SyncSender<Raw>,
) -> Result<(u64, String), PayloadError> {
    let mut hasher = Sha256::new();
    let mut offset = 0u64;
    for index in 0.. {
        let mut data = vec![0u8; chunk_size as usize];
        let n =
            fill(&mut image, &mut data).map_err(|cause| PayloadError::Read { offset, cause })?;
        if n == 0 {
            break;
        }
        data.truncate(n);
        hasher.update(&data);
        if tokens.recv().is_err()
            || out
                .send(Raw {
                    index,
                    offset,
                    data,
                })
                .is_err()
        {
            // The writer stopped; its error is reported.
            break;
        }
        offset += n as u64;
        if n < chunk_size as usize {
            break;
        }
    }
    Ok((offset, hex::encode(hasher.finalize())))
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Compression thread: hash and compress chunks until the reader is done.
fn compress_chunks(
    input: &Mutex<Receiver<Raw>>,
    out: &SyncSender<Result<Done, PayloadError>>,
    level: i32,
) {
    let mut compressor = match zstd::bulk::Compressor::new(level) {
        Ok(c) => c,
        Err(cause) => {
            let _ = out.send(Err(PayloadError::Compress { index: 0, cause }));
            return;
        }
    };
    loop {
        // A poisoned lock means another worker panicked; that is reported
        // when it is joined.
        let next = match input.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(raw) = next else { return };
        let sha256 = hex::encode(Sha256::digest(&raw.data));
        let result = compressor
            .compress(&raw.data)
            .map(|frame| Done {
                index: raw.index,
                offset: raw.offset,
                length: raw.data.len() as u64,
                sha256,
                frame,
            })
            .map_err(|cause| PayloadError::Compress {
                index: raw.index,
                cause,
            });
        if out.send(result).is_err() {
            return;
        }
    }
}

/// Writer (the calling thread): frames in image order, payload hash,
/// chunk list.
fn write_in_order<W: Write>(
    done: &Receiver<Result<Done, PayloadError>>,
    tokens: &SyncSender<()>,
    payload: &mut W,
    progress: &mut impl FnMut(u64),
) -> Result<(Vec<Chunk>, u64, String), PayloadError> {
    let mut pending: BTreeMap<usize, Done> = BTreeMap::new();
    let mut chunks = Vec::new();
    let mut hasher = Sha256::new();
    let mut payload_offset = 0u64;
    for result in done {
        let d = result?;
        pending.insert(d.index, d);
        while let Some(d) = pending.remove(&chunks.len()) {
            payload
                .write_all(&d.frame)
                .map_err(|cause| PayloadError::Write {
                    offset: payload_offset,
                    cause,
                })?;
            hasher.update(&d.frame);
            let compressed_size = d.frame.len() as u64;
            chunks.push(Chunk {
                offset: d.offset,
                length: d.length,
                sha256: d.sha256,
                payload_offset,
                compressed_size,
            });
            payload_offset += compressed_size;
            progress(d.offset + d.length);
            // The reader may be gone already (end of image).
            let _ = tokens.try_send(());
        }
    }
    if !pending.is_empty() {
        return Err(PayloadError::Worker);
    }
    Ok((chunks, payload_offset, hex::encode(hasher.finalize())))
}

/// Decompresses chunk `index` from its frame (the `compressed_size` bytes
/// at its `payload_offset`) and checks its length and sha256 against the
/// manifest. Never returns bytes that do not match.
pub fn decode_chunk(index: usize, chunk: &Chunk, frame: &[u8]) -> Result<Vec<u8>, PayloadError> {
    if frame.len() as u64 != chunk.compressed_size {
        return Err(PayloadError::FrameSize {
            index,
            got: frame.len() as u64,
            want: chunk.compressed_size,
        });
    }
    let capacity = usize::try_from(chunk.length).map_err(|_| PayloadError::Mismatch {
        index,
        got_len: 0,
        got_sha256: String::new(),
        want_len: chunk.length,
        want_sha256: chunk.sha256.clone(),
    })?;
    let data = zstd::bulk::decompress(frame, capacity)
        .map_err(|cause| PayloadError::Decompress { index, cause })?;
    let sha256 = hex::encode(Sha256::digest(&data));
    if data.len() as u64 != chunk.length || sha256 != chunk.sha256 {
        return Err(PayloadError::Mismatch {
            index,
            got_len: data.len() as u64,
            got_sha256: sha256,
            want_len: chunk.length,
            want_sha256: chunk.sha256.clone(),
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alternating MiBs of compressible text and of noise.
    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                if (i >> 20) % 2 == 0 {
                    b"tandem /usr image "[i % 18]
                } else {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                }
            })
            .collect()
    }

    fn round_trip(image: &[u8], opts: &Options) -> Encoded {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let enc = encode(image, &mut out, opts, |done| seen.push(done)).expect("encode");
        assert_eq!(enc.image_size, image.len() as u64);
        assert_eq!(enc.image_sha256, hex::encode(Sha256::digest(image)));
        assert_eq!(enc.payload_size, out.len() as u64);
        assert_eq!(enc.payload_sha256, hex::encode(Sha256::digest(&out)));
        assert_eq!(seen.last().copied().unwrap_or(0), image.len() as u64);
        let mut back = Vec::new();
        for (i, c) in enc.chunks.iter().enumerate() {
            assert_eq!(c.offset, back.len() as u64);
            let frame =
                &out[c.payload_offset as usize..(c.payload_offset + c.compressed_size) as usize];
            let data = decode_chunk(i, c, frame).expect("decode");
            assert_eq!(c.sha256, hex::encode(Sha256::digest(&data)));
            back.extend_from_slice(&data);
        }
        assert_eq!(back, image);
        enc
    }

    #[test]
    fn round_trip_in_chunks() {
        let image = sample((5 << 20) + 12345);
        let enc = round_trip(&image, &Options::default());
        assert_eq!(enc.chunks.len(), 6);
        assert_eq!(enc.chunks[5].length, 12345);
        assert!(enc.chunks[0].compressed_size < 4096, "text compresses");
        assert!(enc.chunks[1].compressed_size > 1 << 19, "noise does not");
        // Every chunk stays within what Manifest::check accepts.
        assert!(
            enc.chunks
                .iter()
                .all(|c| c.compressed_size <= c.length + 4096)
        );
    }

    #[test]
    fn same_result_with_any_thread_count() {
        let image = sample(3 << 20);
        let one = round_trip(
            &image,
            &Options {
                threads: 1,
                ..Options::default()
            },
        );
        let many = round_trip(
            &image,
            &Options {
                threads: 5,
                chunk_size: 256 << 10,
                ..Options::default()
            },
        );
        let again = round_trip(
            &image,
            &Options {
                threads: 5,
                chunk_size: 256 << 10,
                ..Options::default()
            },
        );
        assert_eq!(many, again, "deterministic");
        assert_eq!(one.image_sha256, many.image_sha256);
        assert_eq!(many.chunks.len(), 12);
    }

    #[test]
    fn edge_sizes() {
        let empty = round_trip(&[], &Options::default());
        assert!(empty.chunks.is_empty());
        assert_eq!(empty.payload_size, 0);
        let exact = round_trip(&sample(2 << 20), &Options::default());
        assert_eq!(exact.chunks.len(), 2);
        assert_eq!(round_trip(&[1], &Options::default()).chunks.len(), 1);
    }

    #[test]
    fn damaged_chunks_are_refused() {
        let image = sample(2 << 20);
        let mut out = Vec::new();
        let enc = encode(&image[..], &mut out, &Options::default(), |_| {}).expect("encode");
        let c = &enc.chunks[1];
        let frame = &out[c.payload_offset as usize..][..c.compressed_size as usize];
        assert!(matches!(
            decode_chunk(1, c, &frame[1..]),
            Err(PayloadError::FrameSize { .. })
        ));
        let mut bad = frame.to_vec();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        assert!(decode_chunk(1, c, &bad).is_err());
        // The frame of another chunk, well formed but not what the manifest names.
        let other = &enc.chunks[0];
        let mut lie = c.clone();
        lie.compressed_size = other.compressed_size;
        let frame0 = &out[..other.compressed_size as usize];
        let err = decode_chunk(1, &lie, frame0).expect_err("mismatch");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn io_errors_stop_the_pipeline() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                buf[..n].fill(1);
                Ok(n)
            }
        }
        let err = encode(Failing(3 << 20), io::sink(), &Options::default(), |_| {})
            .expect_err("read error");
        assert!(
            matches!(err, PayloadError::Read { offset, .. } if offset == 3 << 20),
            "{err}"
        );

        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("no space left"));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        // Noise: every frame is about a chunk, so the writer fails early
        // while the reader still has tokens and chunks in flight.
        let image = sample(24 << 20);
        for (limit, threads) in [(0, 1), (3 << 20, 3), (3 << 20, 1)] {
            let err = encode(
                &image[..],
                Full(limit),
                &Options {
                    threads,
                    ..Options::default()
                },
                |_| {},
            )
            .expect_err("write error");
            assert!(matches!(err, PayloadError::Write { .. }), "{err}");
        }
        assert!(
            encode(
                &image[..],
                io::sink(),
                &Options {
                    threads: 0,
                    ..Options::default()
                },
                |_| {}
            )
            .is_err()
        );
    }
}
