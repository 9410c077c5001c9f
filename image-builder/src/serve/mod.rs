//! `tandem serve`: a small HTTP/1.1 file server for labs, tests and demos.
//! Production repositories are static files behind any web server or CDN;
//! this one exists so a lab needs nothing else, and so tests can see every
//! request.
//!
//! - GET and HEAD of regular files under the root, nothing else (no
//!   directory listings, no hidden files; `..`, `.` and symlinks leading
//!   outside are refused);
//! - one `Range: bytes=a-b`, `a-` or `-n` → 206 with `Content-Range`;
//!   unsatisfiable or invalid → 416; several ranges or another unit → the
//!   whole file (allowed by RFC 9110); `If-Range` with the file's ETag or
//!   Last-Modified;
//! - keep-alive (HTTP/1.1 default, HTTP/1.0 on request), a thread per
//!   connection, `Content-Length` on every response, bodies sent from the
//!   file to the socket by the kernel (sendfile(2), several GB/s on
//!   loopback);
//! - an optional log: one JSON line per request,
//!   `{"path","range","status","bytes"}`, written and flushed as the
//!   request completes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock;
use crate::error::{Error, IoContext, Result};

/// Longest request line or header line.
const MAX_LINE: u64 = 8 << 10;
/// Most header lines in a request.
const MAX_HEADERS: usize = 100;
/// How long an idle keep-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may stall before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes per sendfile(2) call.
const SLICE: u64 = 1 << 30;

/// Gives SIGINT and SIGTERM their default action (end the process), even
/// if the parent started us with them ignored (a shell's `cmd &` ignores
/// SIGINT). Nothing needs cleaning up: every response and log line is
/// complete when written.
pub fn exit_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs the default disposition; no handler code runs.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// A bound server, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    log: Option<Mutex<File>>,
}

impl Server {
    /// Checks the root, opens the log (appending) and binds `listen`
    /// (`127.0.0.1:0` picks a free port).
    pub fn bind(root: &Path, listen: &str, log: Option<&Path>) -> Result<Server> {
        let canonical = root.canonicalize().io("open repository", root)?;
        if !canonical.is_dir() {
            return Err(Error::Repository {
                path: root.to_path_buf(),
                message: "is not a directory: serve the repository's root directory".into(),
            });
        }
        let log = match log {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .io("open request log", p)?,
            )),
            None => None,
        };
        let listener = TcpListener::bind(listen).map_err(|cause| Error::Listen {
            addr: listen.to_string(),
            cause,
        })?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                root: canonical,
                log,
            }),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .io("query listening address of", self.shared.root.clone())
    }

    /// The directory served (canonical).
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// Accepts connections until the process ends, one thread each.
    pub fn run(self) -> Result<()> {
        for conn in self.listener.incoming() {
            match conn {
                Ok(stream) => {
                    let shared = Arc::clone(&self.shared);
                    let spawned = std::thread::Builder::new()
                        .name("tandem-serve-conn".into())
                        .spawn(move || connection(stream, &shared));
                    if let Err(e) = spawned {
                        eprintln!("tandem serve: cannot start a connection thread: {e}");
                    }
                }
                // Out of descriptors, aborted handshakes: keep serving.
                Err(e) => {
                    eprintln!("tandem serve: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(())
    }
}

/// A parsed request head.
#[derive(Debug, Default)]
struct Request {
    method: String,
    target: String,
    http10: bool,
    range: Option<String>,
    if_range: Option<String>,
    connection: Option<String>,
    has_body: bool,
}

impl Request {
    fn keep_alive(&self) -> bool {
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
enum HeadError {
    /// The peer closed or went idle before a request started.
    Closed,
    /// A malformed request: answer 400 and close.
    Bad(&'static str),
}

fn connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut reader = BufReader::new(&stream);
    loop {
        match read_head(&mut reader) {
            Ok(req) => {
                if !respond(&req, &stream, shared) {
                    return;
                }
            }
            Err(HeadError::Closed) => return,
            Err(HeadError::Bad(why)) => {
                let mut out = &stream;
                let sent = simple(&mut out, 400, why, (false, false), &[]);
                shared.log("", None, 400, sent);
                return;
            }
        }
    }
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

fn read_head<R: BufRead>(r: &mut R) -> std::result::Result<Request, HeadError> {
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
fn decode_target(target: &str) -> std::result::Result<Vec<String>, &'static str> {
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

/// A Range request, resolved against the file size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSpec {
    /// The whole file (no Range, another unit, several ranges).
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// Resolves a `Range` header value against a file of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> RangeSpec {
    let value = value.trim();
    let Some((unit, spec)) = value.split_once('=') else {
        return RangeSpec::Unsatisfiable;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeSpec::Full;
    }
    if spec.contains(',') {
        return RangeSpec::Full;
    }
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::Unsatisfiable;
    };
    if a.trim().is_empty() {
        return match num(b) {
            Some(n) if n > 0 && size > 0 => RangeSpec::Part(size.saturating_sub(n), size - 1),
            _ => RangeSpec::Unsatisfiable,
        };
    }
    let Some(start) = num(a) else {
        return RangeSpec::Unsatisfiable;
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    if b.trim().is_empty() {
        return RangeSpec::Part(start, size - 1);
    }
    match num(b) {
        Some(end) if end >= start => RangeSpec::Part(start, end.min(size - 1)),
        _ => RangeSpec::Unsatisfiable,
    }
}

impl Shared {
    fn log(&self, path: &str, range: Option<&str>, status: u16, bytes: u64) {
        if let Some(log) = &self.log {
            let line = serde_json::json!({
                "path": path,
                "range": range,
                "status": status,
                "bytes": bytes,
            });
            if let Ok(mut f) = log.lock() {
                // One write per line; the file is not buffered.
                let _ = f.write_all(format!("{line}\n").as_bytes());
            }
        }
    }

    /// The file a decoded path names, if it is a regular file under the root.
    fn resolve(&self, segments: &[String]) -> std::result::Result<(File, std::fs::Metadata), u16> {
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

fn head_text(status: u16, keep: bool, headers: &[(&str, String)], length: u64) -> String {
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
fn simple<W: Write>(
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

/// Answers one request; returns whether the connection stays open.
fn respond(req: &Request, stream: &TcpStream, shared: &Shared) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        let cases = [
            ("bytes=0-9", 100, Part(0, 9)),
            ("bytes=90-", 100, Part(90, 99)),
            ("bytes=-10", 100, Part(90, 99)),
            ("bytes=-1000", 100, Part(0, 99)),
            ("bytes=50-1000", 100, Part(50, 99)),
            ("bytes=99-99", 100, Part(99, 99)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=9-1", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=x-1", 100, Unsatisfiable),
            ("bytes=1", 100, Unsatisfiable),
            ("bytes", 100, Unsatisfiable),
            ("bytes=99999999999999999999999-", 100, Unsatisfiable),
            ("bytes=0-1,5-6", 100, Full),
            ("items=0-1", 100, Full),
            (" Bytes = 1-2 ", 100, Part(1, 2)),
        ];
        for (value, size, want) in cases {
            assert_eq!(parse_range(value, size), want, "{value} of {size}");
        }
    }

    /// A response: status, lower-case headers, body.
    type Response = (u16, Vec<(String, String)>, Vec<u8>);

    /// Reads one response from a keep-alive connection (body by
    /// Content-Length; none for HEAD).
    fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> Response {
        let mut status_line = String::new();
        r.read_line(&mut status_line).unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .expect("Content-Length always");
        let mut body = vec![0; if head { 0 } else { len }];
        r.read_exact(&mut body).unwrap();
        (status, headers, body)
    }

    fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
        resp.1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn serves_files_ranges_and_refusals_over_keep_alive() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(root.join("demo/1.0")).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(root.join("demo/1.0/usr.payload"), &data).unwrap();
        std::fs::write(root.join("demo/stable.json"), b"{}").unwrap();
        std::fs::write(tmp.path().join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
        let log = tmp.path().join("requests.log");
        let server = Server::bind(&root, "127.0.0.1:0", Some(&log)).unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || server.run());

        let stream = TcpStream::connect(addr).unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        let mut ask = |req: &str, head: bool| {
            w.write_all(req.as_bytes()).unwrap();
            read_response(&mut r, head)
        };
        let get =
            |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
        let file = "/demo/1.0/usr.payload";

        let full = ask(&get(file, ""), false);
        assert_eq!((full.0, full.2.len()), (200, data.len()));
        assert_eq!(full.2, data);
        assert_eq!(header(&full, "accept-ranges"), Some("bytes"));
        let part = ask(&get(file, "Range: bytes=10-19\r\n"), false);
        assert_eq!(part.0, 206);
        assert_eq!(part.2, &data[10..20]);
        assert_eq!(header(&part, "content-range"), Some("bytes 10-19/100000"));
        let tail = ask(&get(file, "Range: bytes=99990-\r\n"), false);
        assert_eq!((tail.0, &tail.2[..]), (206, &data[99_990..]));
        let suffix = ask(&get(file, "Range: bytes=-5\r\n"), false);
        assert_eq!((suffix.0, &suffix.2[..]), (206, &data[99_995..]));
        let bad = ask(&get(file, "Range: bytes=100000-\r\n"), false);
        assert_eq!(bad.0, 416);
        assert_eq!(header(&bad, "content-range"), Some("bytes */100000"));
        let etag = header(&full, "etag").unwrap().to_string();
        let if_range = ask(
            &get(file, &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n")),
            false,
        );
        assert_eq!(if_range.0, 206);
        let stale = ask(
            &get(file, "Range: bytes=0-0\r\nIf-Range: \"old\"\r\n"),
            false,
        );
        assert_eq!((stale.0, stale.2.len()), (200, data.len()));
        let head = ask(&format!("HEAD {file} HTTP/1.1\r\n\r\n"), true);
        assert_eq!(head.0, 200);
        assert_eq!(header(&head, "content-length"), Some("100000"));
        let head404 = ask("HEAD /nothing HTTP/1.1\r\n\r\n", true);
        assert_eq!(head404.0, 404);
        assert_ne!(header(&head404, "content-length"), Some("0"));
        let json = ask(&get("/demo/stable.json", ""), false);
        assert_eq!(header(&json, "content-type"), Some("application/json"));
        assert_eq!(ask(&get("/demo/missing", ""), false).0, 404);
        assert_eq!(ask(&get("/demo", ""), false).0, 404);
        assert_eq!(ask(&get("/../secret", ""), false).0, 400);
        assert_eq!(ask(&get("/demo/%2e%2e/%2e%2e/secret", ""), false).0, 400);
        assert_eq!(ask(&get("/escape", ""), false).0, 403);
        std::fs::write(root.join(".tandem-release.lock"), b"").unwrap();
        assert_eq!(ask(&get("/.tandem-release.lock", ""), false).0, 404);
        let post = ask("POST /x HTTP/1.1\r\n\r\n", false);
        assert_eq!((post.0, header(&post, "allow")), (405, Some("GET, HEAD")));
        // Still the same connection after all of that.
        assert_eq!(ask(&get(file, "Range: bytes=0-0\r\n"), false).2, [0]);
        // Connection: close is honoured.
        let last = ask(
            &get(file, "Connection: close\r\nRange: bytes=1-1\r\n"),
            false,
        );
        assert_eq!(header(&last, "connection"), Some("close"));
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);

        // A malformed request gets 400 and the connection closes.
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GARBAGE\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");

        // The log: one JSON object per request, in order, bytes as sent.
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 20, "{lines:?}");
        assert_eq!(lines[0]["path"], file);
        assert_eq!(lines[0]["range"], serde_json::Value::Null);
        assert_eq!(lines[0]["bytes"], 100_000);
        assert_eq!(lines[1]["range"], "bytes=10-19");
        assert_eq!(lines[1]["status"], 206);
        assert_eq!(lines[1]["bytes"], 10);
        let payload_bytes: u64 = lines
            .iter()
            .filter(|l| l["path"] == file && l["status"] == 206)
            .map(|l| l["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(payload_bytes, 10 + 10 + 5 + 1 + 1 + 1);
    }

    #[test]
    fn http10_closes_unless_asked() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"hello").unwrap();
        let server = Server::bind(tmp.path(), "127.0.0.1:0", None).unwrap();
        let addr = server.local_addr().unwrap();
        std::thread::spawn(move || server.run());
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /f HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    }

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
