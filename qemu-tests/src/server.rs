//! The update repository side of a scenario: `tandem serve` on the host
//! (the guest reaches it at 10.0.2.2 through QEMU's user networking), its
//! request log, and a proxy in front of it that stalls, drops or throttles
//! connections on demand.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The host as the guest sees it (QEMU user networking).
pub const HOST_FROM_GUEST: &str = "10.0.2.2";

/// Writes `manifest`'s /usr slot into `target` (a new file) the way a node
/// does, from the repository at `addr` over HTTP, with the slot image
/// `running` as the running slot (blocks and chunks found locally): the
/// node's own code on the host, for what an update fetches.
pub fn write_slot_on_host(
    addr: SocketAddr,
    manifest: &repository::repo::Manifest,
    running: Option<&Path>,
    target: &Path,
) -> Result<updater::apply::Counters> {
    let running = running
        .map(|p| updater::disk::Region::whole(p, false))
        .transpose()?;
    std::fs::File::create(target)
        .and_then(|f| f.set_len(manifest.usr.size))
        .with_context(|| format!("create {}", target.display()))?;
    let region = updater::disk::Region::whole(target, true)?;
    let job = updater::apply::SlotJob {
        manifest,
        manifest_sha256: "host",
        slot: tandem_slot::Slot::B,
        target: &region,
        running: running.as_ref().map(|r| (r, r.len())),
        progress_file: &target.with_extension("progress.json"),
    };
    let mut http = updater::http::Http::new(
        &format!("http://{addr}/"),
        &updater::transport::Transport::direct(),
    );
    Ok(updater::apply::write_slot(&job, &mut http, &mut |_| {})?)
}

/// A running `tandem serve`.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens on the host.
    pub addr: SocketAddr,
    log: PathBuf,
}

/// One request as `tandem serve --log` records it.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Request {
    /// Path requested.
    pub path: String,
    /// Range header, if any.
    pub range: Option<String>,
    /// HTTP status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
}

impl Server {
    /// Starts `tandem serve repo` on a free loopback port.
    pub fn start(tandem: &Path, repo: &Path, log: &Path) -> Result<Server> {
        Server::start_on(tandem, repo, log, "127.0.0.1:0")
    }

    /// Starts `tandem serve repo` on `listen` (`127.0.0.2:0`: a loopback
    /// address guests cannot reach, only a proxy on the host can).
    pub fn start_on(tandem: &Path, repo: &Path, log: &Path, listen: &str) -> Result<Server> {
        let mut child = Command::new(tandem)
            .arg("serve")
            .arg(repo)
            .args(["--listen", listen, "--log"])
            .arg(log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start tandem serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line
            .split("http://")
            .nth(1)
            .context(format!("unexpected first line from tandem serve: {line:?}"))?;
        let addr: SocketAddr = url
            .trim()
            .trim_end_matches('/')
            .parse()
            .context(format!("address in {line:?}"))?;
        Ok(Server {
            child,
            addr,
            log: log.to_path_buf(),
        })
    }

    /// The repository URL as the guest sees it.
    pub fn guest_url(&self) -> String {
        format!("http://{HOST_FROM_GUEST}:{}/", self.addr.port())
    }

    /// Every request logged so far.
    pub fn requests(&self) -> Result<Vec<Request>> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("log line {l:?}")))
            .collect()
    }

    /// Body bytes served for paths ending in `suffix`.
    pub fn bytes_served(&self, suffix: &str) -> Result<u64> {
        Ok(self
            .requests()?
            .iter()
            .filter(|r| r.path.ends_with(suffix))
            .map(|r| r.bytes)
            .sum())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything through.
    None,
    /// Forward this many bytes of files per connection (the `.json`
    /// metadata passes), then send nothing more but keep the connection
    /// open.
    StallAfter(u64),
    /// Forward this many bytes of files per connection (the `.json`
    /// metadata passes), then close it.
    DropAfter(u64),
    /// Forward at most this many bytes per second per connection.
    Throttle(u64),
}

/// An HTTP/1.1 proxy in front of a server, with a switchable [`Fault`],
/// counting the response body bytes it actually delivered per path (the
/// server's own log also counts what sat in socket buffers when a client
/// vanished).
#[derive(Debug)]
pub struct Proxy {
    /// Where it listens on the host.
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    delivered: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Proxy {
    /// Starts a proxy to `upstream` on a free loopback port.
    pub fn start(upstream: SocketAddr) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let fault = Arc::new(Mutex::new(Fault::None));
        let delivered: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
        let (f, d) = (Arc::clone(&fault), Arc::clone(&delivered));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (f, d) = (Arc::clone(&f), Arc::clone(&d));
                std::thread::spawn(move || {
                    if let Ok(server) = TcpStream::connect(upstream) {
                        let _ = relay(client, server, &f, &d);
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            fault,
            delivered,
        })
    }

    /// Changes what happens to new and running connections.
    pub fn set(&self, fault: Fault) {
        if let Ok(mut f) = self.fault.lock() {
            *f = fault;
        }
    }

    /// The proxy's URL as the guest sees it.
    pub fn guest_url(&self) -> String {
        format!("http://{HOST_FROM_GUEST}:{}/", self.addr.port())
    }

    /// Response body bytes delivered to clients for paths ending in `suffix`.
    pub fn delivered(&self, suffix: &str) -> u64 {
        self.delivered
            .lock()
            .map(|d| {
                d.iter()
                    .filter(|(p, _)| p.ends_with(suffix))
                    .map(|(_, n)| n)
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Reads one header block (up to the blank line), byte by byte so nothing
/// after it is consumed.
fn read_head(r: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut b)? == 0 {
            return Ok(None);
        }
        head.push(b[0]);
        if head.len() > 64 << 10 {
            return Err(std::io::Error::other("header too long"));
        }
    }
    Ok(Some(head))
}

fn content_length(head: &[u8]) -> u64 {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    fault: &Mutex<Fault>,
    delivered: &Mutex<Vec<(String, u64)>>,
) -> Result<()> {
    let (paths_tx, paths_rx) = std::sync::mpsc::channel::<(String, bool)>();
    let (mut c_read, mut s_write) = (client.try_clone()?, server.try_clone()?);
    // Requests: forwarded as they are; their paths queued for the responses.
    std::thread::spawn(move || {
        while let Ok(Some(head)) = read_head(&mut c_read) {
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let mut parts = line.split_whitespace();
            let head_only = parts.next() == Some("HEAD");
            let path = parts.next().unwrap_or_default().to_string();
            if paths_tx.send((path, head_only)).is_err() || s_write.write_all(&head).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut sent_on_connection = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let Some(head) = read_head(&mut s_read)? else {
            let _ = c_write.shutdown(std::net::Shutdown::Write);
            return Ok(());
        };
        let (path, head_only) = paths_rx.recv().unwrap_or_default();
        c_write.write_all(&head)?;
        let mut left = if head_only { 0 } else { content_length(&head) };
        let metadata = path.ends_with(".json");
        let mut body = 0u64;
        let record = |body: u64| {
            if let Ok(mut d) = delivered.lock() {
                d.push((path.clone(), body));
            }
        };
        while left > 0 {
            let want = (left as usize).min(buf.len());
            let n = s_read.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            let f = fault.lock().map(|f| *f).unwrap_or(Fault::None);
            let mut n = n;
            match f {
                Fault::StallAfter(limit) | Fault::DropAfter(limit)
                    if !metadata && sent_on_connection + n as u64 > limit =>
                {
                    n = limit.saturating_sub(sent_on_connection) as usize;
                    c_write.write_all(&buf[..n])?;
                    record(body + n as u64);
                    if matches!(f, Fault::DropAfter(_)) {
                        let _ = c_write.shutdown(std::net::Shutdown::Both);
                        bail!("dropped");
                    }
                    // Stall: hold the connection until the client gives up.
                    let mut sink = [0u8; 1];
                    while matches!(c_write.read(&mut sink), Ok(k) if k > 0) {}
                    bail!("stalled");
                }
                Fault::Throttle(rate) => {
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / rate.max(1) as f64))
                }
                _ => {}
            }
            if let Err(e) = c_write.write_all(&buf[..n]) {
                record(body);
                return Err(e.into());
            }
            body += n as u64;
            if !metadata {
                sent_on_connection += n as u64;
            }
            left -= n as u64;
        }
        record(body);
    }
}
