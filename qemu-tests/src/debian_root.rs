//! A clean Debian 12 root made by debootstrap (minbase) with the host's apt
//! mirror: downloaded once into a tarball in the cache, unpacked per use;
//! commands run in it with `chroot`, with `/proc`, `/sys` and `/dev`
//! mounted for as long as a [`Mounted`] lives. The Debian package test
//! (`tests/dist.rs`) installs `tandem` into one; `cargo xtask bench boot`
//! makes its Debian 12 peer from one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::disk::{output, run};

/// The suite of every root.
pub const SUITE: &str = "bookworm";
/// The host's apt sources, copied into the root.
const HOST_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

/// The host's Debian mirror (its deb822 sources), for debootstrap.
pub fn mirror() -> String {
    std::fs::read_to_string(HOST_SOURCES)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("URIs:").map(|u| u.trim().to_string()))
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// Unpacks a Debian 12 minbase root into `root` (which must not exist or be
/// empty), with the host's apt sources (the same mirror, suites and keys).
/// The packages are downloaded once into
/// `<cache>/debootstrap-bookworm-minbase.tgz` (`debootstrap --make-tarball`).
pub fn minbase(cache: &Path, root: &Path) -> Result<()> {
    let tarball = cache.join("debootstrap-bookworm-minbase.tgz");
    if !tarball.exists() {
        std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
        let scratch = tempfile::tempdir()?;
        let partial = tarball.with_extension("partial.tgz");
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--make-tarball"])
            .arg(&partial)
            .arg(SUITE)
            .arg(scratch.path())
            .arg(mirror()))
        .context("downloading Debian 12 with debootstrap (package debootstrap; the host's apt mirror must be reachable)")?;
        std::fs::rename(&partial, &tarball)
            .with_context(|| format!("rename {} to {}", partial.display(), tarball.display()))?;
    }
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "--unpack-tarball"])
        .arg(&tarball)
        .arg(SUITE)
        .arg(root)
        .arg(mirror()))
    .with_context(|| {
        format!(
            "unpacking {} (delete it if it is damaged: it is downloaded again)",
            tarball.display()
        )
    })?;
    let list = root.join("etc/apt/sources.list");
    if list.exists() {
        std::fs::remove_file(&list).with_context(|| format!("remove {}", list.display()))?;
    }
    let sources = root.join("etc/apt/sources.list.d/debian.sources");
    std::fs::copy(HOST_SOURCES, &sources)
        .with_context(|| format!("copy {HOST_SOURCES} to {}", sources.display()))?;
    Ok(())
}

/// Runs `script` with `sh -c` inside the root, in a clean machine's
/// environment (nothing of the caller's: TANDEM_ARTIFACTS would point into
/// this checkout); returns its standard output.
pub fn chroot(root: &Path, script: &str) -> Result<String> {
    output(
        Command::new("chroot")
            .arg(root)
            .args(["/bin/sh", "-c", script])
            .env_clear()
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    )
    .with_context(|| format!("in the Debian 12 root {}: {script}", root.display()))
}

/// Mounts inside a root, undone when dropped (also when the caller fails
/// on the way), innermost first.
#[derive(Debug)]
pub struct Mounted(Vec<PathBuf>);

impl Mounted {
    /// `/proc` only.
    pub fn proc(root: &Path) -> Result<Mounted> {
        let mut m = Mounted(Vec::new());
        m.mount(&root.join("proc"), &["-t", "proc", "proc"])?;
        Ok(m)
    }

    /// `/proc`, `/sys` and the host's `/dev` (bound): what maintainer
    /// scripts such as `update-initramfs` look at.
    pub fn system(root: &Path) -> Result<Mounted> {
        let mut m = Mounted::proc(root)?;
        m.mount(&root.join("sys"), &["-t", "sysfs", "sysfs"])?;
        m.mount(&root.join("dev"), &["--bind", "/dev"])?;
        Ok(m)
    }

    fn mount(&mut self, at: &Path, how: &[&str]) -> Result<()> {
        run(Command::new("mount").args(how).arg(at))
            .with_context(|| format!("mount {how:?} on {} (needs root)", at.display()))?;
        self.0.push(at.to_path_buf());
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for at in self.0.iter().rev() {
            // Lazy: a process the chroot left behind must not keep it.
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}

/// Deletes a root made here. Refuses while anything is still mounted inside
/// it: deleting through a bound `/dev` would delete the host's device nodes.
pub fn remove(root: &Path) -> Result<()> {
    if !root.exists() {
        return Ok(());
    }
    let root = root
        .canonicalize()
        .with_context(|| format!("resolve {}", root.display()))?;
    let mounts =
        std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    if let Some(at) = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|at| Path::new(at).starts_with(&root))
    {
        anyhow::bail!(
            "{at} is still mounted inside {}: not deleting the root; unmount it (`umount -l {at}`) and delete the directory by hand",
            root.display()
        );
    }
    std::fs::remove_dir_all(&root).with_context(|| format!("delete {}", root.display()))
}
