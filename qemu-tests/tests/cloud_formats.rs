//! `tandem export` makes each cloud format from one build, and the field's
//! own tools accept them: `qemu-img check` for qcow2 and VMDK (it has no
//! check for VHD), `qemu-img info` for all with the raw disk's virtual
//! size; the VHD is fixed and a whole number of MiB; the GCE tarball holds
//! exactly `disk.raw`, sparse, with the raw disk's bytes. That the qcow2
//! boots is shown by `tandem run` in the SSH scenario.

use std::process::Command;

use anyhow::{Context, Result};
use qemu_tests::Env;
use qemu_tests::disk::{output, run};

fn info(path: &std::path::Path, format: &str) -> Result<serde_json::Value> {
    let text = output(
        Command::new("qemu-img")
            .args(["info", "--output=json", "-f", format])
            .arg(path),
    )?;
    Ok(serde_json::from_str(&text)?)
}

#[test]
fn every_cloud_format_is_accepted_by_the_standard_tools() -> Result<()> {
    let env = Env::get()?;
    let raw_size = std::fs::metadata(env.disk())?.len();
    let out = tempfile::tempdir()?;
    let printed = output(
        Command::new(&env.tandem)
            .arg("export")
            .arg(&env.image)
            .arg("--out")
            .arg(out.path())
            .arg("--json"),
    )?;
    let made: serde_json::Value = serde_json::from_str(&printed)?;
    let names: Vec<&str> = made
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|m| m["format"].as_str())
        .collect();
    assert_eq!(names, ["qcow2", "vhd", "vmdk", "gce"], "{printed}");

    for (file, format) in [
        ("disk.qcow2", "qcow2"),
        ("disk.vmdk", "vmdk"),
        ("disk.vhd", "vpc"),
    ] {
        let path = out.path().join(file);
        if format != "vpc" {
            run(Command::new("qemu-img")
                .args(["check", "-f", format])
                .arg(&path))?;
        }
        let i = info(&path, format)?;
        assert_eq!(i["format"], format, "{file}: {i}");
        assert_eq!(i["virtual-size"], raw_size, "{file}: {i}");
    }
    let qcow2 = info(&out.path().join("disk.qcow2"), "qcow2")?;
    assert!(
        qcow2["actual-size"].as_u64() < Some(raw_size / 10),
        "the qcow2 is not compressed: {qcow2}"
    );
    let vmdk = info(&out.path().join("disk.vmdk"), "vmdk")?;
    assert_eq!(
        vmdk["format-specific"]["data"]["create-type"], "streamOptimized",
        "{vmdk}"
    );
    // Azure: a fixed VHD (raw bytes + a 512-byte footer), whole MiB.
    assert_eq!(raw_size % (1 << 20), 0, "raw size {raw_size}");
    let vhd = std::fs::metadata(out.path().join("disk.vhd"))?.len();
    assert_eq!(vhd, raw_size + 512, "not a fixed VHD");

    // GCE: exactly disk.raw, and its bytes are the build's.
    let gce = out.path().join("disk-gce.tar.gz");
    let listing = output(Command::new("tar").arg("-tzf").arg(&gce))?;
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["disk.raw"],
        "{listing}"
    );
    let unpacked = tempfile::tempdir()?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&gce)
        .arg("-C")
        .arg(unpacked.path()))?;
    run(Command::new("cmp")
        .arg(env.disk())
        .arg(unpacked.path().join("disk.raw")))?;
    Ok(())
}
