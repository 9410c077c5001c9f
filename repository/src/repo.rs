//! The update repository: static files any web server, CDN or object store
//! can serve. Paths are relative to the repository root:
//!
//! ```text
//! <image>/channels/<channel>.json     signed channel pointer
//! <image>/<version>/manifest.json     what the version is (sha256 in the pointer)
//! <image>/<version>/usr.payload       the /usr slot image as independently
//!                                     zstd-compressed chunks, back to back
//! <image>/<version>/usr.img           the same image uncompressed, for
//!                                     fetching single 4 KiB blocks
//! <image>/<version>/vmlinuz, initrd   the slot's kernel and initramfs
//! ```
//!
//! Only the pointer is signed. It names the manifest by sha256 and size, the
//! manifest names every chunk, the kernel and the initramfs by sha256: one
//! signature covers everything, and a node checks each piece before using it.

use serde::{Deserialize, Serialize};

use tandem_contract::version::Version;

/// Format version of pointers and manifests.
pub const FORMAT: u32 = 1;
/// Chunk size of new payloads: small enough that resuming and delta
/// updates waste little, large enough that per-chunk overhead vanishes.
pub const CHUNK_SIZE: u64 = 1 << 20;
/// Largest pointer or manifest a node reads (against garbage servers).
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// Path of a channel pointer.
pub fn pointer_path(image: &str, channel: &str) -> String {
    format!("{image}/channels/{channel}.json")
}

/// Directory of a version: `<image>/<version>` with the version's spelling
/// ([`Version`]'s `Display`: no leading zeros, so `1.01` and `1.1` share
/// `<image>/1.1`). Nodes never derive it: they fetch the paths the signed
/// pointer and manifest name. Equal versions written with a different
/// number of parts (`1.0`, `1.0.0`) still get different directories; the
/// publisher must not publish a version under a second spelling.
pub fn version_dir(image: &str, version: &Version) -> String {
    format!("{image}/{version}")
}

/// A signed document: the payload as exact text, and signatures over its
/// bytes. Signing text rather than re-serialised JSON means there is no
/// canonicalisation to get wrong.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The signed JSON text.
    pub signed: String,
    /// Signatures of `signed`.
    pub signatures: Vec<Signature>,
}

/// One signature in an [`Envelope`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Id of the signing key ([`crate::keys::PublicKey::id`]).
    pub key_id: String,
    /// Base64 ed25519 signature.
    pub signature: String,
}

/// What a channel serves: the signed part of `<image>/channels/<channel>.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ChannelPointer {
    /// Format version.
    pub format: u32,
    /// Image name (`IMAGE_ID` in os-release).
    pub image: String,
    /// Channel name.
    pub channel: String,
    /// The version the channel serves.
    pub version: Version,
    /// The version's manifest.
    pub manifest: FileRef,
    /// When nodes become eligible.
    pub rollout: Rollout,
    /// When the pointer was signed (Unix seconds).
    pub issued: u64,
    /// After this (Unix seconds) nodes refuse the pointer: a server cannot
    /// keep nodes on an old release by replaying old pointers.
    pub expires: u64,
}

/// A staged rollout: a node becomes eligible at `start + position ×
/// duration`, its position a stable number in [0, 1) of its own.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Unix seconds.
    pub start: u64,
    /// Seconds; 0 = everyone at `start`.
    pub duration_secs: u64,
}

/// A file in the repository with its size and hash.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    /// Path relative to the repository root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256, lower-case hex.
    pub sha256: String,
}

/// One version of an image: `<image>/<version>/manifest.json`.
///
/// Unknown fields are ignored, so fields added later (optional ones, like
/// [`UsrImage::raw`]) do not stop older nodes; a change older nodes must
/// not ignore raises [`FORMAT`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Image name.
    pub image: String,
    /// CPU architecture.
    pub arch: String,
    /// Version.
    pub version: Version,
    /// Oldest running version that may update to this one directly.
    pub min_source_version: Option<Version>,
    /// The /usr slot image.
    pub usr: UsrImage,
    /// The slot's kernel.
    pub kernel: FileRef,
    /// The slot's initramfs.
    pub initrd: FileRef,
}

/// The /usr slot image: file system, dm-verity tree after it, and how it is
/// cut into chunks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UsrImage {
    /// Bytes of the slot image (file system + hash tree).
    pub size: u64,
    /// dm-verity parameters; the node checks the written slot against them.
    pub verity: Verity,
    /// The payload file: chunks, each compressed on its own.
    pub payload: FileRef,
    /// Uncompressed chunk size (the last chunk may be shorter).
    pub chunk_size: u64,
    /// Chunks in image order.
    pub chunks: Vec<Chunk>,
    /// The slot image as is (`usr.img`, `size` bytes): a node that needs a
    /// few 4 KiB blocks of a chunk fetches them from here rather than the
    /// whole compressed chunk, each checked against the verity tree.
    /// Absent in manifests published before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<FileRef>,
}

/// dm-verity parameters of a slot image (defined with the kernel command
/// line that carries them).
pub use tandem_contract::cmdline::UsrVerity as Verity;

/// One chunk of the slot image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Offset in the slot image.
    pub offset: u64,
    /// Uncompressed length.
    pub length: u64,
    /// sha256 of the uncompressed bytes, hex.
    pub sha256: String,
    /// Offset of its compressed form in the payload file.
    pub payload_offset: u64,
    /// Size of its compressed form (a zstd frame).
    pub compressed_size: u64,
}

impl Manifest {
    /// Checks the manifest's internal consistency: chunks cover the image
    /// exactly, in order, inside the payload; hashes look like hashes.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "manifest format {} (this node reads {FORMAT})",
                self.format
            ));
        }
        let u = &self.usr;
        check_chunks(&u.chunks, u.chunk_size, u.size, u.payload.size)?;
        let hash_offset = u
            .verity
            .data_blocks
            .checked_mul(4096)
            .ok_or("verity data blocks overflow")?;
        if hash_offset == 0
            || hash_offset >= u.size
            || !is_sha256(&u.verity.root_hash)
            || hex::decode(&u.verity.salt).is_err()
        {
            return Err("verity parameters are inconsistent with the image".into());
        }
        if let Some(raw) = &u.raw
            && raw.size != u.size
        {
            return Err(format!(
                "{} has {} bytes, the image {}",
                raw.path, raw.size, u.size
            ));
        }
        for f in self.files() {
            if !is_sha256(&f.sha256) {
                return Err(format!("{} has no valid sha256", f.path));
            }
            if !safe_path(&f.path) {
                return Err(format!("{:?} is not a plain relative path", f.path));
            }
        }
        for f in [&self.kernel, &self.initrd] {
            if f.size == 0 || f.size > 256 << 20 {
                return Err(format!("{} has an impossible size {}", f.path, f.size));
            }
        }
        Ok(())
    }

    /// Every file the manifest names: payload, raw image (if published),
    /// kernel, initramfs.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        [Some(&self.usr.payload), self.usr.raw.as_ref()]
            .into_iter()
            .flatten()
            .chain([&self.kernel, &self.initrd])
    }
}

/// Checks that `chunks` cover an image of `image_size` bytes exactly, in
/// order, back to back in a payload of `payload_size` bytes, with sizes a
/// chunk of `chunk_size` can have and hashes that look like hashes.
pub fn check_chunks(
    chunks: &[Chunk],
    chunk_size: u64,
    image_size: u64,
    payload_size: u64,
) -> Result<(), String> {
    if chunk_size == 0 || chunk_size > 64 << 20 {
        return Err(format!("chunk size {} out of range", chunk_size));
    }
    let mut offset = 0;
    let mut payload_offset = 0;
    for (i, c) in chunks.iter().enumerate() {
        if c.offset != offset || c.payload_offset != payload_offset {
            return Err(format!("chunk {i} is not where the previous one ended"));
        }
        if c.length == 0
            || c.length > chunk_size
            || c.compressed_size == 0
            || c.compressed_size > c.length + 4096
        {
            return Err(format!("chunk {i} has impossible sizes"));
        }
        if !is_sha256(&c.sha256) {
            return Err(format!("chunk {i} has no valid sha256"));
        }
        offset += c.length;
        payload_offset += c.compressed_size;
    }
    if offset != image_size {
        return Err(format!(
            "chunks cover {offset} bytes, the image has {}",
            image_size
        ));
    }
    if payload_offset != payload_size {
        return Err(format!(
            "chunks take {payload_offset} payload bytes, the payload has {}",
            payload_size
        ));
    }
    Ok(())
}

/// Whether `name` can be a channel (and a file name in the repository):
/// `[a-z0-9._-]`, 1–64 characters, not starting with a dot. One rule for
/// image definitions, release tooling and nodes.
pub fn valid_channel(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Whether `name` can be an image name (`IMAGE_ID`, a manifest's `image`,
/// a directory of the repository): `[a-z0-9-]`, 1–64 characters, not
/// starting with a dash. One rule for image definitions, release tooling
/// and nodes.
pub fn valid_image(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` is 64 lower-case hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `p` is a relative path without `..`, empty or odd components.
pub fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'))
}

/// A consistent sample manifest (three 1 MiB chunks of version `1.1.0` of
/// image `demo`), for tests here and in the crates that use this one
/// (feature `test-support`).
#[cfg(any(test, feature = "test-support"))]
pub mod testing {
    use super::*;

    /// The sample manifest: it passes [`Manifest::check`].
    pub fn sample() -> Manifest {
        let h = "a".repeat(64);
        Manifest {
            format: FORMAT,
            image: "demo".into(),
            arch: "x86_64".into(),
            version: "1.1.0".parse().expect("v"),
            min_source_version: None,
            usr: UsrImage {
                size: 3 << 20,
                verity: Verity {
                    root_hash: h.clone(),
                    salt: "00".into(),
                    data_blocks: 700,
                },
                payload: FileRef {
                    path: "demo/1.1.0/usr.payload".into(),
                    size: 300,
                    sha256: h.clone(),
                },
                chunk_size: 1 << 20,
                chunks: (0..3)
                    .map(|i| Chunk {
                        offset: i << 20,
                        length: 1 << 20,
                        sha256: h.clone(),
                        payload_offset: i * 100,
                        compressed_size: 100,
                    })
                    .collect(),
                raw: Some(FileRef {
                    path: "demo/1.1.0/usr.img".into(),
                    size: 3 << 20,
                    sha256: h.clone(),
                }),
            },
            kernel: FileRef {
                path: "demo/1.1.0/vmlinuz".into(),
                size: 10,
                sha256: h.clone(),
            },
            initrd: FileRef {
                path: "demo/1.1.0/initrd".into(),
                size: 10,
                sha256: h,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::sample;
    use super::*;

    #[test]
    fn consistent_manifest_passes() {
        assert_eq!(sample().check(), Ok(()));
    }

    #[test]
    fn inconsistencies_are_named() {
        let mut m = sample();
        m.usr.chunks[1].offset += 1;
        assert!(m.check().unwrap_err().contains("chunk 1"));
        let mut m = sample();
        m.usr.size += 1;
        assert!(m.check().unwrap_err().contains("cover"));
        let mut m = sample();
        m.usr.payload.size = 1;
        assert!(m.check().unwrap_err().contains("payload"));
        let mut m = sample();
        m.kernel.path = "../../etc/shadow".into();
        assert!(m.check().unwrap_err().contains("plain relative path"));
        let mut m = sample();
        m.usr.chunks[0].sha256 = "xyz".into();
        assert!(m.check().unwrap_err().contains("sha256"));
        let mut m = sample();
        m.usr.raw.as_mut().expect("raw").size += 1;
        assert!(m.check().unwrap_err().contains("usr.img"));
        let mut m = sample();
        m.usr.raw.as_mut().expect("raw").path = "/usr.img".into();
        assert!(m.check().unwrap_err().contains("plain relative path"));
        let mut m = sample();
        m.usr.verity.data_blocks = 10_000;
        assert!(m.check().unwrap_err().contains("verity"));
    }

    #[test]
    fn fields_of_later_formats_are_ignored_and_raw_is_optional() {
        let mut v = serde_json::to_value(sample()).expect("json");
        v["usr"]["added_later"] = serde_json::json!(1);
        v["usr"].as_object_mut().expect("usr").remove("raw");
        let m: Manifest = serde_json::from_value(v).expect("parses");
        assert_eq!(m.usr.raw, None);
        assert_eq!(m.check(), Ok(()));
    }

    #[test]
    fn safe_paths() {
        assert!(safe_path("a/b.json"));
        for bad in ["", "/a", "a/../b", "a//b", "./a", "a\\b"] {
            assert!(!safe_path(bad), "{bad}");
        }
    }
}
