//! `cargo xtask demo`: build the example image, boot it under UEFI firmware
//! in QEMU with its console on the terminal, and end with a success line.

use std::time::Duration;

use anyhow::{Context, Result};
use qemu_tests::vm::BootTimes;
use qemu_tests::{Disk, Vm, VmConfig};

use crate::{artifacts, setup, util};

/// Runs the demo.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let image = artifacts::image(&a, "examples/minimal/image.toml", "minimal")?;
    let disk_path = image.join("disk.raw");
    util::run(
        std::process::Command::new(&a.tandem)
            .arg("inspect")
            .arg(&disk_path),
    )?;

    eprintln!(
        "\ndemo: booting {} in QEMU (UEFI firmware, TCG; the image stays clean under a qcow2 overlay)\n",
        disk_path.display()
    );
    let disk = Disk::overlay(&disk_path)?;
    let mut cfg = VmConfig::new("demo");
    cfg.echo = true;
    let mut vm = Vm::start(&cfg, &disk)?;
    let ready = vm.wait_for("tandem: system ready", Duration::from_secs(180))?;
    let status = vm.run("tandemctl status", Duration::from_secs(30))?;
    let mounts = vm.run("grep -E ' /usr | / ' /proc/mounts", Duration::from_secs(30))?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))
        .context("the node did not power off")?;
    let times =
        BootTimes::from_lines(&vm.lines()).context("boot markers missing from the console")?;
    drop(vm);

    eprintln!("\n--- tandemctl status ---\n{status}\n--- mounts ---\n{mounts}\n");
    let slot_version = ready.text.split("system ready").nth(1).unwrap_or("").trim();
    println!(
        "demo: success: tandem-minimal booted {slot_version} in {:.1} s (firmware+bootloader {:.1} s, kernel {:.1} s, initramfs {:.2} s, system init {:.2} s), then powered off cleanly",
        times.total().as_secs_f64(),
        times.firmware_and_bootloader.as_secs_f64(),
        times.kernel.as_secs_f64(),
        times.initramfs.as_secs_f64(),
        times.system_init.as_secs_f64(),
    );
    Ok(())
}
