//! The fleet dashboard from the outside: `tandem dashboard` started on a
//! free loopback port, its pages fetched over HTTP, loaded in a real
//! headless Chromium (Debian's `chromium-headless-shell`: the DOM after the
//! page's script ran, and screenshots), and its `/metrics` parsed by the
//! official Prometheus client's text parser (Debian's
//! `python3-prometheus-client`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::etcd::Etcd;
use agent::fleet::{NODES_PREFIX, NodeRecord, Progress};
use anyhow::{Context, Result, bail, ensure};
use tandem_contract::{AgentState, BootHealthKind, Slot, UpdateStateKind, Version};

/// Debian's headless Chromium.
pub const CHROMIUM: &str = "chromium-headless-shell";
/// Debian's Python, which has `python3-prometheus-client` (not a pyenv shim).
pub const PYTHON: &str = "/usr/bin/python3";
/// How long one Chromium run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `tandem dashboard`, stopped when dropped.
#[derive(Debug)]
pub struct Dashboard {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Dashboard {
    /// Starts `tandem dashboard --etcd <each> [--repo R] [--trust K] <extra>`.
    pub fn start(
        tandem: &Path,
        etcd: &[String],
        repo: Option<&Path>,
        trust: Option<&Path>,
        extra: &[&str],
    ) -> Result<Dashboard> {
        let mut cmd = Command::new(tandem);
        cmd.arg("dashboard").args(["--listen", "127.0.0.1:0"]);
        for e in etcd {
            cmd.args(["--etcd", e]);
        }
        if let Some(r) = repo {
            cmd.arg("--repo").arg(r);
        }
        if let Some(k) = trust {
            cmd.arg("--trust").arg(k);
        }
        let mut child = cmd
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start tandem dashboard")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .split(" on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            bail!("unexpected first line from tandem dashboard: {line:?}");
        };
        Ok(Dashboard { child, addr })
    }

    /// The URL of `path` (`/`, `/metrics`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GETs `path`: the status, the headers (lower-case names) and the body.
    pub fn get(&self, path: &str) -> Result<(u16, BTreeMap<String, String>, String)> {
        get(self.addr, path)
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET (`Connection: close`), read to the end.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, BTreeMap<String, String>, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).context("the response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of the response head")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

/// Runs Chromium on `url` with `args`; returns its standard output.
fn chromium(url: &str, args: &[String]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {CHROMIUM} (Debian package chromium-headless-shell; `cargo xtask setup` installs it)"))?;
    let mut out = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{CHROMIUM} did not finish {url} within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        bail!("{CHROMIUM} failed on {url} ({status}): {err}");
    }
    Ok(stdout)
}

/// The page's DOM after its scripts ran for `virtual_ms` of (virtual) time.
pub fn dom(url: &str, virtual_ms: u32) -> Result<String> {
    chromium(
        url,
        &[
            "--dump-dom".into(),
            format!("--virtual-time-budget={virtual_ms}"),
        ],
    )
}

/// A PNG screenshot of `url` at `width`×`height` CSS pixels, written to `png`.
pub fn screenshot(url: &str, png: &Path, width: u32, height: u32) -> Result<()> {
    let _ = std::fs::remove_file(png);
    chromium(
        url,
        &[
            format!("--screenshot={}", png.display()),
            format!("--window-size={width},{height}"),
            "--virtual-time-budget=1000".into(),
        ],
    )?;
    let bytes =
        std::fs::read(png).with_context(|| format!("no screenshot at {}", png.display()))?;
    ensure!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 2000,
        "{} is not a PNG of a page ({} bytes)",
        png.display(),
        bytes.len()
    );
    Ok(())
}

/// One sample of a metric.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// The Prometheus client's parser: `text` as its families' samples (and
/// each family's type). Fails on anything the parser refuses.
pub fn parse_metrics(text: &str) -> Result<(Vec<Sample>, BTreeMap<String, String>)> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, types = [], {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    types[fam.name] = fam.type
    for s in fam.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
json.dump({"samples": samples, "types": types}, sys.stdout)
"#;
    let mut child = Command::new(PYTHON)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start /usr/bin/python3 (python3-prometheus-client)")?;
    child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[derive(serde::Deserialize)]
    struct Parsed {
        samples: Vec<Sample>,
        types: BTreeMap<String, String>,
    }
    let p: Parsed = serde_json::from_slice(&out.stdout)?;
    Ok((p.samples, p.types))
}

/// The value of the one sample of `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Result<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one.value),
        [] => bail!("no sample {name}{labels:?}"),
        many => bail!("{} samples {name}{labels:?}: {many:?}", many.len()),
    }
}

/// Where screenshots are kept (beside the consoles).
pub fn screenshot_path(name: &str) -> PathBuf {
    crate::vm::log_dir().join(format!("{name}.png"))
}

/// A large fleet for the 1,000-node test and `cargo xtask bench dashboard`:
/// `n` records of image `image`, channel `stable`, in the mix of a rollout
/// of 1.1.0 under way (most confirmed on it, some waiting for their turn,
/// downloading, installed and waiting for the lock). Returns them with how
/// many run 1.0.0 and 1.1.0.
pub fn large_fleet(n: usize, image: &str, now: u64) -> Result<(Vec<NodeRecord>, [u32; 2])> {
    let old: Version = "1.0.0".parse()?;
    let new: Version = "1.1.0".parse()?;
    let mut on = [0u32; 2];
    let fleet = (0..n)
        .map(|i| {
            let mut r = NodeRecord {
                machine_id: format!("{i:032x}"),
                hostname: format!("node-{i:04}"),
                group: "default".into(),
                version: Some(new.clone()),
                slot: Some(Slot::B),
                update_state: Some(UpdateStateKind::Idle),
                agent_state: Some(AgentState::Idle),
                boot: Some(BootHealthKind::Confirmed),
                last_seen: now,
                image: Some(image.into()),
                channel: Some("stable".into()),
                update_since: Some(now - 600),
                ..NodeRecord::default()
            };
            match i % 7 {
                0 => {
                    r.version = Some(old.clone());
                    r.update_state = Some(UpdateStateKind::UpdateAvailable);
                    r.available = Some(new.clone());
                    r.eligible_at = Some(now + 600);
                }
                1 if i % 2 == 0 => {
                    r.version = Some(old.clone());
                    r.update_state = Some(UpdateStateKind::Downloading);
                    r.progress = Some(Progress::new(
                        new.clone(),
                        UpdateStateKind::Downloading,
                        i as u64 % 100,
                        100,
                    ));
                }
                1 => {
                    r.version = Some(old.clone());
                    r.update_state = Some(UpdateStateKind::UpdatedNeedReboot);
                    r.pending_version = Some(new.clone());
                    r.agent_state = Some(AgentState::WaitingForLock);
                }
                _ => {}
            }
            on[usize::from(r.version.as_ref() == Some(&new))] += 1;
            r
        })
        .collect();
    Ok((fleet, on))
}

/// Writes records as they are (no lease: they stay until deleted).
pub fn put_records(etcd: &Etcd, records: &[NodeRecord]) -> Result<()> {
    for r in records {
        etcd.put(
            &format!("{NODES_PREFIX}{}", r.machine_id),
            &serde_json::to_vec(r)?,
            None,
        )?;
    }
    Ok(())
}
