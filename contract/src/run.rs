//! The status files under `/run/tandem`: written by the early init and the
//! system init (PID 1), read by the update engine (health), `tandemctl`
//! and the tests. One definition of each file, its path and its states.
//!
//! Times are microseconds of `CLOCK_BOOTTIME` (time since the kernel
//! started, the clock of the kernel log's timestamps).

use serde::{Deserialize, Serialize};

use crate::Slot;
use crate::cgroup::Usage;
use crate::node::state_enum;

/// Directory of the status files.
pub const RUN_DIR: &str = "/run/tandem";
/// The early init's hand-over.
pub const EARLY_FILE: &str = "/run/tandem/early.json";
/// The system status.
pub const STATUS_FILE: &str = "/run/tandem/status.json";
/// Version of the status format; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

/// One boot step and when it ended, for "where did the time go".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What was done.
    pub step: String,
    /// When it was done.
    pub at_us: u64,
}

/// What the early init found and when (`/run/tandem/early.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlyBoot {
    /// When `/init` started.
    pub initramfs_started_us: u64,
    /// Just before the switch root.
    pub switch_root_us: u64,
    /// Slot booted.
    pub slot: Slot,
    /// The boot disk (`/dev/vda`).
    pub disk: String,
    /// The /usr partition (`/dev/vda3`).
    pub usr_partition: String,
    /// The verity device mounted on /usr (`/dev/dm-0`).
    pub usr_device: String,
    /// The ROOT partition (`/dev/vda9`).
    pub root_partition: String,
    /// Modules of the initramfs list that failed to load, with the reason.
    #[serde(default)]
    pub modules_failed: Vec<String>,
    /// What growing ROOT did on this boot, if anything.
    #[serde(default)]
    pub root_grow: Option<String>,
    /// The early init's steps.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// A live boot from a Tandem ISO (`tandem.live`): `disk` is the ISO's
    /// device, ROOT is in RAM, there is no slot to update or confirm.
    #[serde(default)]
    pub live: bool,
}

/// Boot timestamps, microseconds of `CLOCK_BOOTTIME`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTimes {
    /// The initramfs `/init` started.
    pub initramfs_started_us: Option<u64>,
    /// The early init switched root.
    pub switch_root_us: Option<u64>,
    /// The system init started.
    pub system_started_us: u64,
    /// "system ready" was printed.
    pub system_ready_us: Option<u64>,
    /// The system init's steps up to "system ready".
    #[serde(default)]
    pub steps: Vec<Step>,
}

/// The network as configured by DHCP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Interface name.
    pub interface: String,
    /// MAC address.
    pub mac: String,
    /// `state`: `configured`, `waiting` (no lease yet) or `failed: …`.
    pub state: String,
    /// Address with prefix length (`10.0.2.15/24`).
    pub address: Option<String>,
    /// Default gateway.
    pub gateway: Option<String>,
    /// DNS servers.
    #[serde(default)]
    pub dns: Vec<String>,
    /// The DHCP server.
    pub dhcp_server: Option<String>,
    /// Lease length in seconds.
    pub lease_seconds: Option<u32>,
}

/// One supervised service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Name (file name without `.toml`).
    pub name: String,
    /// The file it came from (or `built-in`).
    pub source: String,
    /// Its state.
    pub state: ServiceState,
    /// PID while running.
    pub pid: Option<i32>,
    /// How often it was restarted.
    pub restarts: u32,
    /// How it last ended (`exit status 1`, `killed by signal 9`).
    pub last_exit: Option<String>,
    /// `simple` (runs until stopped) or `oneshot` (runs to completion).
    #[serde(default, rename = "type")]
    pub kind: ServiceType,
    /// The services it starts after that have not started yet (state
    /// [`ServiceState::WaitingForServices`]).
    #[serde(default)]
    pub waiting_for: Vec<String>,
    /// The services it starts after that failed, so that it does not start
    /// (state [`ServiceState::Blocked`]).
    #[serde(default)]
    pub blocked_by: Vec<String>,
    /// Its cgroup ([`crate::cgroup::service`]) while it has one: none when
    /// the node runs without cgroups, before its first start and after it
    /// ended for good.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// What its cgroup uses, read live from the cgroup by `tandemctl
    /// status`; never in the status file (the system init does not poll).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The node's status (`/run/tandem/status.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`FORMAT`].
    pub format: u32,
    /// Booted slot, from `tandem.slot`.
    pub slot: Option<Slot>,
    /// `VERSION_ID` of /usr/lib/os-release.
    pub version: Option<String>,
    /// /etc/machine-id.
    pub machine_id: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Boot timestamps.
    pub boot: BootTimes,
    /// What the early init found.
    pub early: Option<EarlyBoot>,
    /// The network.
    pub network: Option<NetworkStatus>,
    /// Services.
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    /// Problems worth a look (a module that failed, an invalid service file).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What this boot's provisioning step did; `None` on an image without
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<crate::provision::Outcome>,
    /// Blocks of the running /usr failed dm-verity at run time, and what
    /// was done about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usr_corruption: Option<UsrCorruption>,
}

/// Corrupt /usr found while the system runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsrCorruption {
    /// The kernel's words (`data block 1234 is corrupted`).
    pub what: String,
    /// What was done: switched to the other slot, or why the node stays.
    pub action: String,
    /// When it was found (`CLOCK_BOOTTIME` microseconds).
    pub at_us: u64,
}

state_enum! {
    /// A service's state as the system init reports it. The health check
    /// judges it by [`ServiceState::is_healthy`], never by its text, so
    /// renaming a state cannot silently fail every health check.
    #[derive(Default)]
    ServiceState, "a service state" {
        /// Not started on purpose (`enabled = false`).
        Disabled = "disabled",
        /// About to start for the first time.
        #[default]
        Starting = "starting",
        /// Waiting for the network to be configured (`after_network`).
        WaitingForNetwork = "waiting for the network",
        /// Waiting for the services it starts after (`after`; they are
        /// in [`ServiceStatus::waiting_for`]).
        WaitingForServices = "waiting for services",
        /// Never starts in this boot: a service it starts after failed
        /// (named in [`ServiceStatus::blocked_by`]).
        Blocked = "blocked",
        /// Ended and due to start again after its restart delay.
        WaitingToRestart = "waiting to restart",
        /// Its process runs.
        Running = "running",
        /// Asked to stop (at shutdown, or by `tandemctl stop`); its
        /// processes have not all ended yet.
        Stopping = "stopping",
        /// Stopped by `tandemctl stop`: its cgroup is empty, and it stays
        /// stopped (its restart policy does not apply) until `tandemctl
        /// start`. Not healthy: a slot on trial is not confirmed while a
        /// service is stopped.
        Stopped = "stopped",
        /// Ended with status 0 and is not restarted (a one-shot job done).
        Exited = "exited",
        /// Ended badly and is not restarted.
        Failed = "failed",
    }
}

impl ServiceState {
    /// Whether a service in this state counts for a healthy system: running,
    /// done with success, or not meant to run.
    pub fn is_healthy(self) -> bool {
        matches!(
            self,
            ServiceState::Running | ServiceState::Exited | ServiceState::Disabled
        )
    }
}

state_enum! {
    /// What a service is for: the service file's `type`.
    #[derive(Default)]
    ServiceType, "a service type" {
        /// Runs until stopped; started once its process is spawned.
        #[default]
        Simple = "simple",
        /// Runs to completion once per boot (a set-up step); done when it
        /// exits with status 0.
        Oneshot = "oneshot",
    }
}

state_enum! {
    /// Which boots a service runs on: the service file's `runs_on`.
    #[derive(Default)]
    RunsOn, "where a service runs" {
        /// Every boot.
        #[default]
        Any = "any",
        /// Nodes booted from a disk, not a live ISO (the update engine,
        /// the reboot agent: a live node has no slot to update).
        Installed = "installed",
        /// Live boots from a Tandem ISO only (the unattended installer).
        Live = "live",
    }
}

impl RunsOn {
    /// Whether a service runs on this boot.
    pub fn allows(self, live_boot: bool) -> bool {
        match self {
            RunsOn::Any => true,
            RunsOn::Installed => !live_boot,
            RunsOn::Live => live_boot,
        }
    }
}

/// How PID 1 is asked to end the system: `tandemctl reboot|poweroff|halt`
/// and the agent send it a signal, as busybox's `reboot` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Reboot (`SIGTERM`, or `SIGINT` from ctrl-alt-del).
    Reboot,
    /// Power off (`SIGUSR2`).
    PowerOff,
    /// Halt (`SIGUSR1`).
    Halt,
}

impl Shutdown {
    /// The action a signal to PID 1 asks for.
    pub fn from_signal(signal: i32) -> Option<Shutdown> {
        match signal {
            libc::SIGTERM | libc::SIGINT => Some(Shutdown::Reboot),
            libc::SIGUSR2 => Some(Shutdown::PowerOff),
            libc::SIGUSR1 => Some(Shutdown::Halt),
            _ => None,
        }
    }

    /// The signal that asks PID 1 for this action.
    pub fn signal(self) -> i32 {
        match self {
            Shutdown::Reboot => libc::SIGTERM,
            Shutdown::PowerOff => libc::SIGUSR2,
            Shutdown::Halt => libc::SIGUSR1,
        }
    }

    /// Asks PID 1 for this action ([`Shutdown::signal`] to process 1), as
    /// `tandemctl reboot`, the agent, the update engine and busybox's
    /// `reboot` do. Returns once the signal is sent; PID 1 stops the
    /// services and then ends the system.
    pub fn request(self) -> std::io::Result<()> {
        self.send_to(INIT_PID)
    }

    /// Sends [`Shutdown::signal`] to `pid` ([`Shutdown::request`] with
    /// [`INIT_PID`]; tests use a child).
    pub fn send_to(self, pid: i32) -> std::io::Result<()> {
        // SAFETY: kill(2) takes plain integers and touches no memory.
        if unsafe { libc::kill(pid, self.signal()) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// The process that [`Shutdown`] signals go to: PID 1, the system init.
pub const INIT_PID: i32 = 1;

/// The updater's socket.
pub const UPDATER_SOCKET: &str = "/run/tandem/updater.sock";

/// PID 1's control socket (mode 0600, root): `tandemctl stop|start|restart`
/// ask the system init through it; the requests and responses are
/// [`crate::control`]'s.
pub const INIT_SOCKET: &str = "/run/tandem/init.sock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_request_is_its_signal() {
        use std::os::unix::process::ExitStatusExt;
        for how in [Shutdown::Reboot, Shutdown::PowerOff, Shutdown::Halt] {
            let mut child = std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .expect("sleep runs");
            let pid = i32::try_from(child.id()).expect("pid fits");
            how.send_to(pid).expect("signal sent");
            let status = child.wait().expect("child ends");
            assert_eq!(status.signal(), Some(how.signal()), "{how:?}");
        }
        // No such process: the error comes back.
        let err = Shutdown::Reboot.send_to(i32::MAX).expect_err("no such pid");
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn shutdown_signals_round_trip() {
        for how in [Shutdown::Reboot, Shutdown::PowerOff, Shutdown::Halt] {
            assert_eq!(Shutdown::from_signal(how.signal()), Some(how));
        }
        assert_eq!(Shutdown::from_signal(libc::SIGINT), Some(Shutdown::Reboot));
        assert_eq!(Shutdown::from_signal(libc::SIGHUP), None);
    }

    #[test]
    fn service_states_serialise_as_their_text() {
        for &s in ServiceState::ALL {
            let json = serde_json::to_string(&s).expect("serialise");
            assert_eq!(json, format!("\"{s}\""));
            let back: ServiceState = serde_json::from_str(&json).expect("parse");
            assert_eq!(back, s);
        }
        let healthy: Vec<_> = ServiceState::ALL
            .iter()
            .copied()
            .filter(|s| s.is_healthy())
            .collect();
        assert_eq!(
            healthy,
            [
                ServiceState::Disabled,
                ServiceState::Running,
                ServiceState::Exited
            ]
        );
        for &t in ServiceType::ALL {
            let json = serde_json::to_string(&t).expect("serialise");
            assert_eq!(serde_json::from_str::<ServiceType>(&json).ok(), Some(t));
        }
    }

    #[test]
    fn live_usage_is_not_part_of_the_status_file() {
        let mut svc = ServiceStatus {
            name: "sshd".into(),
            kind: ServiceType::Oneshot,
            ..Default::default()
        };
        let json = serde_json::to_value(&svc).expect("serialise");
        assert_eq!(json["type"], "oneshot");
        assert!(json.get("usage").is_none(), "{json}");
        svc.usage = Some(Usage {
            memory_bytes: Some(4096),
            cpu_usec: None,
            tasks: Some(1),
        });
        let json = serde_json::to_value(&svc).expect("serialise");
        assert_eq!(json["usage"]["memory_bytes"], 4096);
        // A status file of before these fields still reads.
        let old =
            r#"{"name":"a","source":"x","state":"running","pid":3,"restarts":0,"last_exit":null}"#;
        let back: ServiceStatus = serde_json::from_str(old).expect("old file");
        assert_eq!(back.kind, ServiceType::Simple);
        assert!(back.cgroup.is_none() && back.waiting_for.is_empty());
    }
}
