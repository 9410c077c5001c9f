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
use qemu_tests::container_host::{self, WEB_PORT, http_get, wait_http};
use qemu_tests::disk::run;
use qemu_tests::fixtures::Fixtures;
use qemu_tests::server::Server;
use qemu_tests::vm::free_port;
use qemu_tests::{Disk, Env, Vm, VmConfig};

const BOOT: Duration = Duration::from_secs(240);
const CMD: Duration = Duration::from_secs(60);

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
    let registry = container_host::registry_with_workload()?;

    // The example as a user would deploy it: the service names the test's
    // registry, the image trusts the test's release key.
    let key = std::fs::read(fixtures.key.with_extension("pub"))?;
    let build = |version: &str| {
        container_host::build(
            &env,
            &registry,
            (version, version),
            "\n[update]\ntrusted-keys = [\"keys/test-release.pub\"]\n",
            &[("keys/test-release.pub", &key)],
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
    let port = free_port()?;
    let mut cfg = VmConfig::new("containers");
    cfg.memory_mib = 2048;
    cfg.forwards.push((port, WEB_PORT));
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
    assert_eq!(
        settings,
        ["1", "0", "2147483647", "8192"],
        "sysctl: {settings:?}"
    );

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
