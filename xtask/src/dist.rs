//! `cargo xtask dist`: the host tools as a Debian package,
//! `target/tandem/dist/tandem_<version>_amd64.deb`:
//! - `/usr/bin/tandem`;
//! - the artefacts every image carries, in `/usr/lib/tandem` where an
//!   installed `tandem build` finds them without `--artifacts`:
//!   `tandem-init`, `tandem-node`, `BOOTX64.EFI`;
//! - the docs and example images in `/usr/share/doc/tandem`.
//!
//! The tools `tandem` runs are the package's dependencies. It is built by
//! `dpkg-deb` with root ownership and `SOURCE_DATE_EPOCH` (the last
//! commit's date), so the same sources give the same package.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{artifacts, setup, util};

/// What `tandem` runs, by Debian package: the image builder's tools, apt
/// and dpkg for packages, xorriso for ISOs, qemu-utils and tar/gzip for
/// cloud formats.
pub const DEPENDS: &[&str] = &[
    "apt",
    "dpkg",
    "erofs-utils",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "xorriso",
    "qemu-utils",
    "tar",
    "gzip",
];

/// `tandem run` needs these; the rest works without them.
pub const RECOMMENDS: &[&str] = &["qemu-system-x86", "ovmf"];

/// Sets up, builds the artefacts and the package; returns its path.
pub fn run() -> Result<PathBuf> {
    setup::run()?;
    package(&artifacts::build()?)
}

/// Builds the package of the artefacts `a`; returns its path.
pub fn package(a: &artifacts::Artifacts) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let out = util::out_dir().join("dist");
    let stage = out.join(format!("tandem_{version}_amd64"));
    let _ = std::fs::remove_dir_all(&stage);
    let root = util::root();
    let put = |from: &Path, to: &str, mode: u32| -> Result<()> {
        let dst = stage.join(to);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &dst)
            .with_context(|| format!("copy {} to {}", from.display(), dst.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    put(&a.tandem, "usr/bin/tandem", 0o755)?;
    for name in ["tandem-init", "tandem-node", "BOOTX64.EFI"] {
        put(&a.dir.join(name), &format!("usr/lib/tandem/{name}"), 0o644)?;
    }
    put(
        &root.join("README.md"),
        "usr/share/doc/tandem/README.md",
        0o644,
    )?;
    for dir in ["docs", "examples"] {
        copy_tree(
            &root.join(dir),
            &stage.join("usr/share/doc/tandem").join(dir),
        )?;
    }
    let installed_kib = du_kib(&stage)?;
    let control = format!(
        "Package: tandem\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: Tandem developers <tandem@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {}\n\
         Recommends: {}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: build, install and update Tandem A/B operating system images\n \
         tandem builds dual-root, read-only GPT disk images from Debian packages,\n \
         exports them for clouds, makes install ISOs, boots them in QEMU, and\n \
         publishes and serves signed updates.\n",
        DEPENDS.join(", "),
        RECOMMENDS.join(", ")
    );
    std::fs::create_dir_all(stage.join("DEBIAN"))?;
    std::fs::write(stage.join("DEBIAN/control"), control)?;
    let deb = out.join(format!("tandem_{version}_amd64.deb"));
    let epoch =
        util::output(
            Command::new("git")
                .current_dir(&root)
                .args(["log", "-1", "--format=%ct"]),
        )
        .unwrap_or_else(|_| "0".into());
    util::run(
        Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", epoch.trim())
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    eprintln!("xtask: {}", deb.display());
    Ok(deb)
}

/// Copies the files under `from` to `to` (regular files and directories).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .with_context(|| format!("copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// Size of a tree in KiB, for `Installed-Size`.
fn du_kib(dir: &Path) -> Result<u64> {
    let out = util::output(Command::new("du").args(["-sk"]).arg(dir))?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du printed no size")
}
