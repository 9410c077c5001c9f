//! Reaching the update server where fleets really live (issue 18): HTTPS
//! with a CA of the site's, redirects, more than one server per node, and
//! a proxy as the only way out, with real servers on the host: Debian's
//! nginx (TLS, a redirect), Debian's tinyproxy (basic authentication) and
//! `tandem serve` on 127.0.0.2, an address the guest cannot reach itself.
//!
//! One node, configured through its administrator's `update.toml` at each
//! step:
//! 1. `https://…/old/` (nginx redirects to `/`), no CA of the test's: the
//!    certificate is refused, and the status says why;
//! 2. with `ca-file` (written by the node's user-data): 1.0.0 → 1.1.0;
//! 3. the repository at 127.0.0.2 only: unreachable directly;
//! 4. through the proxy with a wrong password: the proxy's refusal, named;
//! 5. a dead server first, the real one second, through the proxy with the
//!    right password: 1.1.0 → 1.2.0, every byte through the proxy.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use qemu_tests::etcd::TestPki;
use qemu_tests::fixtures::Build;
use qemu_tests::lab::{Lab, NodeSetup};
use qemu_tests::server::Server;
use qemu_tests::vm::{Vm, VmConfig, free_port, log_dir};
use qemu_tests::web::{HttpsServer, Proxy};

const CHECK: Duration = Duration::from_secs(120);
const UPDATE: Duration = Duration::from_secs(600);
const CA_ON_NODE: &str = "/etc/tandem/test-ca.pem";

/// Replaces the administrator's update.toml with `lines` (written to a
/// temporary file first: the daemon never reads half a file).
fn admin_config(vm: &mut Vm, lines: &[String]) -> Result<()> {
    vm.run(
        "mkdir -p /etc/tandem; : > /tmp/u.toml",
        Duration::from_secs(30),
    )?;
    for l in lines {
        vm.run(
            &format!("echo '{l}' >> /tmp/u.toml"),
            Duration::from_secs(30),
        )?;
    }
    vm.run(
        "mv /tmp/u.toml /etc/tandem/update.toml",
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// Waits until the updater's status, as JSON text, contains every one of
/// `parts` (an error it reports, the server it uses).
fn wait_status(vm: &mut Vm, what: &str, parts: &[&str]) -> Result<serde_json::Value> {
    vm.wait_update(what, CHECK, |s| {
        let text = s.to_string();
        parts.iter().all(|p| text.contains(p))
    })
}

#[test]
fn updates_over_https_and_redirects_then_only_through_an_authenticating_proxy() -> Result<()> {
    let lab = Lab::new("transport")?;
    let pki_dir = tempfile::tempdir()?;
    let pki = TestPki::generate(pki_dir.path())?;
    let https = HttpsServer::start(&lab.repo, &pki.server_cert, &pki.server_key)?;
    let inner = Server::start_on(
        &lab.env.tandem,
        &lab.repo,
        &log_dir().join("transport.inner.requests.jsonl"),
        "127.0.0.2:0",
    )?;
    let dead = free_port()?;
    let proxy = Proxy::start("tandem", "s3cret", &[inner.addr.port(), dead])?;

    // The node gets the test's CA from its user-data (on the OEM partition).
    let disk = lab.disk(&NodeSetup::new(Build::V1))?;
    let ca = std::fs::read_to_string(&pki.ca)?;
    let indented: String = ca.lines().map(|l| format!("      {l}\n")).collect();
    disk.put_oem_file(
        "user-data",
        format!(
            "#cloud-config\nwrite_files:\n  - path: {CA_ON_NODE}\n    permissions: \"0644\"\n    content: |\n{indented}"
        )
        .as_bytes(),
    )?;
    let mut vm = lab.boot("transport", &disk)?;
    vm.run(&format!("test -s {CA_ON_NODE}"), Duration::from_secs(30))?;

    // 1. HTTPS through a redirect, the CA unknown: refused, and said so.
    let https_url = format!("https://10.0.2.2:{}/old/", https.port);
    admin_config(&mut vm, &[format!("server = \"{https_url}\"")])?;
    wait_status(&mut vm, "the HTTPS server in use", &[&https_url])?;
    lab.publish("stable", Build::V2, &[])?;
    let s = wait_status(
        &mut vm,
        "the untrusted certificate refused",
        &["TLS with the server failed", "ca-file"],
    )?;
    eprintln!("untrusted: {}", s["last_result"]);

    // 2. With the CA: the update comes over HTTPS, through the redirect.
    admin_config(
        &mut vm,
        &[
            format!("server = \"{https_url}\""),
            format!("ca-file = \"{CA_ON_NODE}\""),
        ],
    )?;
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", UPDATE)?;
    let log = https.requests();
    ensure!(
        log.iter().any(
            |l| l.contains("GET /old/tandem-minimal/channels/stable.json") && l.contains("\" 302 ")
        ),
        "nginx did not redirect the pointer: {log:#?}"
    );
    ensure!(
        log.iter()
            .any(|l| (l.contains("usr.payload") || l.contains("usr.img")) && l.contains("\" 206 ")),
        "the payload did not come over HTTPS: {log:#?}"
    );

    // 3. A repository only the host can reach: not from the node directly.
    let inner_url = format!("http://127.0.0.2:{}/", inner.addr.port());
    lab.publish("stable", Build::V3, &[])?;
    admin_config(
        &mut vm,
        &[
            format!("server = \"{inner_url}\""),
            "proxy = \"none\"".into(),
        ],
    )?;
    let s = wait_status(&mut vm, "no direct route", &[&inner_url, "refused"])?;
    eprintln!("direct: {}", s["last_result"]);

    // 4. Through the proxy with a wrong password: the proxy is named.
    let proxy_at = |password: &str| format!("http://tandem:{password}@10.0.2.2:{}", proxy.port);
    admin_config(
        &mut vm,
        &[
            format!("server = \"{inner_url}\""),
            format!("proxy = \"{}\"", proxy_at("wrong")),
        ],
    )?;
    let s = wait_status(
        &mut vm,
        "the proxy's refusal",
        &["the proxy http://tandem:***@", "wants a user and password"],
    )?;
    let text = s.to_string();
    ensure!(!text.contains("wrong"), "the password is shown: {text}");
    eprintln!("wrong password: {}", s["last_result"]);

    // 5. A dead mirror first, the real server second, the right password.
    admin_config(
        &mut vm,
        &[
            "server = [".into(),
            format!("\"http://127.0.0.2:{dead}/\","),
            format!("\"{inner_url}\"]"),
            format!("proxy = \"{}\"", proxy_at("s3cret")),
        ],
    )?;
    vm.wait_for("tandem: system ready (slot A, version 1.2.0)", UPDATE)?;
    let served = inner.requests()?;
    ensure!(
        served.iter().any(|r| is_usr(&r.path)),
        "the payload did not come from the inner server: {served:?}"
    );
    let log = proxy.log();
    ensure!(
        log.contains(&format!("127.0.0.2:{}", inner.addr.port())),
        "the proxy did not carry the requests: {log}"
    );
    let s = vm.update_status()?;
    ensure!(s["running_version"] == "1.2.0", "{s:#}");
    Ok(())
}

/// `tandem release mirror` copies the lab's channel over HTTP into a
/// directory; `tandem serve` on it is the only server a node follows,
/// and the node updates from it. A second copy fetches nothing but the
/// pointer. A payload tampered with at the origin is refused, and the
/// mirror keeps serving what it served.
#[test]
fn a_mirror_made_by_tandem_release_mirror_serves_a_node_and_refuses_tampering() -> Result<()> {
    let lab = Lab::new("mirror")?;
    lab.publish("stable", Build::V2, &[])?;
    let trust = lab.fixtures.dir.join("keys/test-release.pub");
    let dir = tempfile::tempdir()?;
    let mirror = dir.path().join("mirror");
    let origin = format!("http://{}/", lab.server.addr);
    let copy = |what: &str| -> Result<(bool, String)> {
        let out = std::process::Command::new(&lab.env.tandem)
            .args(["release", "mirror", &origin])
            .arg(&mirror)
            .args(["--channel", "tandem-minimal/stable", "--json", "--trust"])
            .arg(&trust)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{what}: {text}");
        Ok((out.status.success(), text))
    };
    let (ok, first) = copy("first copy")?;
    ensure!(ok, "the first copy failed: {first}");
    let first: serde_json::Value = serde_json::from_str(&first)?;
    ensure!(
        first[0]["version"] == "1.1.0"
            && first[0]["fetched_bytes"].as_u64() > Some(lab.payload_size(Build::V2)?),
        "{first:#}"
    );
    let (ok, again) = copy("second copy")?;
    ensure!(ok, "{again}");
    let again: serde_json::Value = serde_json::from_str(&again)?;
    ensure!(
        again[0]["requests"] == 1,
        "a second copy fetched more than the pointer: {again:#}"
    );

    // The node follows the mirror only (its OEM channel does not exist).
    let served = Server::start(
        &lab.env.tandem,
        &mirror,
        &log_dir().join("mirror.served.requests.jsonl"),
    )?;
    let mut vm = lab.boot(
        "mirror",
        &lab.disk(&NodeSetup {
            channel: Some("nowhere"),
            ..NodeSetup::new(Build::V1)
        })?,
    )?;
    admin_config(
        &mut vm,
        &[
            format!("server = \"http://10.0.2.2:{}/\"", served.addr.port()),
            "channel = \"stable\"".into(),
        ],
    )?;
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", UPDATE)?;
    let requests = served.requests()?;
    ensure!(
        requests.iter().any(|r| is_usr(&r.path) && r.status == 206),
        "the payload did not come from the mirror: {requests:?}"
    );

    // 1.2.0 with one byte changed at the origin, in a chunk that 1.1.0
    // does not have (the mirror copies the chunks it has locally).
    lab.publish("stable", Build::V3, &[])?;
    let manifest = |v: &str| -> Result<serde_json::Value> {
        Ok(serde_json::from_slice(&std::fs::read(
            lab.repo.join(format!("tandem-minimal/{v}/manifest.json")),
        )?)?)
    };
    let (old, new) = (manifest("1.1.0")?, manifest("1.2.0")?);
    let chunks = |m: &serde_json::Value| m["usr"]["chunks"].as_array().cloned().unwrap_or_default();
    let known: Vec<serde_json::Value> = chunks(&old).iter().map(|c| c["sha256"].clone()).collect();
    let changed = chunks(&new)
        .into_iter()
        .find(|c| !known.contains(&c["sha256"]))
        .context("1.2.0 has no chunk of its own")?;
    let at = changed["payload_offset"].as_u64().unwrap_or(0)
        + changed["compressed_size"].as_u64().unwrap_or(0) / 2;
    let payload = lab.repo.join("tandem-minimal/1.2.0/usr.payload");
    let mut bytes = std::fs::read(&payload)?;
    bytes[at as usize] ^= 0x55;
    std::fs::write(&payload, bytes)?;
    let (ok, text) = copy("tampered")?;
    ensure!(!ok, "a tampered payload was mirrored: {text}");
    ensure!(
        text.contains("refusing to mirror tandem-minimal/stable")
            && text.contains("the payload is damaged")
            && text.contains("the mirror still serves what it served before"),
        "{text}"
    );
    let pointer = std::fs::read_to_string(mirror.join("tandem-minimal/channels/stable.json"))?;
    ensure!(
        pointer.contains("\\\"version\\\":\\\"1.1.0\\\""),
        "the mirror's pointer changed: {pointer}"
    );
    Ok(())
}

/// `tandem release export` writes the lab's channel onto a FAT volume; a
/// node whose network leads nowhere (QEMU's `restrict=on`: no host, no
/// outside) gets it as a second disk and updates from it with
/// `tandemctl update apply --from /dev/vdb`, checked as any update.
#[test]
fn a_node_without_a_network_updates_from_a_stick_made_by_tandem_release_export() -> Result<()> {
    let lab = Lab::new("offline")?;
    lab.publish("stable", Build::V2, &[])?;
    let trust = lab.fixtures.dir.join("keys/test-release.pub");
    let dir = tempfile::tempdir()?;
    let stick = dir.path().join("update.img");
    let out = std::process::Command::new(&lab.env.tandem)
        .args(["release", "export"])
        .arg(&lab.repo)
        .args(["--channel", "tandem-minimal/stable", "--trust"])
        .arg(&trust)
        .arg("-o")
        .arg(&stick)
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!("{text}");
    ensure!(out.status.success(), "tandem release export failed: {text}");
    ensure!(
        text.contains("tandem-minimal/stable 1.1.0") && text.contains("FAT volume"),
        "{text}"
    );

    let disk = lab.disk(&NodeSetup::new(Build::V1))?;
    let mut cfg = VmConfig::new("offline");
    cfg.net_options.push("restrict=on".into());
    cfg.extra.extend([
        "-drive".into(),
        format!("file={},format=raw,if=virtio,readonly=on", stick.display()),
    ]);
    let mut vm = lab.boot_with(&cfg, &disk)?;
    // The lab's server is out of reach.
    let (code, out) = vm.run_status(
        &format!(
            "wget -q -T 5 -O /dev/null http://10.0.2.2:{}/",
            lab.server.addr.port()
        ),
        Duration::from_secs(60),
    )?;
    ensure!(code != 0, "the node reaches the host: {out}");
    let out = vm.run(
        "tandemctl update apply --from /dev/vdb --no-wait",
        Duration::from_secs(120),
    )?;
    eprintln!("apply --from: {out}");
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", UPDATE)?;
    let s = vm.update_status()?;
    ensure!(s["running_version"] == "1.1.0", "{s:#}");
    Ok(())
}

/// Whether `path` is a version's /usr image: its payload or, for block
/// fetches, its uncompressed image.
fn is_usr(path: &str) -> bool {
    path.ends_with("usr.payload") || path.ends_with("usr.img")
}
