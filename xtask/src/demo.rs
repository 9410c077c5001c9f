//! `cargo xtask demo`: the main job end to end. Build two versions of an
//! image (1.0.0 and 1.1.0, which differ in one file), publish 1.1.0 to a
//! signed update repository served over HTTP, boot 1.0.0 under UEFI
//! firmware in QEMU, and watch the node update itself, reboot into the
//! other slot, confirm it healthy, and come back on 1.1.0.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use qemu_tests::fixtures::Build;
use qemu_tests::lab::{Lab, NodeSetup};
use qemu_tests::vm::BootTimes;
use qemu_tests::{Env, VmConfig};

use crate::{artifacts, setup, util};

/// Runs the demo.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let example = artifacts::image(&a, "examples/minimal/image.toml", "minimal")?;
    util::run(
        std::process::Command::new(&a.tandem)
            .arg("inspect")
            .arg(example.join("disk.raw")),
    )?;
    let env = Env {
        image: example,
        artifacts: a.dir.clone(),
        tandem: a.tandem.clone(),
        cache: util::out_dir().join("cache"),
    };

    say("building versions 1.0.0 and 1.1.0 (one file differs), trusting a release key");
    let lab = Lab::with_env(env, "demo")?;
    lab.fixtures.build(Build::V1)?;
    lab.fixtures.build(Build::V2)?;
    say("publishing 1.1.0 to the stable channel, serving the repository over HTTP");
    lab.publish("stable", Build::V2, &[])?;
    util::run(
        std::process::Command::new(&a.tandem)
            .args(["release", "status", "--repo"])
            .arg(&lab.repo),
    )?;

    say("booting a node flashed with 1.0.0 (UEFI firmware, TCG; console follows)");
    let disk = lab.disk(&NodeSetup::new(Build::V1))?;
    let mut cfg = VmConfig::new("demo");
    cfg.echo = true;
    let started = Instant::now();
    let mut vm = lab.boot_with(&cfg, &disk)?;
    let first_boot =
        BootTimes::from_lines(&vm.lines()).context("boot markers missing from the console")?;
    let reboot = vm.wait_for("tandem-boot: booting slot B", Duration::from_secs(300))?;
    let ready = vm.wait_for(
        "tandem: system ready (slot B, version 1.1.0)",
        Duration::from_secs(180),
    )?;
    let status = vm.wait_update(
        "the new slot confirmed healthy",
        Duration::from_secs(180),
        |s| s["boot"]["state"] == "confirmed",
    )?;
    let slots = vm.run("tandemctl slot status", Duration::from_secs(30))?;
    let update = vm.run("tandemctl update status", Duration::from_secs(30))?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))
        .context("the node did not power off")?;
    drop(vm);

    eprintln!(
        "\n--- tandemctl slot status ---\n{slots}\n--- tandemctl update status ---\n{update}\n"
    );
    let downloaded =
        lab.proxy.delivered("1.1.0/usr.payload") + lab.proxy.delivered("1.1.0/usr.img");
    let payload = lab.payload_size(Build::V2)?;
    println!(
        "demo: success: the node booted 1.0.0 on slot A in {:.1} s, found 1.1.0, downloaded {:.3} MB for its {:.1} MB payload (the blocks that differ; the rest copied from the running slot), rebooted into slot B ({:.0} s after power-on), came up ({}) and confirmed it healthy; now running {}",
        first_boot.total().as_secs_f64(),
        downloaded as f64 / 1e6,
        payload as f64 / 1e6,
        reboot.at.as_secs_f64(),
        ready.text.trim_start_matches("tandem: "),
        status["running_version"].as_str().unwrap_or("?"),
    );
    eprintln!("demo: finished in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn say(what: &str) {
    eprintln!("\ndemo: {what}");
}
