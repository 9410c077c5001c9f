//! The container host (`examples/container-host`): Podman from Debian's
//! packages pulls an image from a real registry on the host (Debian's
//! `docker-registry`; the test builds the image from a tarball and pushes
//! it, there is no internet), runs it as a service through `/usr/bin/docker
//! run`, and its HTTP port answers from the host. Stopping the service
//! leaves no process of it. After an A/B update of the OS (the registry
//! gone by then) the same container comes back with its data.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qemu_tests::disk::{output, run};
use qemu_tests::examples::{self, examples_dir};
use qemu_tests::fixtures::Fixtures;
use qemu_tests::registry::{OciImage, Registry};
use qemu_tests::server::Server;
use qemu_tests::{Disk, Env, Vm, VmConfig};

const BOOT: Duration = Duration::from_secs(240);
const CMD: Duration = Duration::from_secs(60);

/// The workload: busybox's httpd serving /data, which records each start.
fn web_image() -> Result<OciImage> {
    let dir = tempfile::tempdir()?;
    run(Command::new("apt-get").current_dir(dir.path()).args([
        "download",
        "-q",
        "busybox-static",
    ]))?;
    let deb = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download busybox-static gave no .deb")?;
    let unpacked = dir.path().join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("data"))?;
    std::fs::copy(unpacked.join("bin/busybox"), rootfs.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh"))?;
    OciImage::from_dir(
        &rootfs,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            // PID 1 of the container: without a handler, SIGTERM (the
            // service's stop) would be ignored until the stop timeout.
            "trap 'exit 0' TERM; /bin/busybox date +%s >> /data/starts; /bin/busybox httpd -f -p 8080 -h /data & wait",
        ],
    )
}

fn http_get(port: u16, path: &str) -> Option<String> {
    output(
        Command::new("curl")
            .args(["-sf", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}{path}")),
    )
    .ok()
}

fn wait_http(port: u16, path: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(body) = http_get(port, path) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("http://127.0.0.1:{port}{path} did not answer within {timeout:?}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn service<'a>(status: &'a serde_json::Value, name: &str) -> Result<&'a serde_json::Value> {
    status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .with_context(|| format!("no service {name}: {status}"))
}

fn status(vm: &mut Vm) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &vm.run("tandemctl status --json", CMD)?,
    )?)
}

#[test]
fn container_host_runs_a_pulled_container_and_keeps_it_across_an_update() -> Result<()> {
    let env = Env::get()?;
    let fixtures = Fixtures::get(&env)?;
    let registry = Registry::start()?;
    registry.push("web", "1", &web_image()?)?;

    // The example as a user would deploy it: the service names the test's
    // registry (plain HTTP), the image trusts the test's release key.
    let example = examples_dir().join("container-host");
    let definition = std::fs::read_to_string(example.join("image.toml"))?;
    let web = std::fs::read_to_string(example.join("files/services/web.toml"))?.replace(
        "\"registry.example.com/web:1\"",
        &format!(
            "\"--tls-verify=false\", \"10.0.2.2:{}/web:1\"",
            registry.port
        ),
    );
    let key = std::fs::read(fixtures.key.with_extension("pub"))?;
    let build = |version: &str| -> Result<std::path::PathBuf> {
        let def = definition.replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
            + "\n[update]\ntrusted-keys = [\"keys/test-release.pub\"]\n";
        examples::build(
            &env,
            "container-host",
            version,
            &[
                ("image.toml", def.as_bytes()),
                ("files/services/web.toml", web.as_bytes()),
                ("keys/test-release.pub", &key),
            ],
        )
    };
    let v1 = build("1.0.0")?;
    let v2 = build("1.1.0")?;

    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo)?;
    let server = Server::start(
        &env.tandem,
        &repo,
        &qemu_tests::vm::log_dir().join("containers.requests.jsonl"),
    )?;
    let disk = Disk::copy(&v1.join("disk.raw"))?;
    disk.put_oem_file(
        "update.toml",
        format!(
            "server = \"{}\"\ncheck-interval = \"5s\"\nreboot-strategy = \"reboot\"\n",
            server.guest_url()
        )
        .as_bytes(),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut cfg = VmConfig::new("containers");
    cfg.memory_mib = 2048;
    cfg.forwards.push((port, 8080));
    let mut vm = Vm::start(&cfg, &disk)?;
    let ready = vm.wait_for("tandem: system ready", BOOT)?;

    // Pulled, started, serving.
    let starts = match wait_http(port, "/starts", Duration::from_secs(300)) {
        Ok(s) => s,
        Err(e) => {
            let log = vm.run("tail -n 30 /run/tandem/log/web.log", CMD)?;
            bail!("{e}; the service's log:\n{log}");
        }
    };
    let serving = vm.started().elapsed();
    eprintln!(
        "container host: system ready at {:.1} s, container serving at {:.1} s after QEMU start",
        ready.at.as_secs_f64(),
        serving.as_secs_f64()
    );
    assert_eq!(starts.lines().count(), 1, "{starts}");
    let s = status(&mut vm)?;
    let web = service(&s, "web")?;
    assert_eq!(web["state"], "running", "{web}");
    vm.run(
        "test -d /var/lib/containers/storage && ls /var/lib/web/starts",
        CMD,
    )?;
    // The image's [kernel] sysctl table, applied at boot.
    let settings = vm.run(
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/ping_group_range /proc/sys/fs/inotify/max_user_instances",
        CMD,
    )?;
    let settings: Vec<&str> = settings.split_whitespace().collect();
    assert_eq!(settings, ["1", "0", "2147483647", "8192"], "sysctl: {settings:?}");

    // Stopping the service ends every process of it: podman, conmon and
    // the container's httpd.
    vm.run("tandemctl stop web", CMD)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (left, procs) = vm.run_status("pgrep -l 'httpd|conmon|podman'", CMD)?;
        if left != 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("processes of the stopped web service remain: {procs}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(
        http_get(port, "/starts").is_none(),
        "the stopped container still answers"
    );
    vm.run("tandemctl start web", CMD)?;
    let starts = wait_http(port, "/starts", Duration::from_secs(180))?;
    assert_eq!(starts.lines().count(), 2, "{starts}");

    // An A/B update of the OS; the registry is gone by then, so the
    // container must come back from the node's own storage on ROOT.
    drop(registry);
    run(Command::new(&env.tandem)
        .args(["release", "publish", "--quiet", "--repo"])
        .arg(&repo)
        .args(["--channel", "stable", "--key"])
        .arg(&fixtures.key)
        .arg(&v2))?;
    vm.wait_for(
        "tandem: system ready (slot B, version 1.1.0)",
        Duration::from_secs(900),
    )?;
    let starts = wait_http(port, "/starts", Duration::from_secs(300))?;
    assert_eq!(
        starts.lines().count(),
        3,
        "data lost across the update: {starts}"
    );
    let s = status(&mut vm)?;
    assert_eq!(service(&s, "web")?["state"], "running");

    vm.send("poweroff\n")?;
    assert!(vm.wait_exit(Duration::from_secs(90))?.success());
    Ok(())
}
