//! Signing keys. One key per file, text:
//!
//! - public: `ed25519 <base64 of 32 bytes> [name]` (the trust root in /usr);
//! - private: `ed25519-private <base64 of the 32-byte seed> [name]`, mode 0600.
//!
//! Lines starting with `#` are comments. A key's id is the first 16 hex
//! digits of sha256(public key): signatures name the key they were made
//! with, so nodes can trust several keys at once (rotation).

use std::fmt;
use std::path::Path;

use base64::Engine;
use ed25519_dalek::{Signer, Verifier};
use sha2::{Digest, Sha256};

pub use crate::error::KeyError;

/// A public key that signatures are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
    /// Name from the key file, if any.
    pub name: String,
}

/// A private signing key.
pub struct PrivateKey {
    key: ed25519_dalek::SigningKey,
    /// Name from the key file, if any.
    pub name: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.id(), self.name)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({} {})", self.public().id(), self.name)
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The key line of a key file: (kind, base64, name).
fn key_line(text: &str) -> Result<(&str, &str, String), String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines.next().ok_or("no key line")?;
    if lines.next().is_some() {
        return Err("more than one key line: use one file per key".into());
    }
    let mut f = line.split_whitespace();
    let kind = f.next().ok_or("empty key line")?;
    let b64 = f.next().ok_or("missing base64 key")?;
    Ok((kind, b64, f.collect::<Vec<_>>().join(" ")))
}

fn decode32(b64: &str) -> Result<[u8; 32], String> {
    let raw = B64
        .decode(b64)
        .map_err(|e| format!("key is not base64: {e}"))?;
    raw.as_slice()
        .try_into()
        .map_err(|_| format!("key is {} bytes, an ed25519 key is 32", raw.len()))
}

impl PublicKey {
    /// Parses a public key file's text.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let (kind, b64, name) = key_line(text)?;
        if kind == "ed25519-private" {
            return Err("this is a private key; nodes need the public key (`.pub`)".into());
        }
        if kind != "ed25519" {
            return Err(format!("unknown key type {kind:?} (expected `ed25519`)"));
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(&decode32(b64)?)
            .map_err(|e| format!("not a valid ed25519 public key: {e}"))?;
        Ok(PublicKey { key, name })
    }

    /// Reads a public key file.
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let text = read(path)?;
        Self::parse(&text).map_err(|message| KeyError::Format {
            path: path.display().to_string(),
            message,
        })
    }

    /// The key's id: first 16 hex digits of sha256(key).
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.key.as_bytes())[..8])
    }

    /// The public key file text.
    pub fn to_file(&self) -> String {
        format!(
            "# Tandem update signing key, public part (id {})\ned25519 {} {}\n",
            self.id(),
            B64.encode(self.key.as_bytes()),
            self.name
        )
    }

    /// Whether `signature` (base64) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(raw) = B64.decode(signature_b64) else {
            return false;
        };
        let Ok(bytes) = <[u8; 64]>::try_from(raw.as_slice()) else {
            return false;
        };
        let sig = ed25519_dalek::Signature::from_bytes(&bytes);
        self.key.verify(message, &sig).is_ok()
    }
}

impl PrivateKey {
    /// A new key from 32 random bytes.
    pub fn from_seed(seed: [u8; 32], name: &str) -> PrivateKey {
        PrivateKey {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
            name: name.to_string(),
        }
    }

    /// Parses a private key file's text.
    pub fn parse(text: &str) -> Result<PrivateKey, String> {
        let (kind, b64, name) = key_line(text)?;
        if kind != "ed25519-private" {
            return Err(format!(
                "not a private key (starts with {kind:?}, expected `ed25519-private`)"
            ));
        }
        Ok(PrivateKey {
            key: ed25519_dalek::SigningKey::from_bytes(&decode32(b64)?),
            name,
        })
    }

    /// Reads a private key file.
    pub fn load(path: &Path) -> Result<PrivateKey, KeyError> {
        let text = read(path)?;
        Self::parse(&text).map_err(|message| KeyError::Format {
            path: path.display().to_string(),
            message,
        })
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
            name: self.name.clone(),
        }
    }

    /// The private key file text (keep it 0600).
    pub fn to_file(&self) -> String {
        format!(
            "# Tandem update signing key, PRIVATE part (id {}): keep it secret\ned25519-private {} {}\n",
            self.public().id(),
            B64.encode(self.key.to_bytes()),
            self.name
        )
    }

    /// Signs `message`; base64 signature.
    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.key.sign(message).to_bytes())
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|cause| KeyError::Read {
        path: path.display().to_string(),
        cause,
    })
}

/// Reads every `*.pub` in `dir` (the trust root); unreadable or invalid
/// files are returned as errors beside the good keys.
pub fn load_trust_dir(dir: &Path) -> (Vec<PublicKey>, Vec<KeyError>) {
    let mut keys = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (keys, errors);
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
        .collect();
    paths.sort();
    for p in paths {
        match PublicKey::load(&p) {
            Ok(k) => keys.push(k),
            Err(e) => errors.push(e),
        }
    }
    (keys, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_sign() {
        let k = PrivateKey::from_seed([7; 32], "release-2026");
        let back = PrivateKey::parse(&k.to_file()).expect("private");
        let public = PublicKey::parse(&k.public().to_file()).expect("public");
        assert_eq!(public, back.public());
        assert_eq!(public.name, "release-2026");
        let sig = back.sign(b"hello");
        assert!(public.verify(b"hello", &sig));
        assert!(!public.verify(b"hellO", &sig));
        assert!(!public.verify(b"hello", "garbage"));
        assert_eq!(public.id().len(), 16);
    }

    #[test]
    fn wrong_kinds_are_named() {
        let k = PrivateKey::from_seed([1; 32], "");
        assert!(
            PublicKey::parse(&k.to_file())
                .unwrap_err()
                .contains("private key")
        );
        assert!(
            PrivateKey::parse(&k.public().to_file())
                .unwrap_err()
                .contains("not a private key")
        );
        assert!(
            PublicKey::parse("ed25519 AAAA")
                .unwrap_err()
                .contains("3 bytes")
        );
        assert!(
            PublicKey::parse("rsa AAAA")
                .unwrap_err()
                .contains("unknown key type")
        );
    }
}
