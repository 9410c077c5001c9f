//! PID 1's loop once the boot steps are done: network news from the DHCP
//! thread, starting and restarting services, requests on the control
//! socket (`tandemctl stop|start|restart`), the watchdog, "system ready",
//! the status file, and the signals that end it. Every system call goes
//! through [`Syscall`], so the loop runs on the host against a recording
//! double.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::NETWORK_WAIT;
use super::control::Control;
use super::identity::ready_line;
use super::shutdown::{Shutdown, log_stop_step, stop_everything};
use crate::net::{self, NetEvent};
use crate::services::{Event, Supervisor};
use crate::status::{self, NetworkStatus, Status};
use crate::syscall::Syscall;
use crate::system_log;

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

/// The system init's state while it supervises.
pub(crate) struct Init {
    pub(super) status: Status,
    pub(super) supervisor: Supervisor,
    /// The clients of the control socket.
    pub(super) control: Control,
    pet_every: Duration,
    next_pet: Instant,
    ready: bool,
    /// The network is configured, absent, or waited for long enough.
    network_settled: bool,
    network_deadline: Instant,
    dirty: bool,
    /// When /usr is next checked for corruption.
    next_usr_check: Instant,
}

/// How often PID 1 asks dm-verity whether a block of /usr failed: one
/// ioctl; a failed block has already been refused to whoever read it, this
/// is about noticing and acting within seconds.
pub(super) const USR_CHECK_EVERY: Duration = Duration::from_secs(5);

impl Init {
    /// The state at `now`, when the boot steps are done: the watchdog is
    /// due a pet at once and then every `pet_every`; the services that
    /// wait for the network wait until a lease or [`NETWORK_WAIT`].
    pub(super) fn new(
        status: Status,
        mut supervisor: Supervisor,
        pet_every: Duration,
        now: Instant,
    ) -> Init {
        let order_warnings = supervisor.take_warnings();
        let mut init = Init {
            status,
            supervisor,
            control: Control::default(),
            pet_every,
            next_pet: now,
            next_usr_check: now,
            ready: false,
            network_settled: false,
            network_deadline: now + NETWORK_WAIT,
            dirty: true,
        };
        for w in order_warnings {
            init.warn(w.to_string());
        }
        init
    }

    /// A problem worth a look: on the console and, once, in the status.
    fn warn(&mut self, text: String) {
        system_log!("warning: {text}");
        if !self.status.warnings.contains(&text) {
            self.status.warnings.push(text);
            self.dirty = true;
        }
    }

    pub(super) fn pet(&mut self, sys: &mut dyn Syscall, now: Instant) {
        if now < self.next_pet {
            return;
        }
        if let Err(e) = sys.pet_watchdog() {
            system_log!("warning: petting the watchdog failed: {e}");
        }
        self.next_pet = now + self.pet_every;
    }

    /// Notices corrupt /usr (once) and acts on it: when the slot rules give
    /// the running slot up, the answer is a reboot into the other one;
    /// otherwise the node stays up and its status says so.
    fn check_usr(&mut self, sys: &mut dyn Syscall, now: Instant) -> Option<Shutdown> {
        if self.status.usr_corruption.is_some() || now < self.next_usr_check {
            return None;
        }
        self.next_usr_check = now + USR_CHECK_EVERY;
        let what = sys.usr_corruption()?;
        let early = self.status.early.clone();
        let (action, reboot) = match &early {
            Some(e) if !e.live => {
                let outcome = sys.give_up_corrupt_usr(std::path::Path::new(&e.disk), e.slot, &what);
                match outcome.switch_to {
                    Some(_) => (format!("{}; rebooting", outcome.action), true),
                    None => (
                        format!(
                            "{}; staying up: programs on the corrupt blocks fail to load; reinstall the node or replace its disk",
                            outcome.action
                        ),
                        false,
                    ),
                }
            }
            _ => ("a live boot has no other slot: staying up".into(), false),
        };
        let slot = early.as_ref().map_or("?".into(), |e| e.slot.to_string());
        system_log!("/usr of slot {slot} is corrupt on disk: {what}; {action}");
        self.status.usr_corruption = Some(tandem_contract::run::UsrCorruption {
            what,
            action,
            at_us: sys.boottime_us(),
        });
        self.write_status(sys);
        reboot.then_some(Shutdown::Reboot)
    }

    fn step(&mut self, at_us: u64, step: &str) {
        if !self.ready {
            self.status.boot.steps.push(status::Step {
                step: step.to_string(),
                at_us,
            });
        }
    }

    pub(super) fn service_event(&mut self, ev: Event) {
        match ev {
            Event::Started { name, pid } => system_log!("started {name} (pid {pid})"),
            Event::SpawnFailed(e) => system_log!("warning: {e}"),
            Event::Exited {
                name,
                exit,
                restart_in,
                killed_left,
            } => {
                let left = if killed_left {
                    "; killed what it left in its cgroup"
                } else {
                    ""
                };
                match restart_in {
                    Some(d) => system_log!(
                        "{name} ended ({exit}){left}; restarting in {} ms",
                        d.as_millis()
                    ),
                    None => system_log!("{name} ended ({exit}){left}; not restarting"),
                }
            }
            Event::StopCommandsEnded {
                name,
                exit,
                terminated,
            } => {
                let then = terminated.map_or(String::new(), |pid| {
                    format!("; sending SIGTERM to {name} (pid {pid})")
                });
                if exit.success() {
                    system_log!("{name}: stop commands done{then}");
                } else {
                    system_log!("warning: {name}: stop commands failed ({exit}){then}");
                }
            }
            Event::Blocked { name, by } => system_log!(
                "{name} does not start in this boot: it starts after {}, which failed",
                by.join(", ")
            ),
            Event::Warning(e) => self.warn(e.to_string()),
        }
        self.dirty = true;
    }

    fn settle_network(&mut self, now: Instant) {
        if !self.network_settled {
            self.network_settled = true;
            self.supervisor.network_settled(now);
        }
    }

    fn declare_ready(&mut self, sys: &mut dyn Syscall) {
        self.ready = true;
        self.status.boot.system_ready_us = Some(sys.boottime_us());
        self.write_status(sys);
        system_log!(
            "{}",
            ready_line(self.status.slot, self.status.version.as_deref())
        );
    }

    fn write_status(&mut self, sys: &mut dyn Syscall) {
        self.status.services = self.supervisor.status();
        if let Err(e) = sys.write_status(&self.status) {
            system_log!("warning: {e}");
        }
        self.dirty = false;
    }
}

/// Supervises until a signal asks for the end, stops everything and says
/// what was asked for. `net` brings the DHCP thread's news.
pub(super) fn serve(init: &mut Init, sys: &mut dyn Syscall, net: &Receiver<NetEvent>) -> Shutdown {
    loop {
        let now = sys.now();
        init.pet(sys, now);
        if let Some(how) = init.check_usr(sys, now) {
            stop_everything(init, sys, how);
            return how;
        }
        while let Ok(ev) = net.try_recv() {
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
                NetEvent::Configured { .. } => init.step(sys.boottime_us(), "network configured"),
                NetEvent::NoInterface => init.step(sys.boottime_us(), "no network interface"),
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
        // Stops asked for over the control socket (before the sweep, which
        // removes the cgroups they emptied).
        if init.supervisor.any_stopping() {
            let step = init.supervisor.stop_progress(sys, now);
            log_stop_step(&step);
            for (i, report) in &step.stopped {
                let events = init
                    .control
                    .stopped(sys, &mut init.supervisor, *i, report, now);
                for ev in events {
                    init.service_event(ev);
                }
                init.dirty = true;
            }
        }
        for ev in init.supervisor.sweep(sys, now) {
            init.service_event(ev);
        }

        let events = init.supervisor.start_due(sys, now);
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
                init.step(
                    sys.boottime_us(),
                    &format!("started {}", started.join(", ")),
                );
            }
        }
        // Ready once the network settled and what waited for it was started.
        if !init.ready && init.network_settled {
            init.declare_ready(sys);
        }
        if init.dirty && init.ready {
            init.write_status(sys);
        }
        // Answers go out once the status file shows what they say, with
        // those to the clients that ran out of time for their request.
        init.control.expire(now);
        init.control.flush(sys);

        let mut next = init.next_pet;
        if init.status.usr_corruption.is_none() {
            next = next.min(init.next_usr_check);
        }
        if let Some(due) = init.supervisor.next_due() {
            next = next.min(due);
        }
        if let Some(due) = init.supervisor.next_stop_check(now) {
            next = next.min(due);
        }
        if let Some(due) = init.control.next_deadline() {
            next = next.min(due);
        }
        if !init.network_settled {
            next = next.min(init.network_deadline);
        }
        let timeout = next.saturating_duration_since(sys.now());
        let ready = sys.poll(timeout, &init.control.watch());
        if ready.wake {
            sys.drain_wake();
        }
        let now = sys.now();
        if ready.control {
            init.control.accept(sys, now);
        }
        for conn in ready.conns {
            let events = init.control.readable(sys, conn, &mut init.supervisor, now);
            for ev in events {
                init.service_event(ev);
            }
            init.dirty = true;
        }
        if !ready.signals {
            continue;
        }
        for signal in sys.read_signals() {
            if signal == libc::SIGCHLD {
                let now = sys.now();
                for (pid, exit) in sys.reap().exited {
                    if let Some(ev) = init.supervisor.on_exit(sys, pid, exit, now) {
                        init.service_event(ev);
                    }
                }
            } else if let Some(how) = Shutdown::from_signal(signal) {
                stop_everything(init, sys, how);
                return how;
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::services::{Exit, Limits, Restart, ServiceDef, ServiceType, test_def};
    use crate::status::ServiceState;
    use crate::syscall::test::{Call, TestSyscall};

    pub(in crate::system) fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// The loop over `defs` on `sys`, each service in its cgroup, the
    /// watchdog due every `pet_every`; `network`: the DHCP thread reports
    /// "no interface" before the loop starts (else it never reports, and
    /// the loop stops waiting after [`NETWORK_WAIT`]).
    pub(in crate::system) fn run_loop(
        sys: &mut TestSyscall,
        defs: Vec<ServiceDef>,
        pet_every: Duration,
        network: bool,
    ) -> (Shutdown, Init) {
        run_loop_with(sys, defs, pet_every, network, true)
    }

    /// [`run_loop`] on a node without cgroups (cgroup2 did not mount).
    pub(in crate::system) fn run_loop_without_cgroups(
        sys: &mut TestSyscall,
        defs: Vec<ServiceDef>,
        pet_every: Duration,
        network: bool,
    ) -> (Shutdown, Init) {
        run_loop_with(sys, defs, pet_every, network, false)
    }

    fn run_loop_with(
        sys: &mut TestSyscall,
        defs: Vec<ServiceDef>,
        pet_every: Duration,
        network: bool,
        cgroups: bool,
    ) -> (Shutdown, Init) {
        let now = sys.now();
        let mut init = Init::new(
            Status::default(),
            Supervisor::new(defs, now).with_cgroups(cgroups),
            pet_every,
            now,
        );
        let (tx, rx) = mpsc::channel();
        if network {
            tx.send(NetEvent::NoInterface).expect("send");
        }
        let how = serve(&mut init, sys, &rx);
        (how, init)
    }

    /// The loop on a disk boot of slot A, /usr corrupt from 7 s on.
    fn run_with_corrupt_usr(switches: bool) -> (TestSyscall, Shutdown, Init) {
        let mut sys = TestSyscall::default()
            .corrupt_usr(ms(7000), "data block 5 is corrupted", switches)
            .signal_at(ms(30_000), libc::SIGTERM);
        let now = sys.now();
        let status = Status {
            early: Some(crate::status::EarlyBoot {
                initramfs_started_us: 0,
                switch_root_us: 0,
                slot: tandem_slot::Slot::A,
                disk: "/dev/vda".into(),
                usr_partition: "/dev/vda3".into(),
                usr_device: "/dev/dm-0".into(),
                root_partition: "/dev/vda9".into(),
                modules_failed: Vec::new(),
                root_grow: None,
                steps: Vec::new(),
                live: false,
            }),
            ..Status::default()
        };
        let defs = vec![test_def("web", Restart::Always)];
        let mut init = Init::new(status, Supervisor::new(defs, now), ms(1000), now);
        let (tx, rx) = mpsc::channel();
        tx.send(NetEvent::NoInterface).expect("send");
        let how = serve(&mut init, &mut sys, &rx);
        (sys, how, init)
    }

    fn corruption_calls(sys: &TestSyscall) -> Vec<Duration> {
        sys.calls
            .iter()
            .filter(|r| matches!(r.call, Call::GiveUpCorruptUsr(tandem_slot::Slot::A)))
            .map(|r| r.at)
            .collect()
    }

    #[test]
    fn corrupt_usr_with_a_good_other_slot_reboots_into_it() {
        let (sys, how, init) = run_with_corrupt_usr(true);
        assert_eq!(how, Shutdown::Reboot);
        // Checked every 5 s: noticed at the first check after 7 s.
        assert_eq!(corruption_calls(&sys), vec![ms(10_000)]);
        let c = init.status.usr_corruption.expect("reported");
        assert_eq!(c.what, "data block 5 is corrupted");
        assert_eq!(c.action, "slot A given up; slot B boots next; rebooting");
        let published = sys.status.as_ref().and_then(|s| s.usr_corruption.clone());
        assert_eq!(published.map(|c| c.what), Some(c.what));
        assert!(
            sys.kills().iter().any(|(_, _, sig)| *sig == libc::SIGTERM),
            "services stopped before the reboot: {:?}",
            sys.kills()
        );
    }

    #[test]
    fn corrupt_usr_without_a_good_other_slot_stays_up_and_says_so() {
        let (sys, how, init) = run_with_corrupt_usr(false);
        assert_eq!(how, Shutdown::Reboot, "only the SIGTERM at 30 s ends it");
        assert!(sys.elapsed() >= ms(30_000));
        assert_eq!(corruption_calls(&sys), vec![ms(10_000)], "acted on once");
        let c = init.status.usr_corruption.expect("reported");
        assert!(c.action.contains("staying up"), "{}", c.action);
        assert_eq!(sys.spawn_times("web").len(), 1, "the service kept running");
    }

    #[test]
    fn an_exited_service_restarts_after_its_delay_and_backs_off() {
        // Each run lasts 100 ms and fails; the restart delay is 500 ms.
        let mut sys = TestSyscall::default()
            .runs("flaky", ms(100), Exit::Code(1))
            .signal_at(ms(5000), libc::SIGTERM);
        let defs = vec![test_def("flaky", Restart::OnFailure)];
        let (how, init) = run_loop(&mut sys, defs, ms(10000), true);
        assert_eq!(how, Shutdown::Reboot);
        // Exits at 0.1, 0.7, 1.8, 3.9 s; restarts 0.5, 1, 2 s later (the
        // streak doubles the delay), the next (4 s) falls after shutdown.
        assert_eq!(
            sys.spawn_times("flaky"),
            [ms(0), ms(600), ms(1700), ms(3800)]
        );
        assert_eq!(init.supervisor.status()[0].restarts, 4);
        // What was published while it waited for the last restart.
        let published = sys.status.as_ref().expect("status written");
        assert_eq!(published.services[0].state, ServiceState::WaitingToRestart);
        assert_eq!(
            published.services[0].last_exit.as_deref(),
            Some("exit status 1")
        );
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        // 12 s runs (longer than the 10 s that count as stable): every
        // restart comes after the base delay.
        let mut sys = TestSyscall::default()
            .runs("steady", ms(12000), Exit::Code(1))
            .signal_at(ms(40000), libc::SIGTERM);
        let defs = vec![test_def("steady", Restart::Always)];
        run_loop(&mut sys, defs, ms(10000), true);
        assert_eq!(
            sys.spawn_times("steady"),
            [ms(0), ms(12500), ms(25000), ms(37500)]
        );
    }

    #[test]
    fn services_that_must_not_restart_are_not_restarted() {
        let mut sys = TestSyscall::default()
            .runs("never", ms(100), Exit::Code(1))
            .runs("oneshot", ms(100), Exit::Code(0))
            .runs("always", ms(1000), Exit::Code(0))
            .signal_at(ms(10000), libc::SIGTERM);
        let defs = vec![
            test_def("always", Restart::Always),
            test_def("never", Restart::Never),
            test_def("oneshot", Restart::OnFailure),
        ];
        let (_, init) = run_loop(&mut sys, defs, ms(10000), true);
        assert_eq!(sys.spawn_times("never"), [ms(0)]);
        assert_eq!(sys.spawn_times("oneshot"), [ms(0)]);
        // The control: `always` comes back after each exit.
        assert_eq!(
            sys.spawn_times("always"),
            [ms(0), ms(1500), ms(3500), ms(6500)]
        );
        let status = init.supervisor.status();
        assert_eq!(status[1].state, ServiceState::Failed);
        assert_eq!(status[1].restarts, 0);
        assert_eq!(status[2].state, ServiceState::Exited);
        assert_eq!(status[2].restarts, 0);
    }

    #[test]
    fn the_watchdog_is_petted_at_its_interval_until_the_end() {
        // A service that ignores SIGTERM keeps the shutdown waiting 3 s.
        let mut stubborn = test_def("stubborn", Restart::Always);
        stubborn.spec.stop_timeout_secs = 3;
        let mut sys = TestSyscall::default()
            .ignores_term("stubborn")
            .signal_at(ms(4500), libc::SIGTERM);
        let (how, _) = run_loop(&mut sys, vec![stubborn], ms(1000), true);
        let pets = sys.pets();
        // Every second while the loop runs (0 to 4 s) and while the
        // shutdown waits for the service (5 to 7 s; it is killed at 7.5 s).
        let expected: Vec<Duration> = (0..=7).map(|s| ms(s * 1000)).collect();
        assert_eq!(pets, expected);
        super::super::shutdown::finish(&mut sys, how);
        let last_pet = sys
            .calls
            .iter()
            .rposition(|r| r.call == Call::PetWatchdog)
            .expect("petted");
        let disarm = sys
            .calls
            .iter()
            .position(|r| r.call == Call::DisarmWatchdog)
            .expect("disarmed");
        assert!(last_pet < disarm, "petted after it was disarmed");
        assert_eq!(
            sys.calls.last().map(|r| &r.call),
            Some(&Call::Reboot(Shutdown::Reboot))
        );
    }

    #[test]
    fn other_signals_do_not_end_the_loop() {
        let mut sys = TestSyscall::default()
            .signal_at(ms(1000), libc::SIGHUP)
            .signal_at(ms(2000), libc::SIGPWR)
            .signal_at(ms(3000), libc::SIGUSR1);
        let (how, _) = run_loop(
            &mut sys,
            vec![test_def("s", Restart::Always)],
            ms(10000),
            true,
        );
        assert_eq!(how, Shutdown::Halt);
        // Stopping started when SIGUSR1 came, not before.
        let first_kill = sys.kills().first().copied().expect("killed");
        assert_eq!(first_kill, (ms(3000), -100, libc::SIGTERM));
    }

    fn oneshot(name: &str) -> ServiceDef {
        ServiceDef {
            name: name.into(),
            source: "test".into(),
            spec: crate::services::parse("type = \"oneshot\"\nexec = [\"/bin/true\"]\n")
                .expect("valid"),
        }
    }

    fn after(mut def: ServiceDef, names: &[&str]) -> ServiceDef {
        def.spec.after = names.iter().map(|n| n.to_string()).collect();
        def
    }

    fn service<'a>(status: &'a Status, name: &str) -> &'a crate::status::ServiceStatus {
        status
            .services
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name} in {status:?}"))
    }

    fn cgroup(name: &str) -> std::path::PathBuf {
        tandem_contract::cgroup::service(name)
    }

    #[test]
    fn services_start_once_the_ones_they_name_started() {
        // keygen (a oneshot of 300 ms) → sshd → web; clock waits for nothing.
        let defs = vec![
            test_def("clock", Restart::Always),
            oneshot("keygen"),
            after(test_def("sshd", Restart::Always), &["keygen"]),
            after(test_def("web", Restart::Always), &["sshd"]),
        ];
        let mut sys = TestSyscall::default()
            .runs("keygen", ms(300), Exit::Code(0))
            .signal_at(ms(2000), libc::SIGTERM);
        let (_, init) = run_loop(&mut sys, defs, ms(10000), true);
        assert_eq!(sys.spawn_times("clock"), [ms(0)]);
        assert_eq!(sys.spawn_times("keygen"), [ms(0)], "a oneshot runs once");
        assert_eq!(sys.spawn_times("sshd"), [ms(300)], "once keygen succeeded");
        assert_eq!(
            sys.spawn_times("web"),
            [ms(300)],
            "with sshd, its process spawned"
        );
        let early = sys.published_at(ms(100)).expect("published");
        assert_eq!(service(early, "keygen").state, ServiceState::Running);
        assert_eq!(service(early, "keygen").kind, ServiceType::Oneshot);
        assert_eq!(
            service(early, "sshd").state,
            ServiceState::WaitingForServices
        );
        assert_eq!(service(early, "sshd").waiting_for, ["keygen"]);
        assert_eq!(service(early, "web").waiting_for, ["sshd"]);
        let later = sys.published_at(ms(1500)).expect("published");
        assert_eq!(service(later, "keygen").state, ServiceState::Exited);
        assert_eq!(service(later, "keygen").restarts, 0);
        assert_eq!(service(later, "sshd").state, ServiceState::Running);
        assert!(service(later, "sshd").waiting_for.is_empty());
        assert_eq!(init.supervisor.status()[1].state, ServiceState::Exited);
    }

    #[test]
    fn a_failed_oneshot_blocks_what_starts_after_it() {
        let defs = vec![
            oneshot("keygen"),
            after(test_def("sshd", Restart::Always), &["keygen"]),
            after(test_def("web", Restart::Always), &["sshd"]),
            test_def("clock", Restart::Always),
        ];
        let mut sys = TestSyscall::default()
            .runs("keygen", ms(300), Exit::Code(1))
            .signal_at(ms(5000), libc::SIGTERM);
        let (_, init) = run_loop(&mut sys, defs, ms(10000), true);
        assert_eq!(sys.spawn_times("keygen"), [ms(0)], "not restarted");
        assert!(sys.spawn_times("sshd").is_empty());
        assert!(sys.spawn_times("web").is_empty());
        assert_eq!(sys.spawn_times("clock"), [ms(0)]);
        let published = sys.published_at(ms(4000)).expect("published");
        assert_eq!(service(published, "keygen").state, ServiceState::Failed);
        assert_eq!(
            service(published, "keygen").last_exit.as_deref(),
            Some("exit status 1")
        );
        assert_eq!(service(published, "sshd").state, ServiceState::Blocked);
        assert_eq!(service(published, "sshd").blocked_by, ["keygen"]);
        assert_eq!(service(published, "web").state, ServiceState::Blocked);
        assert_eq!(service(published, "web").blocked_by, ["sshd"]);
        assert!(!ServiceState::Blocked.is_healthy());
        // At shutdown they stay blocked (they never ran).
        let status = init.supervisor.status();
        assert_eq!(status[1].state, ServiceState::Blocked);
    }

    #[test]
    fn a_oneshot_retried_on_failure_lets_the_others_start_once_it_succeeds() {
        let mut prep = oneshot("prep");
        prep.spec.restart = Restart::OnFailure;
        let defs = vec![prep, after(test_def("app", Restart::Always), &["prep"])];
        let mut sys = TestSyscall::default()
            .runs("prep", ms(100), Exit::Code(1))
            .runs("prep", ms(100), Exit::Code(0))
            .signal_at(ms(3000), libc::SIGTERM);
        let (_, init) = run_loop(&mut sys, defs, ms(10000), true);
        // Fails at 0.1 s, tried again 0.5 s later, succeeds at 0.7 s.
        assert_eq!(sys.spawn_times("prep"), [ms(0), ms(600)]);
        assert_eq!(sys.spawn_times("app"), [ms(700)]);
        let status = init.supervisor.status();
        assert_eq!(status[0].state, ServiceState::Exited);
        assert_eq!(status[0].restarts, 1);
    }

    #[test]
    fn unknown_names_and_cycles_are_warned_once_and_ignored() {
        let defs = vec![
            after(test_def("a", Restart::Always), &["nosuch"]),
            after(test_def("b", Restart::Always), &["c"]),
            after(test_def("c", Restart::Always), &["b"]),
        ];
        let mut sys = TestSyscall::default()
            .runs("a", ms(100), Exit::Code(1))
            .signal_at(ms(3000), libc::SIGTERM);
        let (_, init) = run_loop(&mut sys, defs, ms(10000), true);
        for name in ["a", "b", "c"] {
            assert_eq!(sys.spawn_times(name)[0], ms(0), "{name} starts anyway");
        }
        assert!(sys.spawn_times("a").len() > 2, "restarts do not warn again");
        assert_eq!(
            init.status.warnings,
            [
                "service a: after names \"nosuch\", which is not a service; ignored",
                "services b, c start after each other (a cycle of `after`); their order among themselves is ignored",
            ]
        );
        let published = sys.status.as_ref().expect("published");
        assert_eq!(published.warnings, init.status.warnings);
    }

    #[test]
    fn a_service_waits_for_both_the_network_and_the_services_it_names() {
        let mut app = after(test_def("app", Restart::Always), &["prep"]);
        app.spec.after_network = true;
        let defs = vec![app, oneshot("prep")];
        // The network never answers: the wait for it ends at 5 s; prep
        // takes 6 s.
        let mut sys = TestSyscall::default()
            .runs("prep", ms(6000), Exit::Code(0))
            .signal_at(ms(8000), libc::SIGTERM);
        run_loop(&mut sys, defs, ms(10000), false);
        assert_eq!(sys.spawn_times("app"), [ms(6000)]);
        let before = sys.published_at(ms(5500)).expect("published at ready");
        assert_eq!(
            service(before, "app").state,
            ServiceState::WaitingForServices
        );
        assert_eq!(service(before, "app").waiting_for, ["prep"]);
        // The status before "system ready" is not published; the
        // supervisor's own view at the start says it waits for the network.
        let t0 = Instant::now();
        let mut app = after(test_def("app", Restart::Always), &["prep"]);
        app.spec.after_network = true;
        let s = Supervisor::new(vec![app, oneshot("prep")], t0);
        assert_eq!(s.status()[0].state, ServiceState::WaitingForNetwork);
        assert_eq!(s.status()[0].waiting_for, ["prep"]);
    }

    #[test]
    fn each_service_runs_in_its_cgroup_with_its_limits_written_first() {
        let mut web = test_def("web", Restart::Always);
        web.spec.limits = Limits {
            memory_max: Some(512 << 20),
            cpu_weight: Some(50),
            tasks_max: Some(64),
        };
        let mut sys = TestSyscall::default().signal_at(ms(1000), libc::SIGTERM);
        let (_, init) = run_loop(
            &mut sys,
            vec![web, test_def("plain", Restart::Always)],
            ms(10000),
            true,
        );
        let dir = cgroup("web");
        let write = |f: &str, v: &str| Call::CgroupWrite(dir.clone(), f.into(), v.into());
        let setup: Vec<Call> = sys
            .actions()
            .into_iter()
            .take_while(|c| !matches!(c, Call::Kill { .. }))
            .collect();
        assert_eq!(
            setup,
            [
                Call::CgroupCreate(dir.clone()),
                write("memory.max", "536870912"),
                write("cpu.weight", "50"),
                write("pids.max", "64"),
                Call::Spawn {
                    name: "web".into(),
                    pid: 100,
                    cgroup: Some(dir.clone()),
                },
                Call::CgroupCreate(cgroup("plain")),
                Call::Spawn {
                    name: "plain".into(),
                    pid: 101,
                    cgroup: Some(cgroup("plain")),
                },
            ]
        );
        let published = sys.published_at(ms(500)).expect("published");
        assert_eq!(
            service(published, "web").cgroup.as_deref(),
            Some("/sys/fs/cgroup/system/web.service")
        );
        assert!(init.status.warnings.is_empty());
        // Stopped: the cgroups are gone.
        assert!(sys.cgroups().is_empty(), "{:?}", sys.cgroups());
        assert_eq!(init.supervisor.status()[0].cgroup, None);
    }

    #[test]
    fn what_a_service_leaves_in_its_cgroup_is_killed_before_it_restarts() {
        // A daemon whose two children outlive it; it exits after 100 ms.
        let mut sys = TestSyscall::default()
            .runs("daemon", ms(100), Exit::Code(0))
            .leaves("daemon", 2)
            .signal_at(ms(1000), libc::SIGTERM);
        run_loop(
            &mut sys,
            vec![test_def("daemon", Restart::Always)],
            ms(10000),
            true,
        );
        let dir = cgroup("daemon");
        assert_eq!(sys.spawn_times("daemon"), [ms(0), ms(600)]);
        assert_eq!(
            sys.cgroup_actions(),
            [
                (ms(0), Call::CgroupCreate(dir.clone())),
                // Its children, killed with it at each exit; the cgroup is
                // kept for the restart.
                (ms(100), Call::CgroupKill(dir.clone())),
                (ms(700), Call::CgroupKill(dir.clone())),
                // Shut down while it waited to restart: removed.
                (ms(1000), Call::CgroupRemove(dir.clone())),
            ]
        );
        let reaped: Vec<i32> = sys
            .calls
            .iter()
            .filter_map(|r| match &r.call {
                Call::Reap(exited) => Some(exited.iter().map(|e| e.0).collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(reaped, [100, 1000, 1001, 101, 1002, 1003], "all ended");
    }

    #[test]
    fn a_service_that_ended_for_good_has_its_cgroup_removed() {
        let mut sys = TestSyscall::default()
            .runs("keygen", ms(300), Exit::Code(0))
            .leaves("keygen", 1)
            .signal_at(ms(1000), libc::SIGTERM);
        let (_, init) = run_loop(&mut sys, vec![oneshot("keygen")], ms(10000), true);
        let dir = cgroup("keygen");
        assert_eq!(
            sys.cgroup_actions(),
            [
                (ms(0), Call::CgroupCreate(dir.clone())),
                (ms(300), Call::CgroupKill(dir.clone())),
                (ms(300), Call::CgroupRemove(dir.clone())),
            ]
        );
        let published = sys.published_at(ms(900)).expect("published");
        assert_eq!(service(published, "keygen").state, ServiceState::Exited);
        assert_eq!(service(published, "keygen").cgroup, None);
        assert!(init.status.warnings.is_empty());
    }

    #[test]
    fn a_cgroup_that_will_not_empty_is_given_up_with_a_warning() {
        // What it leaves is stuck in the kernel: not even SIGKILL ends it.
        let mut sys = TestSyscall::default()
            .runs("stuck", ms(100), Exit::Code(1))
            .leaves("stuck", 1)
            .stuck("stuck")
            .signal_at(ms(5000), libc::SIGTERM);
        let (_, init) = run_loop(
            &mut sys,
            vec![test_def("stuck", Restart::Never)],
            ms(10000),
            true,
        );
        let removals: Vec<Duration> = sys
            .cgroup_actions()
            .into_iter()
            .filter(|(_, c)| matches!(c, Call::CgroupRemove(_)))
            .map(|(at, _)| at)
            .collect();
        // Tried at the exit, then every 50 ms up to 2 s after it.
        assert_eq!(removals.first(), Some(&ms(100)));
        assert_eq!(removals.last(), Some(&ms(2100)));
        assert_eq!(removals.len(), 41);
        let busy = std::io::Error::from_raw_os_error(libc::EBUSY);
        assert_eq!(
            init.status.warnings,
            [format!(
                "cgroup: removing /sys/fs/cgroup/system/stuck.service failed: {busy}"
            )]
        );
    }

    #[test]
    fn a_stopped_service_s_leftovers_are_killed_when_its_main_process_ends() {
        // The daemon ends on SIGTERM at once; its child is not in its
        // process group and would never see the signal.
        let mut daemon = test_def("daemon", Restart::Always);
        daemon.spec.stop_timeout_secs = 5;
        let mut sys = TestSyscall::default()
            .leaves("daemon", 1)
            .signal_at(ms(1000), libc::SIGTERM);
        run_loop(&mut sys, vec![daemon], ms(10000), true);
        let dir = cgroup("daemon");
        assert_eq!(
            sys.cgroup_actions(),
            [
                (ms(0), Call::CgroupCreate(dir.clone())),
                (ms(1000), Call::CgroupKill(dir.clone())),
                (ms(1000), Call::CgroupRemove(dir.clone())),
            ]
        );
        // Nothing was left for the final round.
        assert_eq!(
            sys.kills().last(),
            Some(&(ms(1000), -1, libc::SIGTERM)),
            "the stop did not wait for the stop timeout"
        );
    }

    #[test]
    fn shutdown_waits_for_a_cgroup_to_empty_within_the_timeouts() {
        // Ignores SIGTERM, and what it leaves cannot be killed: killed at
        // its stop timeout (2 s), given up 2 s later.
        let mut stuck = test_def("stuck", Restart::Always);
        stuck.spec.stop_timeout_secs = 2;
        let mut sys = TestSyscall::default()
            .ignores_term("stuck")
            .leaves("stuck", 1)
            .stuck("stuck")
            .signal_at(ms(1000), libc::SIGTERM);
        let (how, _) = run_loop(&mut sys, vec![stuck], ms(10000), true);
        assert_eq!(how, Shutdown::Reboot);
        let dir = cgroup("stuck");
        let kills: Vec<(Duration, Call)> = sys
            .cgroup_actions()
            .into_iter()
            .filter(|(_, c)| matches!(c, Call::CgroupKill(_)))
            .collect();
        assert_eq!(kills, [(ms(3000), Call::CgroupKill(dir.clone()))]);
        // Then the rest of the system: SIGTERM to all once it gave up.
        let last_round = sys.kills().into_iter().find(|k| k.1 == -1).expect("all");
        assert_eq!(last_round, (ms(5000), -1, libc::SIGTERM));
    }

    #[test]
    fn without_cgroups_services_still_run() {
        let mut sys = TestSyscall::default()
            .runs("daemon", ms(100), Exit::Code(0))
            .leaves("daemon", 1)
            .signal_at(ms(1000), libc::SIGTERM);
        let mut daemon = test_def("daemon", Restart::Never);
        daemon.spec.limits.memory_max = Some(1 << 20);
        let (_, init) = run_loop_without_cgroups(&mut sys, vec![daemon], ms(10000), true);
        assert_eq!(
            sys.calls
                .iter()
                .find(|r| matches!(r.call, Call::Spawn { .. }))
                .map(|r| &r.call),
            Some(&Call::Spawn {
                name: "daemon".into(),
                pid: 100,
                cgroup: None
            })
        );
        assert!(sys.cgroup_actions().is_empty());
        assert_eq!(init.supervisor.status()[0].cgroup, None);
        // What it left lives until the last round of the shutdown.
        assert_eq!(sys.kills(), [(ms(1000), -1, libc::SIGTERM)]);
    }

    #[test]
    fn a_cgroup_or_limit_that_cannot_be_written_is_a_warning_and_the_service_runs() {
        let mut capped = test_def("capped", Restart::Always);
        capped.spec.limits.memory_max = Some(1 << 20);
        capped.spec.limits.tasks_max = Some(8);
        let mut sys = TestSyscall::default()
            .no_cgroup_file("memory.max")
            .cgroup_create_fails(&cgroup("homeless"))
            .runs("homeless", ms(100), Exit::Code(1))
            .signal_at(ms(2000), libc::SIGTERM);
        let defs = vec![capped, test_def("homeless", Restart::Always)];
        let (_, init) = run_loop(&mut sys, defs, ms(10000), true);
        let spawned: Vec<(String, Option<std::path::PathBuf>)> = sys
            .calls
            .iter()
            .filter_map(|r| match &r.call {
                Call::Spawn { name, cgroup, .. } => Some((name.clone(), cgroup.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(spawned[0], ("capped".to_string(), Some(cgroup("capped"))));
        assert_eq!(spawned[1], ("homeless".to_string(), None));
        assert!(spawned.len() > 2, "homeless restarts");
        let os = |errno| std::io::Error::from_raw_os_error(errno);
        assert_eq!(
            init.status.warnings,
            [
                format!(
                    "cgroup: writing /sys/fs/cgroup/system/capped.service/memory.max failed: {}",
                    os(libc::ENOENT)
                ),
                format!(
                    "cgroup: creating /sys/fs/cgroup/system/homeless.service failed: {}",
                    os(libc::EACCES)
                ),
            ],
            "each once"
        );
    }
}
