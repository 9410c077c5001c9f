//! The JSON gateway's wire format: keys and values in base64, 64-bit
//! numbers as strings, fields left out when false, zero or empty, errors
//! as `{"error","message","code"}`.

use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::{Kv, WireError};

/// The largest answer read (a range over many fleet records).
const MAX_BODY: u64 = 32 << 20;

/// The gateway's error answer `{"error","message","code"}`: code and message.
pub(super) fn grpc_error(text: &str) -> (Option<i32>, String) {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let code = v.get("code").and_then(num_i64).map(|c| c as i32);
            let message = v
                .get("message")
                .or_else(|| v.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (code, message)
        }
        Err(_) => (None, text.chars().take(200).collect()),
    }
}

pub(super) fn read_body(resp: ureq::http::Response<ureq::Body>) -> Result<String, WireError> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut out)
        .map_err(WireError::Read)?;
    if out.len() as u64 > MAX_BODY {
        return Err(WireError::TooLarge { limit: MAX_BODY });
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

pub(super) fn b64(key: &str) -> String {
    B64.encode(key.as_bytes())
}

/// A gateway number: a JSON string (64-bit) or, for small ones, a number.
pub(super) fn num_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

pub(super) fn num_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The answer's `header.revision` (0 when absent).
pub(super) fn header_revision(v: &Value) -> u64 {
    v.get("header")
        .and_then(|h| h.get("revision"))
        .and_then(num_u64)
        .unwrap_or(0)
}

/// One entry of `kvs`.
pub(super) fn parse_kv(v: &Value) -> Result<Kv, WireError> {
    let bytes = |field: &'static str| -> Result<Vec<u8>, WireError> {
        match v.get(field) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => B64
                .decode(s)
                .map_err(|source| WireError::NotBase64 { field, source }),
            Some(_) => Err(WireError::NotString { field }),
        }
    };
    let n = |field: &str| v.get(field).and_then(num_u64).unwrap_or(0);
    let key = bytes("key")?;
    if key.is_empty() {
        return Err(WireError::NoKey);
    }
    let lease = v.get("lease").and_then(num_i64).filter(|l| *l != 0);
    Ok(Kv {
        key: String::from_utf8_lossy(&key).into_owned(),
        value: bytes("value")?,
        create_revision: n("create_revision"),
        mod_revision: n("mod_revision"),
        version: n("version"),
        lease,
    })
}

/// The end of the range of keys starting with `prefix`: the prefix with
/// its last byte below 0xff incremented (and what follows dropped); `\0`
/// (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn kvs_parse_with_omitted_fields() {
        let v: Value = serde_json::from_str(
            r#"{"key":"Zm9v","create_revision":"2","mod_revision":"7","version":"3","value":"YmFy","lease":"7587862072907470350"}"#,
        )
        .unwrap();
        let kv = parse_kv(&v).unwrap();
        assert_eq!(kv.key, "foo");
        assert_eq!(kv.value, b"bar");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 7, 3));
        assert_eq!(kv.lease, Some(7587862072907470350));
        // An empty value and no lease: the fields are left out.
        let kv = parse_kv(&json!({"key": "Zm9v", "mod_revision": "4"})).unwrap();
        assert_eq!((kv.value.len(), kv.lease, kv.create_revision), (0, None, 0));
        assert!(parse_kv(&json!({"key": "not base64!"})).is_err());
        assert!(parse_kv(&json!({"value": "YmFy"})).is_err());
    }

    #[test]
    fn numbers_as_strings_or_numbers() {
        assert_eq!(num_u64(&json!("18446744073709551615")), Some(u64::MAX));
        assert_eq!(num_u64(&json!(5)), Some(5));
        assert_eq!(num_u64(&json!("x")), None);
        assert_eq!(num_i64(&json!("-3")), Some(-3));
        assert_eq!(header_revision(&json!({"header": {"revision": "42"}})), 42);
        assert_eq!(header_revision(&json!({})), 0);
    }
}
