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
//!
//! The modules: `request` reads request heads and decodes targets,
//! `range` resolves `Range` headers, `files` finds the file and answers
//! with it, `response` writes status lines and short answers. The same
//! connection loop serves `tandem dashboard` (`dashboard`, the fleet view's
//! pages): each is a `Site`.
//! Fault injection (stalls, drops, throttling) is not here: the end-to-end
//! tests put a proxy in front of this server (`qemu-tests/src/server.rs`).
//!
//! Why not an HTTP server crate: `tiny_http` 0.12 (the small, blocking
//! candidate; no release since 2022) answers malformed requests with an
//! empty 400 itself, so they never reach the request log; answers in the
//! request's HTTP version (`HTTP/1.0 200 OK`); and writes bodies from a
//! `Read` through a 1 KiB `BufWriter`: no sendfile(2), and no exact count
//! of the body bytes that left when a client vanished. Range and If-Range
//! it leaves to its caller, so it would replace `request` alone (about
//! 150 lines) while changing what the tests and the request log rely on.

use std::fs::File;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, IoContext, Result};

mod dashboard;
mod files;
mod range;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use dashboard::{Dashboard, DashboardOptions};
pub use range::{RangeSpec, parse_range};

use request::HeadError;

/// How long an idle keep-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write may stall before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// What a server answers with: the repository's files (`tandem serve`)
/// or the fleet dashboard (`tandem dashboard`).
pub(crate) trait Site: Send + Sync + std::fmt::Debug + 'static {
    /// Answers one request on `stream`; returns whether the connection
    /// stays open.
    fn respond(&self, req: &request::Request, stream: &TcpStream) -> bool;

    /// Notes a malformed request, answered 400 with `sent` body bytes.
    fn bad_request(&self, _sent: u64) {}
}

/// A bound server, ready to [`Server::run`].
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    site: Arc<dyn Site>,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    log: Option<Mutex<File>>,
}

impl Site for Shared {
    fn respond(&self, req: &request::Request, stream: &TcpStream) -> bool {
        files::respond(req, stream, self)
    }

    fn bad_request(&self, sent: u64) {
        self.log("", None, 400, sent);
    }
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
        Server::bind_site(
            listen,
            Arc::new(Shared {
                root: canonical,
                log,
            }),
        )
    }

    /// Binds `listen` for `site`.
    pub(crate) fn bind_site(listen: &str, site: Arc<dyn Site>) -> Result<Server> {
        let listener = TcpListener::bind(listen).map_err(|cause| Error::Listen {
            addr: listen.to_string(),
            cause,
        })?;
        Ok(Server { listener, site })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|cause| Error::Listen {
            addr: "the bound socket".into(),
            cause,
        })
    }

    /// Accepts connections until the process ends, one thread each.
    pub fn run(self) -> Result<()> {
        for conn in self.listener.incoming() {
            match conn {
                Ok(stream) => {
                    let site = Arc::clone(&self.site);
                    let spawned = std::thread::Builder::new()
                        .name("tandem-serve-conn".into())
                        .spawn(move || connection(stream, site.as_ref()));
                    if let Err(e) = spawned {
                        eprintln!("tandem: cannot start a connection thread: {e}");
                    }
                }
                // Out of descriptors, aborted handshakes: keep serving.
                Err(e) => {
                    eprintln!("tandem: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(())
    }
}

impl Shared {
    /// Appends one JSON line to the request log, if there is one.
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
}

/// Serves one connection: request after request until either side ends it.
fn connection(stream: TcpStream, site: &dyn Site) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut reader = BufReader::new(&stream);
    loop {
        match request::read_head(&mut reader) {
            Ok(req) => {
                if !site.respond(&req, &stream) {
                    return;
                }
            }
            Err(HeadError::Closed) => return,
            Err(HeadError::Bad(why)) => {
                let mut out = &stream;
                let sent = response::simple(&mut out, 400, why, (false, false), &[]);
                site.bad_request(sent);
                return;
            }
        }
    }
}
