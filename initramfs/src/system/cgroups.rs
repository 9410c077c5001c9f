//! The services' cgroups at boot: cgroup2 on /sys/fs/cgroup, the `cpu`,
//! `memory` and `pids` controllers for the services, and their parent
//! cgroup `/sys/fs/cgroup/system` (layout in [`tandem_contract::cgroup`]).
//! PID 1 stays in the root cgroup. Without cgroup2 the services run
//! without cgroups, after one warning.

use std::path::Path;

use crate::cgroup::{self, CONTROLLERS};
use crate::error::Error;
use crate::mount::{self, MS_NODEV, MS_NOEXEC, MS_NOSUID};
use crate::system_log;

fn warn(warnings: &mut Vec<String>, text: String) {
    system_log!("warning: {text}");
    warnings.push(text);
}

/// Mounts cgroup2 (`nsdelegate`: a container's cgroup namespace is a
/// delegation boundary) and prepares the services' cgroup; says whether
/// services get cgroups. Controllers the kernel lacks are a warning (their
/// limits are not applied); the cgroups still hold and kill the services.
pub(super) fn setup(warnings: &mut Vec<String>) -> bool {
    let root = Path::new(cgroup::MOUNT);
    let services = Path::new(cgroup::SERVICES);
    if let Err(e) = mount::ensure(
        "cgroup2",
        root,
        "cgroup2",
        MS_NOSUID | MS_NODEV | MS_NOEXEC,
        Some("nsdelegate"),
    ) {
        warn(warnings, format!("{e}; services run without cgroups"));
        return false;
    }
    prepare(root, services, warnings)
}

/// Creates the services' cgroup `services` below the mounted `root` and
/// enables the controllers in both; says whether services get cgroups.
fn prepare(root: &Path, services: &Path, warnings: &mut Vec<String>) -> bool {
    if let Err(err) = cgroup::create(services) {
        let e = Error::Cgroup {
            what: "creating",
            path: services.into(),
            err,
        };
        warn(warnings, format!("{e}; services run without cgroups"));
        return false;
    }
    // The root offers them to `system`, which offers them to each service
    // (and, by cgroup v2's rule, holds no process itself).
    let missing = match cgroup::enable_controllers(root, &CONTROLLERS) {
        Ok(missing) => missing,
        Err(e) => {
            warn(warnings, e.to_string());
            CONTROLLERS.iter().map(|c| c.to_string()).collect()
        }
    };
    let enabled: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| !missing.iter().any(|m| m == c))
        .collect();
    if !enabled.is_empty()
        && let Err(e) = cgroup::enable_controllers(services, &enabled)
    {
        warn(warnings, e.to_string());
    }
    if !missing.is_empty() {
        warn(
            warnings,
            format!(
                "cgroup controllers not available: {}; service limits that need them are not applied",
                missing.join(", ")
            ),
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_contract::cgroup::file;

    #[test]
    fn the_services_cgroup_gets_what_the_root_offers() {
        let root = std::env::temp_dir().join(format!("tandem-cg-setup-{}", std::process::id()));
        let services = root.join("system");
        std::fs::create_dir_all(&root).expect("dir");
        // A kernel without the memory controller (cgroup_disable=memory).
        std::fs::write(root.join(file::CONTROLLERS), "cpuset cpu io pids\n").expect("write");
        // What `system` would offer once the root enabled them.
        let services_offer = |dir: &Path| {
            std::fs::create_dir_all(dir).expect("dir");
            std::fs::write(dir.join(file::CONTROLLERS), "cpu pids\n").expect("write");
        };
        services_offer(&services);
        let mut warnings = Vec::new();
        let on = prepare(&root, &services, &mut warnings);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let root_control = read(&root.join(file::SUBTREE_CONTROL));
        let services_control = read(&services.join(file::SUBTREE_CONTROL));
        let _ = std::fs::remove_dir_all(&root);
        assert!(on);
        assert_eq!(root_control, "+cpu +pids");
        assert_eq!(services_control, "+cpu +pids");
        assert_eq!(
            warnings,
            [
                "cgroup controllers not available: memory; service limits that need them are not applied"
            ]
        );
        // No place for the services' cgroup: no cgroups, one warning.
        let mut warnings = Vec::new();
        assert!(!prepare(
            Path::new("/nonexistent"),
            Path::new("/nonexistent/system"),
            &mut warnings
        ));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with("; services run without cgroups"),
            "{warnings:?}"
        );
    }
}
