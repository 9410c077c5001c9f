//! Answering with a file: finding it under the root, validators and
//! `If-Range`, the range, and the body from the file to the socket.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use super::Shared;
use super::range::{RangeSpec, parse_range};
use super::request::{Request, decode_target};
use super::response::{head_text, simple};
use crate::clock;

/// Most bytes per sendfile(2) call.
const SLICE: u64 = 1 << 30;

impl Shared {
    /// The file a decoded path names, if it is a regular file under the root.
    pub(super) fn resolve(
        &self,
        segments: &[String],
    ) -> std::result::Result<(File, std::fs::Metadata), u16> {
        // Hidden files are no part of a repository (lock file, a publish
        // in progress).
        if segments.iter().any(|s| s.starts_with('.')) {
            return Err(404);
        }
        let mut path = self.root.clone();
        path.extend(segments);
        let canonical = path.canonicalize().map_err(|_| 404u16)?;
        if !canonical.starts_with(&self.root) {
            return Err(403);
        }
        let file = File::open(&canonical).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => 403u16,
            _ => 404,
        })?;
        let meta = file.metadata().map_err(|_| 404u16)?;
        if !meta.is_file() {
            return Err(404);
        }
        Ok((file, meta))
    }
}

/// Answers one request; returns whether the connection stays open.
pub(super) fn respond(req: &Request, stream: &TcpStream, shared: &Shared) -> bool {
    let mut out = stream;
    let range = req.range.as_deref();
    let head_only = req.method == "HEAD";
    if req.has_body {
        let sent = simple(
            &mut out,
            400,
            "request bodies are not accepted",
            (false, head_only),
            &[],
        );
        shared.log(&req.target, range, 400, sent);
        return false;
    }
    let keep = req.keep_alive();
    let segments = match decode_target(&req.target) {
        Ok(s) => s,
        Err(why) => {
            let sent = simple(&mut out, 400, why, (keep, head_only), &[]);
            shared.log(&req.target, range, 400, sent);
            return keep;
        }
    };
    let path = format!("/{}", segments.join("/"));
    if !head_only && req.method != "GET" {
        let sent = simple(
            &mut out,
            405,
            "only GET and HEAD are served",
            (keep, false),
            &[("Allow", "GET, HEAD".into())],
        );
        shared.log(&path, range, 405, sent);
        return keep;
    }
    let (mut file, meta) = match shared.resolve(&segments) {
        Ok(x) => x,
        Err(status) => {
            let text = if status == 403 {
                "outside the served directory or not readable"
            } else {
                "no such file"
            };
            let sent = simple(&mut out, status, text, (keep, head_only), &[]);
            shared.log(&path, range, status, sent);
            return keep;
        }
    };
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{size:x}-{mtime:x}\"");
    let last_modified = clock::http_date(mtime);
    // If-Range: the range only applies to the representation the client has.
    let range_applies = req
        .if_range
        .as_deref()
        .is_none_or(|v| v == etag || v == last_modified);
    let spec = match range {
        Some(r) if range_applies => parse_range(r, size),
        _ => RangeSpec::Full,
    };
    let mut headers = vec![
        ("Content-Type", content_type(&path).to_string()),
        ("Accept-Ranges", "bytes".to_string()),
        ("Last-Modified", last_modified),
        ("ETag", etag),
    ];
    let (status, start, len) = match spec {
        RangeSpec::Full => (200, 0, size),
        RangeSpec::Part(a, b) => {
            headers.push(("Content-Range", format!("bytes {a}-{b}/{size}")));
            (206, a, b - a + 1)
        }
        RangeSpec::Unsatisfiable => {
            let sent = simple(
                &mut out,
                416,
                "the range is invalid or outside the file",
                (keep, head_only),
                &[("Content-Range", format!("bytes */{size}"))],
            );
            shared.log(&path, range, 416, sent);
            return keep;
        }
    };
    let head = head_text(status, keep, &headers, len);
    if out.write_all(head.as_bytes()).is_err() {
        shared.log(&path, range, status, 0);
        return false;
    }
    if head_only {
        shared.log(&path, range, status, 0);
        return keep;
    }
    let (sent, result) = send_body(&mut file, start, len, stream);
    shared.log(&path, range, status, sent);
    // A short body leaves the connection out of step: close it.
    result.is_ok() && keep
}

/// Streams `len` bytes of `file` from `start` with sendfile(2); returns the
/// bytes sent, exactly, also on errors. (`std::io::copy` from a `File` to a
/// `TcpStream` does not use sendfile in today's std: strace shows 8 KiB
/// read/sendto pairs, about 1.1 GB/s on loopback here.)
fn send_body(file: &mut File, start: u64, len: u64, stream: &TcpStream) -> (u64, io::Result<()>) {
    let Ok(mut offset) = libc::off_t::try_from(start) else {
        return (0, Err(io::Error::other("offset out of range")));
    };
    let mut sent = 0;
    while sent < len {
        let n = (len - sent).min(SLICE) as usize;
        // SAFETY: both descriptors stay open for the call (borrowed), and
        // `offset` is a valid off_t the kernel advances; no memory of ours
        // is read or written otherwise.
        let r = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), &mut offset, n) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A file system without sendfile support: copy through a buffer.
                Some(libc::EINVAL | libc::ENOSYS) if sent == 0 => {
                    return copy_body(file, start, len, stream);
                }
                _ => return (sent, Err(e)),
            }
        }
        if r == 0 {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent");
            return (sent, Err(e));
        }
        sent += r as u64;
    }
    (sent, Ok(()))
}

/// The portable way of [`send_body`].
fn copy_body(file: &mut File, start: u64, len: u64, stream: &TcpStream) -> (u64, io::Result<()>) {
    if let Err(e) = file.seek(SeekFrom::Start(start)) {
        return (0, Err(e));
    }
    let mut sent = 0;
    let mut out = stream;
    while sent < len {
        let slice = (len - sent).min(SLICE);
        match io::copy(&mut Read::by_ref(file).take(slice), &mut out) {
            Ok(0) => {
                let e =
                    io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being sent");
                return (sent, Err(e));
            }
            Ok(n) => sent += n,
            Err(e) => return (sent, Err(e)),
        }
    }
    (sent, Ok(()))
}

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".json") {
        "application/json"
    } else if path.ends_with(".pub") || path.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}
