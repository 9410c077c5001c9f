//! The end of the machine's life: which signal asks for what, stopping the
//! services (SIGTERM, SIGKILL after the stop timeout, then every process
//! left), and the final sync, unmount and reboot(2), all through
//! [`Syscall`].

use std::io;
use std::path::Path;
use std::time::Duration;

use super::event_loop::Init;
use crate::mount;
use crate::services::{Event, StopStep};
use crate::syscall::Syscall;
use crate::system_log;

/// What to do at the end, and which signal to PID 1 asks for it.
pub use tandem_contract::run::Shutdown;

/// How PID 1 names and carries out a [`Shutdown`].
pub(crate) trait Action {
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

/// Stops every service for `how`: SIGTERM to each running service's process
/// group at once (in the services' order, which is by name); a service is
/// stopped when its main process ended and its cgroup is empty. One still
/// running after its own stop timeout is killed: its whole cgroup
/// (`cgroup.kill`), or its process group without cgroups. Then SIGTERM and,
/// 2 s later, SIGKILL to every process left (orphans; with cgroups, only
/// what escaped them: none but PID 1's own). The watchdog is petted
/// throughout. Clients of the control socket, those waiting for a stop
/// included, are answered that the system is shutting down.
pub(super) fn stop_everything(init: &mut Init, sys: &mut dyn Syscall, how: Shutdown) {
    system_log!("stopping services for {}", how.noun());
    init.control.shut_down(sys, how);
    let now = sys.now();
    init.supervisor.terminate_all(sys, now);
    loop {
        let now = sys.now();
        init.pet(sys, now);
        init.control.refuse_new(sys, how);
        for (pid, exit) in sys.reap().exited {
            // Services' ends are expected here; how stop commands ended is news.
            if let Some(ev @ Event::StopCommandsEnded { .. }) =
                init.supervisor.on_exit(sys, pid, exit, now)
            {
                init.service_event(ev);
            }
        }
        let step = init.supervisor.stop_step(sys, now);
        log_stop_step(&step);
        if !step.left {
            break;
        }
        sys.sleep(Duration::from_millis(20));
    }
    // Whatever else is left (orphans, daemons' children).
    let _ = sys.kill(-1, libc::SIGTERM);
    let deadline = sys.now() + Duration::from_secs(2);
    let mut left = true;
    while left && sys.now() < deadline {
        sys.sleep(Duration::from_millis(10));
        left = sys.reap().children_left;
    }
    if left {
        let _ = sys.kill(-1, libc::SIGKILL);
        let deadline = sys.now() + Duration::from_secs(1);
        while sys.reap().children_left && sys.now() < deadline {
            sys.sleep(Duration::from_millis(10));
        }
    }
    let _ = sys.write_status(&init.status);
}

/// Console lines for what a round of stopping did (the shutdown's, or a
/// stop on request).
pub(super) fn log_stop_step(step: &StopStep) {
    for (name, pid) in &step.killed {
        match pid {
            Some(pid) => {
                system_log!("{name} (pid {pid}) did not stop within its stop timeout; killing it")
            }
            None => system_log!(
                "{name}: processes left in its cgroup did not stop within its stop timeout; killing them"
            ),
        }
    }
    for name in &step.gave_up {
        system_log!("warning: {name}: processes still running after SIGKILL; not waiting for them");
    }
    for e in &step.warnings {
        system_log!("warning: {e}");
    }
}

/// Syncs, unmounts or remounts read-only every disk-backed filesystem
/// (the mount table's last first), disarms the watchdog and calls
/// reboot(2). Returns only if that failed.
pub(super) fn finish(sys: &mut dyn Syscall, how: Shutdown) -> io::Error {
    sys.sync();
    let table = sys.mount_table().unwrap_or_default();
    for m in mount::parse_mounts(&table).iter().rev() {
        if !m.source.starts_with("/dev/") || m.target == Path::new("/") {
            continue;
        }
        if sys.umount(&m.target).is_err()
            && !m.read_only()
            && let Err(e) = sys.remount_read_only(&m.target)
        {
            system_log!(
                "warning: remounting {} read-only failed: {e}",
                m.target.display()
            );
        }
    }
    if let Err(e) = sys.remount_read_only(Path::new("/")) {
        system_log!("warning: remounting / read-only failed: {e}");
    }
    sys.sync();
    if let Err(e) = sys.disarm_watchdog() {
        system_log!("warning: disarming the watchdog failed: {e}");
    }
    system_log!("{}", how.verb());
    sys.reboot(how)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    use crate::services::{Restart, test_def};
    use crate::syscall::test::{Call, TestSyscall};
    use crate::system::event_loop::tests::{ms, run_loop, run_loop_without_cgroups};

    const MOUNTS: &str = "\
/dev/vda9 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec 0 0
/dev/mapper/usr /usr erofs ro,relatime 0 0
/dev/vda6 /oem ext4 rw,relatime 0 0
tmpfs /run tmpfs rw,nosuid,nodev 0 0
/dev/vda1 /boot vfat rw,relatime 0 0
";

    /// Three services: `a-net` waits for the network (which never answers,
    /// so it starts at the 5 s deadline, last), `b` and `c` start at once;
    /// `c` ignores SIGTERM. SIGUSR2 (power off) comes at 6 s.
    fn shut_down() -> (Shutdown, TestSyscall) {
        shut_down_with(true)
    }

    fn shut_down_with(cgroups: bool) -> (Shutdown, TestSyscall) {
        let mut a = test_def("a-net", Restart::Always);
        a.spec.after_network = true;
        a.spec.stop_timeout_secs = 1;
        let mut b = test_def("b", Restart::Always);
        b.spec.stop_timeout_secs = 1;
        let mut c = test_def("c", Restart::Always);
        c.spec.stop_timeout_secs = 3;
        let mut sys = TestSyscall::default()
            .ignores_term("c")
            .signal_at(ms(6000), libc::SIGUSR2)
            .mounts(MOUNTS)
            .umount_fails("/oem")
            .umount_fails("/usr");
        let defs = vec![a, b, c];
        let (how, _) = if cgroups {
            run_loop(&mut sys, defs, ms(1000), false)
        } else {
            run_loop_without_cgroups(&mut sys, defs, ms(1000), false)
        };
        (how, sys)
    }

    fn cgroup(name: &str) -> std::path::PathBuf {
        tandem_contract::cgroup::service(name)
    }

    #[test]
    fn services_get_sigterm_in_their_order_then_their_cgroup_is_killed_after_the_stop_timeout() {
        let (how, sys) = shut_down();
        assert_eq!(how, Shutdown::PowerOff);
        assert_eq!(
            sys.spawns(),
            [
                (ms(0), "b".to_string(), 100),
                (ms(0), "c".to_string(), 101),
                (ms(5000), "a-net".to_string(), 102),
            ]
        );
        // Every running service gets SIGTERM (and SIGCONT) to its process
        // group at once, in the services' order (by name); then every
        // other process gets SIGTERM once the services are stopped.
        assert_eq!(
            sys.kills(),
            [
                (ms(6000), -102, libc::SIGTERM),
                (ms(6000), -102, libc::SIGCONT),
                (ms(6000), -100, libc::SIGTERM),
                (ms(6000), -100, libc::SIGCONT),
                (ms(6000), -101, libc::SIGTERM),
                (ms(6000), -101, libc::SIGCONT),
                (ms(9020), -1, libc::SIGTERM),
            ]
        );
        // The stopped ones' cgroups go at once; `c`'s whole cgroup is
        // killed when its stop timeout (3 s) has passed, and goes once
        // empty.
        let after_signal: Vec<(Duration, Call)> = sys
            .cgroup_actions()
            .into_iter()
            .filter(|(at, _)| *at >= ms(6000))
            .collect();
        assert_eq!(
            after_signal,
            [
                (ms(6000), Call::CgroupRemove(cgroup("a-net"))),
                (ms(6000), Call::CgroupRemove(cgroup("b"))),
                (ms(9000), Call::CgroupKill(cgroup("c"))),
                (ms(9020), Call::CgroupRemove(cgroup("c"))),
            ]
        );
        assert!(sys.cgroups().is_empty(), "{:?}", sys.cgroups());
        assert_eq!(sys.calls.last().map(|r| &r.call), Some(&Call::WriteStatus));
    }

    #[test]
    fn without_cgroups_each_service_gets_sigkill_after_its_own_stop_timeout() {
        let mut b = test_def("b", Restart::Always);
        b.spec.stop_timeout_secs = 1;
        let mut c = test_def("c", Restart::Always);
        c.spec.stop_timeout_secs = 3;
        let mut sys = TestSyscall::default()
            .ignores_term("b")
            .ignores_term("c")
            .signal_at(ms(6000), libc::SIGUSR2);
        run_loop_without_cgroups(&mut sys, vec![b, c], ms(1000), true);
        let kills: Vec<_> = sys
            .kills()
            .into_iter()
            .filter(|k| k.2 != libc::SIGCONT)
            .collect();
        assert_eq!(
            kills,
            [
                (ms(6000), -100, libc::SIGTERM),
                (ms(6000), -101, libc::SIGTERM),
                (ms(7000), -100, libc::SIGKILL),
                (ms(9000), -101, libc::SIGKILL),
                (ms(9020), -1, libc::SIGTERM),
            ]
        );
        assert!(sys.cgroup_actions().is_empty(), "no cgroups");
    }

    #[test]
    fn services_get_sigterm_in_their_order_then_sigkill_after_the_stop_timeout() {
        let (how, sys) = shut_down_with(false);
        assert_eq!(how, Shutdown::PowerOff);
        let started: Vec<(Duration, String, i32)> = sys.spawns();
        assert_eq!(
            started,
            [
                (ms(0), "b".to_string(), 100),
                (ms(0), "c".to_string(), 101),
                (ms(5000), "a-net".to_string(), 102),
            ]
        );
        // Without cgroups: not the reverse of the start order: every
        // running service gets SIGTERM (and SIGCONT) at once, in the
        // services' order (by name); SIGKILL goes to the process group of
        // `c` when its stop timeout (3 s) has passed; then every other
        // process gets SIGTERM.
        assert_eq!(
            sys.kills(),
            [
                (ms(6000), -102, libc::SIGTERM),
                (ms(6000), -102, libc::SIGCONT),
                (ms(6000), -100, libc::SIGTERM),
                (ms(6000), -100, libc::SIGCONT),
                (ms(6000), -101, libc::SIGTERM),
                (ms(6000), -101, libc::SIGCONT),
                (ms(9000), -101, libc::SIGKILL),
                (ms(9020), -1, libc::SIGTERM),
            ]
        );
        // The state after the stop went out once more.
        assert_eq!(sys.calls.last().map(|r| &r.call), Some(&Call::WriteStatus));
    }

    #[test]
    fn finish_syncs_unmounts_disarms_and_powers_off_as_asked() {
        let (how, mut sys) = shut_down();
        let before = sys.actions().len();
        let err = finish(&mut sys, how);
        assert_eq!(err.kind(), io::ErrorKind::Other);
        let actions = sys.actions().split_off(before);
        assert_eq!(
            actions,
            [
                Call::Sync,
                // Disk-backed mounts, the table's last first; / stays
                // mounted and is remounted read-only at the end.
                Call::Umount("/boot".into()),
                Call::Umount("/oem".into()),
                // Busy and writable: remounted read-only instead.
                Call::RemountReadOnly("/oem".into()),
                // Busy but already read-only: left alone.
                Call::Umount("/usr".into()),
                Call::RemountReadOnly("/".into()),
                Call::Sync,
                Call::DisarmWatchdog,
                Call::Reboot(Shutdown::PowerOff),
            ]
        );
    }

    #[test]
    fn each_signal_ends_in_its_reboot_call() {
        for (signal, how) in [
            (libc::SIGTERM, Shutdown::Reboot),
            (libc::SIGINT, Shutdown::Reboot),
            (libc::SIGUSR2, Shutdown::PowerOff),
            (libc::SIGUSR1, Shutdown::Halt),
        ] {
            let mut sys = TestSyscall::default().signal_at(ms(100), signal);
            let (asked, _) = run_loop(&mut sys, Vec::new(), ms(1000), true);
            assert_eq!(asked, how, "signal {signal}");
            finish(&mut sys, asked);
            assert_eq!(
                sys.calls.last().map(|r| &r.call),
                Some(&Call::Reboot(how)),
                "signal {signal}"
            );
        }
    }
}
