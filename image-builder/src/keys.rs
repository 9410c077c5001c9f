//! The update trust root: public key files the image trusts. Format (one key
//! per file): comment lines starting with `#`, then
//! `ed25519 <base64 of the 32-byte public key> [name]`.

use base64::Engine;

/// Checks that `text` holds exactly one ed25519 public key line.
pub fn check_public_key(text: &str) -> Result<(), String> {
    let mut keys = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = keys
        .next()
        .ok_or("no key line (expected `ed25519 <base64> [name]`)")?;
    if keys.next().is_some() {
        return Err("more than one key line: use one file per key".into());
    }
    let mut fields = line.split_whitespace();
    if fields.next() != Some("ed25519") {
        return Err("key line must start with `ed25519`".into());
    }
    let b64 = fields.next().ok_or("missing base64 key after `ed25519`")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("key is not base64: {e}"))?;
    if raw.len() != 32 {
        return Err(format!(
            "key is {} bytes, an ed25519 public key is 32",
            raw.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_one_key_and_rejects_the_rest() {
        let key = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert_eq!(
            check_public_key(&format!("# release 2026\ned25519 {key} release-2026\n")),
            Ok(())
        );
        assert!(check_public_key("").is_err());
        assert!(check_public_key(&format!("rsa {key}")).is_err());
        assert!(
            check_public_key("ed25519 AAAA")
                .unwrap_err()
                .contains("3 bytes")
        );
        assert!(check_public_key(&format!("ed25519 {key}\ned25519 {key}")).is_err());
    }
}
