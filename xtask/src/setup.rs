//! Installs what the project needs on a Debian 12 machine: Debian packages
//! (only those missing) and the Rust targets.

use std::process::Command;

use anyhow::{Result, bail};

use crate::util;

/// Debian packages the build, the tests and the demo use.
pub const PACKAGES: &[&str] = &[
    // image builder
    "erofs-utils",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "dpkg",
    // the initramfs archive test compares with GNU cpio
    "cpio",
    // checks and compatibility oracles in tests
    "cgpt",
    "gdisk",
    "cryptsetup-bin",
    // QEMU with UEFI firmware
    "qemu-system-x86",
    "qemu-utils",
    "ovmf",
    // static node binaries
    "musl-tools",
    // reference pipeline of `cargo xtask bench update`
    "curl",
    // reboot coordination tests (qemu-tests/tests/lock.rs) and `cargo xtask bench lock`
    "etcd-server",
    "etcd-client",
    // test certificates of qemu-tests/tests/etcd_security.rs
    "openssl",
    // the host's SSH client logs in to nodes (qemu-tests/tests/ssh.rs)
    "openssh-client",
    // the container registry the container host pulls from (qemu-tests/tests/containers.rs)
    "docker-registry",
    // NoCloud and config-2 seed volumes (qemu-tests/tests/provisioning.rs), ISOs
    "xorriso",
    // a clean Debian 12 root for the Debian package (qemu-tests/tests/dist.rs)
    // and for the Debian 12 peer of `cargo xtask bench boot`
    "debootstrap",
    // the fleet dashboard in a real browser, its /metrics through the
    // Prometheus client's parser (qemu-tests/tests/dashboard.rs)
    "chromium-headless-shell",
    "fonts-dejavu-core",
    "python3-prometheus-client",
    // an HTTPS update server with a redirect, and a proxy as a node's only
    // way out (qemu-tests/tests/transport.rs)
    "nginx-light",
    "tinyproxy",
];

/// Rust targets beside the host.
pub const TARGETS: &[&str] = &["x86_64-unknown-linux-musl", "x86_64-unknown-uefi"];

/// Installs missing packages and targets.
pub fn run() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    let lists_empty = std::fs::read_dir("/var/lib/apt/lists")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
                .count()
                == 0
        })
        .unwrap_or(true);
    if !missing.is_empty() || lists_empty {
        if !is_root() {
            bail!(
                "missing Debian packages: {}; run `cargo xtask setup` as root, or `apt-get install {}`",
                missing.join(" "),
                missing.join(" ")
            );
        }
        util::run(Command::new("apt-get").args(["update", "-q"]))?;
        // Installing can remove a package already there: a machine with
        // qemu-utils from bookworm-backports loses it to bookworm's
        // qemu-system-x86, whose versions must match. A second round
        // installs what went missing, now at the matching version.
        for _ in 0..2 {
            let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
            if missing.is_empty() {
                break;
            }
            apt_install(&missing)?;
        }
        let still: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
        if !still.is_empty() {
            bail!(
                "Debian packages still missing after installing them: {} (apt removed them for a conflict; see /var/log/apt/history.log)",
                still.join(" ")
            );
        }
    }
    let have = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let have = have
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let targets: Vec<&str> = TARGETS
        .iter()
        .copied()
        .filter(|t| !have.lines().any(|l| l.trim() == *t))
        .collect();
    if !targets.is_empty() {
        util::run(
            Command::new("rustup")
                .current_dir(util::root())
                .args(["target", "add"])
                .args(&targets),
        )?;
    }
    Ok(())
}

fn apt_install(packages: &[&str]) -> Result<()> {
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages),
    )
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
