//! Real etcd on loopback for the reboot-coordination tests and `cargo xtask
//! bench lock`: one or three members (Debian's `etcd-server`), each with its
//! own data directory and free ports, fast elections; members can be
//! killed, restarted, stopped and started, and the leader found.
//!
//! What the tests prove is read back from etcd's own record of a key
//! ([`EtcdCluster::history`]: every revision of it), not from what the
//! agents claim.
//!
//! ```no_run
//! use qemu_tests::etcd::EtcdCluster;
//!
//! let mut cluster = EtcdCluster::start(3)?;
//! let leader = cluster.leader().expect("a leader");
//! cluster.kill(leader)?;
//! // ... the two others elect a new one within about a second ...
//! cluster.restart(leader)?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::etcd::{Auth, Etcd, Kv, Tls};
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// The etcd binary (Debian's `etcd-server` package).
pub const ETCD: &str = "etcd";
/// How long a member may take to answer after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Raft heartbeat, in milliseconds (etcd's default is 100).
pub const HEARTBEAT_MS: u32 = 50;
/// Raft election timeout, in milliseconds (etcd's default is 1000): a dead
/// leader is replaced within about a second.
pub const ELECTION_MS: u32 = 500;

/// One member: its name, URLs, data directory and process (while running).
#[derive(Debug)]
struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of real `etcd` processes on 127.0.0.1. Dropping it kills
/// every member and removes the data.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
}

impl EtcdCluster {
    /// Starts `members` (1 or 3) members and waits until every one answers a
    /// linearizable read (so there is a leader).
    pub fn start(members: usize) -> Result<EtcdCluster> {
        ensure!(
            members == 1 || members == 3,
            "an etcd test cluster has 1 or 3 members, not {members}"
        );
        check_installed()?;
        let dir = tempfile::Builder::new()
            .prefix("tandem-etcd-")
            .tempdir()
            .context("cannot make a directory for etcd's data")?;
        // Every port bound at once, so they differ; released just before
        // etcd binds them.
        let ports = free_ports(2 * members)?;
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", ports[2 * i]),
                peer_url: format!("http://127.0.0.1:{}", ports[2 * i + 1]),
                data_dir: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            dir,
            members,
            initial_cluster,
        };
        cluster.start_all()?;
        Ok(cluster)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never: see [`EtcdCluster::start`]).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client URL, in member order.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// A client of every member.
    pub fn client(&self) -> Result<Etcd> {
        Etcd::new(&self.client_urls(), Auth::None, &Tls::default())
            .context("etcd client for the test cluster")
    }

    /// The process ID of a running member.
    pub fn pid(&self, member: usize) -> Option<u32> {
        self.members
            .get(member)
            .and_then(|m| m.child.as_ref())
            .map(Child::id)
    }

    /// Kills a member with SIGKILL (no chance to say goodbye to its peers).
    pub fn kill(&mut self, member: usize) -> Result<()> {
        let m = self
            .members
            .get_mut(member)
            .with_context(|| format!("no etcd member {member}"))?;
        if let Some(mut child) = m.child.take() {
            child
                .kill()
                .with_context(|| format!("cannot kill etcd member {}", m.name))?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts a stopped member again on its data directory and waits until
    /// it answers a linearizable read (it has caught up with a leader).
    pub fn restart(&mut self, member: usize) -> Result<()> {
        ensure!(member < self.members.len(), "no etcd member {member}");
        self.spawn(member)?;
        self.wait_ready(&[member])
    }

    /// Stops every member: SIGTERM, then SIGKILL for one still there after
    /// 5 s.
    pub fn stop_all(&mut self) -> Result<()> {
        for m in &mut self.members {
            if let Some(child) = &m.child {
                let pid = libc::pid_t::try_from(child.id())?;
                // SAFETY: kill(2) on a child of ours that has not been reaped.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                loop {
                    if child.try_wait()?.is_some() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        child.wait()?;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        Ok(())
    }

    /// Starts every member that is not running and waits until all answer.
    pub fn start_all(&mut self) -> Result<()> {
        let mut started = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i)?;
                started.push(i);
            }
        }
        self.wait_ready(&started)
    }

    /// The member that is leader, as the running members see it: the one
    /// whose own ID is the leader ID in its `/v3/maintenance/status`.
    /// `None` when no running member says it leads (an election).
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            m.child.is_some()
                && status(&m.client_url)
                    .ok()
                    .is_some_and(|s| s.leader != 0 && s.leader == s.member_id)
        })
    }

    /// Waits up to `timeout` for a leader.
    pub fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no etcd member became leader within {timeout:?}; logs in {}",
                    self.dir.path().display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every version of `key` since it was created, oldest first, read back
    /// from etcd's history (one read at each revision, see
    /// [`Etcd::history`]) and checked to be complete: versions 1, 2, 3, …
    /// without a gap, at increasing revisions, the first at the key's
    /// creation. Empty when the key does not exist.
    pub fn history(&self, key: &str) -> Result<Vec<Kv>> {
        let etcd = self.client()?;
        let kvs = etcd
            .history(key)
            .with_context(|| format!("reading the history of {key} from etcd"))?;
        for (i, kv) in kvs.iter().enumerate() {
            ensure!(
                kv.version == i as u64 + 1,
                "history of {key}: entry {i} is version {} (a gap: a change is missing)",
                kv.version
            );
            if i == 0 {
                ensure!(
                    kv.mod_revision == kv.create_revision,
                    "history of {key}: the first entry is not the creation"
                );
            } else {
                ensure!(
                    kv.mod_revision > kvs[i - 1].mod_revision,
                    "history of {key}: revisions do not increase at version {}",
                    kv.version
                );
            }
        }
        Ok(kvs)
    }

    /// The last lines of a member's log, for error messages.
    pub fn log_tail(&self, member: usize) -> String {
        self.members
            .get(member)
            .map(|m| tail(&m.log))
            .unwrap_or_default()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let initial_cluster = self.initial_cluster.clone();
        let m = &mut self.members[i];
        if m.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .with_context(|| format!("cannot open {}", m.log.display()))?;
        let child = Command::new(ETCD)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "tandem-test"])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| spawn_error(&e))?;
        m.child = Some(child);
        Ok(())
    }

    /// Waits until each of `members` answers a linearizable read itself.
    fn wait_ready(&mut self, members: &[usize]) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        for &i in members {
            let url = self.members[i].client_url.clone();
            let etcd = Etcd::new(&[&url], Auth::None, &Tls::default())?
                .with_timeout(Duration::from_secs(2));
            loop {
                if let Some(child) = self.members[i].child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    self.members[i].child = None;
                    bail!(
                        "etcd member {} ({url}) exited at start ({status}): {}",
                        self.members[i].name,
                        self.log_tail(i)
                    );
                }
                match etcd.range("tandem-test/ready") {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => bail!(
                        "etcd member {} ({url}) not ready within {START_TIMEOUT:?}: {e}; its log: {}",
                        self.members[i].name,
                        self.log_tail(i)
                    ),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A member's view of the cluster (`/v3/maintenance/status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The member's own ID.
    pub member_id: u64,
    /// The leader's ID (0: none known).
    pub leader: u64,
    /// The store's revision.
    pub revision: u64,
}

/// Asks the member at `client_url` for its status (1 s deadline).
pub fn status(client_url: &str) -> Result<Status> {
    let v = post(client_url, "/v3/maintenance/status", "{}")?;
    let num = |v: Option<&Value>| -> u64 {
        match v {
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            _ => 0,
        }
    };
    let header = v.get("header");
    Ok(Status {
        member_id: num(header.and_then(|h| h.get("member_id"))),
        leader: num(v.get("leader")),
        revision: num(header.and_then(|h| h.get("revision"))),
    })
}

/// A JSON POST over plain HTTP/1.0 (the answer ends when the connection
/// does): enough for the gateway's status call, without a client library.
fn post(base: &str, path: &str, body: &str) -> Result<Value> {
    let host = base
        .strip_prefix("http://")
        .with_context(|| format!("{base} is not an http:// URL"))?;
    let timeout = Duration::from_secs(1);
    let addr = host
        .parse()
        .with_context(|| format!("{host} is not an address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to etcd at {base}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .with_context(|| format!("reading {base}{path}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{base}{path}: not an HTTP answer"))?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{base}{path}: {}: {rest}",
        head.lines().next().unwrap_or("")
    );
    serde_json::from_str(rest).with_context(|| format!("{base}{path}: not JSON: {rest}"))
}

/// CPU time (user + system) a process has used so far, from
/// `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: unexpected contents"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]: utime is field 14, stime field 15.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: no field {}", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100);
    Ok(Duration::from_micros(total * 1_000_000 / hz))
}

fn check_installed() -> Result<()> {
    match Command::new(ETCD)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!(
            "`{ETCD} --version` failed ({s}): is etcd (Debian's etcd-server) installed correctly?"
        ),
        Err(e) => Err(spawn_error(&e)),
    }
}

fn spawn_error(e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "etcd not installed: run `cargo xtask setup` (Debian packages etcd-server and etcd-client)"
        )
    } else {
        anyhow::anyhow!("cannot run {ETCD}: {e}")
    }
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free loopback ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_a_busy_loop() {
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let used = cpu_time(pid).unwrap() - before;
        assert!(used >= Duration::from_millis(150), "{used:?}");
        assert!(cpu_time(u32::MAX).is_err());
    }
}
