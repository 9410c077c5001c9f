//! `tandemctl`: the node's command line.
//!
//! ```text
//! tandemctl status [--json]        slot, version, boot times, network, services
//! tandemctl slot status [--json]   the A/B attributes on the boot disk
//! tandemctl slot mark-good         confirm the running slot (successful=1, tries=0)
//! tandemctl update …               the update daemon (`updater::cli`)
//! tandemctl cluster …|lock …       the fleet in etcd (`agent::cli`)
//! tandemctl reboot|poweroff|halt   ask PID 1 to shut down cleanly
//! ```

use std::path::{Path, PathBuf};

use tandem_slot::{FileDisk, Gpt, GptPrio, Slot, SlotPair, table};

use initramfs::Error as NodeError;
use initramfs::status::{self, EarlyBoot, Status};
use initramfs::system::Shutdown;

use crate::error::Error;

/// Usage text.
pub const USAGE: &str = "usage:
  tandemctl status [--json]        slot, version, boot times, network, services
  tandemctl slot status [--json]   A/B slot attributes on the boot disk
  tandemctl slot mark-good         confirm the running slot (successful, no tries left)
  tandemctl update status [--json]      update state, progress, versions, checks, what to do
  tandemctl update check                check the channel now and report what was found
  tandemctl update apply [--no-wait]    install now, without waiting for this node's rollout turn
  tandemctl update channel <name>       follow another channel (writes /etc/tandem/update.toml)
  tandemctl update forget-failed <ver>  allow a version that failed to come up here again
  tandemctl cluster status [--json]     the fleet: versions, states, lock holders, failed versions
  tandemctl cluster forget-failed <ver> let the cluster install a version that rolled back again
  tandemctl lock status [--json] | lock [<id>] | unlock <id> | set-max <n>
                                        the cluster's reboot semaphore (--group <g>, --etcd <url>)
  tandemctl reboot | poweroff | halt";

/// Runs a command; returns the process exit code.
pub fn run(args: &[String]) -> Result<u8, Error> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["status"] => print_status(false),
        ["status", "--json"] => print_status(true),
        ["slot", "status"] => slot_status(false),
        ["slot", "status", "--json"] => slot_status(true),
        ["slot", "mark-good"] => mark_good(),
        ["update", rest @ ..] => Ok(updater::cli::run(
            rest,
            Path::new(tandem_contract::run::UPDATER_SOCKET),
        )?),
        ["cluster" | "lock", ..] => {
            let defaults = agent::cli::Defaults {
                config: Some(agent::config::ConfigPaths::default()),
                machine_id: updater::node::machine_id(&updater::node::Paths::default().machine_id)
                    .ok(),
            };
            Ok(agent::cli::run(&args, &defaults)?)
        }
        ["reboot"] => signal_init(Shutdown::Reboot),
        ["poweroff"] => signal_init(Shutdown::PowerOff),
        ["halt"] => signal_init(Shutdown::Halt),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(0)
        }
        _ => Err(Error::Usage(USAGE.to_string())),
    }
}

fn print_status(json: bool) -> Result<u8, Error> {
    let path = Path::new(status::STATUS_FILE);
    if json {
        let text = std::fs::read_to_string(path).map_err(|err| NodeError::Read {
            path: path.into(),
            err,
        })?;
        print!("{text}");
        return Ok(0);
    }
    let s: Status = status::read_json(path)?;
    print!("{}", render_status(&s));
    println!(
        "update:     {}",
        updater::cli::status_line(Path::new(tandem_contract::run::UPDATER_SOCKET))
    );
    Ok(0)
}

/// The human-readable `tandemctl status`.
pub fn render_status(s: &Status) -> String {
    let unknown = || "unknown".to_string();
    let mut out = String::new();
    out.push_str(&format!(
        "slot:       {}\n",
        s.slot.map_or_else(unknown, |slot| slot.to_string())
    ));
    out.push_str(&format!(
        "version:    {}\n",
        s.version.clone().unwrap_or_else(unknown)
    ));
    out.push_str(&format!(
        "hostname:   {}\n",
        s.hostname.clone().unwrap_or_else(unknown)
    ));
    out.push_str(&format!(
        "machine-id: {}\n",
        s.machine_id.clone().unwrap_or_else(unknown)
    ));
    let b = &s.boot;
    let mut times = Vec::new();
    let mut prev: Option<u64> = None;
    for (label, t) in [
        ("initramfs", b.initramfs_started_us),
        ("switch root", b.switch_root_us),
        ("system init", Some(b.system_started_us)),
        ("ready", b.system_ready_us),
    ] {
        if let Some(t) = t {
            let delta = prev
                .map(|p| format!(" (+{})", status::secs(t.saturating_sub(p))))
                .unwrap_or_default();
            times.push(format!("{label} {}{delta}", status::secs(t)));
            prev = Some(t);
        }
    }
    out.push_str(&format!(
        "boot:       {} (since kernel start)\n",
        times.join(", ")
    ));
    if let (Some(start), Some(ready)) = (b.initramfs_started_us, b.system_ready_us) {
        out.push_str(&format!(
            "            initramfs to ready: {}\n",
            status::secs(ready.saturating_sub(start))
        ));
    }
    let steps = s
        .early
        .iter()
        .flat_map(|e| e.steps.iter().map(|st| ("initramfs", st)))
        .chain(b.steps.iter().map(|st| ("system", st)));
    let mut last: Option<u64> = b.initramfs_started_us;
    let mut lines = Vec::new();
    for (who, st) in steps {
        let delta = last
            .map(|l| format!("+{}", status::secs(st.at_us.saturating_sub(l))))
            .unwrap_or_default();
        lines.push(format!(
            "            {:>9} {who}: {} ({delta})",
            status::secs(st.at_us),
            st.step
        ));
        last = Some(st.at_us);
    }
    if !lines.is_empty() {
        out.push_str("boot steps:\n");
        out.push_str(&lines.join("\n"));
        out.push('\n');
    }
    if let Some(e) = &s.early {
        out.push_str(&format!(
            "disk:       {} (/usr {} on {}, ROOT {})\n",
            e.disk, e.usr_partition, e.usr_device, e.root_partition
        ));
    }
    match &s.network {
        Some(n) if n.address.is_some() => out.push_str(&format!(
            "network:    {} {} via {}, dns {}\n",
            n.interface,
            n.address.clone().unwrap_or_default(),
            n.gateway.clone().unwrap_or_else(|| "-".into()),
            if n.dns.is_empty() {
                "-".to_string()
            } else {
                n.dns.join(" ")
            }
        )),
        Some(n) => out.push_str(&format!("network:    {} {}\n", n.interface, n.state)),
        None => out.push_str("network:    not configured yet\n"),
    }
    out.push_str("services:\n");
    for svc in &s.services {
        let pid = svc.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        let last = svc
            .last_exit
            .as_ref()
            .map(|l| format!(", last: {l}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<16} {}{pid} (restarts {}{last})\n",
            svc.name, svc.state, svc.restarts
        ));
    }
    for w in &s.warnings {
        out.push_str(&format!("warning:    {w}\n"));
    }
    out
}

/// The boot disk: from the early init's hand-over, else by the PARTUUID on
/// the command line.
fn boot_disk() -> Result<PathBuf, Error> {
    if let Ok(e) = status::read_json::<EarlyBoot>(Path::new(status::EARLY_FILE))
        && !e.disk.is_empty()
    {
        return Ok(PathBuf::from(e.disk));
    }
    let cmdline =
        std::fs::read_to_string(tandem_contract::cmdline::PROC_CMDLINE).map_err(|err| {
            NodeError::Read {
                path: tandem_contract::cmdline::PROC_CMDLINE.into(),
                err,
            }
        })?;
    let guid = tandem_contract::cmdline::usr_partuuid(&cmdline).ok_or_else(|| {
        Error::Usage(
            "no tandem.usr=PARTUUID= on the kernel command line: which disk is the boot disk?"
                .into(),
        )
    })?;
    let mut seen = initramfs::disk::Seen::default();
    match initramfs::disk::scan(guid, &mut seen)? {
        Some(found) => Ok(found.disk_path()),
        None => Err(NodeError::PartitionNotFound {
            partuuid: guid,
            waited: std::time::Duration::ZERO,
            seen: seen.to_string(),
        }
        .into()),
    }
}

fn running_slot() -> Option<Slot> {
    let cmdline = std::fs::read_to_string(tandem_contract::cmdline::PROC_CMDLINE).ok()?;
    tandem_contract::cmdline::running_slot(&cmdline)
}

fn describe(p: GptPrio) -> String {
    format!(
        "priority {}, tries {}, {}",
        p.priority(),
        p.tries(),
        if p.successful() {
            "successful"
        } else {
            "not confirmed"
        }
    )
}

/// The human-readable `tandemctl slot status`.
pub fn render_slots(pair: &SlotPair, running: Option<Slot>) -> String {
    let mut out = String::new();
    for slot in Slot::ALL {
        let mark = if Some(slot) == running {
            "  <- booted"
        } else {
            ""
        };
        out.push_str(&format!(
            "{} ({}): {}{mark}\n",
            slot,
            slot.label(),
            describe(pair.get(slot))
        ));
    }
    match pair.next_boot() {
        Some(s) => out.push_str(&format!("next boot: {s}\n")),
        None => out.push_str("next boot: none (no bootable slot!)\n"),
    }
    out
}

fn slot_status(json: bool) -> Result<u8, Error> {
    let disk_path = boot_disk()?;
    let gpt_err = |msg: String| NodeError::Gpt {
        disk: disk_path.clone(),
        msg,
    };
    let mut disk = FileDisk::open_read_only(&disk_path).map_err(|err| NodeError::Read {
        path: disk_path.clone(),
        err,
    })?;
    let gpt = Gpt::read(&mut disk).map_err(|e| gpt_err(e.to_string()))?;
    let pair = table::slot_pair(&gpt).map_err(|e| gpt_err(e.to_string()))?;
    let running = running_slot();
    if json {
        let slot_json = |s: Slot| {
            let p = pair.get(s);
            serde_json::json!({"priority": p.priority(), "tries": p.tries(), "successful": p.successful()})
        };
        let v = serde_json::json!({
            "disk": disk_path,
            "booted": running.map(|s| s.to_string()),
            "next_boot": pair.next_boot().map(|s| s.to_string()),
            "A": slot_json(Slot::A),
            "B": slot_json(Slot::B),
            "table_health": if gpt.health.is_clean() { "clean".to_string() } else { format!("{:?}", gpt.health) },
        });
        println!("{v:#}");
    } else {
        println!("disk: {}", disk_path.display());
        print!("{}", render_slots(&pair, running));
        if !gpt.health.is_clean() {
            println!(
                "warning: one copy of the partition table is damaged or stale ({:?}); mark-good rewrites both",
                gpt.health
            );
        }
    }
    Ok(0)
}

fn mark_good() -> Result<u8, Error> {
    let running = running_slot().ok_or_else(|| {
        Error::Usage("no tandem.slot on the kernel command line: which slot is running?".into())
    })?;
    let disk_path = boot_disk()?;
    let mut disk = FileDisk::open(&disk_path).map_err(|err| NodeError::Write {
        path: disk_path.clone(),
        err,
    })?;
    let ((), pair) = table::modify(&mut disk, |p| {
        p.mark_successful(running);
        Ok(())
    })
    .map_err(|e| NodeError::Gpt {
        disk: disk_path.clone(),
        msg: e.to_string(),
    })?;
    println!(
        "slot {running} marked good on {}: {}",
        disk_path.display(),
        describe(pair.get(running))
    );
    Ok(0)
}

fn signal_init(how: Shutdown) -> Result<u8, Error> {
    how.request().map_err(|err| NodeError::Sys {
        what: "signalling PID 1",
        err,
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use initramfs::status::{BootTimes, NetworkStatus, ServiceStatus};

    #[test]
    fn usage_errors() {
        assert!(matches!(
            run(&["frobnicate".to_string()]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(run(&[]), Err(Error::Usage(_))));
    }

    #[test]
    fn status_text() {
        let s = Status {
            format: status::FORMAT,
            slot: Some(Slot::A),
            version: Some("1.0.0".into()),
            boot: BootTimes {
                initramfs_started_us: Some(2_700_000),
                switch_root_us: Some(3_100_000),
                system_started_us: 3_150_000,
                system_ready_us: Some(3_400_000),
                steps: Vec::new(),
            },
            network: Some(NetworkStatus {
                interface: "eth0".into(),
                state: "configured".into(),
                address: Some("10.0.2.15/24".into()),
                gateway: Some("10.0.2.2".into()),
                dns: vec!["10.0.2.3".into()],
                ..Default::default()
            }),
            services: vec![ServiceStatus {
                name: "console".into(),
                state: tandem_contract::run::ServiceState::Running,
                pid: Some(80),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = render_status(&s);
        assert!(t.contains("slot:       A\n"), "{t}");
        assert!(
            t.contains("initramfs 2.700 s, switch root 3.100 s (+0.400 s)"),
            "{t}"
        );
        assert!(t.contains("initramfs to ready: 0.700 s"), "{t}");
        assert!(
            t.contains("eth0 10.0.2.15/24 via 10.0.2.2, dns 10.0.2.3"),
            "{t}"
        );
        assert!(t.contains("console          running pid 80"), "{t}");
    }

    #[test]
    fn slots_text() {
        let pair = SlotPair::new(GptPrio::new(1, 0, true), GptPrio::new(2, 1, false));
        let t = render_slots(&pair, Some(Slot::A));
        assert!(
            t.contains("A (USR-A): priority 1, tries 0, successful  <- booted"),
            "{t}"
        );
        assert!(
            t.contains("B (USR-B): priority 2, tries 1, not confirmed\n"),
            "{t}"
        );
        assert!(t.contains("next boot: B"), "{t}");
    }
}
