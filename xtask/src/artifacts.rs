//! Builds what goes into an image and the host tool: the static node binary
//! (musl), the bootloader (UEFI) and `tandem`, and the example image.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::util;

/// Paths of the built artefacts.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// Directory with `tandem-init`, `tandem-node` and `BOOTX64.EFI` (for
    /// `tandem build --artifacts`).
    pub dir: PathBuf,
    /// The host `tandem` binary.
    pub tandem: PathBuf,
}

/// Builds the node binary (profile `node`: small), the bootloader and
/// `tandem` (release).
pub fn build() -> Result<Artifacts> {
    let root = util::root();
    util::run(util::cargo().args([
        "build",
        "--profile",
        "node",
        "-p",
        "initramfs",
        "-p",
        "node-tools",
        "--target",
        "x86_64-unknown-linux-musl",
    ]))?;
    util::run(util::cargo().args([
        "build",
        "--release",
        "-p",
        "bootloader",
        "--target",
        "x86_64-unknown-uefi",
    ]))?;
    util::run(util::cargo().args(["build", "--release", "-p", "image-builder"]))?;
    let dir = util::out_dir().join("artifacts");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    for (from, to) in [
        (
            "target/x86_64-unknown-linux-musl/node/tandem-init",
            "tandem-init",
        ),
        (
            "target/x86_64-unknown-linux-musl/node/tandem-node",
            "tandem-node",
        ),
        (
            "target/x86_64-unknown-uefi/release/bootloader.efi",
            "BOOTX64.EFI",
        ),
    ] {
        let src = root.join(from);
        let dst = dir.join(to);
        std::fs::copy(&src, &dst)
            .with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
    }
    Ok(Artifacts {
        dir,
        tandem: root.join("target/release/tandem"),
    })
}

/// Builds the image defined by `definition` into `target/tandem/images/<name>`.
pub fn image(a: &Artifacts, definition: &str, name: &str) -> Result<PathBuf> {
    let out = util::out_dir().join("images").join(name);
    util::run(
        std::process::Command::new(&a.tandem)
            .current_dir(util::root())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", definition, "--out"])
            .arg(&out)
            .arg("--artifacts")
            .arg(&a.dir)
            .arg("--cache")
            .arg(util::out_dir().join("cache")),
    )?;
    Ok(out)
}
