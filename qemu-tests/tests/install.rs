//! Tandem's ISO (`tandem iso create`, `customize`, `show`) and its
//! installer (`tandemctl install`), booted from the ISO (a live node, /usr
//! from the ISO under dm-verity, ROOT in RAM) with a blank disk attached:
//! - an install from the live node's shell runs to the end; a second one
//!   over it says what it erases, and the power is cut in its middle: the
//!   half-written disk does not boot as Tandem (the firmware finds nothing
//!   to boot on it);
//! - the same ISO customised for an unattended install boots, installs
//!   over the half-written disk without a keystroke and powers off;
//! - the disk then boots alone: slot A, ROOT grown to the disk, the
//!   embedded config applied (host name, a file), and it updates A→B from
//!   its channel like any node.
//!
//! And an ISO on a CD installs an SSH server whose config's key logs in.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use qemu_tests::disk::{output, run};
use qemu_tests::fixtures::Build;
use qemu_tests::lab::Lab;
use qemu_tests::ssh::{KeyPair, login};
use qemu_tests::vm::free_port;
use qemu_tests::{Disk, Vm, VmConfig, examples};

const BOOT: Duration = Duration::from_secs(180);
const CMD: Duration = Duration::from_secs(30);
const INSTALL: Duration = Duration::from_secs(600);

/// The ISO booted (as the first disk, like a USB stick) with `target`
/// attached as the second.
fn live(name: &str, iso: &Disk, target: &Disk) -> Result<Vm> {
    let mut cfg = VmConfig::new(name);
    cfg.extra = target.qemu_args();
    Vm::start(&cfg, iso)
}

#[test]
fn live_iso_installs_survive_a_power_cut_then_boot_provisioned_and_update() -> Result<()> {
    let lab = Lab::new("install")?;
    let v1 = lab.fixtures.build(Build::V1)?;
    let work = tempfile::tempdir()?;
    let iso = work.path().join("tandem.iso");
    let tandem = |args: &[&str]| {
        let mut c = Command::new(&lab.env.tandem);
        c.args(args);
        c
    };
    run(tandem(&["iso", "create", "--quiet", "--key"])
        .arg(&lab.fixtures.key)
        .arg("-o")
        .arg(&iso)
        .arg(&v1))?;
    let show = |iso: &std::path::Path| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&output(
            tandem(&["iso", "show", "--json"]).arg(iso),
        )?)?)
    };
    let shown = show(&iso)?;
    assert_eq!(shown["manifest"]["version"], "1.0.0", "{shown}");
    assert_eq!(shown["embedded"], serde_json::json!({}), "{shown}");

    let user_data = format!(
        "#cloud-config\nhostname: installed-node\nwrite_files:\n  - path: /etc/installed-by\n    content: |\n      tandem iso customize\ncoreos:\n  update:\n    server: {}\n    reboot_strategy: reboot\n",
        lab.proxy.guest_url()
    );
    let config = work.path().join("user-data");
    std::fs::write(&config, &user_data)?;
    let unattended = work.path().join("unattended.iso");
    std::fs::copy(&iso, &unattended)?;
    run(tandem(&[
        "iso",
        "customize",
        "--dest-device",
        "/dev/vdb",
        "--poweroff",
        "--config",
    ])
    .arg(&config)
    .arg(&unattended))?;
    let shown = show(&unattended)?;
    assert_eq!(
        shown["embedded"]["install"]["dest_device"], "/dev/vdb",
        "{shown}"
    );
    assert_eq!(shown["embedded"]["install"]["config"], user_data.as_str());

    // A live node: /usr from the ISO, verified; ROOT in RAM; no updater.
    let target = Disk::blank(4 << 30)?;
    let live_disk = Disk::overlay(&iso)?;
    let mut vm = live("install-live", &live_disk, &target)?;
    let boot = vm.wait_for("tandem-boot:", BOOT)?;
    assert!(
        boot.text.contains("live boot (ISO), version 1.0.0"),
        "{}",
        boot.text
    );
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    let mounts = vm.run("grep -E ' (/|/usr) ' /proc/mounts", CMD)?;
    assert!(
        mounts.contains("tmpfs / tmpfs"),
        "ROOT is not in RAM: {mounts}"
    );
    assert!(mounts.contains(" /usr erofs ro"), "{mounts}");
    let status: serde_json::Value = serde_json::from_str(&vm.run("tandemctl status --json", CMD)?)?;
    let services = status["services"].as_array().context("services")?;
    for name in ["updater", "agent"] {
        let s = services
            .iter()
            .find(|s| s["name"] == name)
            .context("listed")?;
        assert_eq!(s["state"], "disabled", "{name} on a live boot: {s}");
    }
    // The ISO the node runs from is in use.
    let (status, out) = vm.run_status("tandemctl install /dev/vda 2>&1", CMD)?;
    assert_ne!(status, 0, "{out}");
    assert!(out.contains("in use"), "{out}");

    // An install from the live node's shell, to the end.
    let (status, out) = vm.run_status("tandemctl install /dev/vdb 2>&1", INSTALL)?;
    assert_eq!(status, 0, "{out}");
    assert!(
        out.contains("erasing /dev/vdb: 4.0 GiB, no GPT partition table")
            && out.contains("installed tandem-minimal 1.0.0 onto /dev/vdb"),
        "{out}"
    );
    // Again over it, and a power cut in the middle: it says what it erases.
    vm.send("tandemctl install /dev/vdb\n")?;
    let erasing = vm.wait_for("tandemctl: erasing /dev/vdb", CMD)?;
    assert!(
        erasing
            .text
            .contains("GPT with 5 partitions: 1 EFI-SYSTEM, 3 USR-A"),
        "{}",
        erasing.text
    );
    vm.wait_for("tandemctl: install: 20 %", INSTALL)?;
    vm.kill();
    drop(vm);

    // The half-written disk alone: the firmware finds nothing to boot.
    let mut vm = Vm::start(&VmConfig::new("install-cut-boot"), &target)?;
    let (i, line) = vm.wait_for_any(&["tandem-boot:", "UEFI Misc Device"], BOOT)?;
    assert_eq!(i, 1, "the half-written disk booted Tandem: {}", line.text);
    vm.kill();
    drop(vm);

    // The customised ISO installs over it without a keystroke.
    let unattended_disk = Disk::overlay(&unattended)?;
    let mut vm = live("install-unattended", &unattended_disk, &target)?;
    vm.wait_for(
        "tandemctl: erasing /dev/vdb: 4.0 GiB, no GPT partition table",
        BOOT,
    )?;
    vm.wait_for("installed tandem-minimal 1.0.0 onto /dev/vdb", INSTALL)?;
    vm.wait_for("tandemctl: powering off", CMD)?;
    assert!(vm.wait_exit(Duration::from_secs(60))?.success());
    drop(vm);

    // The installed disk alone.
    let mut vm = lab.boot("installed", &target)?;
    let ready = vm.lines().into_iter().any(|l| {
        l.text
            .contains("tandem: system ready (slot A, version 1.0.0)")
    });
    assert!(ready, "the installed disk did not come up on slot A");
    let host = vm.run("hostname; cat /etc/installed-by", CMD)?;
    assert!(host.contains("installed-node"), "{host}");
    assert!(host.contains("tandem iso customize"), "{host}");
    let sectors = vm.run("cat /sys/class/block/vda9/size", CMD)?;
    let root_mib = sectors.trim().parse::<u64>().context("ROOT's size")? >> 11;
    // The image's ROOT is 512 MiB; the 4 GiB disk leaves it 1.2 GiB more.
    assert!(
        root_mib > 1600,
        "ROOT was not grown to the 4 GiB disk: {root_mib} MiB"
    );

    // It updates from its channel like any node.
    lab.publish("stable", Build::V2, &[])?;
    vm.run("tandemctl update check", Duration::from_secs(120))?;
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", INSTALL)?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    Ok(())
}

/// The SSH server example as an ISO on a CD (El Torito, a virtio-scsi
/// CD-ROM; the image's initramfs has the CD drivers `virtio_scsi` and
/// `sr_mod`), customised for an unattended install with a config holding
/// an SSH key, beside a blank disk. The node comes up live with /usr
/// verified from `/dev/sr0` (where Linux makes no partition devices), its
/// provisioning skips the OEM datasource, it installs onto the disk
/// without a keystroke and powers off; the disk then boots alone and the
/// host's `ssh` logs in with the config's key.
#[test]
fn a_cd_installs_an_ssh_server_unattended_and_its_key_logs_in() -> Result<()> {
    let lab = Lab::new("install-cd")?;
    let definition =
        std::fs::read_to_string(examples::examples_dir().join("ssh-server/image.toml"))?.replace(
            "\"virtio_blk\",",
            "\"virtio_blk\", \"virtio_scsi\", \"sr_mod\",",
        ) + "\n[update]\ntrusted-keys = [\"keys/test-release.pub\"]\n";
    assert!(definition.contains("sr_mod"), "{definition}");
    let release_pub = std::fs::read(lab.fixtures.key.with_extension("pub"))?;
    let build = examples::build(
        &lab.env,
        "ssh-server",
        "cd",
        &[
            ("image.toml", definition.as_bytes()),
            ("keys/test-release.pub", &release_pub),
            (
                "files/authorized_keys",
                b"# keys come from the node's cloud-config\n",
            ),
        ],
    )?;
    let work = tempfile::tempdir()?;
    let iso = work.path().join("tandem.iso");
    run(Command::new(&lab.env.tandem)
        .args(["iso", "create", "--quiet", "--key"])
        .arg(&lab.fixtures.key)
        .arg("-o")
        .arg(&iso)
        .arg(&build))?;
    let key = KeyPair::new("install-cd")?;
    let config = work.path().join("user-data");
    std::fs::write(
        &config,
        format!(
            "#cloud-config\nhostname: from-cd\nssh_authorized_keys:\n  - {}\n",
            key.public
        ),
    )?;
    run(Command::new(&lab.env.tandem)
        .args([
            "iso",
            "customize",
            "--dest-device",
            "/dev/vda",
            "--poweroff",
            "--config",
        ])
        .arg(&config)
        .arg(&iso))?;

    // The blank disk is the machine's disk (vda); the CD sits beside it.
    let target = Disk::blank(4 << 30)?;
    let mut cfg = VmConfig::new("install-cd");
    cfg.extra = vec![
        "-device".into(),
        "virtio-scsi-pci,id=scsi".into(),
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=cd,media=cdrom,readonly=on",
            iso.display()
        ),
        "-device".into(),
        "scsi-cd,drive=cd,bus=scsi.0".into(),
    ];
    let mut vm = Vm::start(&cfg, &target)?;
    let boot = vm.wait_for("tandem-boot:", BOOT)?;
    assert!(boot.text.contains("live boot (ISO)"), "{}", boot.text);
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    let status: serde_json::Value = serde_json::from_str(&vm.run("tandemctl status --json", CMD)?)?;
    assert_eq!(status["early"]["disk"], "/dev/sr0", "{status}");
    assert_eq!(status["early"]["live"], true, "{status}");
    assert_ne!(status["provisioning"]["state"], "failed", "{status}");
    let slaves = vm.run(
        "ls /sys/block/$(basename $(readlink -f /dev/mapper/usr-live))/slaves",
        CMD,
    )?;
    assert!(
        slaves.contains("sr0"),
        "the live /usr is not read from the CD: {slaves}"
    );
    vm.wait_for("installed tandem-ssh 1.0.0 onto /dev/vda", INSTALL)?;
    vm.wait_for("tandemctl: powering off", CMD)?;
    assert!(vm.wait_exit(Duration::from_secs(60))?.success());
    drop(vm);

    // The disk alone, the CD removed: the config's key logs in.
    let port = free_port()?;
    let mut cfg = VmConfig::new("install-cd-installed");
    cfg.forwards.push((port, 22));
    let mut vm = lab.boot_with(&cfg, &target)?;
    let who = login(&key.private, port, "id -un; hostname")?;
    assert_eq!(
        who.lines().collect::<Vec<_>>(),
        ["core", "from-cd"],
        "{who}"
    );
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    Ok(())
}
