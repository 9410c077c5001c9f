//! `cargo xtask bench boot`: time from QEMU start to `system ready`, split
//! into firmware+bootloader, kernel, initramfs and system init by the
//! arrival times of the console markers, over several boots.

use std::time::Duration;

use anyhow::{Context, Result};
use qemu_tests::vm::BootTimes;
use qemu_tests::{Disk, Vm, VmConfig};

use crate::{artifacts, setup};

const RUNS: usize = 5;

/// Boots the example image `RUNS` times and prints the split.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let image = artifacts::image(&a, "examples/minimal/image.toml", "minimal")?;
    let mut all = Vec::new();
    for i in 0..RUNS {
        let disk = Disk::overlay(&image.join("disk.raw"))?;
        let mut vm = Vm::start(&VmConfig::new(&format!("bench-boot-{i}")), &disk)?;
        vm.wait_for("tandem: system ready", Duration::from_secs(180))?;
        let t = BootTimes::from_lines(&vm.lines()).context("boot markers missing")?;
        eprintln!(
            "boot {}: total {:.2} s = firmware+bootloader {:.2} + kernel {:.2} + initramfs {:.2} + system init {:.2}",
            i + 1,
            s(t.total()),
            s(t.firmware_and_bootloader),
            s(t.kernel),
            s(t.initramfs),
            s(t.system_init)
        );
        all.push(t);
    }
    let med = |f: fn(&BootTimes) -> Duration| {
        let mut v: Vec<Duration> = all.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let early_and_system = med(|t| t.initramfs + t.system_init);
    println!("bench boot: QEMU start to system ready (TCG, 1 vCPU), median of {RUNS} boots");
    println!("  total                 {:.2} s", s(med(BootTimes::total)));
    println!(
        "  firmware + bootloader {:.2} s",
        s(med(|t| t.firmware_and_bootloader))
    );
    println!("  kernel                {:.2} s", s(med(|t| t.kernel)));
    println!("  initramfs             {:.2} s", s(med(|t| t.initramfs)));
    println!("  system init           {:.2} s", s(med(|t| t.system_init)));
    println!(
        "  initramfs + system init {:.2} s (goal < 1.00 s): {}",
        s(early_and_system),
        if early_and_system < Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

fn s(d: Duration) -> f64 {
    d.as_secs_f64()
}
