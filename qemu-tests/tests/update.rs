//! Update engine scenarios (issue: signed, verified, resumable A/B
//! updates), against real HTTP from `tandem serve` on the host.

use std::time::Duration;

use anyhow::Result;
use qemu_tests::fixtures::{BROKEN_BOOT, Build};
use qemu_tests::lab::{Lab, NodeSetup};
use qemu_tests::server::Fault;
use tandem_contract::UpdateStateKind;
use tandem_slot::{Slot, TRIAL_BOOTS};

/// The update engine's state in `tandemctl update status --json`, typed: a
/// renamed state fails to compile here instead of timing out in a VM.
fn state(s: &serde_json::Value) -> Option<UpdateStateKind> {
    s["state"].as_str()?.parse().ok()
}

const BOOT: Duration = Duration::from_secs(180);
const INSTALL: Duration = Duration::from_secs(300);

/// The bootloader's line for trial boot `n` (1-based) of a new slot.
fn trial_boot(slot: Slot, n: u8, version: &str) -> String {
    let tries = TRIAL_BOOTS + 1 - n;
    format!(
        "booting slot {slot} (priority 2, tries {tries} -> {}, unconfirmed) version {version}",
        tries - 1
    )
}

fn first_trial_boot(slot: Slot, version: &str) -> String {
    trial_boot(slot, 1, version)
}

/// Scenario 1: v1 → v2 into slot B, reboot, confirmed; then v2 → v3 back
/// into slot A.
#[test]
fn v1_to_v2_to_v3_through_both_slots() -> Result<()> {
    let lab = Lab::new("update-chain")?;
    lab.publish("stable", Build::V2, &[])?;
    let disk = lab.disk(&NodeSetup::new(Build::V1))?;
    let mut vm = lab.boot("update-chain", &disk)?;

    // The node finds 1.1.0, installs it into B and the agent reboots it.
    let line = vm.wait_for("tandem-boot: booting slot", INSTALL)?;
    assert!(
        line.text.contains(&first_trial_boot(Slot::B, "1.1.0")),
        "{}",
        line.text
    );
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", BOOT)?;
    let s = vm.wait_update("the new slot confirmed", BOOT, |s| {
        s["boot"]["state"] == "confirmed"
    })?;
    assert_eq!(s["running_version"], "1.1.0");
    // Only the blocks that differ from the running slot were downloaded:
    // under 1 % of the payload.
    let served =
        lab.server.bytes_served("1.1.0/usr.payload")? + lab.server.bytes_served("1.1.0/usr.img")?;
    let payload = lab.payload_size(Build::V2)?;
    eprintln!(
        "1.0.0 -> 1.1.0 (one file changed): {served} /usr bytes downloaded, payload {payload}"
    );
    assert!(
        served > 0 && served < payload / 100,
        "{served} /usr bytes downloaded, payload {payload}"
    );

    // 1.2.0 goes back into A.
    lab.publish("stable", Build::V3, &[])?;
    let line = vm.wait_for("tandem-boot: booting slot", INSTALL)?;
    assert!(
        line.text.contains(&first_trial_boot(Slot::A, "1.2.0")),
        "{}",
        line.text
    );
    vm.wait_for("tandem: system ready (slot A, version 1.2.0)", BOOT)?;
    vm.wait_update("1.2.0 confirmed", BOOT, |s| {
        s["boot"]["state"] == "confirmed" && s["running_version"] == "1.2.0"
    })?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    assert_eq!(
        disk.cgpt_slot(Slot::A)?,
        (2, 0, true),
        "A runs 1.2.0, confirmed"
    );
    assert_eq!(
        disk.cgpt_slot(Slot::B)?,
        (1, 0, true),
        "B keeps 1.1.0 as the fallback"
    );
    Ok(())
}

/// Scenario 2: a release that cannot boot (its initramfs cannot mount /usr).
/// The node boots it once: its early init gives the slot up and records
/// why, the node falls back to the old slot, reports the rollback with that
/// evidence, and never tries that version again.
#[test]
fn broken_release_rolls_back_and_is_not_retried() -> Result<()> {
    let lab = Lab::new("update-broken")?;
    lab.publish("stable", Build::V3Broken, &[])?;
    let disk = lab.disk(&NodeSetup::new(Build::V1))?;
    let mut vm = lab.boot("update-broken", &disk)?;

    let line = vm.wait_for("tandem-boot: booting slot", INSTALL)?;
    assert!(
        line.text.contains(&first_trial_boot(Slot::B, "1.2.0")),
        "{}",
        line.text
    );
    // The early init cannot mount /usr, gives its slot up and reboots ...
    let fatal = vm.wait_for("tandem-init: FATAL:", BOOT)?;
    assert!(fatal.text.contains(BROKEN_BOOT), "{}", fatal.text);
    vm.wait_for("tandem-init: slot B given up; slot A boots next", BOOT)?;
    // ... and the bootloader picks A after this one trial boot.
    let line = vm.wait_for("tandem-boot: booting slot", BOOT)?;
    assert!(
        line.text
            .contains("booting slot A (priority 1, tries 0 -> 0, successful) version 1.0.0"),
        "{}",
        line.text
    );
    vm.wait_for("tandem: system ready (slot A, version 1.0.0)", BOOT)?;

    let s = vm.wait_update("the rollback reported", BOOT, |s| {
        state(s) == Some(UpdateStateKind::RolledBack)
    })?;
    assert_eq!(s["version"], "1.2.0", "{s:#}");
    assert!(s["failed_versions"].to_string().contains("1.2.0"), "{s:#}");
    // The evidence: the early boot's own failure, recorded on ROOT.
    assert_eq!(s["rollback"]["evidence"], "early-boot", "{s:#}");
    let reason = s["rollback"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("the early boot of slot B failed:") && reason.contains(BROKEN_BOOT),
        "{reason}"
    );
    assert_eq!(s["incidents"][0]["kind"], "boot-failed", "{s:#}");
    assert_eq!(s["incidents"][0]["slot"], "B", "{s:#}");
    let usr_served = || -> Result<u64> {
        Ok(lab.server.bytes_served("1.2.0/usr.payload")?
            + lab.server.bytes_served("1.2.0/usr.img")?)
    };
    let fetched = usr_served()?;
    // Several more checks (every 5 s): the version is refused, nothing fetched.
    std::thread::sleep(Duration::from_secs(20));
    let s = vm.update_status()?;
    assert_eq!(s["running_version"], "1.0.0");
    assert!(
        s.to_string().contains("failed to come up on this node"),
        "{s:#}"
    );
    assert_eq!(
        usr_served()?,
        fetched,
        "the failed version was downloaded again"
    );
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    let boots_of_b = vm
        .lines()
        .iter()
        .filter(|l| l.text.contains("tandem-boot: booting slot B"))
        .count();
    assert_eq!(
        boots_of_b, 1,
        "the broken release was booted more than once"
    );
    drop(vm);
    let (_, tries, successful) = disk.cgpt_slot(Slot::B)?;
    assert_eq!((tries, successful), (0, false), "B given up");
    assert_eq!(
        disk.cgpt_slot(Slot::A)?,
        (1, 0, true),
        "A still the confirmed slot"
    );
    Ok(())
}

/// Scenario 2b: power cuts during a good release's trial, once in its
/// first boot and once during its health wait, are not a failure: the
/// next boot goes on with the trial, the node ends on the new version,
/// confirmed, and nothing is recorded as failed.
#[test]
fn power_cuts_during_the_trial_are_not_a_failure() -> Result<()> {
    let lab = Lab::new("update-trialcut")?;
    lab.publish("stable", Build::V2, &[])?;
    let mut setup = NodeSetup::new(Build::V1);
    // A health wait long enough to cut into.
    setup.extra = "health-grace = \"40s\"\n".into();
    let disk = lab.disk(&setup)?;
    let mut vm = lab.boot("update-trialcut-0", &disk)?;
    // Cut 1: in the first trial boot, once its early init runs.
    vm.wait_for(&trial_boot(Slot::B, 1, "1.1.0"), INSTALL)?;
    vm.wait_for("tandem-init: initramfs started", BOOT)?;
    vm.kill();
    drop(vm);
    // Cut 2: the second trial boot comes up and waits out its health grace.
    let mut vm = qemu_tests::Vm::start(&qemu_tests::VmConfig::new("update-trialcut-1"), &disk)?;
    vm.wait_for(&trial_boot(Slot::B, 2, "1.1.0"), BOOT)?;
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", BOOT)?;
    let s = vm.wait_update("the health wait", BOOT, |s| {
        s["boot"]["state"] == "checking"
    })?;
    assert_eq!(s["trial"]["boot"], 2, "{s:#}");
    vm.kill();
    drop(vm);
    // The third trial boot is confirmed.
    let mut vm = qemu_tests::Vm::start(&qemu_tests::VmConfig::new("update-trialcut-2"), &disk)?;
    vm.wait_for(&trial_boot(Slot::B, 3, "1.1.0"), BOOT)?;
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", BOOT)?;
    let s = vm.wait_update("the third trial boot", BOOT, |s| s["trial"]["boot"] == 3)?;
    assert_ne!(s["boot"]["state"], "confirmed", "{s:#}");
    let s = vm.wait_update("1.1.0 confirmed", BOOT, |s| {
        s["boot"]["state"] == "confirmed"
    })?;
    assert_eq!(s["running_version"], "1.1.0", "{s:#}");
    assert_eq!(s["failed_versions"], serde_json::json!([]), "{s:#}");
    assert!(s["rollback"].is_null(), "{s:#}");
    let log = std::fs::read_to_string(vm.log_path())?;
    assert!(!log.contains("booting slot A"), "fell back to A");
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    assert_eq!(disk.cgpt_slot(Slot::B)?, (2, 0, true), "B confirmed");
    assert_eq!(disk.cgpt_slot(Slot::A)?, (1, 0, true), "A the fallback");
    Ok(())
}

/// Scenario 3: power cuts during the download and during the final check
/// of the written slot. Every time the node boots the old slot, resumes,
/// and in the end installs the version without fetching verified chunks
/// again.
#[test]
fn power_cuts_resume_without_refetching() -> Result<()> {
    let lab = Lab::new("update-powercut")?;
    lab.publish("stable", Build::V2Big, &[])?;
    lab.publish("old", Build::V1, &[])?;
    // What an uncut update fetches of /usr, by the node's own code on the host.
    let needed = lab.usr_fetch_cost(Build::V1, Build::V2Big)?;
    // Slow enough to cut in the middle: about 2 MB/s.
    lab.proxy.set(Fault::Throttle(2 << 20));
    let disk = lab.disk(&NodeSetup::new(Build::V1))?;
    let payload = lab.payload_size(Build::V2Big)?;
    let mut cuts = 0;
    // Cut twice while downloading: at a quarter and at two thirds of the
    // slot written.
    for (i, percent) in [25.0, 66.0].into_iter().enumerate() {
        let mut vm = lab.boot(&format!("update-powercut-{i}"), &disk)?;
        let ready = vm
            .lines()
            .into_iter()
            .rev()
            .find(|l| l.text.contains("system ready"))
            .map(|l| l.text)
            .unwrap_or_default();
        assert!(ready.contains("slot A, version 1.0.0"), "boot {i}: {ready}");
        vm.wait_update(&format!("{percent} % of the slot written"), INSTALL, |s| {
            state(s) == Some(UpdateStateKind::Downloading)
                && s["percent"].as_f64().unwrap_or(0.0) > percent
        })?;
        vm.kill();
        cuts += 1;
    }
    // Third cut: after the last chunk, while the slot is re-read.
    lab.proxy.set(Fault::None);
    let mut vm = lab.boot("update-powercut-2", &disk)?;
    vm.wait_update("the written slot being verified", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::Verifying)
    })?;
    vm.kill();
    cuts += 1;

    let mut vm = lab.boot("update-powercut-3", &disk)?;
    let line = vm.wait_for("tandem-boot: booting slot", INSTALL)?;
    assert!(
        line.text.contains("booting slot B") && line.text.contains("version 1.1.0"),
        "{}",
        line.text
    );
    vm.wait_for("tandem: system ready (slot B, version 1.1.0)", BOOT)?;
    vm.wait_update("1.1.0 confirmed", BOOT, |s| {
        s["boot"]["state"] == "confirmed"
    })?;
    // What a cut may cost: the chunks written since the last sync (1 s at
    // 2 MB/s), the chunk in flight, and what sat in socket buffers.
    let fetched = lab.proxy.delivered("1.1.0/usr.payload") + lab.proxy.delivered("1.1.0/usr.img");
    let allowance = cuts * (4 << 20);
    eprintln!(
        "power cuts: {cuts}; payload {payload} bytes; fetched {fetched} bytes in all (allowance {allowance})"
    );
    assert!(
        fetched >= needed && fetched <= needed + allowance,
        "fetched {fetched} of a {payload}-byte payload across {cuts} cuts"
    );
    Ok(())
}

/// What `fsck.vfat -n` found wrong, without its banner and summary lines.
fn fsck_problems(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with("fsck.fat ") && !l.contains(" files, ") && !l.trim().is_empty())
        .collect()
}

/// Scenario 3b: power cuts while the kernel and initramfs are written to
/// the ESP, several on one disk, each checked on the host right after the
/// cut. The next boot repairs what a cut left; after the update completes
/// `fsck.vfat -n` reports nothing and no temporary file is left.
#[test]
fn power_cuts_while_the_esp_is_written_leave_it_clean() -> Result<()> {
    let lab = Lab::new("update-espcut")?;
    lab.publish("stable", Build::V2, &[])?;
    let mut setup = NodeSetup::new(Build::V1);
    setup.strategy = "off";
    let disk = lab.disk(&setup)?;
    // Where the cuts land: as a file's write starts, and into it (the
    // whole ESP write takes about a second here).
    let cuts = [
        ("vmlinuz-b", "0"),
        ("vmlinuz-b", "0.3"),
        ("initrd-b", "0"),
        ("vmlinuz-b", "0.6"),
    ];
    let mut damaged = 0;
    let mut repaired = Vec::new();
    let mut last_damaged = false;
    for (i, (file, delay)) in cuts.iter().enumerate() {
        let mut vm = lab.boot(&format!("update-espcut-{i}"), &disk)?;
        if last_damaged {
            let s = vm.wait_update("the ESP repair at start", BOOT, |s| {
                s["esp_repair"].is_string()
            })?;
            eprintln!("boot {i}: {}", s["esp_repair"]);
            repaired.push(s["esp_repair"].to_string());
        }
        // A loop on the node watches for the step and says when to cut;
        // if the install got past it, the cuts are over.
        vm.send(&format!(
            "while :; do s=$(tandemctl update status --json); case \"$s\" in *'writing EFI/tandem/{file}'*) sleep {delay}; echo ESP-CUT-\"NOW\"; break;; *updated-need-reboot*) echo ESP-CUT-\"LATE\"; break;; esac; done\n"
        ))?;
        let (which, _) = vm.wait_for_any(&["ESP-CUT-NOW", "ESP-CUT-LATE"], INSTALL)?;
        if which == 1 {
            eprintln!("cut {i} ({file} + {delay} s): the install was done before it");
            break;
        }
        vm.kill();
        drop(vm);
        let (code, text) = disk.fsck_esp()?;
        let problems = fsck_problems(&text);
        eprintln!("cut {i} ({file} + {delay} s): fsck.vfat -n exit {code}: {problems:?}");
        last_damaged = !problems.is_empty();
        damaged += usize::from(last_damaged);
    }
    assert!(
        damaged >= 2,
        "only {damaged} cut(s) left the ESP inconsistent: the test did not cut into the writes"
    );
    assert_eq!(
        repaired.len(),
        damaged - usize::from(last_damaged),
        "a damaged ESP was not repaired at start"
    );
    let mut vm = lab.boot("update-espcut-done", &disk)?;
    vm.wait_update("1.1.0 installed", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdatedNeedReboot)
    })?;
    vm.send("poweroff\n")?;
    vm.wait_exit(Duration::from_secs(60))?;
    drop(vm);
    let (code, text) = disk.fsck_esp()?;
    assert!(
        code == 0 && fsck_problems(&text).is_empty(),
        "fsck.vfat -n after the update: exit {code}\n{text}"
    );
    let files = disk.esp_files()?;
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".new") || f.to_lowercase().ends_with(".new")),
        "temporary files left: {files:?}"
    );
    for f in ["vmlinuz-b", "initrd-b", "slot-b.conf"] {
        assert!(
            files
                .iter()
                .any(|l| l.ends_with(&format!("/EFI/tandem/{f}"))),
            "{f} missing: {files:?}"
        );
    }
    eprintln!("{damaged} cuts left the ESP inconsistent; repairs at start: {repaired:?}");
    Ok(())
}

/// Runs `tandemctl update check` and returns the update status after it.
fn check(vm: &mut qemu_tests::Vm) -> Result<serde_json::Value> {
    let _ = vm.run_status("tandemctl update check", Duration::from_secs(120))?;
    vm.update_status()
}

/// Replaces a repository file's bytes for the duration of a closure.
fn with_file<T>(path: &std::path::Path, bytes: &[u8], f: impl FnOnce() -> Result<T>) -> Result<T> {
    let original = std::fs::read(path)?;
    std::fs::write(path, bytes)?;
    let out = f();
    std::fs::write(path, original)?;
    out
}

/// Scenario 4: attacks and bad input are refused (or retried) with a clear
/// status, nothing is written, and the node keeps running its version.
#[test]
fn attacks_and_bad_input_are_refused() -> Result<()> {
    let lab = Lab::new("update-attacks")?;
    let mut setup = NodeSetup::new(Build::V2);
    setup.strategy = "off";
    let disk = lab.disk(&setup)?;
    let mut vm = lab.boot("update-attacks", &disk)?;
    let pointer = lab.repo.join("tandem-minimal/channels/stable.json");
    let expect_error = |s: &serde_json::Value, needle: &str| {
        assert_eq!(
            state(s),
            Some(UpdateStateKind::Error),
            "expected a refusal containing {needle:?}: {s:#}"
        );
        assert!(
            s["reason"].as_str().unwrap_or("").contains(needle),
            "expected {needle:?} in {s:#}"
        );
        assert_eq!(s["running_version"], "1.1.0");
    };

    // A downgrade.
    lab.publish("stable", Build::V1, &[])?;
    expect_error(&check(&mut vm)?, "lower than the running 1.1.0");

    // Signed by a key the image does not trust.
    lab.fixtures.publish(
        &lab.repo,
        "stable",
        Build::V3,
        &lab.fixtures.untrusted_key,
        &[],
    )?;
    expect_error(&check(&mut vm)?, "signed by no trusted key");

    // A properly signed pointer, then altered.
    lab.publish("stable", Build::V3, &[])?;
    let good = std::fs::read_to_string(&pointer)?;
    let altered = good.replacen("\\\"issued\\\":", "\\\"issued\\\":1", 1);
    assert_ne!(altered, good, "pointer layout changed: {good}");
    with_file(&pointer, altered.as_bytes(), || {
        expect_error(&check(&mut vm)?, "does not verify");
        Ok(())
    })?;
    with_file(&pointer, b"{\"signed\": \"trunc", || {
        expect_error(&check(&mut vm)?, "malformed");
        Ok(())
    })?;

    // Expired (freeze attack).
    lab.publish("stable", Build::V3, &["--expires-in", "1s"])?;
    // Expiry is judged by the node's clock, which may lag the host's by a
    // second or more under TCG: wait until the node's clock is past it.
    let signed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&pointer)?)?;
    let inner: serde_json::Value = serde_json::from_str(signed["signed"].as_str().unwrap_or("{}"))?;
    let expires = inner["expires"].as_u64().unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while vm
        .run("date +%s", Duration::from_secs(30))?
        .trim()
        .parse::<u64>()?
        <= expires
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the node's clock does not pass {expires}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    expect_error(&check(&mut vm)?, "expired");

    // Truncated and garbage manifests behind a valid, fresh pointer.
    lab.fixtures.promote(&lab.repo, "stable", "stable", &[])?; // re-sign with a fresh expiry
    let manifest = lab.repo.join("tandem-minimal/1.2.0/manifest.json");
    let good_manifest = std::fs::read(&manifest)?;
    std::fs::write(&manifest, &good_manifest[..good_manifest.len() / 2])?;
    expect_error(
        &check(&mut vm)?,
        "manifest does not match the signed pointer",
    );
    std::fs::write(&manifest, vec![b'x'; good_manifest.len()])?;
    expect_error(
        &check(&mut vm)?,
        "manifest does not match the signed pointer",
    );
    // Still nothing written: slot B is as it was flashed (empty).
    let slots: serde_json::Value =
        serde_json::from_str(&vm.run("tandemctl slot status --json", Duration::from_secs(30))?)?;
    assert_eq!(
        slots["B"],
        serde_json::json!({"priority": 0, "tries": 0, "successful": false}),
        "{slots:#}"
    );

    // A tampered block: refused before any of its bytes reach the disk.
    // The top block of the hash tree is the first the node fetches (the
    // root differs in every version); the node running 1.1.0 needs no
    // whole chunk from the payload.
    std::fs::write(&manifest, &good_manifest)?;
    let payload = lab.repo.join("tandem-minimal/1.2.0/usr.img");
    let good_payload = std::fs::read(&payload)?;
    let m: serde_json::Value = serde_json::from_slice(&good_manifest)?;
    let at = (m["usr"]["verity"]["data_blocks"].as_u64().unwrap_or(0) * 4096 + 100) as usize;
    let mut bad = good_payload.clone();
    bad[at] ^= 0xFF;
    std::fs::write(&payload, &bad)?;
    let s = vm.wait_update("the tampered block refused", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::Error)
            && s["reason"]
                .as_str()
                .unwrap_or("")
                .contains("does not match the signed manifest")
    })?;
    assert!(
        s["reason"]
            .as_str()
            .unwrap_or("")
            .contains("none of its bytes were written"),
        "{s:#}"
    );
    assert_eq!(s["running_version"], "1.1.0");

    // A server that stalls, then one that drops connections: the node
    // retries with backoff and finishes once the server behaves. Each
    // connection passes 2 KiB of files, less than one block: the few
    // blocks 1.2.0 needs cannot slip through before the fault shows.
    std::fs::write(&payload, &good_payload)?;
    lab.proxy.set(Fault::StallAfter(2 << 10));
    let s = vm.wait_update("the stall reported", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::Error)
            && s["reason"].as_str().unwrap_or("").contains("fetching")
    })?;
    eprintln!("stalled server: {}", s["reason"]);
    lab.proxy.set(Fault::DropAfter(2 << 10));
    let s = vm.wait_update("the dropped connection reported", INSTALL, |s| {
        s["last_result"]
            .as_str()
            .unwrap_or("")
            .contains("disconnected")
    })?;
    eprintln!("dropping server: {}", s["last_result"]);
    lab.proxy.set(Fault::None);
    let s = vm.wait_update("1.2.0 installed after all", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdatedNeedReboot)
    })?;
    assert_eq!(s["version"], "1.2.0");
    assert_eq!(
        s["running_version"], "1.1.0",
        "reboot-strategy off: still running 1.1.0"
    );
    Ok(())
}

/// Scenario 5: channels and staged rollout. A beta node gets what stable
/// does not serve; after promotion a stable node gets it; a rollout window
/// holds a node back until its turn, and `apply` overrides it.
#[test]
fn channels_promotion_and_rollout() -> Result<()> {
    let lab = Lab::new("update-channels")?;
    lab.publish("stable", Build::V1, &[])?;
    lab.publish("beta", Build::V2, &[])?;
    let mut beta_setup = NodeSetup::new(Build::V1);
    beta_setup.strategy = "off";
    beta_setup.channel = Some("beta");
    let mut stable_setup = NodeSetup::new(Build::V1);
    stable_setup.strategy = "off";
    let (beta_disk, stable_disk) = (lab.disk(&beta_setup)?, lab.disk(&stable_setup)?);
    let mut beta = lab.boot("channels-beta", &beta_disk)?;
    let mut stable = lab.boot("channels-stable", &stable_disk)?;

    let s = beta.wait_update("beta installs 1.1.0", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdatedNeedReboot)
    })?;
    assert_eq!(
        (s["version"].as_str(), s["channel"].as_str()),
        (Some("1.1.0"), Some("beta"))
    );
    let s = check(&mut stable)?;
    assert_eq!(state(&s), Some(UpdateStateKind::Idle), "{s:#}");
    assert!(
        s["last_result"]
            .as_str()
            .unwrap_or("")
            .contains("up to date"),
        "{s:#}"
    );

    lab.fixtures
        .promote(&lab.repo, "beta", "stable", &["1.1.0"])?;
    let s = stable.wait_update("stable installs 1.1.0 after promotion", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdatedNeedReboot)
    })?;
    assert_eq!(s["version"], "1.1.0");

    // A rollout over ten years: the beta node waits for its turn.
    beta.send("reboot\n")?;
    beta.wait_for("tandem: system ready (slot B, version 1.1.0)", BOOT)?;
    beta.wait_update("1.1.0 confirmed", BOOT, |s| {
        s["boot"]["state"] == "confirmed"
    })?;
    lab.publish("beta", Build::V3, &["--rollout-duration", "3650d"])?;
    let s = beta.wait_update("1.2.0 offered, waiting for its turn", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdateAvailable)
    })?;
    let eligible = s["eligible_at"].as_u64().unwrap_or(0);
    let now = qemu_tests_now();
    assert!(
        eligible > now + 3600,
        "eligible at {eligible}, now {now}: {s:#}"
    );
    // Move the window so that this node's turn comes in 20 s: it installs
    // by itself when its time comes, not before.
    let start = s["eligible_at"].as_u64().unwrap_or(0);
    let pointer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        lab.repo.join("tandem-minimal/channels/beta.json"),
    )?)?;
    let signed: serde_json::Value =
        serde_json::from_str(pointer["signed"].as_str().unwrap_or("{}"))?;
    let offset = start - signed["rollout"]["start"].as_u64().unwrap_or(0);
    let new_start = now + 20 - offset.min(now + 20);
    lab.fixtures.promote(
        &lab.repo,
        "beta",
        "beta",
        &[
            "--rollout-start",
            &new_start.to_string(),
            "--rollout-duration",
            "3650d",
        ],
    )?;
    let s = check(&mut beta)?;
    let eligible = s["eligible_at"].as_u64().unwrap_or(0);
    assert!(
        state(&s) == Some(UpdateStateKind::UpdateAvailable) && eligible > qemu_tests_now(),
        "{s:#}"
    );
    let s = beta.wait_update("1.2.0 installed at its turn", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdatedNeedReboot)
    })?;
    assert!(qemu_tests_now() >= eligible, "installed before its turn");
    assert_eq!(s["version"], "1.2.0");

    // `apply` overrides the wait: the stable node, after a reboot into
    // 1.1.0, gets 1.2.0 at once although its turn is years away.
    stable.send("reboot\n")?;
    stable.wait_for("tandem: system ready (slot B, version 1.1.0)", BOOT)?;
    stable.wait_update("1.1.0 confirmed", BOOT, |s| {
        s["boot"]["state"] == "confirmed"
    })?;
    lab.publish("stable", Build::V3, &["--rollout-duration", "3650d"])?;
    stable.wait_update("1.2.0 offered", INSTALL, |s| {
        state(s) == Some(UpdateStateKind::UpdateAvailable)
    })?;
    stable.run("tandemctl update apply", INSTALL)?;
    let s = stable.update_status()?;
    assert_eq!(
        (state(&s), s["version"].as_str()),
        (Some(UpdateStateKind::UpdatedNeedReboot), Some("1.2.0")),
        "{s:#}"
    );
    Ok(())
}

fn qemu_tests_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
