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

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tandem_slot::Slot;

use crate::error::Error;
use crate::mount::{self, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY};
use crate::net::{self, NetEvent};
use crate::services::{self, Event, Exit, Supervisor};
use crate::status::{self, BootTimes, EarlyBoot, NetworkStatus, Status, Timeline};
use crate::sys;
use crate::system_log;
use crate::watchdog::Watchdog;

/// The machine's identity.
pub const MACHINE_ID: &str = "/etc/machine-id";
/// Administrator's host name.
pub const HOSTNAME: &str = "/etc/hostname";
/// The image's release file.
pub const OS_RELEASE: &str = "/usr/lib/os-release";
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
/// How long to wait for an Ethernet interface to appear.
const INTERFACE_WAIT: Duration = Duration::from_secs(5);

/// What to do at the end (and which signal to PID 1 asks for it).
pub use tandem_contract::run::Shutdown;

/// How PID 1 carries out and names a [`Shutdown`].
trait Action {
    fn verb(self) -> &'static str;
    fn noun(self) -> &'static str;
    fn reboot_cmd(self) -> libc::c_int;
}

impl Action for Shutdown {
    fn verb(self) -> &'static str {
        match self {
            Shutdown::Reboot => "rebooting",
            Shutdown::PowerOff => "powering off",
            Shutdown::Halt => "halting",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Shutdown::Reboot => "reboot",
            Shutdown::PowerOff => "power off",
            Shutdown::Halt => "halt",
        }
    }

    fn reboot_cmd(self) -> libc::c_int {
        match self {
            Shutdown::Reboot => libc::RB_AUTOBOOT,
            Shutdown::PowerOff => libc::RB_POWER_OFF,
            Shutdown::Halt => libc::RB_HALT_SYSTEM,
        }
    }
}

/// Whether `/etc/machine-id` content is a usable id: 32 lower-case hex
/// digits, not all zero.
pub fn valid_machine_id(text: &str) -> bool {
    let t = text.trim();
    t.len() == 32
        && t.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && t.bytes().any(|b| b != b'0')
}

/// A machine id from 16 random bytes, formatted like systemd's (a version 4
/// UUID without dashes).
pub fn format_machine_id(mut bytes: [u8; 16]) -> String {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The host name: /etc/hostname's first word if it is a valid name, else
/// `tandem-<first 8 hex digits of the machine id>`.
pub fn choose_hostname(etc_hostname: Option<&str>, machine_id: &str) -> String {
    let from_file = etc_hostname
        .and_then(|t| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
        })
        .filter(|h| valid_hostname(h));
    match from_file {
        Some(h) => h.to_string(),
        None => format!("tandem-{}", machine_id.get(..8).unwrap_or("unknown")),
    }
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 64
        && !h.starts_with(['-', '.'])
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The value of `key` in an os-release file (shared with the updater).
pub use tandem_contract::os_release::value as os_release_value;

/// The "system ready" line.
pub fn ready_line(slot: Option<Slot>, version: Option<&str>) -> String {
    format!(
        "system ready (slot {}, version {})",
        slot.map_or("unknown".to_string(), |s| s.to_string()),
        version.unwrap_or("unknown")
    )
}

/// Directories and compatibility links a ROOT must have; created when
/// missing, so that an emptied ROOT (a factory reset) still boots.
pub const ROOT_LAYOUT: [(&str, Option<&str>); 11] = [
    ("/etc", None),
    ("/var", None),
    ("/home", None),
    ("/root", None),
    ("/mnt", None),
    ("/opt", None),
    ("/media", None),
    ("/bin", Some("usr/bin")),
    ("/sbin", Some("usr/sbin")),
    ("/lib", Some("usr/lib")),
    ("/lib64", Some("usr/lib64")),
];

fn ensure_root_layout(warnings: &mut Vec<String>) {
    for (path, link) in ROOT_LAYOUT {
        let p = Path::new(path);
        if std::fs::symlink_metadata(p).is_ok() {
            continue;
        }
        let r = match link {
            Some(target)
                if Path::new("/usr")
                    .join(target.trim_start_matches("usr/"))
                    .exists() =>
            {
                std::os::unix::fs::symlink(target, p)
            }
            Some(_) => continue, // nothing to point at (e.g. no /usr/lib64)
            None => std::fs::create_dir_all(p),
        };
        if let Err(err) = r {
            warn(
                warnings,
                &Error::Write {
                    path: p.into(),
                    err,
                },
            );
        }
    }
}

fn warn(warnings: &mut Vec<String>, err: &Error) {
    system_log!("warning: {err}");
    warnings.push(err.to_string());
}

fn mount_system(warnings: &mut Vec<String>) {
    let mounts: [(&str, &str, &str, libc::c_ulong, Option<&str>); 7] = [
        (
            "proc",
            "/proc",
            "proc",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        ),
        (
            "sysfs",
            "/sys",
            "sysfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            None,
        ),
        ("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, Some("mode=0755")),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            Some("mode=0755"),
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MS_NOSUID | MS_NOEXEC,
            Some("gid=5,mode=0620,ptmxmode=0666"),
        ),
        (
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            Some("mode=1777"),
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MS_NOSUID | MS_NODEV,
            Some("mode=1777"),
        ),
    ];
    for (source, target, fstype, flags, data) in mounts {
        if let Err(e) = mount::ensure(source, Path::new(target), fstype, flags, data) {
            warn(warnings, &e);
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = std::os::unix::fs::symlink(target, link);
    }
}

fn ensure_machine_id(warnings: &mut Vec<String>) -> Option<String> {
    let path = Path::new(MACHINE_ID);
    if let Ok(text) = std::fs::read_to_string(path)
        && valid_machine_id(&text)
    {
        return Some(text.trim().to_string());
    }
    let mut bytes = [0u8; 16];
    if let Err(err) = sys::getrandom(&mut bytes) {
        warn(
            warnings,
            &Error::Sys {
                what: "getrandom for the machine id",
                err,
            },
        );
        return None;
    }
    let id = format_machine_id(bytes);
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut &f, format!("{id}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    match write() {
        Ok(()) => system_log!("first boot: generated machine id {id}"),
        Err(err) => warn(
            warnings,
            &Error::Write {
                path: path.into(),
                err,
            },
        ),
    }
    Some(id)
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

fn signalfd(set: &libc::sigset_t) -> Result<OwnedFd, Error> {
    // SAFETY: set is a valid sigset_t; -1 asks for a new descriptor.
    let fd = sys::check(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })
        .map_err(|err| Error::Sys {
            what: "signalfd",
            err,
        })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn eventfd() -> Result<OwnedFd, Error> {
    // SAFETY: plain eventfd(2).
    let fd = sys::check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })
        .map_err(|err| Error::Sys {
            what: "eventfd",
            err,
        })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_signals(fd: RawFd) -> Vec<i32> {
    let mut out = Vec::new();
    loop {
        // SAFETY: signalfd_siginfo is plain old data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: info is valid for `size` bytes.
        let n = unsafe { libc::read(fd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
        if n != size as isize {
            return out;
        }
        out.push(info.ssi_signo as i32);
    }
}

/// Reaps every exited child: (pid, how it ended).
fn reap() -> Vec<(i32, Exit)> {
    reap_and_count().0
}

/// Reaps every exited child; also says whether any child is left. PID 1
/// inherits every orphan, so "no children" means no user process is left.
fn reap_and_count() -> (Vec<(i32, Exit)>, bool) {
    let mut out = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: status is a valid int to write to.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return (out, true),
            p if p < 0 => return (out, false), // ECHILD
            p => out.push((p, Exit::from_wait_status(status))),
        }
    }
}

fn poll_fds(fds: &[RawFd], timeout: Duration) -> Vec<bool> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r <= 0 {
        return vec![false; fds.len()];
    }
    pfds.iter().map(|p| p.revents & libc::POLLIN != 0).collect()
}

fn network_status(ev: &NetEvent) -> NetworkStatus {
    match ev {
        NetEvent::NoInterface => NetworkStatus {
            state: "no Ethernet interface".into(),
            ..Default::default()
        },
        NetEvent::Configured {
            interface,
            mac,
            lease,
        } => NetworkStatus {
            interface: interface.clone(),
            mac: net::format_mac(mac),
            state: "configured".into(),
            address: Some(format!("{}/{}", lease.address, lease.prefix_len())),
            gateway: lease.router.map(|r| r.to_string()),
            dns: lease.dns.iter().map(|d| d.to_string()).collect(),
            dhcp_server: Some(lease.server.to_string()),
            lease_seconds: Some(lease.lease_secs),
        },
        NetEvent::Failed {
            interface,
            mac,
            reason,
        } => NetworkStatus {
            interface: interface.clone(),
            mac: net::format_mac(mac),
            state: format!("waiting: {reason}"),
            ..Default::default()
        },
    }
}

struct Init {
    status: Status,
    supervisor: Supervisor,
    watchdog: Option<Watchdog>,
    pet_every: Duration,
    next_pet: Instant,
    ready: bool,
    /// The network is configured, absent, or waited for long enough.
    network_settled: bool,
    network_deadline: Instant,
    dirty: bool,
}

impl Init {
    fn pet(&mut self, now: Instant) {
        if now < self.next_pet {
            return;
        }
        if let Some(w) = self.watchdog.as_mut()
            && let Err(e) = w.pet()
        {
            system_log!("warning: petting the watchdog failed: {e}");
        }
        self.next_pet = now + self.pet_every;
    }

    fn step(&mut self, step: &str) {
        if !self.ready {
            self.status.boot.steps.push(status::Step {
                step: step.to_string(),
                at_us: sys::boottime_us(),
            });
        }
    }

    fn service_event(&mut self, ev: Event) {
        match ev {
            Event::Started { name, pid } => system_log!("started {name} (pid {pid})"),
            Event::SpawnFailed(e) => system_log!("warning: {e}"),
            Event::Exited {
                name,
                exit,
                restart_in: Some(d),
            } => {
                system_log!("{name} ended ({exit}); restarting in {} ms", d.as_millis());
            }
            Event::Exited {
                name,
                exit,
                restart_in: None,
            } => system_log!("{name} ended ({exit}); not restarting"),
        }
        self.dirty = true;
    }

    fn settle_network(&mut self, now: Instant) {
        if !self.network_settled {
            self.network_settled = true;
            self.supervisor.network_settled(now);
        }
    }

    fn declare_ready(&mut self) {
        self.ready = true;
        self.status.boot.system_ready_us = Some(sys::boottime_us());
        self.write_status();
        system_log!(
            "{}",
            ready_line(self.status.slot, self.status.version.as_deref())
        );
    }

    fn write_status(&mut self) {
        self.status.services = self.supervisor.status();
        if let Err(e) = status::write_json(Path::new(status::STATUS_FILE), &self.status) {
            system_log!("warning: {e}");
        }
        self.dirty = false;
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
    let how = run(started_us, early, watchdog, &sigfd);
    finish(how)
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
    sigfd: &OwnedFd,
) -> (Shutdown, Option<Watchdog>) {
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
        .and_then(|t| os_release_value(&t, "VERSION_ID"));
    let cmdline = std::fs::read_to_string(crate::cmdline::PROC_CMDLINE).unwrap_or_default();
    quiet_console(&cmdline, &mut warnings);
    let slot = crate::cmdline::running_slot(&cmdline);
    t.step("machine id and host name set");

    load_system_modules(&mut warnings);
    t.step("modules loaded");
    if let Err(e) = net::loopback_up() {
        warn(&mut warnings, &e);
    }

    let wake = match eventfd() {
        Ok(fd) => Some(fd),
        Err(e) => {
            warn(&mut warnings, &e);
            None
        }
    };
    let (tx, rx) = mpsc::channel::<NetEvent>();
    let wake_fd = wake.as_ref().map(|w| w.as_raw_fd());
    let dhcp_hostname = Some(hostname.clone());
    let spawned = std::thread::Builder::new()
        .name("dhcp".into())
        .spawn(move || {
            net::dhcp_client(dhcp_hostname, INTERFACE_WAIT, |ev| {
                let _ = tx.send(ev);
                if let Some(fd) = wake_fd {
                    // SAFETY: eventfd_write on the eventfd PID 1 keeps open for its lifetime.
                    unsafe { libc::eventfd_write(fd, 1) };
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

    let sh = Path::new("/usr/bin/sh").exists();
    let (image, image_errors) = services::read_dir(Path::new(services::IMAGE_DIR));
    let (admin, admin_errors) = services::read_dir(Path::new(services::ADMIN_DIR));
    for e in image_errors.iter().chain(&admin_errors) {
        warn(&mut warnings, e);
    }
    let defs = services::merge(vec![vec![services::builtin_console(sh)], image, admin]);
    t.step("service files read");
    let now = Instant::now();
    let mut init = Init {
        status: Status {
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
        },
        supervisor: Supervisor::new(defs, now),
        watchdog,
        pet_every,
        next_pet: now,
        ready: false,
        network_settled: false,
        network_deadline: now + NETWORK_WAIT,
        dirty: true,
    };

    loop {
        let now = Instant::now();
        init.pet(now);
        while let Ok(ev) = rx.try_recv() {
            let st = network_status(&ev);
            match &ev {
                NetEvent::Configured {
                    interface, lease, ..
                } => system_log!(
                    "{interface}: {}/{} via {}, DHCP server {}, lease {} s",
                    lease.address,
                    lease.prefix_len(),
                    lease.router.map_or("-".to_string(), |r| r.to_string()),
                    lease.server,
                    lease.lease_secs
                ),
                NetEvent::NoInterface => {
                    system_log!("no Ethernet interface; networking stays down")
                }
                NetEvent::Failed {
                    interface, reason, ..
                } => system_log!("{interface}: DHCP: {reason}; retrying"),
            }
            match &ev {
                NetEvent::Configured { .. } => init.step("network configured"),
                NetEvent::NoInterface => init.step("no network interface"),
                NetEvent::Failed { .. } => {}
            }
            init.status.network = Some(st);
            init.dirty = true;
            if !matches!(ev, NetEvent::Failed { .. }) {
                init.settle_network(now);
            }
        }
        if !init.network_settled && now >= init.network_deadline {
            system_log!(
                "no DHCP lease after {} s; starting the services that wait for the network anyway",
                NETWORK_WAIT.as_secs()
            );
            init.settle_network(now);
        }
        let events = init.supervisor.start_due(now);
        if !events.is_empty() {
            let started: Vec<String> = events
                .iter()
                .filter_map(|ev| match ev {
                    Event::Started { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .collect();
            for ev in events {
                init.service_event(ev);
            }
            if !started.is_empty() {
                init.step(&format!("started {}", started.join(", ")));
            }
        }
        // Ready once the network settled and what waited for it was started.
        if !init.ready && init.network_settled {
            init.declare_ready();
        }
        if init.dirty && init.ready {
            init.write_status();
        }

        let mut next = init.next_pet;
        if let Some(due) = init.supervisor.next_due() {
            next = next.min(due);
        }
        if !init.network_settled {
            next = next.min(init.network_deadline);
        }
        let timeout = next.saturating_duration_since(Instant::now());
        let mut fds = vec![sigfd.as_raw_fd()];
        if let Some(w) = &wake {
            fds.push(w.as_raw_fd());
        }
        let readable = poll_fds(&fds, timeout);
        if readable.get(1).copied().unwrap_or(false)
            && let Some(w) = &wake
        {
            let mut v: libc::eventfd_t = 0;
            // SAFETY: reading the counter of our own eventfd.
            unsafe { libc::eventfd_read(w.as_raw_fd(), &mut v) };
        }
        if !readable[0] {
            continue;
        }
        for signal in read_signals(sigfd.as_raw_fd()) {
            if signal == libc::SIGCHLD {
                let now = Instant::now();
                for (pid, exit) in reap() {
                    if let Some(ev) = init.supervisor.on_exit(pid, exit, now) {
                        init.service_event(ev);
                    }
                }
            } else if let Some(how) = Shutdown::from_signal(signal) {
                stop_everything(&mut init, how);
                return (how, init.watchdog.take());
            }
        }
    }
}

fn stop_everything(init: &mut Init, how: Shutdown) {
    system_log!("stopping services for {}", how.noun());
    let timeout = init.supervisor.terminate_all();
    let deadline = Instant::now() + timeout;
    let mut killed = false;
    loop {
        let now = Instant::now();
        init.pet(now);
        for (pid, exit) in reap() {
            let _ = init.supervisor.on_exit(pid, exit, now);
        }
        let left = init.supervisor.stopping();
        if left.is_empty() {
            break;
        }
        if now >= deadline {
            if killed {
                break;
            }
            for (name, pid) in init.supervisor.stopping_names() {
                system_log!("{name} (pid {pid}) did not stop within its stop timeout; killing it");
                let _ = sys::kill(-pid, libc::SIGKILL);
            }
            killed = true;
        }
        sys::sleep(Duration::from_millis(20));
    }
    // Whatever else is left (orphans, daemons' children).
    let _ = sys::kill(-1, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut left = true;
    while left && Instant::now() < deadline {
        sys::sleep(Duration::from_millis(10));
        left = reap_and_count().1;
    }
    if left {
        let _ = sys::kill(-1, libc::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(1);
        while reap_and_count().1 && Instant::now() < deadline {
            sys::sleep(Duration::from_millis(10));
        }
    }
    let _ = status::write_json(Path::new(status::STATUS_FILE), &init.status);
}

/// Syncs, unmounts or remounts read-only every disk-backed filesystem,
/// disarms the watchdog and calls reboot(2).
fn finish((how, watchdog): (Shutdown, Option<Watchdog>)) -> ! {
    sys::sync();
    let table = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for m in mount::parse_mounts(&table).iter().rev() {
        if !m.source.starts_with("/dev/") || m.target == Path::new("/") {
            continue;
        }
        if sys::umount(&m.target, 0).is_err()
            && !m.read_only()
            && let Err(e) = sys::remount(&m.target, MS_RDONLY)
        {
            system_log!(
                "warning: remounting {} read-only failed: {e}",
                m.target.display()
            );
        }
    }
    if let Err(e) = sys::remount(Path::new("/"), MS_RDONLY) {
        system_log!("warning: remounting / read-only failed: {e}");
    }
    sys::sync();
    if let Some(w) = watchdog
        && let Err(e) = w.disarm()
    {
        system_log!("warning: disarming the watchdog failed: {e}");
    }
    system_log!("{}", how.verb());
    let err = sys::reboot(how.reboot_cmd());
    system_log!("reboot(2) failed: {err}; exiting so that the kernel panics (panic=N reboots)");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_ids() {
        let id = format_machine_id([0xab; 16]);
        assert_eq!(id.len(), 32);
        assert!(valid_machine_id(&id));
        assert_eq!(&id[12..13], "4", "version 4");
        assert!(valid_machine_id("0123456789abcdef0123456789abcdef\n"));
        assert!(!valid_machine_id(""));
        assert!(!valid_machine_id("uninitialized"));
        assert!(!valid_machine_id(&"0".repeat(32)));
        assert!(!valid_machine_id("0123456789ABCDEF0123456789ABCDEF"));
    }

    #[test]
    fn hostnames() {
        let id = "1234abcd5678ef901234abcd5678ef90";
        assert_eq!(choose_hostname(None, id), "tandem-1234abcd");
        assert_eq!(choose_hostname(Some("node-7\n"), id), "node-7");
        assert_eq!(
            choose_hostname(Some("# comment\n\n  web1.example \n"), id),
            "web1.example"
        );
        assert_eq!(choose_hostname(Some("bad name\n"), id), "tandem-1234abcd");
        assert_eq!(choose_hostname(Some(""), id), "tandem-1234abcd");
    }

    #[test]
    fn os_release() {
        let text = "NAME=\"Tandem\"\nID=tandem\nVERSION_ID=1.0.0\nPRETTY_NAME='Tandem 1.0.0'\n";
        assert_eq!(
            os_release_value(text, "VERSION_ID").as_deref(),
            Some("1.0.0")
        );
        assert_eq!(os_release_value(text, "NAME").as_deref(), Some("Tandem"));
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Tandem 1.0.0")
        );
        assert_eq!(os_release_value(text, "VERSION"), None);
    }

    #[test]
    fn ready_marker() {
        assert_eq!(
            ready_line(Some(Slot::A), Some("1.0.0")),
            "system ready (slot A, version 1.0.0)"
        );
        assert_eq!(
            ready_line(None, None),
            "system ready (slot unknown, version unknown)"
        );
    }

    #[test]
    fn busybox_signals() {
        assert_eq!(Shutdown::from_signal(libc::SIGTERM), Some(Shutdown::Reboot));
        assert_eq!(Shutdown::from_signal(libc::SIGINT), Some(Shutdown::Reboot));
        assert_eq!(
            Shutdown::from_signal(libc::SIGUSR2),
            Some(Shutdown::PowerOff)
        );
        assert_eq!(Shutdown::from_signal(libc::SIGUSR1), Some(Shutdown::Halt));
        assert_eq!(Shutdown::from_signal(libc::SIGHUP), None);
        for s in [Shutdown::Reboot, Shutdown::PowerOff, Shutdown::Halt] {
            assert_eq!(Shutdown::from_signal(s.signal()), Some(s));
        }
    }
}
