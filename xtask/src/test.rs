//! `cargo xtask test`: set-up, build once, then every test: unit and
//! integration tests of each crate, and the end-to-end tests in
//! `qemu-tests`, which get the built artefacts through the environment.

use anyhow::Result;

use crate::{artifacts, setup, util};

/// Runs the whole suite (or the tests matching `filter`).
pub fn run(filter: Option<&str>) -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let image = artifacts::image(&a, "examples/minimal/image.toml", "minimal")?;

    let mut unit = util::cargo();
    unit.args([
        "test",
        "--workspace",
        "--exclude",
        "qemu-tests",
        "--exclude",
        "bootloader",
    ]);
    let mut boot = util::cargo();
    boot.args(["test", "-p", "bootloader", "--lib"]);
    let mut e2e = util::cargo();
    e2e.args(["test", "-p", "qemu-tests"])
        .env("TANDEM_ARTIFACTS", &a.dir)
        .env("TANDEM_BIN", &a.tandem)
        .env("TANDEM_IMAGE", &image)
        .env("TANDEM_CACHE", util::out_dir().join("cache"));
    for cmd in [&mut unit, &mut boot, &mut e2e] {
        if let Some(f) = filter {
            cmd.args(["--", f]);
        }
        util::run(cmd)?;
    }
    eprintln!("xtask: all tests passed");
    Ok(())
}
