//! PID 1's loop once the boot steps are done: network news from the DHCP
//! thread, starting and restarting services, the watchdog, "system ready",
//! the status file, and the signals that end it. Every system call goes
//! through [`Syscall`], so the loop runs on the host against a recording
//! double.

use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::NETWORK_WAIT;
use super::identity::ready_line;
use super::shutdown::{Shutdown, stop_everything};
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
    pet_every: Duration,
    next_pet: Instant,
    ready: bool,
    /// The network is configured, absent, or waited for long enough.
    network_settled: bool,
    network_deadline: Instant,
    dirty: bool,
}

impl Init {
    /// The state at `now`, when the boot steps are done: the watchdog is
    /// due a pet at once and then every `pet_every`; the services that
    /// wait for the network wait until a lease or [`NETWORK_WAIT`].
    pub(super) fn new(
        status: Status,
        supervisor: Supervisor,
        pet_every: Duration,
        now: Instant,
    ) -> Init {
        Init {
            status,
            supervisor,
            pet_every,
            next_pet: now,
            ready: false,
            network_settled: false,
            network_deadline: now + NETWORK_WAIT,
            dirty: true,
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

    fn step(&mut self, at_us: u64, step: &str) {
        if !self.ready {
            self.status.boot.steps.push(status::Step {
                step: step.to_string(),
                at_us,
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

        let mut next = init.next_pet;
        if let Some(due) = init.supervisor.next_due() {
            next = next.min(due);
        }
        if !init.network_settled {
            next = next.min(init.network_deadline);
        }
        let timeout = next.saturating_duration_since(sys.now());
        let ready = sys.poll(timeout);
        if ready.wake {
            sys.drain_wake();
        }
        if !ready.signals {
            continue;
        }
        for signal in sys.read_signals() {
            if signal == libc::SIGCHLD {
                let now = sys.now();
                for (pid, exit) in sys.reap().exited {
                    if let Some(ev) = init.supervisor.on_exit(pid, exit, now) {
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
    use crate::services::{Exit, Restart, ServiceDef, test_def};
    use crate::status::ServiceState;
    use crate::syscall::test::{Call, TestSyscall};

    pub(in crate::system) fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// The loop over `defs` on `sys`, the watchdog due every `pet_every`;
    /// `network`: the DHCP thread reports "no interface" before the loop
    /// starts (else it never reports, and the loop stops waiting after
    /// [`NETWORK_WAIT`]).
    pub(in crate::system) fn run_loop(
        sys: &mut TestSyscall,
        defs: Vec<ServiceDef>,
        pet_every: Duration,
        network: bool,
    ) -> (Shutdown, Init) {
        let now = sys.now();
        let mut init = Init::new(
            Status::default(),
            Supervisor::new(defs, now),
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
}
