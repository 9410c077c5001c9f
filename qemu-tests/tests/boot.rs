//! Scenario 1: firmware → bootloader → kernel → initramfs → system ready on
//! slot A; /usr is a read-only dm-verity device, ROOT is writable, the
//! network has an address; poweroff ends QEMU cleanly.

use std::time::Duration;

use anyhow::Result;
use qemu_tests::{Disk, Env, Vm, VmConfig};

const BOOT: Duration = Duration::from_secs(120);
const CMD: Duration = Duration::from_secs(30);

#[test]
fn boots_slot_a_with_verified_usr_and_network() -> Result<()> {
    let env = Env::get()?;
    let disk = Disk::overlay(&env.disk())?;
    let mut vm = Vm::start(&VmConfig::new("boot"), &disk)?;

    let decision = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        decision
            .text
            .contains("booting slot A (priority 1, tries 0 -> 0, successful) version 1.0.0"),
        "{}",
        decision.text
    );
    vm.wait_for("tandem-init: /usr verified (slot A), switching root", BOOT)?;
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;

    let mounts = vm.run("cat /proc/mounts", CMD)?;
    let usr = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/usr"))
        .unwrap_or_default();
    assert!(
        usr.starts_with("/dev/dm-") && usr.contains(" erofs ro"),
        "/usr is not the read-only verity device: {mounts}"
    );
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .unwrap_or_default();
    assert!(
        root.starts_with("/dev/vda9 / ext4 rw"),
        "ROOT is not vda9 read-write: {mounts}"
    );

    let (status, out) = vm.run_status("touch /usr/x", CMD)?;
    assert_ne!(status, 0, "writing /usr must fail: {out}");
    vm.run("touch /var/written && rm /var/written", CMD)?;

    let addr = vm.run("ip -4 addr show eth0", CMD)?;
    assert!(addr.contains("inet 10.0.2.15/"), "no DHCP address: {addr}");

    let status = vm.run("tandemctl status --json", CMD)?;
    let s: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(s["slot"], "A", "{status}");
    assert_eq!(s["version"], "1.0.0", "{status}");
    // A clean boot of the example image has nothing to warn about.
    assert_eq!(s["warnings"], serde_json::json!([]), "{status}");
    // Every running service has its cgroup, whose usage tandemctl reads.
    let services = s["services"].as_array().cloned().unwrap_or_default();
    assert!(services.iter().any(|v| v["name"] == "console"), "{status}");
    for svc in services.iter().filter(|v| v["state"] == "running") {
        let name = svc["name"].as_str().unwrap_or_default();
        assert_eq!(
            svc["cgroup"],
            format!("/sys/fs/cgroup/system/{name}.service"),
            "{status}"
        );
        assert!(svc["usage"]["tasks"].as_u64() >= Some(1), "{status}");
        assert!(svc["usage"]["memory_bytes"].as_u64() > Some(0), "{status}");
        assert!(svc["usage"]["cpu_usec"].as_u64().is_some(), "{status}");
    }
    // What the console shell starts is in the console's cgroup.
    let cgroup = vm.run("cat /proc/self/cgroup", CMD)?;
    assert!(
        cgroup.contains("0::/system/console.service"),
        "the shell's child is not in the console's cgroup: {cgroup}"
    );
    let warned: Vec<String> = vm
        .lines()
        .into_iter()
        .map(|l| l.text)
        .filter(|t| t.starts_with("tandem") && t.contains(": warning:"))
        .collect();
    assert!(warned.is_empty(), "warnings on the console: {warned:?}");

    vm.send("poweroff\n")?;
    let exit = vm.wait_exit(Duration::from_secs(60))?;
    assert!(exit.success(), "QEMU exit {exit:?}");
    Ok(())
}
