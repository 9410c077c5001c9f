//! The services' control groups (cgroup v2): where the system init puts
//! each service, the files it writes, and the usage `tandemctl status`
//! reads back live. One definition, so PID 1 and the node tools cannot
//! disagree on a path.
//!
//! ```text
//! /sys/fs/cgroup                     the cgroup2 mount; PID 1 stays here
//! /sys/fs/cgroup/system              every service (no processes of its own)
//! /sys/fs/cgroup/system/sshd.service one service: its processes, limits, usage
//! ```
//!
//! cgroup v2 lets a cgroup that enables controllers for its children hold
//! no processes (the root is exempt): `system` enables them for the
//! services and holds none itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where cgroup2 is mounted.
pub const MOUNT: &str = "/sys/fs/cgroup";
/// The cgroup that holds the services' cgroups.
pub const SERVICES: &str = "/sys/fs/cgroup/system";
/// What a service's cgroup is called after the service's name: also keeps
/// a service name from clashing with a cgroup interface file
/// (`memory.max`).
pub const SERVICE_SUFFIX: &str = ".service";
/// The controllers enabled for the services, as `cgroup.subtree_control`
/// names them.
pub const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Interface files of cgroup v2 that Tandem reads or writes.
pub mod file {
    /// Controllers a cgroup can enable for its children.
    pub const CONTROLLERS: &str = "cgroup.controllers";
    /// Controllers enabled for a cgroup's children (`+cpu +memory`).
    pub const SUBTREE_CONTROL: &str = "cgroup.subtree_control";
    /// The processes of a cgroup; writing a PID (0: the writer) moves it.
    pub const PROCS: &str = "cgroup.procs";
    /// `populated 0|1`: whether the cgroup or a descendant holds a process.
    pub const EVENTS: &str = "cgroup.events";
    /// Writing `1` SIGKILLs every process of the cgroup and its descendants
    /// (Linux 5.14).
    pub const KILL: &str = "cgroup.kill";
    /// Memory limit in bytes, or `max`.
    pub const MEMORY_MAX: &str = "memory.max";
    /// Memory in use, bytes.
    pub const MEMORY_CURRENT: &str = "memory.current";
    /// CPU weight, 1–10000 (default 100).
    pub const CPU_WEIGHT: &str = "cpu.weight";
    /// CPU time used (`usage_usec`); present without the cpu controller.
    pub const CPU_STAT: &str = "cpu.stat";
    /// Most tasks (processes and threads), or `max`.
    pub const PIDS_MAX: &str = "pids.max";
    /// Tasks now.
    pub const PIDS_CURRENT: &str = "pids.current";
}

/// The cgroup of service `name`: `/sys/fs/cgroup/system/<name>.service`.
pub fn service(name: &str) -> PathBuf {
    Path::new(SERVICES).join(format!("{name}{SERVICE_SUFFIX}"))
}

/// What a service's cgroup has used, read live from its files. A value is
/// `None` when its file cannot be read (its controller is not enabled, or
/// the cgroup is gone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// `memory.current`: memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// `cpu.stat` `usage_usec`: CPU time used by every process the
    /// service ever ran, microseconds.
    pub cpu_usec: Option<u64>,
    /// `pids.current`: processes and threads now.
    pub tasks: Option<u64>,
}

impl Usage {
    /// Reads the usage of the cgroup at `dir`.
    pub fn read(dir: &Path) -> Usage {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        Usage {
            memory_bytes: read(file::MEMORY_CURRENT).and_then(|t| t.trim().parse().ok()),
            cpu_usec: read(file::CPU_STAT).and_then(|t| stat_value(&t, "usage_usec")),
            tasks: read(file::PIDS_CURRENT).and_then(|t| t.trim().parse().ok()),
        }
    }
}

/// The value of `key` in a flat-keyed file (`cpu.stat`: `usage_usec 1234`
/// lines; `cgroup.events`: `populated 1`).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_has_its_own_cgroup_under_system() {
        assert_eq!(
            service("sshd"),
            Path::new("/sys/fs/cgroup/system/sshd.service")
        );
        assert_eq!(
            service("memory.max"),
            Path::new("/sys/fs/cgroup/system/memory.max.service")
        );
        assert!(service("getty@ttyS1").starts_with(SERVICES));
        assert!(Path::new(SERVICES).starts_with(MOUNT));
    }

    #[test]
    fn flat_keyed_values() {
        let cpu = "usage_usec 52311\nuser_usec 40000\nsystem_usec 12311\nnr_periods 0\n";
        assert_eq!(stat_value(cpu, "usage_usec"), Some(52311));
        assert_eq!(stat_value(cpu, "system_usec"), Some(12311));
        assert_eq!(stat_value(cpu, "usage"), None);
        assert_eq!(stat_value("populated 1\nfrozen 0\n", "populated"), Some(1));
        assert_eq!(stat_value("usage_usec x\n", "usage_usec"), None);
        assert_eq!(stat_value("", "usage_usec"), None);
    }

    #[test]
    fn usage_of_a_directory_of_cgroup_files() {
        let dir = std::env::temp_dir().join(format!("tandem-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(file::MEMORY_CURRENT), "1245184\n").expect("write");
        std::fs::write(dir.join(file::CPU_STAT), "usage_usec 52311\nuser_usec 1\n").expect("write");
        let usage = Usage::read(&dir);
        std::fs::write(dir.join(file::PIDS_CURRENT), "3\n").expect("write");
        let with_pids = Usage::read(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            usage,
            Usage {
                memory_bytes: Some(1_245_184),
                cpu_usec: Some(52311),
                tasks: None,
            }
        );
        assert_eq!(with_pids.tasks, Some(3));
        assert_eq!(Usage::read(&dir), Usage::default(), "gone: nothing known");
    }
}
