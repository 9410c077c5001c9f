//! The host tools as a Debian package (`cargo xtask dist`) on a clean
//! Debian 12: a minimal root made by debootstrap with the host's apt
//! sources, `apt-get install ./tandem_*.deb` pulling in its dependencies,
//! and the installed `tandem` (no checkout, no `--artifacts`) building the
//! minimal example from `/usr/share/doc/tandem/examples` and inspecting
//! the result.

use std::path::PathBuf;

use anyhow::{Context, Result};
use qemu_tests::Env;
use qemu_tests::debian_root::{self, Mounted, chroot};

#[test]
fn the_debian_package_installs_on_a_clean_debian_12_and_builds_the_example() -> Result<()> {
    let env = Env::get()?;
    let deb = PathBuf::from(
        std::env::var_os("TANDEM_DEB").context("TANDEM_DEB is not set: run `cargo xtask test`")?,
    );
    // Downloaded once (debootstrap --make-tarball), unpacked per run, with
    // the host's apt sources: the same mirror, suites and keys.
    let work = tempfile::tempdir_in(env.cache.parent().unwrap_or(&env.cache))?;
    let root = work.path().join("root");
    debian_root::minbase(&env.cache, &root)?;
    std::fs::copy(&deb, root.join("tmp/tandem.deb"))?;

    // A machine has /proc; the installed tools may look at it.
    let _proc = Mounted::proc(&root)?;
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
