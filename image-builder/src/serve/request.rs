//! Request heads: the request line and the few headers the server acts
//! on, read with bounded lines; request targets decoded into path segments.

use std::io::{BufRead, Read};

/// Longest request line or header line.
const MAX_LINE: u64 = 8 << 10;
/// Most header lines in a request.
const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug, Default)]
pub(crate) struct Request {
    /// `GET`, `HEAD`, … as sent.
    pub(super) method: String,
    /// The request target as sent.
    pub(super) target: String,
    /// An HTTP/1.0 request (else 1.1).
    pub(super) http10: bool,
    /// The `Range` header.
    pub(super) range: Option<String>,
    /// The `If-Range` header.
    pub(super) if_range: Option<String>,
    /// The `Connection` header.
    pub(super) connection: Option<String>,
    /// A `Content-Length` other than 0 or a `Transfer-Encoding`.
    pub(super) has_body: bool,
}

impl Request {
    /// Whether the client keeps the connection open after this request.
    pub(super) fn keep_alive(&self) -> bool {
        let tokens = self
            .connection
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        let has = |t: &str| tokens.split(',').any(|x| x.trim() == t);
        if self.http10 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }
}

/// Why a request head could not be read.
pub(super) enum HeadError {
    /// The peer closed or went idle before a request started.
    Closed,
    /// A malformed request: answer 400 and close.
    Bad(&'static str),
}

/// Reads one line (without CR LF), at most [`MAX_LINE`] bytes.
fn read_line<R: BufRead>(r: &mut R) -> std::result::Result<Option<String>, HeadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|_| HeadError::Closed)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 > MAX_LINE {
            HeadError::Bad("request line or header too long")
        } else {
            HeadError::Closed
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| HeadError::Bad("request head is not UTF-8"))
}

pub(super) fn read_head<R: BufRead>(r: &mut R) -> std::result::Result<Request, HeadError> {
    // RFC 9110: ignore empty lines before a request line.
    let mut line = String::new();
    for _ in 0..4 {
        match read_line(r)? {
            None => return Err(HeadError::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => {
                line = l;
                break;
            }
        }
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("malformed request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(HeadError::Bad("only HTTP/1.0 and HTTP/1.1 are served")),
    };
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        ..Request::default()
    };
    for _ in 0..=MAX_HEADERS {
        let Some(h) = read_line(r)? else {
            return Err(HeadError::Closed);
        };
        if h.is_empty() {
            return Ok(req);
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(HeadError::Bad("malformed header line"));
        };
        let value = value.trim().to_string();
        match name.to_ascii_lowercase().as_str() {
            "range" => req.range = Some(value),
            "if-range" => req.if_range = Some(value),
            "connection" => req.connection = Some(value),
            "transfer-encoding" => req.has_body = true,
            "content-length" => req.has_body |= value != "0",
            _ => {}
        }
    }
    Err(HeadError::Bad("too many header lines"))
}

/// Decodes the request target into path segments below the root.
pub(super) fn decode_target(target: &str) -> std::result::Result<Vec<String>, &'static str> {
    let target = match target.strip_prefix("http://") {
        // absolute-form: drop the authority.
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !target.starts_with('/') {
        return Err("the request target must be a path");
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("bad percent-encoding")?;
            let s = std::str::from_utf8(hex).map_err(|_| "bad percent-encoding")?;
            out.push(u8::from_str_radix(s, 16).map_err(|_| "bad percent-encoding")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).map_err(|_| "the path is not UTF-8")?;
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" => {}
            "." | ".." => return Err("path traversal refused"),
            s if s.contains('\0') => return Err("the path contains NUL"),
            s => segments.push(s.to_string()),
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(decode_target("/a/b%2Ejson?x=1").unwrap(), ["a", "b.json"]);
        assert_eq!(decode_target("http://host:80/a//b").unwrap(), ["a", "b"]);
        assert!(decode_target("/").unwrap().is_empty());
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a/./b",
            "a",
            "/%zz",
            "/%00x",
            "/a%2F..%2Fb",
        ] {
            assert!(decode_target(bad).is_err(), "{bad}");
        }
    }
}
