//! The host tools as a Debian package (`cargo xtask dist`) on a clean
//! Debian 12: a minimal root made by debootstrap with the host's apt
//! sources, `apt-get install ./tandem_*.deb` pulling in its dependencies,
//! and the installed `tandem` (no checkout, no `--artifacts`) building the
//! minimal example from `/usr/share/doc/tandem/examples` and inspecting
//! the result.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use qemu_tests::Env;
use qemu_tests::disk::{output, run};

/// The host's Debian mirror (its deb822 sources), for debootstrap.
fn mirror() -> String {
    std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("URIs:").map(|u| u.trim().to_string()))
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

/// Runs `script` with `sh -c` inside the root.
fn chroot(root: &Path, script: &str) -> Result<String> {
    output(
        Command::new("chroot")
            .arg(root)
            .args(["/bin/sh", "-c", script])
            // A clean machine's environment: nothing of the test's
            // (TANDEM_ARTIFACTS would point into this checkout).
            .env_clear()
            .env("HOME", "/root")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    )
    .with_context(|| format!("in the Debian 12 root: {script}"))
}

/// A mount inside the root, undone when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Mounted {
    fn new(at: &Path, fstype: &str) -> Result<Mounted> {
        run(Command::new("mount").args(["-t", fstype, fstype]).arg(at))?;
        Ok(Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn the_debian_package_installs_on_a_clean_debian_12_and_builds_the_example() -> Result<()> {
    let env = Env::get()?;
    let deb = PathBuf::from(
        std::env::var_os("TANDEM_DEB").context("TANDEM_DEB is not set: run `cargo xtask test`")?,
    );
    // Downloaded once (debootstrap --make-tarball), unpacked per run.
    let tarball = env.cache.join("debootstrap-bookworm-minbase.tgz");
    if !tarball.exists() {
        let scratch = tempfile::tempdir()?;
        let partial = tarball.with_extension("partial.tgz");
        run(Command::new("debootstrap")
            .args(["--variant=minbase", "--make-tarball"])
            .arg(&partial)
            .arg("bookworm")
            .arg(scratch.path())
            .arg(mirror()))?;
        std::fs::rename(&partial, &tarball)?;
    }
    let work = tempfile::tempdir_in(env.cache.parent().unwrap_or(&env.cache))?;
    let root = work.path().join("root");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "--unpack-tarball"])
        .arg(&tarball)
        .arg("bookworm")
        .arg(&root)
        .arg(mirror()))?;
    // The host's apt sources: the same mirror, suites and keys.
    std::fs::remove_file(root.join("etc/apt/sources.list"))?;
    std::fs::copy(
        "/etc/apt/sources.list.d/debian.sources",
        root.join("etc/apt/sources.list.d/debian.sources"),
    )?;
    std::fs::copy(&deb, root.join("tmp/tandem.deb"))?;

    // A machine has /proc; the installed tools may look at it.
    let _proc = Mounted::new(&root.join("proc"), "proc")?;
    chroot(&root, "apt-get update -qq")?;
    chroot(&root, "apt-get install -y -qq /tmp/tandem.deb >/dev/null")?;
    let which = chroot(&root, "command -v tandem; ls /usr/lib/tandem")?;
    assert!(which.contains("/usr/bin/tandem"), "{which}");
    for f in ["tandem-init", "tandem-node", "BOOTX64.EFI"] {
        assert!(which.contains(f), "{f} not installed: {which}");
    }
    let built = chroot(
        &root,
        "cp -r /usr/share/doc/tandem/examples/minimal /tmp/minimal && \
         tandem build /tmp/minimal/image.toml --out /tmp/out --quiet && \
         tandem inspect /tmp/out/disk.raw --verify",
    )?;
    assert!(built.contains("built tandem-minimal 1.0.0"), "{built}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("tmp/out/build.json"))?)?;
    assert_eq!(m["image"]["name"], "tandem-minimal", "{m}");
    Ok(())
}
