//! `tandemctl`: the node's command line.
//!
//! ```text
//! tandemctl status [--json]        slot, version, boot times, network, services
//! tandemctl slot status [--json]   the A/B attributes on the boot disk
//! tandemctl slot mark-good         confirm the running slot (successful=1, tries=0)
//! tandemctl stop|start|restart <service> [--json]
//!                                  one service, through PID 1's control socket
//! tandemctl update …               the update daemon (`updater::cli`)
//! tandemctl cluster …|lock …       the fleet in etcd (`agent::cli`)
//! tandemctl config validate <file|-> [--json]
//!                                  check a cloud-config (the `cloud-config` crate)
//! tandemctl config show [--json]   this boot's provisioning and its user-data
//! tandemctl install <disk> --from <iso> [--config <user-data>]
//!                                  install from a Tandem ISO (`updater::install`)
//! tandemctl reboot|poweroff|halt   ask PID 1 to shut down cleanly
//! ```

use std::path::{Path, PathBuf};

use tandem_slot::{FileDisk, Gpt, GptPrio, Slot, SlotPair, table};

use initramfs::Error as NodeError;
use initramfs::status::{self, EarlyBoot, ServiceStatus, Status};
use initramfs::system::Shutdown;
use tandem_contract::cgroup::Usage;
use tandem_contract::run::ServiceType;

use crate::error::Error;

/// Usage text.
pub const USAGE: &str = "usage:
  tandemctl status [--json]        slot, version, boot times, network, services
  tandemctl slot status [--json]   A/B slot attributes on the boot disk
  tandemctl slot mark-good         confirm the running slot (successful, no tries left)
  tandemctl stop <service> [--json]     SIGTERM, its cgroup killed after its stop timeout; stays stopped
  tandemctl start <service> [--json]    start a service that does not run, now
  tandemctl restart <service> [--json]  stop, then start
  tandemctl update status [--json]      update state, progress, versions, checks, what to do
  tandemctl update check                check the channel now and report what was found
  tandemctl update apply [--no-wait]    install now, without waiting for this node's rollout turn
  tandemctl update channel <name>       follow another channel (writes /etc/tandem/update.toml)
  tandemctl update forget-failed <ver>  allow a version that failed to come up here again
  tandemctl cluster status [--json]     the fleet: versions, states, lock holders, failed versions
  tandemctl cluster forget-failed <ver> let the cluster install a version that rolled back again
  tandemctl lock status [--json] | lock [<id>] | unlock <id> | set-max <n>
                                        the cluster's reboot semaphore (--group <g>, --etcd <url>)
  tandemctl config validate <file|-> [--json]
                                        check a cloud-config: 0 valid, 1 invalid, 2 cannot read
  tandemctl config show [--json]        this boot's provisioning: source, what was applied, problems, the user-data
  tandemctl install <disk> --from <iso> [--config <user-data>]
                                        write a Tandem ISO's image onto <disk> (erases it)
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
        [verb @ ("stop" | "start" | "restart"), rest @ ..] => {
            crate::services::run(verb, rest, USAGE)
        }
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
        ["config", rest @ ..] => Ok(crate::config::run(rest)),
        ["install", rest @ ..] => crate::install::run(rest),
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
    let mut s: Status = status::read_json(path)?;
    read_usage(&mut s);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    print!("{}", render_status(&s));
    println!(
        "update:     {}",
        updater::cli::status_line(Path::new(tandem_contract::run::UPDATER_SOCKET))
    );
    Ok(0)
}

/// Fills in each service's usage from its cgroup, read now (the status
/// file has the cgroup's path; the system init does not poll).
pub fn read_usage(s: &mut Status) {
    for svc in &mut s.services {
        if let Some(dir) = &svc.cgroup {
            svc.usage = Some(Usage::read(Path::new(dir)));
        }
    }
}

/// Bytes with a K, M or G suffix (powers of 1024, as `memory_max`): `980B`,
/// `1.2M`, `512K`, `3.0G`.
pub fn format_bytes(n: u64) -> String {
    let units = [
        ('K', 1u64 << 10),
        ('M', 1 << 20),
        ('G', 1 << 30),
        ('T', 1 << 40),
    ];
    let Some(&(unit, size)) = units.iter().rev().find(|(_, size)| n >= *size) else {
        return format!("{n}B");
    };
    let tenths = n.saturating_mul(10) / size;
    if tenths < 100 {
        format!("{}.{}{unit}", tenths / 10, tenths % 10)
    } else {
        format!("{}{unit}", n / size)
    }
}

/// CPU time: `0.052s` under a minute, then the config syntax (`1h2m3s`).
pub fn format_cpu(usec: u64) -> String {
    if usec < 60_000_000 {
        format!("{}.{:03}s", usec / 1_000_000, usec % 1_000_000 / 1000)
    } else {
        tandem_contract::time::format_duration(std::time::Duration::from_micros(usec))
    }
}

/// The services as an aligned table: name, state, PID, memory, CPU time,
/// tasks (from the cgroup, `-` when unknown), then what else there is to
/// say (a oneshot, restarts, the last exit, what it waits for).
pub fn render_services(services: &[ServiceStatus]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 7]> = services
        .iter()
        .map(|svc| {
            let usage = svc.usage.unwrap_or_default();
            let mut notes = Vec::new();
            if svc.kind == ServiceType::Oneshot {
                notes.push("oneshot".to_string());
            }
            if !svc.waiting_for.is_empty() {
                notes.push(format!("waiting for {}", svc.waiting_for.join(", ")));
            }
            if !svc.blocked_by.is_empty() {
                notes.push(format!("blocked by {}", svc.blocked_by.join(", ")));
            }
            if svc.restarts > 0 {
                notes.push(format!("restarts {}", svc.restarts));
            }
            if let Some(last) = &svc.last_exit {
                notes.push(format!("last: {last}"));
            }
            [
                svc.name.clone(),
                svc.state.to_string(),
                svc.pid.map_or_else(dash, |p| p.to_string()),
                usage.memory_bytes.map_or_else(dash, format_bytes),
                usage.cpu_usec.map_or_else(dash, format_cpu),
                usage.tasks.map_or_else(dash, |t| t.to_string()),
                notes.join(", "),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "PID", "MEMORY", "CPU", "TASKS", ""].map(String::from);
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let [name, state, pid, mem, cpu, tasks, notes] = row;
        let line = format!(
            "  {name:<w0$}  {state:<w1$}  {pid:>w2$}  {mem:>w3$}  {cpu:>w4$}  {tasks:>w5$}  {notes}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
            w5 = widths[5],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
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
    if let Some(p) = &s.provisioning {
        out.push_str(&format!("config:     {}\n", p.summary()));
        for e in p.errors() {
            out.push_str(&format!("            {}: {}\n", e.at, e.message));
        }
    }
    if let Some(c) = &s.usr_corruption {
        out.push_str(&format!("usr:        CORRUPT: {}; {}\n", c.what, c.action));
    }
    out.push_str("services:\n");
    out.push_str(&render_services(&s.services));
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
    let want = initramfs::disk::Want::Partuuid(guid);
    match initramfs::disk::scan(want, &mut seen)? {
        Some(found) => Ok(found.disk_path()),
        None => Err(NodeError::PartitionNotFound {
            want: want.to_string(),
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

pub(crate) fn signal_init(how: Shutdown) -> Result<u8, Error> {
    how.request().map_err(|err| NodeError::Sys {
        what: "signalling PID 1",
        err,
    })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use initramfs::status::{BootTimes, NetworkStatus, ServiceState};

    #[test]
    fn usage_errors() {
        assert!(matches!(
            run(&["frobnicate".to_string()]),
            Err(Error::Usage(_))
        ));
        assert!(matches!(run(&[]), Err(Error::Usage(_))));
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for bad in [&["stop"][..], &["start", "a", "b"], &["restart", "--json"]] {
            assert!(matches!(run(&args(bad)), Err(Error::Usage(_))), "{bad:?}");
        }
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
        assert!(t.contains("services:\n  NAME     STATE    PID  MEMORY  CPU  TASKS\n  console  running   80       -    -      -\n"), "{t}");
    }

    #[test]
    fn services_table() {
        let svc = |name: &str, state| ServiceStatus {
            name: name.into(),
            state,
            ..Default::default()
        };
        let mut agent = svc("agent", ServiceState::Running);
        agent.pid = Some(212);
        agent.restarts = 2;
        agent.last_exit = Some("exit status 1".into());
        agent.usage = Some(Usage {
            memory_bytes: Some(3_250_000),
            cpu_usec: Some(412_345),
            tasks: Some(2),
        });
        let mut keygen = svc("keygen", ServiceState::Exited);
        keygen.kind = ServiceType::Oneshot;
        keygen.last_exit = Some("exit status 0".into());
        let mut sshd = svc("sshd", ServiceState::WaitingForServices);
        sshd.waiting_for = vec!["keygen".into()];
        let mut web = svc("web-frontend", ServiceState::Blocked);
        web.blocked_by = vec!["sshd".into()];
        let mut big = svc("big", ServiceState::Running);
        big.pid = Some(4000);
        big.usage = Some(Usage {
            memory_bytes: Some(3 << 30),
            cpu_usec: Some(3_723_000_000),
            tasks: Some(118),
        });
        let t = render_services(&[agent, big, keygen, sshd, web]);
        assert_eq!(
            t,
            "  NAME          STATE                  PID  MEMORY     CPU  TASKS
  agent         running                212    3.0M  0.412s      2  restarts 2, last: exit status 1
  big           running               4000    3.0G  1h2m3s    118
  keygen        exited                   -       -       -      -  oneshot, last: exit status 0
  sshd          waiting for services     -       -       -      -  waiting for keygen
  web-frontend  blocked                  -       -       -      -  blocked by sshd
"
        );
    }

    #[test]
    fn sizes_and_cpu_times() {
        assert_eq!(format_bytes(0), "0B");
        assert_eq!(format_bytes(1023), "1023B");
        assert_eq!(format_bytes(1024), "1.0K");
        assert_eq!(format_bytes(1_245_184), "1.1M");
        assert_eq!(format_bytes(512 << 20), "512M");
        assert_eq!(format_bytes((10 << 20) - 1), "9.9M");
        assert_eq!(format_bytes(10 << 20), "10M");
        assert_eq!(format_bytes(u64::MAX), "16777215T");
        assert_eq!(format_cpu(0), "0.000s");
        assert_eq!(format_cpu(52_311), "0.052s");
        assert_eq!(format_cpu(59_999_999), "59.999s");
        assert_eq!(format_cpu(60_000_000), "1m");
        assert_eq!(format_cpu(90_500_000), "1m30s");
    }

    #[test]
    fn usage_is_read_from_each_service_s_cgroup() {
        let dir = std::env::temp_dir().join(format!("tandemctl-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("memory.current"), "4096\n").expect("write");
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1500\n").expect("write");
        std::fs::write(dir.join("pids.current"), "1\n").expect("write");
        let mut s = Status {
            services: vec![
                ServiceStatus {
                    name: "a".into(),
                    cgroup: Some(dir.display().to_string()),
                    ..Default::default()
                },
                ServiceStatus {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        read_usage(&mut s);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            s.services[0].usage,
            Some(Usage {
                memory_bytes: Some(4096),
                cpu_usec: Some(1500),
                tasks: Some(1),
            })
        );
        assert_eq!(s.services[1].usage, None, "no cgroup: nothing to show");
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["services"][0]["usage"]["memory_bytes"], 4096);
        assert_eq!(json["services"][0]["usage"]["cpu_usec"], 1500);
        assert_eq!(json["services"][0]["usage"]["tasks"], 1);
        assert!(json["services"][1].get("usage").is_none());
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
