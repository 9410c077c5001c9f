//! The example image passes every standard checker: cgpt, sgdisk, fsck.vfat
//! on the ESP, fsck.ext4 on ROOT, veritysetup verify and fsck.erofs on
//! USR-A; `tandem inspect` agrees, and notices damage.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use qemu_tests::disk::{output, run};
use qemu_tests::{Disk, Env};
use tandem_slot::Slot;

/// Copies a partition out of the disk into `out` (sparse).
fn extract(disk: &Path, manifest: &serde_json::Value, label: &str, out: &Path) -> Result<()> {
    let parts = manifest["disk"]["partitions"]
        .as_array()
        .context("partitions")?;
    let p = parts
        .iter()
        .find(|p| p["label"] == label)
        .with_context(|| format!("no {label}"))?;
    let mib = 1 << 20;
    let (offset, size) = (
        p["offset"].as_u64().context("offset")?,
        p["size"].as_u64().context("size")?,
    );
    run(Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=1M", "conv=sparse", "status=none"])
        .arg(format!("skip={}", offset / mib))
        .arg(format!("count={}", size / mib)))
}

#[test]
fn standard_checkers_accept_the_example_image() -> Result<()> {
    let env = Env::get()?;
    let m = env.manifest()?;
    let disk = env.disk();
    let tmp = tempfile::tempdir()?;

    let cgpt = output(Command::new("cgpt").arg("show").arg(&disk))?;
    for label in ["EFI-SYSTEM", "USR-A", "USR-B", "OEM", "ROOT"] {
        assert!(
            cgpt.contains(&format!("Label: \"{label}\"")),
            "cgpt show lacks {label}:\n{cgpt}"
        );
    }
    let d = Disk::overlay(&disk)?;
    assert_eq!(
        d.cgpt_slot(Slot::A)?,
        (1, 0, true),
        "USR-A starts priority 1, successful"
    );
    assert_eq!(d.cgpt_slot(Slot::B)?, (0, 0, false), "USR-B starts empty");

    let sgdisk = output(Command::new("sgdisk").arg("-v").arg(&disk))?;
    assert!(sgdisk.contains("No problems found"), "sgdisk -v:\n{sgdisk}");

    let esp = tmp.path().join("esp.img");
    extract(&disk, &m, "EFI-SYSTEM", &esp)?;
    output(Command::new("fsck.vfat").arg("-n").arg(&esp))?;
    let listing = output(
        Command::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(&esp)
            .arg("::"),
    )?;
    for f in [
        "EFI/BOOT/BOOTX64.EFI",
        "EFI/tandem/vmlinuz-a",
        "EFI/tandem/initrd-a",
        "EFI/tandem/slot-a.conf",
        "EFI/tandem/loader.conf",
    ] {
        assert!(listing.contains(f), "ESP lacks {f}:\n{listing}");
    }

    let root = tmp.path().join("root.img");
    extract(&disk, &m, "ROOT", &root)?;
    output(Command::new("fsck.ext4").arg("-fn").arg(&root))?;

    let usr = tmp.path().join("usr-a.img");
    extract(&disk, &m, "USR-A", &usr)?;
    let v = &m["usr"]["verity"];
    let s = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .with_context(|| format!("verity.{k}"))
    };
    output(
        Command::new("veritysetup")
            .args(["verify", "--no-superblock"])
            .arg(&usr)
            .arg(&usr)
            .arg(s("root_hash")?)
            .arg(format!("--hash-offset={}", v["hash_offset"]))
            .arg(format!("--data-blocks={}", v["data_blocks"]))
            .arg(format!("--salt={}", s("salt")?)),
    )?;
    output(Command::new("fsck.erofs").arg(&usr))?;
    Ok(())
}

#[test]
fn inspect_reports_slots_and_verifies_usr() -> Result<()> {
    let env = Env::get()?;
    let out = output(
        Command::new(&env.tandem)
            .args(["inspect", "--verify", "--json"])
            .arg(env.disk()),
    )?;
    let i: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(i["problems"], serde_json::json!([]), "{out}");
    assert_eq!(i["next_boot"], "A");
    assert_eq!(i["slots"][0]["verified"], true);
    assert_eq!(i["slots"][0]["version"], "1.0.0");
    assert_eq!(
        i["slots"][0]["root_hash"],
        env.manifest()?["usr"]["verity"]["root_hash"]
    );
    assert_eq!(i["slots"][1]["bootable"], false);
    Ok(())
}

#[test]
fn inspect_names_damage() -> Result<()> {
    let env = Env::get()?;
    let m = env.manifest()?;
    let d = Disk::copy(&env.disk())?;
    let inspect = |args: &[&str]| {
        Command::new(&env.tandem)
            .arg("inspect")
            .args(args)
            .arg(d.path())
            .output()
    };

    // A flipped byte in USR-A's file system: only --verify can see it.
    let usr_off = m["disk"]["partitions"][1]["offset"]
        .as_u64()
        .context("offset")?;
    flip(d.path(), usr_off + 3 * 4096 + 17)?;
    let o = inspect(&["--verify"])?;
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("does not match its dm-verity root hash"));

    // A damaged primary header: the backup is used and the damage named.
    flip(d.path(), 512 + 40)?;
    let o = inspect(&[])?;
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("primary partition table damaged (header CRC32 mismatch)"),
        "{text}"
    );
    assert!(text.contains("read from backup copy"), "{text}");

    // Both copies gone: an error that says so.
    let size = std::fs::metadata(d.path())?.len();
    flip(d.path(), size - 512)?;
    let o = inspect(&[])?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no valid GPT") && err.contains("not a disk image"),
        "{err}"
    );
    Ok(())
}

fn flip(path: &Path, offset: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)?;
    b[0] ^= 0xFF;
    f.write_all_at(&b, offset)?;
    Ok(())
}
