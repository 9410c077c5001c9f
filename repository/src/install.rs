//! The install manifest: what an installer writes onto a bare disk. That is
//! a build's whole disk image, cut into chunks like a /usr payload
//! ([`crate::payload`]) and signed like a channel pointer
//! ([`crate::repo::Envelope`]) with the release key. So the installer
//! checks the release's signature with the keys the image trusts before it
//! writes anything, and checks every chunk before writing it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tandem_contract::Version;

use crate::error::Refusal;
use crate::keys::PublicKey;
use crate::policy::verify_envelope;
use crate::repo::{Chunk, Envelope, FORMAT, FileRef, check_chunks, is_sha256, valid_image};

/// The signed part of an install manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InstallManifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// Image name (`IMAGE_ID`).
    pub image: String,
    /// CPU architecture.
    pub arch: String,
    /// Version.
    pub version: Version,
    /// The channel the installed node follows.
    pub channel: String,
    /// The disk image.
    pub disk: DiskImage,
}

/// A whole disk image (GPT, ESP, USR-A, USR-B, OEM, ROOT), chunked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskImage {
    /// Bytes; the target must hold at least this many.
    pub size: u64,
    /// sha256 of the whole image, hex (as `build.json` records it).
    pub sha256: String,
    /// The payload: the chunks' zstd frames back to back.
    pub payload: FileRef,
    /// Uncompressed chunk size (the last chunk may be shorter).
    pub chunk_size: u64,
    /// Chunks in image order.
    pub chunks: Vec<Chunk>,
}

impl InstallManifest {
    /// Checks the manifest's own consistency.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "install manifest format {} (this tandem reads {FORMAT})",
                self.format
            ));
        }
        if !valid_image(&self.image) {
            return Err(format!("image name {:?} is not valid", self.image));
        }
        let d = &self.disk;
        if !is_sha256(&d.sha256) || !is_sha256(&d.payload.sha256) {
            return Err("a hash is not a sha256".into());
        }
        // The partition table is the first chunk, written last: it must be
        // a chunk of its own.
        if d.chunks.first().map(|c| c.length) != Some(d.chunk_size) {
            return Err("the first chunk does not cover a whole chunk".into());
        }
        check_chunks(&d.chunks, d.chunk_size, d.size, d.payload.size)
    }
}

/// Verifies `envelope` with `keys` and reads the install manifest in it.
pub fn open(envelope: &[u8], keys: &[PublicKey]) -> Result<InstallManifest, Refusal> {
    let env: Envelope = serde_json::from_slice(envelope).map_err(|e| Refusal::Malformed {
        what: "install manifest envelope",
        detail: e.to_string(),
    })?;
    verify_envelope(&env, keys)?;
    let m: InstallManifest = serde_json::from_str(&env.signed).map_err(|e| Refusal::Malformed {
        what: "install manifest",
        detail: e.to_string(),
    })?;
    m.check().map_err(|detail| Refusal::Malformed {
        what: "install manifest",
        detail,
    })?;
    Ok(m)
}

/// sha256 of `length` zero bytes, hex: a chunk with this hash is written
/// as zeros without reading its frame.
pub fn zero_sha256(length: u64) -> String {
    let mut h = Sha256::new();
    let zeros = [0u8; 64 << 10];
    let mut left = length;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        h.update(&zeros[..n]);
        left -= n as u64;
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::payload::{self, Options};
    use crate::repo::Signature;

    fn manifest(image: &[u8]) -> InstallManifest {
        let mut payload_bytes = Vec::new();
        let opts = Options {
            threads: 1,
            chunk_size: 4096,
            ..Options::default()
        };
        let enc = payload::encode(image, &mut payload_bytes, &opts, |_| {}).expect("encodes");
        InstallManifest {
            format: FORMAT,
            image: "demo".into(),
            arch: "x86_64".into(),
            version: "1.0.0".parse().expect("version"),
            channel: "stable".into(),
            disk: DiskImage {
                size: enc.image_size,
                sha256: enc.image_sha256.clone(),
                payload: enc.payload_ref("disk.payload"),
                chunk_size: enc.chunk_size,
                chunks: enc.chunks,
            },
        }
    }

    fn sign(m: &InstallManifest, key: &PrivateKey) -> Vec<u8> {
        let signed = serde_json::to_string(m).expect("json");
        let env = Envelope {
            signatures: vec![Signature {
                key_id: key.public().id(),
                signature: key.sign(signed.as_bytes()),
            }],
            signed,
        };
        serde_json::to_vec(&env).expect("json")
    }

    #[test]
    fn a_signed_manifest_opens_with_the_trusted_key_only() {
        let m = manifest(&[1u8; 10000]);
        let key = PrivateKey::from_seed([1; 32], "release");
        let other = PrivateKey::from_seed([2; 32], "other");
        let bytes = sign(&m, &key);
        assert_eq!(open(&bytes, &[key.public()]), Ok(m));
        assert!(matches!(
            open(&bytes, &[other.public()]),
            Err(Refusal::UnknownKey { .. })
        ));
        let tampered = String::from_utf8(bytes)
            .expect("utf8")
            .replace("1.0.0", "9.0.0");
        assert!(matches!(
            open(tampered.as_bytes(), &[key.public()]),
            Err(Refusal::BadSignature { .. })
        ));
    }

    #[test]
    fn chunks_must_cover_the_disk() {
        let mut m = manifest(&[1u8; 10000]);
        assert_eq!(m.check(), Ok(()));
        m.disk.size += 1;
        assert!(m.check().is_err());
        let mut m = manifest(&[1u8; 100]);
        m.disk.chunk_size = 4096;
        assert!(
            m.check()
                .expect_err("short first chunk")
                .contains("first chunk")
        );
    }

    #[test]
    fn zero_chunks_are_known_by_their_hash() {
        let m = manifest(&[0u8; 8192]);
        assert!(m.disk.chunks.iter().all(|c| c.sha256 == zero_sha256(4096)));
        assert_ne!(zero_sha256(4096), zero_sha256(4095));
    }
}
