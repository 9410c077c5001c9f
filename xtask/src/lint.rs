//! Formatting and clippy for every target the project builds.

use anyhow::Result;

use crate::util;

/// `cargo fmt --check`, then clippy -D warnings on the host workspace, the
/// UEFI bootloader and the musl node binary.
pub fn run() -> Result<()> {
    crate::setup::run()?;
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
    util::run(util::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--exclude",
        "bootloader",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(util::cargo().args([
        "clippy",
        "-p",
        "bootloader",
        "--lib",
        "--tests",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(util::cargo().args([
        "clippy",
        "-p",
        "bootloader",
        "--target",
        "x86_64-unknown-uefi",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(util::cargo().args([
        "clippy",
        "-p",
        "initramfs",
        "-p",
        "node-tools",
        "--target",
        "x86_64-unknown-linux-musl",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(util::cargo().args([
        "clippy",
        "-p",
        "tandem-slot",
        "--no-default-features",
        "--target",
        "x86_64-unknown-uefi",
        "--",
        "-D",
        "warnings",
    ]))
}
