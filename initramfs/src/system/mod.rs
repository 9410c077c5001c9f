//! The system init: PID 1 after the switch root, the same process as the
//! early init, which hands over what it found and the armed watchdog.
//!
//! Mounts what a system needs besides what the early init carried over,
//! makes sure ROOT has its basic layout, sets machine-id and host name, loads
//! /usr's module list, brings up loopback and DHCP, starts the services and
//! the console shell, publishes /run/tandem/status.json and prints
//! `tandem: system ready (slot A, version 1.0.0)`. Then it reaps, restarts,
//! pets the watchdog and waits for busybox-style signals: SIGTERM (and
//! Ctrl-Alt-Del's SIGINT) reboot, SIGUSR2 powers off, SIGUSR1 halts.
//!
//! - [`identity`]: machine id, host name, release;
//! - [`mounts`]: the system filesystems and ROOT's layout;
//! - [`factory`], [`users`], [`tmpfiles`]: what Debian's maintainer
//!   scripts would have done, declaratively: the factory /etc copied where
//!   missing, users and groups added where missing, `tmpfiles.d` applied;
//! - [`static_net`]: the config's static addresses, routes and name
//!   servers, beside DHCP;
//! - [`sysctl`]: kernel settings from `sysctl.d`, once the modules are
//!   loaded;
//! - [`cgroups`]: cgroup2 and the services' cgroup;
//! - [`event_loop`]: supervision until a signal asks for the end;
//! - [`control`]: the control socket (`tandemctl stop|start|restart`);
//! - [`shutdown`]: stopping everything, unmounting, reboot(2).
//!
//! The loop and the shutdown make their system calls through
//! [`Syscall`].

pub mod cgroups;
pub mod control;
pub mod event_loop;
pub mod factory;
pub mod identity;
pub mod mounts;
pub mod provisioning;
pub mod shutdown;
pub mod static_net;
pub mod sysctl;
pub mod tmpfiles;
pub mod users;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

pub use identity::{
    HOSTNAME, MACHINE_ID, OS_RELEASE, choose_hostname, format_machine_id, os_release_value,
    ready_line, valid_machine_id,
};
pub use mounts::ROOT_LAYOUT;
pub use shutdown::Shutdown;

use tandem_contract::accounts::Accounts;

use crate::error::Error;
use crate::net::{self, NetEvent};
use crate::services::{self, Supervisor};
use crate::status::{self, BootTimes, EarlyBoot, Status, Timeline};
use crate::sys;
use crate::syscall::{LinuxSyscall, Syscall, Waker, linux::signalfd};
use crate::system_log;
use crate::watchdog::Watchdog;
use event_loop::Init;
use identity::ensure_machine_id;
use mounts::{ensure_root_layout, mount_system};

/// /usr's module list.
pub const MODULES_LIST: &str = "/usr/lib/tandem/modules.load";
/// Base of /usr's modules.
pub const MODULES_BASE: &str = "/usr/lib/modules";
/// How long "system ready" waits for the first DHCP lease.
pub const NETWORK_WAIT: Duration = Duration::from_secs(5);
/// The kernel's console log level setting.
const PRINTK: &str = "/proc/sys/kernel/printk";
/// Console log level after the switch root: errors and worse (levels 0-3).
const CONSOLE_LOGLEVEL: &str = "4";
/// PID 1's nice value (services run at 0).
pub const PID1_NICE: libc::c_int = -5;
/// The kernel's id of this boot (`%b` in `tmpfiles.d`).
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// How long to wait for an Ethernet interface to appear.
const INTERFACE_WAIT: Duration = Duration::from_secs(5);

fn warn(warnings: &mut Vec<String>, err: &Error) {
    system_log!("warning: {err}");
    warnings.push(err.to_string());
}

/// What Debian's maintainer scripts would have done on a node, before
/// anything reads /etc: the factory /etc copied where missing.
fn copy_factory_etc(root: &Path, warnings: &mut Vec<String>, t: &mut Timeline) {
    let (copied, errors) = factory::populate_etc(root);
    for e in &errors {
        warn(warnings, e);
    }
    if !copied.is_empty() {
        system_log!(
            "factory /etc: copied {} files, {} links, {} directories",
            copied.files,
            copied.links,
            copied.dirs
        );
    }
    t.step("factory /etc copied");
}

/// The image's and the administrator's users and groups added where
/// missing. Returns the accounts (for `tmpfiles.d`'s user and group names).
fn ensure_users(root: &Path, warnings: &mut Vec<String>, t: &mut Timeline) -> Accounts {
    let (accounts, report, errors) = users::ensure_accounts(root);
    for e in &errors {
        warn(warnings, e);
    }
    for m in &report.moved {
        system_log!("{m}");
    }
    if let Some(line) = report.summary() {
        system_log!("{line}");
    }
    t.step("users and groups ready");
    accounts
}

/// `tmpfiles.d`, once the machine id and host name are known (`%m`, `%H`)
/// and the users exist.
fn apply_tmpfiles(
    machine_id: &Option<String>,
    hostname: &str,
    accounts: &Accounts,
    warnings: &mut Vec<String>,
    t: &mut Timeline,
) {
    let spec = tmpfiles::Specifiers {
        machine_id: machine_id.clone(),
        boot_id: std::fs::read_to_string(BOOT_ID)
            .ok()
            .map(|b| b.trim().replace('-', "")),
        hostname: hostname.to_string(),
        kernel_release: sys::kernel_release().unwrap_or_default(),
        os_release: std::fs::read_to_string(OS_RELEASE).unwrap_or_default(),
    };
    let (_, errors) = tmpfiles::run(Path::new("/"), &spec, accounts);
    for e in &errors {
        warn(warnings, e);
    }
    t.step("tmpfiles.d applied");
}

/// The config's static interfaces, after the provisioning step wrote them
/// and before the services (which may listen on those addresses) start.
fn apply_static_network(
    watchdog: Option<&mut Watchdog>,
    warnings: &mut Vec<String>,
    t: &mut Timeline,
) {
    // Waiting for a missing interface takes up to 5 s.
    if let Some(w) = watchdog {
        let _ = w.pet();
    }
    let Some(report) = static_net::apply_file() else {
        return;
    };
    for w in report.warnings {
        system_log!("warning: {w}");
        warnings.push(w);
    }
    if !report.configured.is_empty() {
        system_log!("static network: {}", report.configured.join(", "));
    }
    if report.applied {
        t.step("static network configured");
    }
}

/// Kernel settings, before the network and the services start.
fn apply_sysctl(warnings: &mut Vec<String>, t: &mut Timeline) {
    let (entries, errors) = sysctl::read_config(Path::new("/"));
    let (_, failed) = sysctl::apply(Path::new(tandem_contract::sysctl::PROC_SYS), &entries);
    for e in errors.iter().chain(&failed) {
        warn(warnings, e);
    }
    t.step("sysctl.d applied");
}

/// From here on the console is the shell's: like Debian's default
/// `kernel.printk = 4 4 1 7`, only kernel errors and worse still go to it
/// (`dmesg` keeps everything), so that informational messages do not land
/// in the middle of a command's output. A `loglevel=`, `quiet` or `debug` on
/// the kernel command line is the administrator's choice and stays.
fn quiet_console(cmdline: &str, warnings: &mut Vec<String>) {
    if cmdline
        .split_whitespace()
        .any(|a| a.starts_with("loglevel=") || a == "quiet" || a == "debug")
    {
        return;
    }
    if let Err(err) = std::fs::write(PRINTK, CONSOLE_LOGLEVEL) {
        warn(
            warnings,
            &Error::Write {
                path: PRINTK.into(),
                err,
            },
        );
    }
}

fn load_system_modules(warnings: &mut Vec<String>) {
    let list_path = Path::new(MODULES_LIST);
    if !list_path.exists() {
        return;
    }
    let list = match crate::modules::read_list(list_path) {
        Ok(l) => l,
        Err(e) => return warn(warnings, &e),
    };
    let base = match crate::modules::modules_dir(Path::new(MODULES_BASE)) {
        Ok(b) => b,
        Err(err) => return warn(warnings, &Error::Sys { what: "uname", err }),
    };
    for e in crate::modules::load_all(&base, &list) {
        warn(warnings, &e);
    }
}

/// Entry point of the system init. Never returns.
pub fn main(early: EarlyBoot, watchdog: Option<Watchdog>) -> ! {
    let started_us = sys::boottime_us();
    // PID 1's own work (the boot steps up to `system ready`, then reaping,
    // restarts and the watchdog) goes ahead of the services it starts,
    // which would otherwise take most of a small machine's CPU for their
    // own start-up while PID 1 still has steps to do. Services and threads
    // start at nice 0.
    if let Err(err) = sys::raise_priority_not_inherited(PID1_NICE) {
        system_log!("warning: raising PID 1's CPU priority failed: {err}");
    }
    reopen_console();
    // Block before any thread exists, so every thread inherits the mask and
    // the signals queue for signalfd (PID 1 would otherwise ignore them).
    let handled = [
        libc::SIGCHLD,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGHUP,
        libc::SIGPWR,
    ];
    let set = match sys::block_signals(&handled) {
        Ok(s) => s,
        Err(err) => crate::early::fatal(&Error::Sys {
            what: "blocking signals",
            err,
        }),
    };
    let sigfd = match signalfd(&set) {
        Ok(fd) => fd,
        Err(e) => crate::early::fatal(&e),
    };
    sys::disable_ctrl_alt_del();
    let (how, mut system) = run(started_us, early, watchdog, sigfd);
    let err = shutdown::finish(&mut system, how);
    system_log!("reboot(2) failed: {err}; exiting so that the kernel panics (panic=N reboots)");
    std::process::exit(1)
}

/// Standard input, output and error still point at the initramfs's
/// /dev/console node, deleted with the initramfs; take devtmpfs's instead.
/// O_NOCTTY: the console terminal belongs to the console shell's session.
fn reopen_console() {
    if let Ok(console) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open("/dev/console")
    {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which we own.
            unsafe { libc::dup2(console.as_raw_fd(), fd) };
        }
    }
}

fn run(
    started_us: u64,
    early: EarlyBoot,
    mut watchdog: Option<Watchdog>,
    signals: OwnedFd,
) -> (Shutdown, LinuxSyscall) {
    let mut warnings = Vec::new();
    let mut t = Timeline(vec![status::Step {
        step: "system init started".into(),
        at_us: started_us,
    }]);
    if let Some(w) = watchdog.as_mut() {
        let _ = w.pet();
    }
    let pet_every = watchdog
        .as_ref()
        .and_then(|w| w.timeout().ok())
        .map_or(Duration::from_secs(10), |t| {
            (t / 4).clamp(Duration::from_secs(1), Duration::from_secs(15))
        });

    mount_system(&mut warnings);
    ensure_root_layout(&mut warnings);
    t.step("filesystems mounted");
    copy_factory_etc(Path::new("/"), &mut warnings, &mut t);
    let accounts = ensure_users(Path::new("/"), &mut warnings, &mut t);
    let cgroups = cgroups::setup(&mut warnings);
    t.step("cgroups set up");

    let machine_id = ensure_machine_id(&mut warnings);
    let etc_hostname = std::fs::read_to_string(HOSTNAME).ok();
    let hostname = choose_hostname(
        etc_hostname.as_deref(),
        machine_id.as_deref().unwrap_or("unknown"),
    );
    if let Err(err) = sys::sethostname(&hostname) {
        warn(
            &mut warnings,
            &Error::Sys {
                what: "sethostname",
                err,
            },
        );
    }
    let version = std::fs::read_to_string(OS_RELEASE)
        .ok()
        .and_then(|t| os_release_value(&t, tandem_contract::os_release::VERSION_ID));
    let cmdline = std::fs::read_to_string(crate::cmdline::PROC_CMDLINE).unwrap_or_default();
    quiet_console(&cmdline, &mut warnings);
    let slot = crate::cmdline::running_slot(&cmdline);
    t.step("machine id and host name set");
    // The config's step runs beside the modules and the network's start.
    let provisioning = provisioning::start();

    load_system_modules(&mut warnings);
    t.step("modules loaded");
    if let Err(e) = net::loopback_up() {
        warn(&mut warnings, &e);
    }

    // Shared with the DHCP thread, which may outlive the loop: the
    // descriptor stays open while either holds it.
    let wake = match Waker::new() {
        Ok(w) => Some(w),
        Err(e) => {
            warn(&mut warnings, &e);
            None
        }
    };
    let (tx, rx) = mpsc::channel::<NetEvent>();
    let dhcp_wake = wake.clone();
    let dhcp_hostname = Some(hostname.clone());
    let spawned = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            net::dhcp_client(dhcp_hostname, INTERFACE_WAIT, |ev| {
                let _ = tx.send(ev);
                if let Some(w) = &dhcp_wake {
                    w.wake();
                }
            });
        });
    if let Err(err) = spawned {
        warn(
            &mut warnings,
            &Error::Sys {
                what: "starting the DHCP thread",
                err,
            },
        );
    }

    let provisioning = provisioning.map(|p| p.wait(watchdog.as_mut()));
    let mut hostname = hostname;
    if let Some(outcome) = &provisioning {
        system_log!("provisioning: {}", outcome.summary());
        // The config's name, unless the administrator wrote /etc/hostname.
        if etc_hostname.is_none()
            && let Some(name) = provisioning::hostname()
            && name != hostname
        {
            match sys::sethostname(&name) {
                Ok(()) => hostname = name,
                Err(err) => warn(
                    &mut warnings,
                    &Error::Sys {
                        what: "sethostname",
                        err,
                    },
                ),
            }
        }
        t.step("provisioned");
    }
    apply_static_network(watchdog.as_mut(), &mut warnings, &mut t);
    // After the config's step: its files may add tmpfiles.d and sysctl.d
    // lines, and its users may own what tmpfiles.d makes.
    let accounts = if provisioning.as_ref().is_some_and(|o| !o.applied.is_empty()) {
        users::read_accounts(Path::new("/")).0
    } else {
        accounts
    };
    apply_tmpfiles(&machine_id, &hostname, &accounts, &mut warnings, &mut t);
    apply_sysctl(&mut warnings, &mut t);

    let sh = Path::new("/usr/bin/sh").exists();
    // Image, then the config's (this boot's), then the administrator's.
    let mut layers = vec![vec![services::builtin_console(sh)]];
    for dir in [
        services::IMAGE_DIR,
        tandem_contract::provision::SERVICES_DIR,
        services::ADMIN_DIR,
    ] {
        let (defs, errors) = services::read_dir(Path::new(dir));
        for e in &errors {
            warn(&mut warnings, e);
        }
        layers.push(defs);
    }
    let mut defs = services::merge(layers);
    let off = services::apply_runs_on(&mut defs, early.live);
    if !off.is_empty() {
        let boot = if early.live { "a live boot" } else { "a disk" };
        system_log!("not started on {boot} (runs_on): {}", off.join(", "));
    }
    t.step("service files read");
    // `tandemctl stop|start|restart`; without it the node runs on.
    let control = match control::bind(Path::new(control::INIT_SOCKET)) {
        Ok(listener) => Some(listener),
        Err(e) => {
            warn(&mut warnings, &e);
            None
        }
    };
    let mut system = LinuxSyscall::new(signals, wake, watchdog).with_control(control);
    let now = system.now();
    let status = Status {
        format: status::FORMAT,
        slot,
        version,
        machine_id,
        hostname: Some(hostname),
        boot: BootTimes {
            initramfs_started_us: Some(early.initramfs_started_us),
            switch_root_us: Some(early.switch_root_us),
            system_started_us: started_us,
            system_ready_us: None,
            steps: t.0,
        },
        early: Some(early),
        network: None,
        services: Vec::new(),
        warnings,
        provisioning,
        usr_corruption: None,
    };
    let supervisor = Supervisor::new(defs, now).with_cgroups(cgroups);
    let mut init = Init::new(status, supervisor, pet_every, now);
    let how = event_loop::serve(&mut init, &mut system, &rx);
    (how, system)
}
