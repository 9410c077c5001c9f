//! The end of the machine's life: which signal asks for what, stopping the
//! services (SIGTERM, SIGKILL after the stop timeout, then every process
//! left), and the final sync, unmount and reboot(2), all through
//! [`Syscall`].

use std::io;
use std::path::Path;
use std::time::Duration;

use super::event_loop::Init;
use crate::mount;
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
/// group at once (in the services' order, which is by name), SIGKILL to
/// those still running when the longest stop timeout among them has passed,
/// then SIGTERM and, 2 s later, SIGKILL to every process left (orphans,
/// daemons' children). The watchdog is petted throughout.
pub(super) fn stop_everything(init: &mut Init, sys: &mut dyn Syscall, how: Shutdown) {
    system_log!("stopping services for {}", how.noun());
    let timeout = init.supervisor.terminate_all(sys);
    let deadline = sys.now() + timeout;
    let mut killed = false;
    loop {
        let now = sys.now();
        init.pet(sys, now);
        for (pid, exit) in sys.reap().exited {
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
                let _ = sys.kill(-pid, libc::SIGKILL);
            }
            killed = true;
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
    use crate::system::event_loop::tests::{ms, run_loop};

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
        let (how, _) = run_loop(&mut sys, vec![a, b, c], ms(1000), false);
        (how, sys)
    }

    #[test]
    fn services_get_sigterm_in_their_order_then_sigkill_after_the_stop_timeout() {
        let (how, sys) = shut_down();
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
        // Not the reverse of the start order: every running service gets
        // SIGTERM (and SIGCONT) at once, in the services' order (by name);
        // SIGKILL goes to what is left when the longest stop timeout (3 s)
        // has passed; then every other process gets SIGTERM.
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
