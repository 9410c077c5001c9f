//! `cargo xtask bench image`: seconds for `tandem build` of the example
//! image against the same image made by a shell pipeline of standard tools
//! (image-pipeline.sh) on the same inputs, in the same run, and the ratio.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{artifacts, setup, util};

const RUNS: usize = 3;

/// Runs the benchmark and prints its figures.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    // A first build warms the package cache and provides the kernel and
    // initramfs the pipeline starts from.
    let warm = artifacts::image(&a, "examples/minimal/image.toml", "bench-warm")?;
    let cache = util::out_dir().join("cache");
    let deb = |prefix: &str| -> Result<std::path::PathBuf> {
        std::fs::read_dir(&cache)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    n.to_string_lossy().starts_with(prefix) && n.to_string_lossy().ends_with(".deb")
                })
            })
            .with_context(|| format!("no {prefix}*.deb in {}", cache.display()))
    };
    let script_path = util::out_dir().join("image-pipeline.sh");
    std::fs::write(&script_path, include_str!("image-pipeline.sh"))?;
    let work = util::out_dir().join("bench-pipeline");
    let out = util::out_dir().join("images/bench");

    let tandem_build = || {
        let mut c = Command::new(&a.tandem);
        c.current_dir(util::root())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "examples/minimal/image.toml", "--quiet", "--out"])
            .arg(&out)
            .arg("--artifacts")
            .arg(&a.dir)
            .arg("--cache")
            .arg(&cache);
        c
    };
    let mut tandem = Vec::new();
    let mut cold = Vec::new();
    let mut pipeline = Vec::new();
    for i in 0..RUNS {
        tandem.push(time(&mut tandem_build())?);
        // Without the unpacked-package cache, tandem unpacks the .debs as
        // the pipeline does.
        let _ = std::fs::remove_dir_all(cache.join("unpacked"));
        cold.push(time(&mut tandem_build())?);
        pipeline.push(time(
            Command::new("bash")
                .arg(&script_path)
                .env("WORK", &work)
                .env("KERNEL_DEB", deb("linux-image-6")?)
                .env("PACKAGE_DEBS", package_debs(&warm, &cache)?)
                .env("INIT_BIN", a.dir.join("tandem-init"))
                .env("NODE_BIN", a.dir.join("tandem-node"))
                .env("BOOTLOADER", a.dir.join("BOOTX64.EFI"))
                .env("VMLINUZ", warm.join("vmlinuz"))
                .env("INITRD", warm.join("initrd"))
                .env("MOTD", util::root().join("examples/minimal/files/motd")),
        )?);
        eprintln!(
            "run {}: tandem {:.2} s, tandem unpacking packages {:.2} s, pipeline {:.2} s",
            i + 1,
            secs(tandem[i]),
            secs(cold[i]),
            secs(pipeline[i])
        );
    }
    let t = median(&mut tandem);
    let c = median(&mut cold);
    let p = median(&mut pipeline);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() >> 20).unwrap_or(0);
    println!(
        "bench image: example image ({} MiB disk), median of {RUNS} runs",
        size(&out.join("disk.raw"))
    );
    println!(
        "  standard-tool pipeline (dpkg-deb, mkfs.erofs, veritysetup, mkfs.vfat + mcopy, mke2fs, sgdisk, dd): {:.2} s",
        secs(p)
    );
    println!(
        "  tandem build, unpacked packages cached (a normal rebuild; also makes the initramfs and hashes every output): {:.2} s, ratio {:.2}",
        secs(t),
        secs(t) / secs(p)
    );
    println!(
        "  tandem build, unpacking the .debs as the pipeline does: {:.2} s, ratio {:.2}",
        secs(c),
        secs(c) / secs(p)
    );
    println!("  goal: ratio <= 1.00");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The cached .deb of every package in `build`'s build.json, space-separated
/// (the archive's file names: `name_version-without-epoch_arch.deb`).
fn package_debs(build: &Path, cache: &Path) -> Result<String> {
    let text = std::fs::read_to_string(build.join("build.json"))?;
    let m: serde_json::Value = serde_json::from_str(&text)?;
    let mut debs = Vec::new();
    for p in m["packages"]
        .as_array()
        .context("build.json has no packages")?
    {
        let s = |k: &str| p[k].as_str().unwrap_or_default();
        let version = s("version");
        let version = version.split_once(':').map_or(version, |(_, v)| v);
        let deb = cache.join(format!("{}_{version}_{}.deb", s("name"), s("arch")));
        if !deb.is_file() {
            bail!("{} is not in the package cache", deb.display());
        }
        debs.push(deb.display().to_string());
    }
    Ok(debs.join(" "))
}

fn time(cmd: &mut Command) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", util::describe(cmd)))?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            util::describe(cmd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
