//! The early init: PID 1 in the initramfs.
//!
//! Mounts the API filesystems, arms the watchdog, loads the modules of
//! `/etc/tandem/modules.load`, finds the slot's /usr partition by the
//! PARTUUID on the command line (on a live boot, the ISO's live /usr:
//! [`crate::live`]), puts dm-verity over it, mounts ROOT read-write on
//! /sysroot (a tmpfs on a live boot) and the verified /usr read-only on
//! /sysroot/usr,
//! switches root and goes on as the system init ([`crate::system`]) in the
//! same process. Any failure prints `tandem-init: FATAL: …` and reboots: a
//! failed boot must reach the bootloader again. Once the disk is found, the
//! failure is first written down ([`failed`]): a slot on trial is given up
//! (its failure is evidence against the release), a corrupt /usr switches
//! to a confirmed other slot, and an incident on ROOT tells the next boot.
//!
//! Why no exec of a system init from /usr: this binary already is the
//! system init, of the same build as the slot's /usr (the image builder
//! makes both; an update writes both). Executing a second copy from /usr
//! would read it through dm-verity first (150 ms of hashing on a busy
//! 1-vCPU TCG guest) without adding trust: the initramfs comes from the
//! same ESP as the kernel and the verity root hash, so whoever can change
//! it can change what is verified in the first place.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_contract::incident::IncidentKind;
use tandem_slot::Slot;
use tandem_slot::guid::types;

use crate::cmdline::{self, BootArgs, UsrSource};
use crate::devmapper::{self, Verity};
use crate::disk::{self, Located};
use crate::early_log;
use crate::error::Error;
use crate::modules::{self, ModuleLine};
use crate::mount::{self, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
use crate::recovery;
use crate::status::{self, EarlyBoot, Timeline};
use crate::sys;
use crate::watchdog::{self, Watchdog};

/// Where the real root is assembled.
pub const SYSROOT: &str = "/sysroot";
/// The initramfs module list.
pub const MODULES_LIST: &str = "/etc/tandem/modules.load";
/// Base of the initramfs modules (`<release>/` is appended).
pub const MODULES_BASE: &str = "/lib/modules";
/// How long to wait for the /usr disk to appear.
pub const DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// ROOT's partition number.
pub const ROOT_PARTITION: u32 = tandem_contract::Partition::Root.number();
/// Device-mapper name of the verified /usr.
pub const DM_NAME: &str = "usr";

/// Entry point of `/init`. Never returns: it goes on as the system init or
/// reboots.
pub fn main() -> ! {
    let started = sys::boottime_us();
    if sys::getpid() != 1 {
        eprintln!("tandem-init: /init is the initramfs init and must run as PID 1");
        std::process::exit(2);
    }
    // Owned here, not in run(), so the watchdog stays open (armed, no
    // "did not stop" warning) through a FATAL reboot as well.
    let mut watchdog = None;
    let mut reached = Reached::default();
    match run(started, &mut watchdog, &mut reached) {
        Ok(early) => crate::system::main(early, watchdog),
        Err(err) => failed(&err, &reached, watchdog),
    }
}

/// How far the early boot got: what a failure can still act on.
#[derive(Debug, Default)]
struct Reached {
    /// The slot being booted, once the disk is found (not on a live boot).
    slot: Option<Slot>,
    /// Its disk.
    disk: Option<PathBuf>,
    /// ROOT's partition, once known.
    root: Option<PathBuf>,
    /// Whether ROOT is mounted on [`SYSROOT`].
    root_mounted: bool,
}

/// The early boot failed. On a disk, the slot rules decide what the
/// failure means: corrupt /usr gives the slot up when the other one holds
/// a confirmed version; any other failure gives up a slot on trial (one
/// failed trial is evidence enough). The decision goes into the slot table
/// and an incident on ROOT, then the machine reboots, except when corrupt
/// /usr has nowhere to go: rebooting would only fail again, so the node
/// stays and says why.
fn failed(err: &Error, reached: &Reached, watchdog: Option<Watchdog>) -> ! {
    let (Some(slot), Some(disk)) = (reached.slot, &reached.disk) else {
        fatal(err);
    };
    early_log!("FATAL: {err}");
    let kind = if err.is_corruption() {
        IncidentKind::UsrCorrupt
    } else {
        IncidentKind::BootFailed
    };
    let outcome = recovery::decide(disk, slot, kind);
    early_log!("{}", outcome.action);
    if let Some(root) = &reached.root {
        let root_dir = Path::new(SYSROOT);
        let mounted = reached.root_mounted
            || mount::mount(&root.to_string_lossy(), root_dir, "ext4", 0, None).is_ok();
        let recorded = if mounted {
            recovery::record(root_dir, slot, kind, &err.to_string(), &outcome)
        } else {
            Err(format!(
                "cannot mount ROOT ({}) to record the incident",
                root.display()
            ))
        };
        if let Err(e) = recorded {
            early_log!("warning: {e}");
        }
    }
    sys::sync();
    if kind == IncidentKind::UsrCorrupt && outcome.switch_to.is_none() {
        stay(slot, watchdog);
    }
    reboot_after_failure()
}

/// Corrupt /usr and no confirmed slot to switch to: the node waits here,
/// saying why every minute, instead of rebooting into the same corruption.
fn stay(slot: Slot, watchdog: Option<Watchdog>) -> ! {
    if let Some(w) = watchdog {
        let _ = w.disarm();
    }
    loop {
        early_log!(
            "/usr of slot {slot} is corrupt on disk and no other slot holds a confirmed version: staying here instead of rebooting into the same corruption; reinstall the node (`tandemctl install` from a Tandem ISO) or replace its disk"
        );
        sys::sleep(Duration::from_secs(60));
    }
}

/// Prints the FATAL marker, syncs and reboots. If even reboot(2) fails, PID 1
/// exits, the kernel panics and `panic=N` reboots.
pub fn fatal(err: &Error) -> ! {
    early_log!("FATAL: {err}");
    sys::sync();
    reboot_after_failure()
}

fn reboot_after_failure() -> ! {
    early_log!("rebooting in 5 s");
    sys::sleep(Duration::from_secs(5));
    let e = sys::reboot(libc::RB_AUTOBOOT);
    early_log!("reboot(2) failed: {e}; exiting so that the kernel panics (panic=N reboots)");
    std::process::exit(1)
}

fn mount_api() -> Result<(), Error> {
    mount::mount(
        "proc",
        Path::new("/proc"),
        "proc",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    mount::mount(
        "sysfs",
        Path::new("/sys"),
        "sysfs",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        None,
    )?;
    // CONFIG_DEVTMPFS_MOUNT is off: the kernel leaves /dev to us.
    mount::mount(
        "devtmpfs",
        Path::new("/dev"),
        "devtmpfs",
        MS_NOSUID,
        Some("mode=0755"),
    )?;
    Ok(())
}

fn load_modules(base: &Path, list: &[ModuleLine], failed: &mut Vec<String>) {
    for err in modules::load_all(base, list) {
        early_log!("warning: {err}");
        failed.push(err.to_string());
    }
}

fn arm_watchdog() -> Option<Watchdog> {
    let path = Path::new(watchdog::DEVICE);
    // devtmpfs creates the node while softdog registers; allow a moment.
    let deadline = std::time::Instant::now() + Duration::from_millis(500);
    while !path.exists() && std::time::Instant::now() < deadline {
        sys::sleep(Duration::from_millis(5));
    }
    if !path.exists() {
        early_log!(
            "warning: no {} (softdog not in modules.load?): a hang will not reboot",
            path.display()
        );
        return None;
    }
    match Watchdog::open(path) {
        Ok(w) => Some(w),
        Err(err) => {
            early_log!(
                "warning: {}",
                Error::Watchdog {
                    path: path.into(),
                    err
                }
            );
            None
        }
    }
}

fn run(
    started: u64,
    watchdog: &mut Option<Watchdog>,
    reached: &mut Reached,
) -> Result<EarlyBoot, Error> {
    let mut t = Timeline::default();
    mount_api()?;
    early_log!("initramfs started");
    t.step("API filesystems mounted");

    let mut modules_failed = Vec::new();
    // No list is fine: a kernel with everything built in needs none.
    let list = match modules::read_list(Path::new(MODULES_LIST)) {
        Err(Error::Read { err, .. }) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        other => modules::watchdog_first(other?),
    };
    let base = modules::modules_dir(Path::new(MODULES_BASE))
        .map_err(|err| Error::Sys { what: "uname", err })?;
    let split = list
        .iter()
        .position(|m| !m.is_watchdog())
        .unwrap_or(list.len());
    load_modules(&base, &list[..split], &mut modules_failed);
    *watchdog = arm_watchdog();
    t.step("watchdog armed");
    load_modules(&base, &list[split..], &mut modules_failed);
    t.step("modules loaded");

    let text = std::fs::read_to_string(cmdline::PROC_CMDLINE).map_err(|err| Error::Read {
        path: cmdline::PROC_CMDLINE.into(),
        err,
    })?;
    let args = cmdline::parse(&text)?;

    let live = args.usr == UsrSource::Live;
    let want = match args.usr {
        UsrSource::Partition(guid) => disk::Want::Partuuid(guid),
        UsrSource::Live => disk::Want::LiveUsr,
    };
    let usr = disk::wait_for(want, DEVICE_TIMEOUT)?;
    let (usr_node, root_node) = if live {
        (crate::live::usr_device(&usr)?, None)
    } else {
        check_slot(&args, &usr)?;
        reached.slot = Some(args.slot);
        reached.disk = Some(usr.disk_path());
        let root = root_partition(&usr)?;
        reached.root = Some(root.clone());
        (usr.partition_path(usr.number), Some(root))
    };
    t.step("disk found");

    // /run is carried into the system: it holds the hand-over file.
    mount::mount(
        "tmpfs",
        Path::new("/run"),
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        Some("mode=0755"),
    )?;

    let usr_dev = setup_verity(&args, &usr_node)?;
    t.step("verity device ready");

    let root_grow = match &root_node {
        Some(root) => {
            mount::mount(&root.to_string_lossy(), Path::new(SYSROOT), "ext4", 0, None)?;
            reached.root_mounted = true;
            t.step("ROOT mounted");
            let grown = crate::grow::grow_root_if_first_boot(&usr, root, Path::new(SYSROOT));
            if grown.is_some() {
                t.step("ROOT grown");
            }
            grown
        }
        None => {
            crate::live::mount_root(Path::new(SYSROOT))?;
            t.step("ROOT in RAM (live boot)");
            None
        }
    };
    let sysroot_usr = Path::new(SYSROOT).join("usr");
    mount::mount(
        &usr_dev.to_string_lossy(),
        &sysroot_usr,
        "erofs",
        MS_RDONLY | MS_NODEV,
        None,
    )?;
    t.step("/usr mounted");

    early_log!("/usr verified (slot {}), switching root", args.slot);
    if let Some(w) = watchdog.as_mut() {
        let _ = w.pet();
    }
    let early = EarlyBoot {
        initramfs_started_us: started,
        switch_root_us: sys::boottime_us(),
        slot: args.slot,
        disk: usr.disk_path().to_string_lossy().into_owned(),
        usr_partition: usr_node.to_string_lossy().into_owned(),
        usr_device: usr_dev.to_string_lossy().into_owned(),
        root_partition: root_node
            .map_or_else(|| "tmpfs".to_string(), |r| r.to_string_lossy().into_owned()),
        modules_failed,
        root_grow,
        steps: t.0,
        live,
    };
    status::write_json(Path::new(status::EARLY_FILE), &early)?;
    crate::switch_root::switch_root(Path::new(SYSROOT))?;
    Ok(early)
}

/// The partition named on the command line must be the slot's partition
/// number and of the /usr type: otherwise "slot A" would be a lie.
fn check_slot(args: &BootArgs, usr: &Located) -> Result<(), Error> {
    let UsrSource::Partition(partuuid) = args.usr else {
        return Ok(());
    };
    let mismatch = |what| Error::SlotMismatch {
        slot: args.slot,
        partuuid,
        number: usr.number,
        what,
        disk: usr.disk_name.clone(),
    };
    if Slot::from_partition_number(usr.number) != Some(args.slot) {
        return Err(mismatch("not that slot's partition number"));
    }
    match usr.gpt.partition(usr.number) {
        Some(e) if e.type_guid == types::USR => Ok(()),
        _ => Err(mismatch(
            "not of the /usr type 5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6",
        )),
    }
}

fn root_partition(usr: &Located) -> Result<PathBuf, Error> {
    let disk = usr.disk_name.clone();
    match usr.gpt.partition(ROOT_PARTITION) {
        None => {
            return Err(Error::RootPartition {
                disk,
                what: "is missing",
            });
        }
        Some(e) if e.type_guid != types::ROOT => {
            return Err(Error::RootPartition {
                disk,
                what: "is not of type 3884DD41-8582-4404-B9A8-E9B84F2DF50E",
            });
        }
        Some(_) => {}
    }
    let node = usr.partition_path(ROOT_PARTITION);
    if !disk::wait_for_node(&node, Duration::from_secs(2)) {
        return Err(Error::RootPartition {
            disk,
            what: "has no device node",
        });
    }
    Ok(node)
}

/// Creates the verity device and reads its first block, so that a wrong
/// root hash is reported as such (rather than as a failed mount) and /usr is
/// never mounted from anything but the verified device.
fn setup_verity(args: &BootArgs, usr_node: &Path) -> Result<PathBuf, Error> {
    let verity = Verity {
        device: disk::dev_numbers(usr_node)?,
        data_blocks: args.verity.data_blocks,
        root_hash: args.verity.root_hash.clone(),
        salt: args.verity.salt.clone(),
    };
    let uuid = format!("TANDEM-USR-{}", args.slot);
    let dev =
        devmapper::create_readonly(DM_NAME, &uuid, verity.sectors(), "verity", &verity.params())?;
    let fail = |err| Error::Verity {
        what: format!("block 0 of {}", dev.display()),
        partition: usr_node.to_path_buf(),
        err,
    };
    let mut block = vec![0u8; 4096];
    std::fs::File::open(&dev)
        .and_then(|mut f| f.read_exact(&mut block))
        .map_err(fail)?;
    Ok(dev)
}
