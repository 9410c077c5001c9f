//! An SSH server from Debian's packages, dependencies resolved by apt:
//! `examples/ssh-server` built with a key the test makes, booted twice from
//! the same image. The host's OpenSSH client logs in with the key through a
//! QEMU port forward and runs commands; password logins are refused; the
//! two nodes present different host keys (made on each node at first
//! boot); users, factory /etc and tmpfiles did their part; sshd runs in its
//! own cgroup, and when its main process dies its sessions die with it.

use std::path::Path;
use std::process::Command;
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
    let mut nodes = Vec::new();
    for (name, port) in [("ssh-1", p1), ("ssh-2", p2)] {
        let mut cfg = VmConfig::new(name);
        cfg.forwards.push((port, 22));
        let d = Disk::overlay(&disk)?;
        let vm = Vm::start(&cfg, &d)?;
        nodes.push((vm, d, port));
    }
    for (vm, _, _) in &mut nodes {
        vm.wait_for("tandem: system ready", BOOT)?;
    }

    // Logged in with the key, as core, in core's home, with a real shell.
    let (vm, _, port) = &mut nodes[0];
    let port = *port;
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

    // Two nodes of one image, two host keys.
    let f1 = host_key_fingerprint(p1)?;
    login(&key, p2, "true")?;
    let f2 = host_key_fingerprint(p2)?;
    assert!(
        f1.starts_with("SHA256:") && f2.starts_with("SHA256:"),
        "{f1} {f2}"
    );
    assert_ne!(f1, f2, "two nodes booted from one image share a host key");
    eprintln!("host keys: ssh-1 {f1}, ssh-2 {f2}");

    for (vm, _, _) in &mut nodes {
        vm.send("poweroff\n")?;
        assert!(vm.wait_exit(Duration::from_secs(60))?.success());
    }
    Ok(())
}
