//! `cargo xtask bench boot`: time from QEMU start to `system ready`, split
//! into firmware+bootloader, kernel, initramfs and system init by the
//! arrival times of the console markers, over several boots. The initramfs
//! and system init are also timed by the node's own clock (the
//! `CLOCK_BOOTTIME` stamps of /run/tandem/status.json, the clock of the
//! kernel's console timestamps), which the host's scheduling of QEMU and of
//! the console reader does not blur: for the first boot of a fresh disk and
//! for the reboot after it (what every later boot of a node does; the first
//! one also makes the machine id and ROOT's directories).
//!
//! The reference run is the firmware phase of the same boots: OVMF's work
//! is fixed and not Tandem's, so its time shows how fast the host ran QEMU
//! during the bench. Its spread over the boots says how much steal time
//! blurred the figures, and the ratio of initramfs + system init to it
//! depends less on the host's speed than either figure does: compare it
//! between runs on different days.
//!
//! Then the same image boots with a cloud-config on a NoCloud seed volume
//! (a local datasource): the provisioning step's own time and the system
//! init's, on the first boot (users, files, services made) and the reboot
//! after it (the config applied again, nothing to change), beside the
//! boots without user-data above (the reference).
//!
//! Then Debian 12 boots its own way (systemd, an initramfs-tools
//! initramfs, ifupdown; see [`super::boot_peer`]) on the same kernel under
//! the same QEMU, `PEER_RUNS` times: its kernel start → `multi-user.target`
//! and `/init` → `multi-user.target` beside Tandem's kernel start →
//! `system ready` and `/init` → `system ready` after a reboot, each by its
//! own clock, and their ratios; by console arrival too, and over the
//! firmware phase of the Tandem boots (the host's speed) as a third
//! reference.
//!
//! Then the container host (`examples/container-host`) boots from fresh
//! disks to a serving container: the first boot pulls the workload from a
//! registry on the host (Debian's `docker-registry`), the reboot after it
//! starts it from the node's own storage, as every later boot does.

use std::time::Duration;

use anyhow::{Context, Result};
use qemu_tests::container_host::{self, WEB_PORT, wait_http};
use qemu_tests::seed::Seed;
use qemu_tests::vm::BootTimes;
use qemu_tests::vm::free_port;
use qemu_tests::{Disk, Env, Vm, VmConfig};
use updater::node::Status;

use super::boot_peer::{Peer, PeerBoot};
use crate::{artifacts, setup, util};

const RUNS: usize = 5;
/// Boots of the Debian 12 peer (each about 20-60 s under TCG).
const PEER_RUNS: usize = 3;
/// Tandem's `/init` → ready against Debian's: under this ratio.
const PEER_GOAL: f64 = 1.0 / 20.0;
/// Boots of the container host (each a first boot and a reboot).
const CONTAINER_RUNS: usize = 3;
/// Boots with a NoCloud config (each a first boot and a reboot).
const PROVISIONED_RUNS: usize = 3;
/// The config: a user, a file, a service, update and agent settings.
const USER_DATA: &str = "#cloud-config
hostname: bench-node
users:
  - name: ops
write_files:
  - path: /etc/bench/hello
    permissions: '0640'
    owner: ops
    content: hello at $private_ipv4
coreos:
  update:
    reboot-strategy: off
  locksmith:
    group: bench
  units:
    - name: hello.service
      command: start
      content: |
        [Service]
        ExecStart=/bin/sleep 100000
";
/// How long a container may take to answer after its node is ready.
const SERVING: Duration = Duration::from_secs(300);

/// One phase of a boot as the console markers split it.
type Part = fn(&BootTimes) -> Duration;
const READY: Duration = Duration::from_secs(180);
/// Above this spread of the reference (slowest / fastest firmware phase)
/// the host's speed changed under the bench: the verdicts then say more
/// about the host than about Tandem.
const NOISY_SPREAD: f64 = 1.25;

/// Initramfs (its `/init` started → switch root) and system init (switch
/// root → `system ready`) by the node's `CLOCK_BOOTTIME`.
#[derive(Clone)]
struct NodeClock {
    /// Kernel start → `system ready`.
    ready: Duration,
    initramfs: Duration,
    system_init: Duration,
    /// Each step of the system init's timeline and how long it took (since
    /// the step before it).
    steps: Vec<(String, Duration)>,
    /// The provisioning step's own time (its process, start to end).
    provisioning: Duration,
}

/// The system init's steps that do what Debian's maintainer scripts and
/// systemd would: their cost is the price of running Debian's programs.
const SETUP_STEPS: [&str; 5] = [
    "factory /etc copied",
    "users and groups ready",
    "cgroups set up",
    "tmpfiles.d applied",
    "sysctl.d applied",
];
/// Of those, the two the goal is about: what adding users and groups and
/// setting up the services' cgroups may cost a boot together.
const GOAL_STEPS: [&str; 2] = ["users and groups ready", "cgroups set up"];
const SETUP_GOAL: Duration = Duration::from_millis(50);

impl NodeClock {
    /// How long the step `name` took (zero if the boot did not have it).
    fn step(&self, name: &str) -> Duration {
        self.steps
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Duration::ZERO, |(_, d)| *d)
    }

    fn both(&self) -> Duration {
        self.initramfs + self.system_init
    }
}

/// Boots the example image `RUNS` times (and reboots each once) and prints
/// the split.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let image = artifacts::image(&a, "examples/minimal/image.toml", "minimal")?;
    let mut console = Vec::new();
    let mut console_later = Vec::new();
    let mut first = Vec::new();
    let mut later = Vec::new();
    for i in 0..RUNS {
        let disk = Disk::overlay(&image.join("disk.raw"))?;
        let mut vm = Vm::start(&VmConfig::new(&format!("bench-boot-{i}")), &disk)?;
        vm.wait_for("tandem: system ready", READY)?;
        let t = BootTimes::from_lines(&vm.lines()).context("boot markers missing")?;
        let f = node_clock(&mut vm)?;
        vm.send("reboot\n")?;
        vm.wait_for("tandem-boot: booting slot", READY)?;
        vm.wait_for("tandem: system ready", READY)?;
        let l = node_clock(&mut vm)?;
        // The reboot's markers: the lines after the first boot's ready.
        let lines = vm.lines();
        let first_ready = lines
            .iter()
            .position(|l| l.text.contains("tandem: system ready"))
            .map_or(0, |p| p + 1);
        let r = BootTimes::from_lines(&lines[first_ready..])
            .context("boot markers of the reboot missing")?;
        eprintln!(
            "boot {}: total {:.2} s = firmware+bootloader {:.2} + kernel {:.2} + initramfs {:.2} + system init {:.2}; node clock: initramfs {:.2} + system init {:.2}, after a reboot {:.2} + {:.2}",
            i + 1,
            s(t.total()),
            s(t.firmware_and_bootloader),
            s(t.kernel),
            s(t.initramfs),
            s(t.system_init),
            s(f.initramfs),
            s(f.system_init),
            s(l.initramfs),
            s(l.system_init)
        );
        console.push(t);
        console_later.push(r);
        first.push(f.clone());
        later.push(l);
    }
    let early_and_system = median(&console, |t| t.initramfs + t.system_init);
    println!("bench boot: QEMU start to system ready (TCG, 1 vCPU), median of {RUNS} boots");
    let parts: [(&str, Part); 5] = [
        ("total", BootTimes::total),
        ("firmware + bootloader", |t| t.firmware_and_bootloader),
        ("kernel", |t| t.kernel),
        ("initramfs", |t| t.initramfs),
        ("system init", |t| t.system_init),
    ];
    for (name, part) in parts {
        println!("  {name:<21} {:.2} s", s(median(&console, part)));
    }
    println!(
        "  initramfs + system init {:.2} s by console arrival (goal < 1.00 s): {}",
        s(early_and_system),
        verdict(early_and_system)
    );
    for (what, runs) in [("first boot", &first), ("after a reboot", &later)] {
        let both = median(runs, NodeClock::both);
        println!(
            "  {what}, by the node's clock: initramfs {:.2} s + system init {:.2} s = {:.2} s (goal < 1.00 s): {}",
            s(median(runs, |c| c.initramfs)),
            s(median(runs, |c| c.system_init)),
            s(both),
            verdict(both)
        );
    }
    for (what, runs) in [("first boot", &first), ("after a reboot", &later)] {
        let step = |name: &str| median(runs, |c| c.step(name));
        // The median boot's sum, not the sum of medians.
        let goal = median(runs, |c| GOAL_STEPS.iter().map(|name| c.step(name)).sum());
        let parts: Vec<String> = SETUP_STEPS
            .iter()
            .map(|name| format!("{name} {:.1} ms", step(name).as_secs_f64() * 1e3))
            .collect();
        println!(
            "  {what}: users and cgroups {:.1} ms (goal < {} ms): {}; steps: {}",
            goal.as_secs_f64() * 1e3,
            SETUP_GOAL.as_millis(),
            if goal < SETUP_GOAL { "met" } else { "NOT met" },
            parts.join(", ")
        );
    }
    // The firmware median is printed above; here its range and the ratio.
    let mut firmware: Vec<Duration> = console.iter().map(|t| t.firmware_and_bootloader).collect();
    firmware.sort();
    let (fastest, slowest) = (firmware[0], firmware[firmware.len() - 1]);
    println!(
        "  reference: firmware + bootloader (fixed work, not Tandem's) {:.2}-{:.2} s over the boots; initramfs + system init / its median = {:.3}",
        s(fastest),
        s(slowest),
        s(early_and_system) / s(firmware[firmware.len() / 2])
    );
    let spread = s(slowest) / s(fastest);
    if spread > NOISY_SPREAD {
        println!(
            "  note: the host's speed varied {:.0} % between boots (steal time from other machines): judge the goal on a quieter run, or compare the ratio",
            (spread - 1.0) * 100.0
        );
    }
    let peer = Peer::get(&image, &util::out_dir().join("cache"))?;
    let debian = peer_boots(&peer)?;
    compare(
        &peer,
        &debian,
        &later,
        median(&console_later, |t| t.initramfs + t.system_init),
        firmware[firmware.len() / 2],
    );
    provisioned(&image, (&first, &later))?;
    container_host(&a)
}

/// `cargo xtask bench boot-peer`: only the Debian peer's boots, on the
/// kernel of the minimal image already built.
pub fn run_peer() -> Result<()> {
    setup::run()?;
    let image = util::out_dir().join("images/minimal");
    if !image.join("build.json").exists() {
        anyhow::bail!(
            "{} is not built: run `cargo xtask bench boot` (or `cargo xtask build` and the image) first",
            image.display()
        );
    }
    let peer = Peer::get(&image, &util::out_dir().join("cache"))?;
    let debian = peer_boots(&peer)?;
    println!(
        "bench boot-peer: Debian 12 (systemd {}, initramfs-tools {}) on {}, median of {}: kernel start -> multi-user {:.2} s, /init -> multi-user {:.2} s (console arrival {:.2} s)",
        peer.systemd,
        peer.initramfs_tools,
        peer.release,
        debian.len(),
        s(median(&debian, |b| b.ready)),
        s(median(&debian, PeerBoot::init_to_ready)),
        s(median(&debian, |b| b.console_init_to_ready)),
    );
    Ok(())
}

/// Boots the Debian peer `PEER_RUNS` times.
fn peer_boots(peer: &Peer) -> Result<Vec<PeerBoot>> {
    let mut boots = Vec::new();
    for i in 0..PEER_RUNS {
        let b = peer.boot(&format!("bench-debian-{i}"))?;
        eprintln!(
            "debian boot {}: kernel start -> multi-user {:.2} s, /init at {:.2} s, /init -> multi-user {:.2} s (console arrival {:.2} s), dhclient lease at {}; systemd-analyze: {}; blame: {}",
            i + 1,
            s(b.ready),
            s(b.init),
            s(b.init_to_ready()),
            s(b.console_init_to_ready),
            b.lease.map_or("-".into(), |l| format!("{:.2} s", s(l))),
            b.analyze,
            b.blame.join(", ")
        );
        boots.push(b);
    }
    Ok(boots)
}

/// Prints Tandem (`later`: the node clock after a reboot; `tandem_console`:
/// its `/init` → ready by console arrival) against the Debian peer's boots;
/// `firmware`: the median firmware phase of the Tandem boots.
fn compare(
    peer: &Peer,
    debian: &[PeerBoot],
    later: &[NodeClock],
    tandem_console: Duration,
    firmware: Duration,
) {
    let systemd = peer.systemd.split('.').next().unwrap_or(&peer.systemd);
    println!(
        "bench boot: Tandem against Debian 12 (systemd {systemd}, initramfs-tools) on the same kernel {} ({}), TCG, 1 vCPU, 1 GiB",
        peer.release, peer.kernel_version,
    );
    println!(
        "  Tandem: to `system ready`, after a reboot, by the node's clock, median of {RUNS} boots; Debian (systemd {}, initramfs-tools {}, installed and booted once before; direct kernel boot): to `multi-user.target` reached, by its own clock, median of {} boots",
        peer.systemd,
        peer.initramfs_tools,
        debian.len()
    );
    let ratio = |t: Duration, d: Duration| {
        let r = s(d) / s(t).max(1e-6);
        if r < 10.0 {
            format!("1/{r:.1}")
        } else {
            format!("1/{r:.0}")
        }
    };
    let (t_ready, d_ready) = (median(later, |c| c.ready), median(debian, |b| b.ready));
    println!(
        "  kernel start -> ready:  Tandem {:.2} s, Debian {:.2} s, ratio {}",
        s(t_ready),
        s(d_ready),
        ratio(t_ready, d_ready)
    );
    let (t_init, d_init) = (
        median(later, NodeClock::both),
        median(debian, PeerBoot::init_to_ready),
    );
    println!(
        "  /init -> ready:         Tandem {:.2} s, Debian {:.2} s, ratio {} (goal: under 1/{:.0}): {}",
        s(t_init),
        s(d_init),
        ratio(t_init, d_init),
        1.0 / PEER_GOAL,
        if s(t_init) < s(d_init) * PEER_GOAL {
            "met"
        } else {
            "NOT met"
        }
    );
    let d_console = median(debian, |b| b.console_init_to_ready);
    println!(
        "  /init -> ready by console arrival (the host's clock): Tandem {:.2} s, Debian {:.2} s, ratio {}",
        s(tandem_console),
        s(d_console),
        ratio(tandem_console, d_console)
    );
    println!(
        "  firmware-relative (third reference): /init -> ready by console arrival / the Tandem boots' firmware + bootloader median ({:.2} s): Tandem {:.3}, Debian {:.3}",
        s(firmware),
        s(tandem_console) / s(firmware),
        s(d_console) / s(firmware)
    );
    // The median boot's own details.
    let mut order: Vec<&PeerBoot> = debian.iter().collect();
    order.sort_by_key(|b| b.init_to_ready());
    let m = order[order.len() / 2];
    println!(
        "  Debian's slowest units (systemd-analyze blame, median boot): {}; its DHCP lease came at {} (Tandem's system ready waits for its lease)",
        m.blame.join(", "),
        m.lease.map_or("no time in the journal".into(), |l| format!(
            "{:.2} s, {} multi-user",
            s(l),
            if l <= m.ready { "before" } else { "after" }
        ))
    );
}

/// Boots the minimal image with [`USER_DATA`] on a NoCloud seed
/// `PROVISIONED_RUNS` times (and reboots each once); prints the system
/// init beside `reference` (the boots without user-data).
fn provisioned(image: &std::path::Path, reference: (&[NodeClock], &[NodeClock])) -> Result<()> {
    let seed = Seed::iso(
        "cidata",
        &[
            ("user-data", USER_DATA),
            (
                "meta-data",
                "instance-id: bench
",
            ),
        ],
    )?;
    let mut first = Vec::new();
    let mut later = Vec::new();
    for i in 0..PROVISIONED_RUNS {
        let disk = Disk::overlay(&image.join("disk.raw"))?;
        let mut cfg = VmConfig::new(&format!("bench-provisioned-{i}"));
        cfg.extra = seed.qemu_args();
        let mut vm = Vm::start(&cfg, &disk)?;
        vm.wait_for("tandem: provisioning: applied", READY)?;
        vm.wait_for("tandem: system ready", READY)?;
        let f = node_clock(&mut vm)?;
        vm.send("reboot\n")?;
        vm.wait_for("tandem-boot: booting slot", READY)?;
        vm.wait_for("tandem: provisioning: applied", READY)?;
        vm.wait_for("tandem: system ready", READY)?;
        let l = node_clock(&mut vm)?;
        eprintln!(
            "provisioned boot {}: system init {:.2} s (provisioning {:.0} ms), after a reboot {:.2} s ({:.0} ms)",
            i + 1,
            s(f.system_init),
            f.provisioning.as_secs_f64() * 1e3,
            s(l.system_init),
            l.provisioning.as_secs_f64() * 1e3
        );
        first.push(f);
        later.push(l);
    }
    println!(
        "bench boot: provisioning from a NoCloud seed (user, file, service, update and agent settings), median of {PROVISIONED_RUNS} boots"
    );
    for (what, runs, without) in [
        ("first boot", &first, reference.0),
        ("after a reboot", &later, reference.1),
    ] {
        println!(
            "  {what}: system init {:.2} s with the config, {:.2} s without user-data (above); the provisioning step {:.0} ms, without user-data {:.0} ms",
            s(median(runs, |c| c.system_init)),
            s(median(without, |c| c.system_init)),
            median(runs, |c| c.provisioning).as_secs_f64() * 1e3,
            median(without, |c| c.provisioning).as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

/// One boot of the container host: when the node was ready and when its
/// container first answered, by the host's clock from the boot's start.
struct ToServing {
    ready: Duration,
    serving: Duration,
}

/// Boots the container host `CONTAINER_RUNS` times to a serving container,
/// reboots each once, and prints the medians.
fn container_host(a: &artifacts::Artifacts) -> Result<()> {
    let env = Env {
        image: util::out_dir().join("images/minimal"),
        artifacts: a.dir.clone(),
        tandem: a.tandem.clone(),
        cache: util::out_dir().join("cache"),
    };
    let registry = container_host::registry_with_workload()?;
    let image = container_host::build(&env, &registry, ("bench", "1.0.0"), "", &[])?;
    let mut first = Vec::new();
    let mut later = Vec::new();
    for i in 0..CONTAINER_RUNS {
        let disk = Disk::overlay(&image.join("disk.raw"))?;
        let port = free_port()?;
        let mut cfg = VmConfig::new(&format!("bench-containers-{i}"));
        cfg.memory_mib = 2048;
        cfg.forwards.push((port, WEB_PORT));
        let mut vm = Vm::start(&cfg, &disk)?;
        let ready = vm.wait_for("tandem: system ready", READY)?.at;
        wait_http(port, "/starts", SERVING)?;
        let f = ToServing {
            ready,
            serving: vm.started().elapsed(),
        };
        vm.send("reboot\n")?;
        let booting = vm.wait_for("tandem-boot: booting slot", READY)?.at;
        let ready = vm.wait_for("tandem: system ready", READY)?.at;
        wait_http(port, "/starts", SERVING)?;
        let l = ToServing {
            ready: ready - booting,
            serving: vm.started().elapsed() - booting,
        };
        eprintln!(
            "container host boot {}: system ready {:.1} s, serving {:.1} s; after a reboot (from the bootloader) {:.1} s and {:.1} s",
            i + 1,
            s(f.ready),
            s(f.serving),
            s(l.ready),
            s(l.serving)
        );
        first.push(f);
        later.push(l);
    }
    println!(
        "bench boot: container host to a serving container (TCG, 1 vCPU, 2 GiB), median of {CONTAINER_RUNS} boots"
    );
    for (what, runs) in [
        (
            "first boot, pulled from the registry, from QEMU start",
            &first,
        ),
        (
            "after a reboot, from local storage, from the bootloader",
            &later,
        ),
    ] {
        let ready = median(runs, |r| r.ready);
        let serving = median(runs, |r| r.serving);
        println!(
            "  {what}: system ready {:.1} s, container serving {:.1} s (container start {:.1} s)",
            s(ready),
            s(serving),
            s(median(runs, |r| r.serving.saturating_sub(r.ready)))
        );
    }
    Ok(())
}

fn median<T>(items: &[T], f: impl Fn(&T) -> Duration) -> Duration {
    let mut v: Vec<Duration> = items.iter().map(f).collect();
    v.sort();
    v[v.len() / 2]
}

fn verdict(d: Duration) -> &'static str {
    if d < Duration::from_secs(1) {
        "met"
    } else {
        "NOT met"
    }
}

fn node_clock(vm: &mut Vm) -> Result<NodeClock> {
    let out = vm.run("cat /run/tandem/status.json", Duration::from_secs(60))?;
    // Kernel messages can land in the middle of the output.
    let json: Vec<&str> = out
        .lines()
        .filter(|l| !(l.trim_start().starts_with('[') && l.contains("] ")))
        .collect();
    let status: Status =
        serde_json::from_str(&json.join("\n")).context("parsing /run/tandem/status.json")?;
    let b = &status.boot;
    let (Some(start), Some(switch), Some(ready)) =
        (b.initramfs_started_us, b.switch_root_us, b.system_ready_us)
    else {
        anyhow::bail!("status.json lacks boot timestamps: {b:?}");
    };
    let us = |from: u64, to: u64| Duration::from_micros(to.saturating_sub(from));
    let steps = b
        .steps
        .windows(2)
        .map(|w| (w[1].step.clone(), us(w[0].at_us, w[1].at_us)))
        .collect();
    let provisioning = status
        .provisioning
        .as_ref()
        .map_or(Duration::ZERO, |p| us(p.started_us, p.finished_us));
    Ok(NodeClock {
        ready: us(0, ready),
        initramfs: us(start, switch),
        system_init: us(switch, ready),
        steps,
        provisioning,
    })
}

fn s(d: Duration) -> f64 {
    d.as_secs_f64()
}
