//! What a node accepts, as pure functions: the channel pointer's signature
//! and freshness, the version rules (newer only unless an admin allows a
//! downgrade, never a version that failed here), the manifest's identity
//! and hash. Every refusal says what was wrong and what to do; nothing is
//! written before these checks pass.

use sha2::{Digest, Sha256};

use crate::keys::PublicKey;
use crate::repo::{ChannelPointer, Envelope, FORMAT, FileRef, Manifest};
use crate::rollout;
use tandem_contract::version::Version;

pub use crate::error::Refusal;

/// What the node is and allows.
#[derive(Clone, Debug)]
pub struct NodeFacts<'a> {
    /// Its image name.
    pub image: &'a str,
    /// Its architecture.
    pub arch: &'a str,
    /// The channel it follows.
    pub channel: &'a str,
    /// The version it runs.
    pub running: &'a Version,
    /// Now, Unix seconds.
    pub now: u64,
    /// Whether an admin allowed going to a lower version.
    pub allow_downgrade: bool,
    /// Versions that failed to come up on this node.
    pub failed: &'a [Version],
    /// The machine id (for the rollout position).
    pub machine_id: &'a str,
}

/// The outcome of checking a channel pointer.
#[derive(Clone, Debug, PartialEq)]
pub enum Offer {
    /// The channel serves the running version.
    UpToDate,
    /// A version to install, and when this node may start (Unix seconds).
    Update {
        /// The verified pointer.
        pointer: ChannelPointer,
        /// When this node's turn in the rollout comes.
        eligible_at: u64,
    },
}

/// Verifies a channel pointer (bytes as served) and applies the version rules.
pub fn check_pointer(
    bytes: &[u8],
    keys: &[PublicKey],
    node: &NodeFacts<'_>,
) -> Result<Offer, Refusal> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| Refusal::Malformed {
        what: "channel pointer",
        detail: e.to_string(),
    })?;
    verify_envelope(&env, keys)?;
    let p: ChannelPointer = serde_json::from_str(&env.signed).map_err(|e| Refusal::Malformed {
        what: "signed channel pointer",
        detail: e.to_string(),
    })?;
    if p.format != FORMAT {
        return Err(Refusal::Malformed {
            what: "channel pointer",
            detail: format!("format {} (this node reads {FORMAT})", p.format),
        });
    }
    if p.image != node.image || p.channel != node.channel {
        return Err(Refusal::WrongTarget {
            got: format!("{}/{}", p.image, p.channel),
            want: format!("{}/{}", node.image, node.channel),
        });
    }
    if p.expires <= node.now {
        return Err(Refusal::Expired {
            expires: p.expires,
            now: node.now,
        });
    }
    if p.version == *node.running {
        return Ok(Offer::UpToDate);
    }
    if p.version < *node.running && !node.allow_downgrade {
        return Err(Refusal::Downgrade {
            offered: p.version.to_string(),
            running: node.running.to_string(),
        });
    }
    if node.failed.contains(&p.version) {
        return Err(Refusal::FailedBefore {
            version: p.version.to_string(),
        });
    }
    let eligible_at =
        rollout::eligible_at(&p.rollout, rollout::position(node.machine_id, &p.version));
    Ok(Offer::Update {
        pointer: p,
        eligible_at,
    })
}

/// Checks that at least one signature is by a trusted key and that every
/// signature by a trusted key verifies.
pub fn verify_envelope(env: &Envelope, keys: &[PublicKey]) -> Result<(), Refusal> {
    let mut verified = false;
    for sig in &env.signatures {
        if let Some(key) = keys.iter().find(|k| k.id() == sig.key_id) {
            if !key.verify(env.signed.as_bytes(), &sig.signature) {
                return Err(Refusal::BadSignature {
                    key_id: sig.key_id.clone(),
                });
            }
            verified = true;
        }
    }
    if verified {
        Ok(())
    } else {
        Err(Refusal::UnknownKey {
            signers: env.signatures.iter().map(|s| s.key_id.clone()).collect(),
            trusted: keys.iter().map(PublicKey::id).collect(),
        })
    }
}

/// Checks a manifest (bytes as served) against the pointer that named it
/// and the node.
pub fn check_manifest(
    bytes: &[u8],
    pointer: &ChannelPointer,
    node: &NodeFacts<'_>,
) -> Result<Manifest, Refusal> {
    check_file(bytes, &pointer.manifest).map_err(|detail| Refusal::ManifestMismatch { detail })?;
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Refusal::Malformed {
        what: "manifest",
        detail: e.to_string(),
    })?;
    m.check().map_err(|detail| Refusal::Malformed {
        what: "manifest",
        detail,
    })?;
    if m.image != node.image || m.arch != node.arch || m.version != pointer.version {
        return Err(Refusal::WrongImage {
            got: format!("{} {} {}", m.image, m.arch, m.version),
            want: format!("{} {} {}", node.image, node.arch, pointer.version),
        });
    }
    if let Some(min) = &m.min_source_version
        && node.running < min
    {
        return Err(Refusal::SourceTooOld {
            version: m.version.to_string(),
            min: min.to_string(),
            running: node.running.to_string(),
        });
    }
    Ok(m)
}

/// Checks bytes against a [`FileRef`]'s size and sha256.
pub fn check_file(bytes: &[u8], f: &FileRef) -> Result<(), String> {
    if bytes.len() as u64 != f.size {
        return Err(format!(
            "{} is {} bytes, expected {}",
            f.path,
            bytes.len(),
            f.size
        ));
    }
    let got = hex::encode(Sha256::digest(bytes));
    if got != f.sha256 {
        return Err(format!(
            "{} has sha256 {got}, expected {}",
            f.path, f.sha256
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::repo::{Rollout, Signature};

    fn v(s: &str) -> Version {
        s.parse().expect("v")
    }

    fn pointer(version: &str, expires: u64) -> ChannelPointer {
        ChannelPointer {
            format: FORMAT,
            image: "demo".into(),
            channel: "stable".into(),
            version: v(version),
            manifest: FileRef {
                path: format!("demo/{version}/manifest.json"),
                size: 2,
                sha256: hex::encode(Sha256::digest(b"{}")),
            },
            rollout: Rollout {
                start: 100,
                duration_secs: 0,
            },
            issued: 50,
            expires,
        }
    }

    fn sign(p: &ChannelPointer, key: &PrivateKey) -> Vec<u8> {
        let signed = serde_json::to_string(p).expect("json");
        let sig = key.sign(signed.as_bytes());
        serde_json::to_vec(&Envelope {
            signed,
            signatures: vec![Signature {
                key_id: key.public().id(),
                signature: sig,
            }],
        })
        .expect("json")
    }

    fn node<'a>(running: &'a Version, failed: &'a [Version]) -> NodeFacts<'a> {
        NodeFacts {
            image: "demo",
            arch: "x86_64",
            channel: "stable",
            running,
            now: 1000,
            allow_downgrade: false,
            failed,
            machine_id: "m",
        }
    }

    #[test]
    fn good_pointer_offers_the_update() {
        let key = PrivateKey::from_seed([1; 32], "k");
        let running = v("1.0");
        let offer = check_pointer(
            &sign(&pointer("1.1", 2000), &key),
            &[key.public()],
            &node(&running, &[]),
        )
        .expect("ok");
        assert!(
            matches!(
                offer,
                Offer::Update {
                    eligible_at: 100,
                    ..
                }
            ),
            "{offer:?}"
        );
        let same = check_pointer(
            &sign(&pointer("1.0", 2000), &key),
            &[key.public()],
            &node(&running, &[]),
        )
        .expect("ok");
        assert_eq!(same, Offer::UpToDate);
    }

    #[test]
    fn rotation_accepts_any_trusted_key() {
        let old = PrivateKey::from_seed([1; 32], "old");
        let new = PrivateKey::from_seed([2; 32], "new");
        let running = v("1.0");
        let bytes = sign(&pointer("1.1", 2000), &new);
        assert!(check_pointer(&bytes, &[old.public(), new.public()], &node(&running, &[])).is_ok());
    }

    #[test]
    fn every_refusal() {
        let key = PrivateKey::from_seed([1; 32], "k");
        let other = PrivateKey::from_seed([9; 32], "other");
        let keys = [key.public()];
        let running = v("1.0");
        let failed = [v("1.1")];
        let n = node(&running, &[]);
        let err =
            |bytes: &[u8], n: &NodeFacts<'_>| check_pointer(bytes, &keys, n).expect_err("refused");

        assert!(matches!(
            err(b"{\"signed\":", &n),
            Refusal::Malformed { .. }
        ));
        assert!(matches!(err(b"garbage", &n), Refusal::Malformed { .. }));
        assert!(matches!(
            err(&sign(&pointer("1.1", 2000), &other), &n),
            Refusal::UnknownKey { .. }
        ));
        let mut tampered: Envelope =
            serde_json::from_slice(&sign(&pointer("1.1", 2000), &key)).expect("json");
        tampered.signed = tampered.signed.replace("1.1", "9.9");
        assert!(matches!(
            err(&serde_json::to_vec(&tampered).expect("json"), &n),
            Refusal::BadSignature { .. }
        ));
        assert!(matches!(
            err(&sign(&pointer("1.1", 999), &key), &n),
            Refusal::Expired {
                expires: 999,
                now: 1000
            }
        ));
        assert!(matches!(
            err(&sign(&pointer("0.9", 2000), &key), &n),
            Refusal::Downgrade { .. }
        ));
        let mut beta = pointer("1.1", 2000);
        beta.channel = "beta".into();
        assert!(matches!(
            err(&sign(&beta, &key), &n),
            Refusal::WrongTarget { .. }
        ));
        assert!(matches!(
            err(&sign(&pointer("1.1", 2000), &key), &node(&running, &failed)),
            Refusal::FailedBefore { .. }
        ));

        let mut allow = node(&running, &[]);
        allow.allow_downgrade = true;
        assert!(check_pointer(&sign(&pointer("0.9", 2000), &key), &keys, &allow).is_ok());
    }

    #[test]
    fn manifest_must_match_pointer_and_node() {
        let running = v("1.0");
        let n = node(&running, &[]);
        let m = crate::repo::testing::sample();
        let bytes = serde_json::to_vec(&m).expect("json");
        let mut p = pointer("1.1.0", 2000);
        p.image = "demo".into();
        p.manifest = FileRef {
            path: "demo/1.1.0/manifest.json".into(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        };
        assert_eq!(check_manifest(&bytes, &p, &n).expect("ok"), m);
        assert!(matches!(
            check_manifest(&bytes[..10], &p, &n),
            Err(Refusal::ManifestMismatch { .. })
        ));
        let mut other = m.clone();
        other.arch = "aarch64".into();
        let ob = serde_json::to_vec(&other).expect("json");
        let mut p2 = p.clone();
        p2.manifest = FileRef {
            path: p.manifest.path.clone(),
            size: ob.len() as u64,
            sha256: hex::encode(Sha256::digest(&ob)),
        };
        assert!(matches!(
            check_manifest(&ob, &p2, &n),
            Err(Refusal::WrongImage { .. })
        ));
        let mut newer = m.clone();
        newer.min_source_version = Some(v("1.0.5"));
        let nb = serde_json::to_vec(&newer).expect("json");
        p2.manifest = FileRef {
            path: p.manifest.path.clone(),
            size: nb.len() as u64,
            sha256: hex::encode(Sha256::digest(&nb)),
        };
        assert!(matches!(
            check_manifest(&nb, &p2, &n),
            Err(Refusal::SourceTooOld { .. })
        ));
    }
}
