//! The host's OpenSSH client against a node: a key pair made for the test,
//! a command run as `core` through a QEMU port forward, and a login that
//! waits for sshd to answer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// An ed25519 key pair in a directory of its own (removed when dropped).
#[derive(Debug)]
pub struct KeyPair {
    _dir: tempfile::TempDir,
    /// The private key's file.
    pub private: PathBuf,
    /// The public key's line (`ssh-ed25519 AAAA… comment`).
    pub public: String,
}

impl KeyPair {
    /// Makes a key pair with `ssh-keygen`, without a passphrase.
    pub fn new(comment: &str) -> Result<KeyPair> {
        let dir = tempfile::tempdir()?;
        let private = dir.path().join("id_ed25519");
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&private)
            .status()
            .context("cannot run ssh-keygen (package openssh-client)")?;
        if !made.success() {
            bail!("ssh-keygen failed: {made}");
        }
        let public = std::fs::read_to_string(dir.path().join("id_ed25519.pub"))?
            .trim()
            .to_string();
        Ok(KeyPair {
            _dir: dir,
            private,
            public,
        })
    }
}

/// Runs `command` as `core` on 127.0.0.1:`port` with `key` (no host key
/// checks, no prompts), with `extra` client options.
pub fn run(key: &Path, port: u16, extra: &[&str], command: &str) -> Result<Output> {
    Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args(["-p", &port.to_string()])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
        ])
        .args(extra)
        .arg("core@127.0.0.1")
        .arg(command)
        .output()
        .context("cannot run ssh (package openssh-client)")
}

/// Logs in as soon as sshd answers (its host key is made after `system
/// ready`) and runs `command`; its output.
pub fn login(key: &Path, port: u16, command: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = run(key, port, &[], command)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            bail!(
                "ssh as core to port {port} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
