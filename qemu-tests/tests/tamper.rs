//! Scenario 4: corrupt /usr. A flipped byte inside a slot's file system is
//! caught by dm-verity: the modified data is never served, and the node
//! acts on it: with a confirmed other slot it switches to it (at run time
//! and before /usr is mounted) and records what happened; without one it
//! stays up and says so instead of rebooting into the same corruption.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use qemu_tests::etcd::EtcdCluster;
use qemu_tests::{Disk, Env, Vm, VmConfig};
use tandem_slot::Slot;

const BOOT: Duration = Duration::from_secs(120);
const MOTD: &[u8] = b"Tandem minimal image: /usr is read-only and verified";

/// A private copy of the example image whose slot B holds the same
/// version, confirmed (as after an earlier update): a good slot to go to.
fn with_a_good_slot_b(env: &Env) -> Result<Disk> {
    let disk = Disk::copy(&env.disk())?;
    disk.clone_slot(Slot::A, Slot::B)?;
    disk.cgpt(&["add", "-i", "4", "-P", "1", "-T", "0", "-S", "1"])?;
    Ok(disk)
}

/// A one-member etcd on the host, and the node's OEM agent.toml pointing
/// at it, so the node publishes its fleet record there.
fn fleet_etcd(disk: &Disk) -> Result<EtcdCluster> {
    let etcd = EtcdCluster::start(1)?;
    let port = etcd.client_port()?;
    disk.put_oem_file(
        "agent.toml",
        format!("[etcd]\nendpoints = [\"http://10.0.2.2:{port}\"]\n").as_bytes(),
    )?;
    Ok(etcd)
}

/// The node's fleet record once `done` accepts it.
fn fleet_record(
    etcd: &EtcdCluster,
    what: &str,
    done: impl Fn(&agent::fleet::NodeRecord) -> bool,
) -> Result<agent::fleet::NodeRecord> {
    let client = etcd.client()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (nodes, _) = agent::fleet::nodes(&client)?;
        if let Some(n) = nodes.into_iter().find(&done) {
            return Ok(n);
        }
        if Instant::now() > deadline {
            bail!("no fleet record with {what} in etcd");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The byte offset of the motd's text in `slot`.
fn motd_in(disk: &Disk, slot: Slot) -> Result<u64> {
    Ok(disk.find_in_slot(slot, MOTD)? + 7)
}

#[test]
fn tampered_file_is_never_served_and_the_node_stays_up_saying_so() -> Result<()> {
    let env = Env::get()?;
    let disk = Disk::copy(&env.disk())?;
    disk.flip_byte(motd_in(&disk, Slot::A)?)?;
    let etcd = fleet_etcd(&disk)?;
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
    // PID 1 notices within seconds (here at once: the boot itself read
    // the bad block); slot B is empty, so the node stays up.
    let line = log
        .lines()
        .find(|l| l.starts_with("tandem: /usr of slot A is corrupt on disk:"))
        .unwrap_or_default();
    assert!(
        line.contains("is corrupted")
            && line.contains("slot A kept: the other slot holds no confirmed version")
            && line.contains("staying up"),
        "{line:?}\n{}",
        vm.tail(30)
    );
    let status = vm.run("tandemctl status", Duration::from_secs(30))?;
    assert!(status.contains("usr:        CORRUPT:"), "{status}");
    let json = vm.run("tandemctl status --json", Duration::from_secs(30))?;
    let json: serde_json::Value = serde_json::from_str(&json)?;
    assert!(
        json["usr_corruption"]["what"]
            .as_str()
            .is_some_and(|w| w.contains("data block")),
        "{json:#}"
    );
    // The fleet sees it too.
    let record = fleet_record(&etcd, "the corruption", |n| n.usr_corruption.is_some())?;
    let c = record.usr_corruption.unwrap_or_default();
    assert!(
        c.contains("is corrupted") && c.contains("staying up"),
        "{c}"
    );
    // Still up, still serving what is sound.
    assert_eq!(
        vm.run("echo alive", Duration::from_secs(30))?.trim(),
        "alive"
    );
    assert_eq!(disk_attrs_after(vm, &disk)?, ((1, 0, true), (0, 0, false)));
    Ok(())
}

#[test]
fn corrupt_running_usr_switches_to_the_confirmed_other_slot() -> Result<()> {
    let env = Env::get()?;
    let disk = with_a_good_slot_b(&env)?;
    let etcd = fleet_etcd(&disk)?;
    let mut vm = Vm::start(&VmConfig::new("tamper-running"), &disk)?;
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;
    // Behind the running node's back: one byte of A's /usr on disk.
    disk.flip_byte(motd_in(&disk, Slot::A)?)?;
    // Whatever the page cache holds was verified before; read from disk.
    let (status, out) = vm.run_status(
        "echo 3 > /proc/sys/vm/drop_caches; cat /usr/share/tandem/motd",
        Duration::from_secs(30),
    )?;
    assert_ne!(status, 0, "tampered file was served: {out}");
    let line = vm.wait_for("tandem: /usr of slot A is corrupt on disk:", BOOT)?;
    assert!(
        line.text
            .contains("slot A given up; slot B boots next; rebooting"),
        "{}",
        line.text
    );
    let next = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        next.text
            .contains("booting slot B (priority 2, tries 0 -> 0, successful) version 1.0.0"),
        "{}",
        next.text
    );
    vm.wait_for("tandem: system ready (slot B, version 1.0.0)", BOOT)?;
    let motd = vm.run("cat /usr/share/tandem/motd", Duration::from_secs(30))?;
    assert!(motd.contains("minimal"), "{motd}");
    let s = vm.wait_update("the incident taken in", BOOT, |s| {
        s["incidents"].as_array().is_some_and(|a| !a.is_empty())
    })?;
    let i = &s["incidents"][0];
    assert_eq!(i["slot"], "A", "{s:#}");
    assert_eq!(i["kind"], "usr-corrupt", "{s:#}");
    assert!(
        i["what"]
            .as_str()
            .is_some_and(|w| w.contains("is corrupted")),
        "{s:#}"
    );
    let text = vm.run("tandemctl update status", Duration::from_secs(30))?;
    assert!(text.contains("incident:  slot A usr-corrupt"), "{text}");
    let record = fleet_record(&etcd, "the incident", |n| {
        n.slot == Some(Slot::B) && n.incident.is_some()
    })?;
    let incident = record.incident.unwrap_or_default();
    assert!(
        incident.starts_with("slot A usr-corrupt at ")
            && incident.contains("slot A given up; slot B boots next"),
        "{incident}"
    );
    assert_eq!(disk_attrs_after(vm, &disk)?, ((1, 0, false), (2, 0, true)));
    Ok(())
}

#[test]
fn tampered_superblock_with_a_good_other_slot_boots_it() -> Result<()> {
    let env = Env::get()?;
    let disk = with_a_good_slot_b(&env)?;
    disk.flip_byte(disk.slot_offset(Slot::A)? + 1024 + 8)?;
    let mut vm = Vm::start(&VmConfig::new("tamper-superblock-switch"), &disk)?;
    let fatal = vm.wait_for("tandem-init: FATAL:", BOOT)?;
    assert!(
        fatal.text.contains("does not match tandem.usrhash"),
        "{}",
        fatal.text
    );
    vm.wait_for("tandem-init: slot A given up; slot B boots next", BOOT)?;
    vm.wait_for("tandem: system ready (slot B, version 1.0.0)", BOOT)?;
    let s = vm.wait_update("the incident taken in", BOOT, |s| {
        s["incidents"].as_array().is_some_and(|a| !a.is_empty())
    })?;
    assert_eq!(s["incidents"][0]["kind"], "usr-corrupt", "{s:#}");
    assert!(
        s["incidents"][0]["what"]
            .as_str()
            .is_some_and(|w| w.contains("does not match tandem.usrhash")),
        "{s:#}"
    );
    let log = std::fs::read_to_string(vm.log_path())?;
    assert!(
        !log.contains("/usr verified (slot A)") && !log.contains("system ready (slot A"),
        "A came up on a tampered /usr"
    );
    assert_eq!(disk_attrs_after(vm, &disk)?, ((1, 0, false), (2, 0, true)));
    Ok(())
}

#[test]
fn tampered_superblock_without_a_good_slot_stops_and_says_why() -> Result<()> {
    let env = Env::get()?;
    let disk = Disk::copy(&env.disk())?;
    disk.flip_byte(disk.slot_offset(Slot::A)? + 1024 + 8)?;
    let mut vm = Vm::start(&VmConfig::new("tamper-superblock"), &disk)?;
    let fatal = vm.wait_for("tandem-init: FATAL:", BOOT)?;
    assert!(
        fatal.text.contains("does not match tandem.usrhash"),
        "{}",
        fatal.text
    );
    vm.wait_for(
        "tandem-init: slot A kept: the other slot holds no confirmed version",
        BOOT,
    )?;
    vm.wait_for(
        "staying here instead of rebooting into the same corruption",
        BOOT,
    )?;
    // No reboot loop: 20 s later the machine is still there, no new boot.
    std::thread::sleep(Duration::from_secs(20));
    let log = std::fs::read_to_string(vm.log_path())?;
    assert_eq!(
        log.matches("tandem-boot: booting slot").count(),
        1,
        "rebooted:\n{}",
        vm.tail(20)
    );
    assert!(!log.contains("system ready"), "booted on a tampered /usr");
    assert!(
        !log.contains("switching root"),
        "switched root onto a tampered /usr"
    );
    vm.kill();
    Ok(())
}

/// Powers `vm` off (or waits for it to be gone) and reads both slots'
/// attributes as cgpt shows them.
#[allow(clippy::type_complexity)]
fn disk_attrs_after(mut vm: Vm, disk: &Disk) -> Result<((u8, u8, bool), (u8, u8, bool))> {
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    Ok((disk.cgpt_slot(Slot::A)?, disk.cgpt_slot(Slot::B)?))
}
