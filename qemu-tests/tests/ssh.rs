//! An SSH server from Debian's packages, dependencies resolved by apt:
//! `examples/ssh-server` built with a key the test makes, booted twice from
//! the same image. The host's OpenSSH client logs in with the key through a
//! QEMU port forward and runs commands; password logins are refused; the
//! two nodes present different host keys (made on each node at first
//! boot); users, factory /etc and tmpfiles did their part; sshd runs in its
//! own cgroup, and when its main process dies its sessions die with it.
//!
//! The second node is what a user gets from `tandem export --format qcow2`
//! and `tandem run disk.qcow2 --config user-data`: the compressed qcow2
//! boots, the cloud-config (a second key) reaches the node as a NoCloud
//! volume, and the SSH command `tandem run` prints logs in with that key.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qemu_tests::ssh::{KeyPair, login};
use qemu_tests::vm::free_port;
use qemu_tests::{Disk, Env, Vm, VmConfig, examples};

const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(30);

fn host_key_fingerprint(port: u16) -> Result<String> {
    let scan = Command::new("ssh-keyscan")
        .args(["-p", &port.to_string(), "-t", "ed25519", "127.0.0.1"])
        .output()?;
    let keys = String::from_utf8_lossy(&scan.stdout).into_owned();
    let key = keys
        .lines()
        .find(|l| l.contains("ssh-ed25519"))
        .with_context(|| format!("no ed25519 host key on port {port}: {keys}"))?
        .to_string();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("host.pub");
    std::fs::write(&file, key)?;
    let fp = Command::new("ssh-keygen").arg("-lf").arg(&file).output()?;
    Ok(String::from_utf8_lossy(&fp.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

/// A running `tandem run`, ended (SIGTERM, as a user's Ctrl-C or kill
/// would) when dropped, so a failing test leaves no machine behind.
struct TandemRun(Child);

impl TandemRun {
    /// Ends it and waits.
    fn end(&mut self) -> Result<()> {
        qemu_tests::disk::run(Command::new("kill").arg(self.0.id().to_string()))?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for TandemRun {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.end();
        }
    }
}

/// `tandem run` of `image` with `config`: the running child (console on
/// its stdout, into `console`) and the SSH command it printed.
fn tandem_run(
    env: &Env,
    image: &Path,
    config: &Path,
    port: u16,
    console: &Path,
) -> Result<(TandemRun, String)> {
    let mut child = Command::new(&env.tandem)
        .arg("run")
        .arg(image)
        .arg("--config")
        .arg(config)
        .args(["--ssh-port", &port.to_string(), "--accel", "tcg"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(console)?)
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("no stderr")?;
    let child = TandemRun(child);
    let mut lines = BufReader::new(stderr).lines();
    let ssh = loop {
        let line = lines
            .next()
            .context("tandem run ended without printing an SSH command")??;
        eprintln!("{line}");
        if let Some(cmd) = line.split("log in (once sshd runs): ").nth(1) {
            break cmd.to_string();
        }
    };
    // The rest of its messages still reach the test's output.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| eprintln!("{l}")));
    Ok((child, ssh))
}

/// Runs the command `tandem run` printed, with `key`, until sshd answers.
fn printed_ssh(printed: &str, key: &Path, command: &str) -> Result<String> {
    let rest = printed
        .strip_prefix("ssh ")
        .with_context(|| format!("not an ssh command: {printed}"))?;
    let deadline = Instant::now() + BOOT;
    loop {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ssh -i {} -o BatchMode=yes -o ConnectTimeout=20 -o LogLevel=ERROR {rest} '{command}'",
                key.display()
            ))
            .output()?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{printed} {command}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn ssh_server_from_packages_logs_in_with_a_key_and_nodes_have_their_own_host_keys() -> Result<()> {
    let env = Env::get()?;
    let pair = KeyPair::new("tandem-test")?;
    let key = pair.private.clone();
    let public = format!("{}\n", pair.public).into_bytes();
    let out = examples::build(
        &env,
        "ssh-server",
        "test",
        &[("files/authorized_keys", &public)],
    )?;

    // Every package that went in is recorded, with its dependencies.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("build.json"))?)?;
    let names: Vec<&str> = manifest["packages"]
        .as_array()
        .context("build.json has no packages")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for needed in [
        "openssh-server",
        "openssh-client",
        "libc6",
        "libssl3",
        "zlib1g",
    ] {
        assert!(
            names.contains(&needed),
            "{needed} missing from build.json: {names:?}"
        );
    }

    let disk = out.join("disk.raw");
    let (p1, p2) = (free_port()?, free_port()?);
    let mut cfg = VmConfig::new("ssh-1");
    cfg.forwards.push((p1, 22));
    let overlay = Disk::overlay(&disk)?;
    let mut vm = Vm::start(&cfg, &overlay)?;

    // The second node: the build exported to a compressed qcow2 and booted
    // by `tandem run` with a cloud-config holding a second key.
    let work = tempfile::tempdir()?;
    qemu_tests::disk::run(
        Command::new(&env.tandem)
            .arg("export")
            .arg(&out)
            .args(["--format", "qcow2", "--out"])
            .arg(work.path()),
    )?;
    let second = KeyPair::new("tandem-run")?;
    let config = work.path().join("user-data");
    std::fs::write(
        &config,
        format!(
            "#cloud-config\nssh_authorized_keys:\n  - {}\n",
            second.public
        ),
    )?;
    let console = qemu_tests::vm::log_dir().join("ssh-2-tandem-run.log");
    let (mut run2, printed) =
        tandem_run(&env, &work.path().join("disk.qcow2"), &config, p2, &console)?;
    vm.wait_for("tandem: system ready", BOOT)?;

    // Logged in with the key, as core, in core's home, with a real shell.
    let vm = &mut vm;
    let port = p1;
    let who = login(&key, port, "id -un; pwd; /usr/bin/ssh -V 2>&1")?;
    let mut lines = who.lines();
    assert_eq!(lines.next(), Some("core"), "{who}");
    assert_eq!(lines.next(), Some("/home/core"), "{who}");
    assert!(who.contains("OpenSSH_9"), "{who}");

    // No password logins, whatever the client offers.
    let refused = qemu_tests::ssh::run(
        Path::new("/dev/null"),
        port,
        &[
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ],
        "true",
    )?;
    assert!(!refused.status.success(), "a login without a key succeeded");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("Permission denied (publickey)"), "{why}");

    // What the maintainer scripts would have done: users, factory /etc,
    // tmpfiles; the host key made on the node, never in the image.
    let passwd = vm.run(
        "grep -E '^(core|sshd):' /etc/passwd; grep '^core:' /etc/shadow | cut -d: -f2",
        CMD,
    )?;
    assert!(passwd.contains("core:x:"), "{passwd}");
    assert!(passwd.contains("sshd:x:"), "{passwd}");
    assert!(
        passwd.lines().any(|l| l.trim() == "*"),
        "core's password must be `*`: {passwd}"
    );
    vm.run("test -f /etc/ssh/sshd_config && test -d /run/sshd && test -s /etc/ssh/ssh_host_ed25519_key", CMD)?;
    let (in_usr, _) = vm.run_status("ls /usr/share/factory/etc/ssh/ | grep ssh_host_", CMD)?;
    assert_ne!(in_usr, 0, "a host key is in the image");

    // sshd in its own cgroup; the service's status has its figures.
    let status: serde_json::Value = serde_json::from_str(&vm.run("tandemctl status --json", CMD)?)?;
    assert_eq!(status["warnings"], serde_json::json!([]), "{status}");
    let services = status["services"].as_array().context("no services")?;
    let sshd = services
        .iter()
        .find(|s| s["name"] == "sshd")
        .with_context(|| format!("no sshd service: {status}"))?;
    assert_eq!(sshd["state"], "running", "{sshd}");
    let keygen = services
        .iter()
        .find(|s| s["name"] == "sshd-keygen")
        .context("no sshd-keygen")?;
    assert_eq!(keygen["state"], "exited", "{keygen}");
    let cgroup = vm.run(
        "cat /proc/$(cat /sys/fs/cgroup/system/sshd.service/cgroup.procs | head -1)/cgroup",
        CMD,
    )?;
    assert!(cgroup.contains("sshd"), "{cgroup}");
    assert!(sshd["usage"]["memory_bytes"].as_u64() > Some(0), "{sshd}");
    assert!(sshd["usage"]["tasks"].as_u64() >= Some(1), "{sshd}");

    // A session's processes live in sshd's cgroup: when sshd's main process
    // dies, they are ended before it is restarted.
    login(&key, port, "setsid sleep 7777 </dev/null >/dev/null 2>&1 &")?;
    vm.run("pgrep -f 'sleep 7777'", CMD)?;
    vm.run(
        "kill -KILL $(cat /sys/fs/cgroup/system/sshd.service/cgroup.procs | head -1)",
        CMD,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while vm.run_status("pgrep -f 'sleep 7777'", CMD)?.0 == 0 {
        assert!(
            Instant::now() < deadline,
            "the session's sleep outlived sshd"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // And sshd is back.
    let again = login(&key, port, "id -un")?;
    assert_eq!(again.trim(), "core");

    // `tandem run`'s printed command logs in with the config's key.
    let who = printed_ssh(&printed, &second.private, "id -un; cat /etc/os-release")?;
    assert!(who.starts_with("core\n"), "{who}");
    assert!(who.contains("VERSION_ID=1.0.0"), "{who}");
    let booted = std::fs::read_to_string(&console)?;
    assert!(
        booted.contains("tandem: system ready (slot A, version 1.0.0)"),
        "tandem run's console: {booted}"
    );

    // Two nodes of one image, two host keys.
    let f1 = host_key_fingerprint(p1)?;
    let f2 = host_key_fingerprint(p2)?;
    assert!(
        f1.starts_with("SHA256:") && f2.starts_with("SHA256:"),
        "{f1} {f2}"
    );
    assert_ne!(f1, f2, "two nodes booted from one image share a host key");
    eprintln!("host keys: ssh-1 {f1}, ssh-2 {f2}");

    vm.send("poweroff\n")?;
    assert!(vm.wait_exit(Duration::from_secs(60))?.success());
    // Ending `tandem run` ends its machine and removes the overlay.
    let pid = run2.0.id();
    run2.end()?;
    let overlay_dir = std::env::temp_dir().join(format!("tandem-run-{pid}"));
    assert!(!overlay_dir.exists(), "{} is left", overlay_dir.display());
    Ok(())
}
