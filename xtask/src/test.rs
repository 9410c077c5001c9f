//! `cargo xtask test`: set-up, build once, then every test: unit and
//! integration tests of each crate, and the end-to-end tests in
//! `qemu-tests`, which get the built artefacts through the environment.

use anyhow::Result;

use crate::{artifacts, dist, setup, util};

/// Runs the whole suite (or the tests matching `filter`).
pub fn run(filter: Option<&str>) -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let image = artifacts::image(&a, "examples/minimal/image.toml", "minimal")?;
    let deb = dist::package(&a)?;

    let mut unit = util::cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        "qemu-tests",
        "--exclude",
        "bootloader",
    ]);
    // The node crates run on musl in the image: test them there too (musl
    // and glibc differ, e.g. musl's sched_setscheduler() is ENOSYS).
    let mut node = util::cargo();
    node.args([
        "test",
        "--lib",
        "--target",
        "x86_64-unknown-linux-musl",
        "-p",
        "initramfs",
        "-p",
        "repository",
        "-p",
        "updater",
        "-p",
        "tandem-contract",
        "-p",
        "agent",
        "-p",
        "tandem-slot",
    ]);
    let mut boot = util::cargo();
    boot.args(["test", "-p", "bootloader", "--lib"]);
    let mut e2e = util::cargo();
    e2e.args(["test", "-p", "qemu-tests"])
        .env("TANDEM_ARTIFACTS", &a.dir)
        .env("TANDEM_BIN", &a.tandem)
        .env("TANDEM_IMAGE", &image)
        .env("TANDEM_DEB", &deb)
        .env("TANDEM_CACHE", util::out_dir().join("cache"));
    for cmd in [&mut unit, &mut node, &mut boot, &mut e2e] {
        if let Some(f) = filter {
            cmd.args(["--", f]);
        }
        util::run(cmd)?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}
