//! Response heads and short text answers.

use std::io::Write;

use crate::clock;

/// The reason phrase of a status this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Error",
    }
}

/// A response head: status line, `Date`, `Server`, `Content-Length`,
/// `headers` and `Connection`.
pub(super) fn head_text(
    status: u16,
    keep: bool,
    headers: &[(&str, String)],
    length: u64,
) -> String {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nDate: {}\r\nServer: tandem-serve\r\nContent-Length: {length}\r\n",
        reason(status),
        clock::http_date(clock::now())
    );
    for (k, v) in headers {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str(if keep {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    h
}

/// A short text response (its head alone for HEAD); returns the body
/// bytes sent.
pub(super) fn simple<W: Write>(
    out: &mut W,
    status: u16,
    text: &str,
    (keep, head_only): (bool, bool),
    extra: &[(&str, String)],
) -> u64 {
    let body = format!("{status} {}: {text}\n", reason(status));
    let mut headers = vec![("Content-Type", "text/plain; charset=utf-8".to_string())];
    headers.extend(extra.iter().cloned());
    let mut msg = head_text(status, keep, &headers, body.len() as u64);
    if !head_only {
        msg.push_str(&body);
    }
    match out.write_all(msg.as_bytes()) {
        Ok(()) if !head_only => body.len() as u64,
        _ => 0,
    }
}
