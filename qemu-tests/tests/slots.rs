//! Scenarios 2 and 3: the bootloader follows the GPT attributes set by
//! Debian's cgpt, spends a try on an unconfirmed slot, and falls back to the
//! old slot by itself when the new one does not come up.

use std::time::Duration;

use anyhow::Result;
use qemu_tests::{Disk, Env, Vm, VmConfig};
use tandem_slot::Slot;

const BOOT: Duration = Duration::from_secs(120);

/// A private copy of the example image with slot A cloned into slot B and
/// B prioritised (priority 2, tries 1) with cgpt.
fn b_prioritised(env: &Env) -> Result<Disk> {
    let disk = Disk::copy(&env.disk())?;
    disk.clone_slot(Slot::A, Slot::B)?;
    disk.cgpt(&["add", "-i", "4", "-P", "2", "-T", "1", "-S", "0"])?;
    assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 1, false));
    Ok(disk)
}

#[test]
fn switch_by_attributes_boots_b_and_spends_its_try() -> Result<()> {
    let env = Env::get()?;
    let disk = b_prioritised(&env)?;
    let mut vm = Vm::start(&VmConfig::new("switch"), &disk)?;
    let line = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        line.text
            .contains("booting slot B (priority 2, tries 1 -> 0, unconfirmed)"),
        "{}",
        line.text
    );
    vm.wait_for("tandem: system ready (slot B, version 1.0.0)", BOOT)?;
    let mounts = vm.run("cat /proc/cmdline", Duration::from_secs(30))?;
    assert!(mounts.contains("tandem.slot=b"), "{mounts}");
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    // The try is spent; whether the update engine's health check already
    // confirmed B (successful) depends on how long the node ran.
    let (p, t, _) = disk.cgpt_slot(Slot::B)?;
    assert_eq!((p, t), (2, 0), "cgpt: B's tries went 1 -> 0");
    assert_eq!(disk.cgpt_slot(Slot::A)?, (1, 0, true), "A untouched");
    Ok(())
}

#[test]
fn broken_b_falls_back_to_a_without_help() -> Result<()> {
    let env = Env::get()?;
    let disk = b_prioritised(&env)?;
    // Corrupt B's file system superblock: verity refuses it at mount time.
    disk.flip_byte(disk.slot_offset(Slot::B)? + 1024 + 8)?;
    let mut vm = Vm::start(&VmConfig::new("fallback"), &disk)?;
    let first = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        first
            .text
            .contains("booting slot B (priority 2, tries 1 -> 0, unconfirmed)"),
        "{}",
        first.text
    );
    vm.wait_for("tandem-init: FATAL:", BOOT)?;
    // Corrupt /usr on a slot on trial: given up at once, with A to go to.
    vm.wait_for("tandem-init: slot B given up; slot A boots next", BOOT)?;
    vm.wait_for("tandem-init: rebooting in 5 s", BOOT)?;
    // No key pressed, no help: the machine reboots and picks A.
    let second = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        second
            .text
            .contains("booting slot A (priority 2, tries 0 -> 0, successful)"),
        "{}",
        second.text
    );
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    let (p, t, s) = disk.cgpt_slot(Slot::B)?;
    assert_eq!((t, s), (0, false), "cgpt: B exhausted (priority {p})");
    Ok(())
}

#[test]
fn missing_kernel_marks_the_slot_unbootable_and_boots_the_other() -> Result<()> {
    let env = Env::get()?;
    let disk = b_prioritised(&env)?;
    disk.delete_esp_file("EFI/tandem/vmlinuz-b")?;
    let mut vm = Vm::start(&VmConfig::new("missing-kernel"), &disk)?;
    let why = vm.wait_for("tandem-boot: cannot boot slot B", BOOT)?;
    assert!(
        why.text.contains("vmlinuz-b") && why.text.contains("unbootable"),
        "{}",
        why.text
    );
    let line = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        line.text
            .contains("booting slot A (priority 1, tries 0 -> 0, successful)"),
        "{}",
        line.text
    );
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    let (_, tries, successful) = disk.cgpt_slot(Slot::B)?;
    assert_eq!((tries, successful), (0, false), "B given up");
    Ok(())
}

#[test]
fn no_bootable_slot_says_why_and_resets_on_a_key() -> Result<()> {
    let env = Env::get()?;
    let disk = Disk::copy(&env.disk())?;
    disk.cgpt(&["add", "-i", "3", "-P", "1", "-T", "0", "-S", "0"])?;
    let mut vm = Vm::start(&VmConfig::new("no-slot"), &disk)?;
    vm.wait_for("tandem-boot: no bootable /usr slot", BOOT)?;
    let a = vm.wait_for("slot A:", BOOT)?;
    assert!(a.text.contains("given up"), "{}", a.text);
    vm.wait_for("press any key to restart", BOOT)?;
    vm.send("x")?;
    vm.wait_for("tandem-boot: restarting", BOOT)?;
    // The firmware starts over and the bootloader says the same again.
    vm.wait_for("tandem-boot: no bootable /usr slot", BOOT)?;
    Ok(())
}

#[test]
fn menu_boots_the_chosen_slot_once() -> Result<()> {
    let env = Env::get()?;
    let disk = b_prioritised(&env)?;
    disk.put_esp_file(
        "EFI/tandem/loader.conf",
        b"timeout 5\noptions console=ttyS0,115200 panic=10\n",
    )?;
    let mut vm = Vm::start(&VmConfig::new("menu"), &disk)?;
    vm.wait_for("Press A or B", BOOT)?;
    vm.send("a")?;
    let line = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(line.text.contains("booting slot A"), "{}", line.text);
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    assert_eq!(
        disk.cgpt_slot(Slot::B)?,
        (2, 1, false),
        "a menu choice does not spend B's try"
    );
    Ok(())
}
