//! Real etcd on loopback for the reboot-coordination tests and `cargo xtask
//! bench lock`: one or three members (Debian's `etcd-server`), each with its
//! own data directory and free ports, fast elections; members can be
//! killed, restarted, stopped and started, and the leader found.
//!
//! What the tests prove is read back from etcd's own record of a key
//! ([`EtcdCluster::history`]: every revision of it), not from what the
//! agents claim.
//!
//! Security: [`EtcdCluster::start_with`] runs members whose client URLs
//! are `https://` with `--client-cert-auth`, on certificates that
//! [`TestPki::generate`] makes with the `openssl` CLI; and
//! [`EtcdCluster::enable_auth`] turns on etcd's user/password
//! authentication (simple tokens, which a restart invalidates).
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

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::etcd::{Auth, Etcd, Kv, Tls};
use agent::semaphore::Semaphore;
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

/// How to start the members besides the defaults.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Client URLs `https://127.0.0.1:<port>` with the server certificate
    /// of this PKI and `--client-cert-auth` (clients need a certificate of
    /// its CA); peers stay on plain HTTP. The harness's own client uses
    /// [`TestPki::client_tls`].
    pub tls: Option<TestPki>,
    /// `--auth-token-ttl`: seconds an unused simple auth token lives
    /// (etcd's default is 300).
    pub auth_token_ttl: Option<u32>,
}

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

/// What etcd's history of a semaphore key shows.
#[derive(Debug, Default)]
pub struct SemaphoreHistory {
    /// Revisions of the key.
    pub revisions: usize,
    /// Slots taken, per holder.
    pub acquired: BTreeMap<String, usize>,
    /// Slots given back.
    pub released: usize,
    /// Acquisitions right after a release (a slot passed on).
    pub handoffs: usize,
    /// Most holders at one revision.
    pub peak: usize,
    /// The last value.
    pub last: Option<Semaphore>,
}

/// An etcd cluster of real `etcd` processes on 127.0.0.1. Dropping it kills
/// every member and removes the data.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    initial_cluster: String,
    options: Options,
    /// What the harness's own clients authenticate with.
    auth: Auth,
}

impl EtcdCluster {
    /// Starts `members` (1 or 3) members and waits until every one answers a
    /// linearizable read (so there is a leader).
    pub fn start(members: usize) -> Result<EtcdCluster> {
        EtcdCluster::start_with(members, Options::default())
    }

    /// [`EtcdCluster::start`] with options (TLS).
    pub fn start_with(members: usize, options: Options) -> Result<EtcdCluster> {
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
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_url: format!("{scheme}://127.0.0.1:{}", ports[2 * i]),
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
            options,
            auth: Auth::None,
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

    /// The first member's client port, which guests reach as
    /// `10.0.2.2:<port>`.
    pub fn client_port(&self) -> Result<u16> {
        let url = self
            .client_urls()
            .first()
            .cloned()
            .context("etcd has no client URL")?;
        url.trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("no port in {url}"))
    }

    /// A client of every member (with the harness's client certificate
    /// on a TLS cluster, and as root once [`EtcdCluster::enable_auth`]).
    pub fn client(&self) -> Result<Etcd> {
        Etcd::new(&self.client_urls(), self.auth.clone(), &self.client_tls())
            .context("etcd client for the test cluster")
    }

    /// The TLS files the harness's clients use (none on plain HTTP).
    pub fn client_tls(&self) -> Tls {
        self.options
            .tls
            .as_ref()
            .map(TestPki::client_tls)
            .unwrap_or_default()
    }

    /// Adds an etcd user without a role: it may authenticate but not read
    /// or write keys. Adding a user changes etcd's auth store: tokens
    /// issued before are refused from then on ("revision of auth store is
    /// old"). Plain-HTTP clusters only.
    pub fn add_user(&self, name: &str, password: &str) -> Result<()> {
        let token = match &self.auth {
            Auth::Password { user, password } => Some(self.authenticate(user, password)?),
            Auth::None => None,
        };
        let url = &self.members[0].client_url;
        let body = serde_json::json!({ "name": name, "password": password }).to_string();
        post(url, "/v3/auth/user/add", &body, token.as_deref())
            .with_context(|| format!("adding etcd user {name}"))?;
        Ok(())
    }

    /// Turns on etcd's authentication as `etcdctl user add root` and
    /// `etcdctl auth enable` do, through the gateway: the user `root` with
    /// `password` and the role `root`, then `auth enable`. From then on
    /// every request needs a token, and the harness's clients
    /// authenticate as root. Plain-HTTP clusters only.
    pub fn enable_auth(&mut self, password: &str) -> Result<()> {
        let url = self.members[0].client_url.clone();
        self.add_user("root", password)?;
        post(&url, "/v3/auth/role/add", r#"{"name":"root"}"#, None)
            .context("adding etcd role root")?;
        post(
            &url,
            "/v3/auth/user/grant",
            r#"{"user":"root","role":"root"}"#,
            None,
        )
        .context("granting role root to user root")?;
        post(&url, "/v3/auth/enable", "{}", None).context("enabling etcd authentication")?;
        self.auth = Auth::Password {
            user: "root".into(),
            password: password.into(),
        };
        Ok(())
    }

    /// Changes `user`'s password; etcd drops the user's tokens at once.
    /// The harness's clients follow when `user` is root. Plain-HTTP
    /// clusters with auth on only.
    pub fn change_password(&mut self, user: &str, password: &str) -> Result<()> {
        let Auth::Password {
            user: root,
            password: root_pw,
        } = &self.auth
        else {
            bail!("etcd authentication is not enabled");
        };
        let token = self.authenticate(root, root_pw)?;
        let body = serde_json::json!({ "name": user, "password": password }).to_string();
        post(
            &self.members[0].client_url,
            "/v3/auth/user/changepw",
            &body,
            Some(&token),
        )
        .with_context(|| format!("changing the password of etcd user {user}"))?;
        if user == "root" {
            self.auth = Auth::Password {
                user: user.into(),
                password: password.into(),
            };
        }
        Ok(())
    }

    /// A token for `user`, straight from `/v3/auth/authenticate` (member
    /// 0, plain HTTP), for checking what etcd does with it later.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<String> {
        let body = serde_json::json!({ "name": user, "password": password }).to_string();
        let v = post(
            &self.members[0].client_url,
            "/v3/auth/authenticate",
            &body,
            None,
        )?;
        v.get("token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("no token in etcd's answer")
    }

    /// A linearizable read (a count of every key) on member 0 with
    /// `token` sent as is, no renewal: etcd's answer, or its error (plain
    /// HTTP only).
    pub fn read_with_token(&self, token: &str) -> Result<Value> {
        // Key "\0" (base64 "AA==") to range_end "\0": every key.
        let body = r#"{"key":"AA==","range_end":"AA==","count_only":true}"#;
        post(
            &self.members[0].client_url,
            "/v3/kv/range",
            body,
            Some(token),
        )
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

    /// Reads the key's whole history from etcd and checks every revision: the
    /// value as stored is a consistent semaphore with `max`, never more than
    /// `max` holders, and each change adds or removes exactly one holder.
    pub fn semaphore_history(&self, key: &str, max: i64) -> Result<SemaphoreHistory> {
        let kvs = self.history(key)?;
        ensure!(!kvs.is_empty(), "{key} has no history");
        let mut rec = SemaphoreHistory::default();
        // Holders before the revision, and whether the revision was a release.
        let mut prev: (BTreeSet<String>, bool) = (BTreeSet::new(), false);
        for (i, kv) in kvs.iter().enumerate() {
            let at = kv.mod_revision;
            let raw = Semaphore::parse_raw(&kv.value)
                .with_context(|| format!("revision {at}: {}", kv.value_str()))?;
            ensure!(
                raw.is_consistent(),
                "revision {at}: inconsistent value {}",
                kv.value_str()
            );
            let s = Semaphore::parse(&kv.value)?;
            ensure!(s == raw, "revision {at}: not in order: {}", kv.value_str());
            ensure!(
                s.max == max,
                "revision {at}: max {} instead of {max}",
                s.max
            );
            ensure!(
                s.holders.len() as i64 <= max,
                "revision {at}: {} holders, max {max}: {}",
                s.holders.len(),
                kv.value_str()
            );
            rec.peak = rec.peak.max(s.holders.len());
            let now: BTreeSet<String> = s.holders.iter().cloned().collect();
            let (before, was_release) = &prev;
            let added: Vec<&String> = now.difference(before).collect();
            let removed: Vec<&String> = before.difference(&now).collect();
            let release = match (added.as_slice(), removed.as_slice()) {
                ([id], []) => {
                    *rec.acquired.entry((*id).clone()).or_default() += 1;
                    if *was_release {
                        rec.handoffs += 1;
                    }
                    false
                }
                ([], [_]) => {
                    rec.released += 1;
                    true
                }
                // The creation by set-max: nobody holds it yet.
                ([], []) if i == 0 => false,
                _ => bail!(
                    "revision {at}: added {added:?} and removed {removed:?} in one change: {}",
                    kv.value_str()
                ),
            };
            prev = (now, release);
            rec.last = Some(s);
        }
        rec.revisions = kvs.len();
        Ok(rec)
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
        let tls_args: Vec<String> = match &self.options.tls {
            Some(pki) => vec![
                "--cert-file".into(),
                pki.server_cert.display().to_string(),
                "--key-file".into(),
                pki.server_key.display().to_string(),
                "--trusted-ca-file".into(),
                pki.ca.display().to_string(),
                "--client-cert-auth".into(),
            ],
            None => Vec::new(),
        };
        let ttl_args: Vec<String> = match self.options.auth_token_ttl {
            Some(ttl) => vec!["--auth-token-ttl".into(), ttl.to_string()],
            None => Vec::new(),
        };
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
            .args(tls_args)
            .args(ttl_args)
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
            let etcd = Etcd::new(&[&url], self.auth.clone(), &self.client_tls())?
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

/// Asks the member at `client_url` for its status (1 s deadline; plain
/// HTTP only: a TLS cluster has no leader as far as this knows).
pub fn status(client_url: &str) -> Result<Status> {
    let v = post(client_url, "/v3/maintenance/status", "{}", None)?;
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
/// does), with an auth token if given: enough for the gateway's status and
/// auth calls, without a client library.
pub fn post(base: &str, path: &str, body: &str, token: Option<&str>) -> Result<Value> {
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
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
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

/// Certificates for a TLS test cluster, made with the `openssl` CLI (EC
/// P-256, valid two days): a CA, a server certificate it signs (SAN
/// `IP:127.0.0.1`, `DNS:localhost`; serverAuth, and clientAuth because
/// etcd's JSON gateway presents it to the member's own gRPC port), a
/// client certificate it signs (CN `tandem-client`, clientAuth); and for
/// the failure cases a second CA (which signed only a client certificate
/// etcd must refuse) and a key that fits no certificate.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA that signed the server and client certificates (etcd's
    /// `--trusted-ca-file`, the client's `ca-file`).
    pub ca: PathBuf,
    /// The server certificate (`--cert-file`).
    pub server_cert: PathBuf,
    /// Its key (`--key-file`).
    pub server_key: PathBuf,
    /// The client certificate (`cert-file`).
    pub client_cert: PathBuf,
    /// Its key (`key-file`).
    pub client_key: PathBuf,
    /// A CA that signed nothing here: as `ca-file`, the server's
    /// certificate does not chain to it.
    pub other_ca: PathBuf,
    /// A private key of no certificate here.
    pub other_key: PathBuf,
    /// A client certificate signed by the other CA: etcd refuses it.
    pub stranger_cert: PathBuf,
    /// Its key.
    pub stranger_key: PathBuf,
}

/// The `openssl` configuration for the requests and extensions. The server
/// certificate names 127.0.0.1 and 10.0.2.2 (the host as QEMU guests see
/// it), so the HTTPS update server of `qemu-tests/tests/transport.rs` uses
/// it too. The server
/// certificate is also a client certificate (clientAuth): etcd's JSON
/// gateway connects to the member's own gRPC port with `--cert-file`, and
/// with `--client-cert-auth` the member refuses it otherwise ("certificate
/// specifies an incompatible key usage"), so every gateway request fails.
const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,IP:10.0.2.2,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

impl TestPki {
    /// Makes the files in `dir` (which must exist).
    pub fn generate(dir: &Path) -> Result<TestPki> {
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF)?;
        let path = |name: &str| dir.join(name);
        let key = |name: &str| -> Result<PathBuf> {
            let p = path(name);
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &p.display().to_string(),
            ])?;
            Ok(p)
        };
        let ca = |name: &str, cn: &str| -> Result<(PathBuf, PathBuf)> {
            let k = key(&format!("{name}.key"))?;
            let c = path(&format!("{name}.pem"));
            openssl(&[
                "req",
                "-new",
                "-x509",
                "-config",
                &cnf.display().to_string(),
                "-extensions",
                "ca",
                "-key",
                &k.display().to_string(),
                "-subj",
                &format!("/CN={cn}"),
                "-days",
                "2",
                "-out",
                &c.display().to_string(),
            ])?;
            Ok((c, k))
        };
        let (ca_cert, ca_key) = ca("ca", "tandem test CA")?;
        let (other_ca, other_ca_key) = ca("other-ca", "tandem other CA")?;
        let leaf = |signer: (&Path, &Path),
                    name: &str,
                    cn: &str,
                    ext: &str,
                    serial: &str|
         -> Result<(PathBuf, PathBuf)> {
            let k = key(&format!("{name}.key"))?;
            let csr = path(&format!("{name}.csr"));
            let c = path(&format!("{name}.pem"));
            openssl(&[
                "req",
                "-new",
                "-config",
                &cnf.display().to_string(),
                "-key",
                &k.display().to_string(),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &csr.display().to_string(),
            ])?;
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr.display().to_string(),
                "-CA",
                &signer.0.display().to_string(),
                "-CAkey",
                &signer.1.display().to_string(),
                "-set_serial",
                serial,
                "-days",
                "2",
                "-extfile",
                &cnf.display().to_string(),
                "-extensions",
                ext,
                "-out",
                &c.display().to_string(),
            ])?;
            Ok((c, k))
        };
        let ours = (ca_cert.as_path(), ca_key.as_path());
        let (server_cert, server_key) = leaf(ours, "server", "localhost", "server", "2")?;
        let (client_cert, client_key) = leaf(ours, "client", "tandem-client", "client", "3")?;
        let (stranger_cert, stranger_key) = leaf(
            (other_ca.as_path(), other_ca_key.as_path()),
            "stranger",
            "tandem-stranger",
            "client",
            "4",
        )?;
        let other_key = key("other.key")?;
        Ok(TestPki {
            ca: ca_cert,
            server_cert,
            server_key,
            client_cert,
            client_key,
            other_ca,
            other_key,
            stranger_cert,
            stranger_key,
        })
    }

    /// What a client that etcd accepts sets: the CA and the client
    /// certificate with its key.
    pub fn client_tls(&self) -> Tls {
        Tls {
            ca_file: Some(self.ca.clone()),
            cert_file: Some(self.client_cert.clone()),
            key_file: Some(self.client_key.clone()),
        }
    }
}

/// Runs `openssl` with `args`; its error output when it fails.
fn openssl(args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "openssl not installed: run `cargo xtask setup` (Debian package openssl)"
                )
            } else {
                anyhow::anyhow!("cannot run openssl: {e}")
            }
        })?;
    ensure!(
        out.status.success(),
        "openssl {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
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
        // Spin until the process's CPU time has grown by 150 ms: on a
        // loaded host the loop gets less than its wall time, so the bound is
        // on how long that may take, not on how much it gets per second.
        let pid = std::process::id();
        let before = cpu_time(pid).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut x = 0u64;
        let mut used = Duration::ZERO;
        while used < Duration::from_millis(150) && Instant::now() < deadline {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            used = cpu_time(pid).unwrap() - before;
        }
        assert!(
            used >= Duration::from_millis(150),
            "{used:?} after 30 s of spinning"
        );
        assert!(cpu_time(u32::MAX).is_err());
    }
}
