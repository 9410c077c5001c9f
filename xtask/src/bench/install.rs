//! `cargo xtask bench install`: the time to install the example image
//! from Tandem's ISO onto a blank disk (`tandemctl install` on the live
//! node) against `dd` of the same image's raw disk onto the same kind of
//! blank disk, in the same machine and the same run, and their ratio.
//!
//! The live node has four virtio disks: the ISO, two blank 4 GiB disks,
//! and the build's disk.raw (read-only) for `dd` to read. `dd` writes every
//! byte and syncs (`conv=fsync`). The installer writes the image's data,
//! zeroes the rest (`BLKZEROOUT`) and syncs. QEMU turns written zeros into
//! unallocated clusters for both (`detect-zeroes=unmap`), so neither fills
//! the host's disk.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use qemu_tests::fixtures::{Build, Fixtures};
use qemu_tests::{Disk, Env, Vm, VmConfig};

use crate::{artifacts, setup, util};

const RUNS: usize = 3;
const BOOT: Duration = Duration::from_secs(180);
const WRITE: Duration = Duration::from_secs(900);

/// Runs the benchmark.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let env = Env {
        image: util::out_dir().join("images/minimal"),
        artifacts: a.dir.clone(),
        tandem: a.tandem.clone(),
        cache: util::out_dir().join("cache"),
    };
    let fixtures = Fixtures::get(&env)?;
    let build = fixtures.build(Build::V1)?;
    let dir = util::out_dir().join("bench-install");
    std::fs::create_dir_all(&dir)?;
    let iso = dir.join("tandem.iso");
    util::run(
        Command::new(&a.tandem)
            .args(["iso", "create", "--quiet", "--key"])
            .arg(&fixtures.key)
            .arg("-o")
            .arg(&iso)
            .arg(&build),
    )?;
    let raw = build.join("disk.raw");
    let size = std::fs::metadata(&raw)?.len();

    let live = Disk::overlay(&iso)?;
    let targets = [Disk::blank(4 << 30)?, Disk::blank(4 << 30)?];
    let mut cfg = VmConfig::new("bench-install");
    for t in &targets {
        cfg.extra.extend([
            "-drive".to_string(),
            format!(
                "file={},format=qcow2,if=virtio,detect-zeroes=unmap,discard=unmap",
                t.path().display()
            ),
        ]);
    }
    cfg.extra.extend([
        "-drive".to_string(),
        format!("file={},format=raw,if=virtio,readonly=on", raw.display()),
    ]);
    let mut vm = Vm::start(&cfg, &live)?;
    vm.wait_for("tandem: system ready", BOOT)?;

    let timed = |vm: &mut Vm, command: &str| -> Result<Duration> {
        let t = Instant::now();
        let (status, out) = vm.run_status(&format!("{command} 2>&1"), WRITE)?;
        anyhow::ensure!(status == 0, "{command}: {out}");
        Ok(t.elapsed())
    };
    let mut install = Vec::new();
    let mut dd = Vec::new();
    for i in 0..RUNS {
        let ti = timed(&mut vm, "tandemctl install /dev/vdb")?;
        let td = timed(&mut vm, "dd if=/dev/vdd of=/dev/vdc bs=1M conv=fsync")?;
        eprintln!(
            "run {}: tandemctl install {:.1} s, dd {:.1} s",
            i + 1,
            ti.as_secs_f64(),
            td.as_secs_f64()
        );
        install.push(ti);
        dd.push(td);
    }
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;

    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (i, d) = (median(&mut install), median(&mut dd));
    println!(
        "bench install: the example image ({} MiB disk) onto a blank 4 GiB virtio disk, live node under TCG, median of {RUNS}",
        size >> 20
    );
    println!(
        "  tandemctl install (signature, verified chunks, zeros not copied, tables last) {:.1} s",
        i.as_secs_f64()
    );
    println!(
        "  dd of disk.raw (bs=1M, conv=fsync)                                            {:.1} s",
        d.as_secs_f64()
    );
    println!(
        "  install / dd = {:.2}",
        i.as_secs_f64() / d.as_secs_f64().max(f64::EPSILON)
    );
    Ok(())
}
