//! Scenario 4: a flipped byte inside USR-A's file system is caught by
//! dm-verity: the modified data is never served, and the console says why.

use std::time::Duration;

use anyhow::Result;
use qemu_tests::{Disk, Env, Vm, VmConfig};
use tandem_slot::Slot;

const BOOT: Duration = Duration::from_secs(120);
const MOTD: &[u8] = b"Tandem minimal image: /usr is read-only and verified";

#[test]
fn tampered_file_is_never_served() -> Result<()> {
    let env = Env::get()?;
    let disk = Disk::copy(&env.disk())?;
    let at = disk.find_in_slot(Slot::A, MOTD)?;
    disk.flip_byte(at + 7)?;
    let mut vm = Vm::start(&VmConfig::new("tamper-file"), &disk)?;
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    let (status, out) = vm.run_status("cat /usr/share/tandem/motd", Duration::from_secs(30))?;
    assert_ne!(status, 0, "tampered file was served: {out}");
    assert!(out.contains("I/O error"), "{out}");
    assert!(
        !out.contains("minimal"),
        "some of the tampered data leaked: {out}"
    );
    // The kernel says why on the console.
    let log = std::fs::read_to_string(vm.log_path())?;
    let why = log
        .lines()
        .find(|l| l.contains("device-mapper: verity:") && l.contains("is corrupted"));
    assert!(
        why.is_some(),
        "no verity message on the console:\n{}",
        vm.tail(30)
    );
    Ok(())
}

#[test]
fn tampered_superblock_stops_the_boot_before_usr_is_mounted() -> Result<()> {
    let env = Env::get()?;
    let disk = Disk::copy(&env.disk())?;
    disk.flip_byte(disk.slot_offset(Slot::A)? + 1024 + 8)?;
    let mut cfg = VmConfig::new("tamper-superblock");
    cfg.extra = vec!["-no-reboot".into()];
    let mut vm = Vm::start(&cfg, &disk)?;
    let fatal = vm.wait_for("tandem-init: FATAL:", BOOT)?;
    assert!(
        fatal.text.contains("does not match tandem.usrhash"),
        "{}",
        fatal.text
    );
    // With -no-reboot, QEMU ends at the reboot the initramfs asks for.
    vm.wait_exit(Duration::from_secs(60))?;
    let log = std::fs::read_to_string(vm.log_path())?;
    assert!(!log.contains("system ready"), "booted on a tampered /usr");
    assert!(
        !log.contains("switching root"),
        "switched root onto a tampered /usr"
    );
    Ok(())
}
