//! `tandem-node`: the node's tools and daemons, one static binary whose
//! role is `argv[0]`: `tandemctl` (the CLI), `tandem-updated` (the update
//! engine), `tandem-agent` (the reboot agent), `tandem-exec` (the
//! services' launcher, [`exec`]) and `tandem-provision` (the boot's
//! provisioning step, [`provision`]).

use std::process::ExitCode;

mod config;
mod ctl;
mod error;
mod exec;
mod install;
mod provision;
mod services;

use std::ffi::OsStr;
use std::path::Path;

/// What the binary does, chosen by the name it was started under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// `tandemctl`.
    Ctl,
    /// `tandem-updated`: the update daemon.
    Updated,
    /// `tandem-agent`: the reboot agent.
    Agent,
    /// `tandem-exec`: starts a service for PID 1
    /// ([`tandem_contract::service::EXEC_LAUNCHER`]).
    Exec,
    /// `tandem-provision`: applies the node's cloud-config for PID 1
    /// ([`tandem_contract::provision::PROGRAM`]).
    Provision,
}

/// The role for `argv[0]` (only its file name counts).
fn role(argv0: &OsStr) -> Option<Role> {
    match Path::new(argv0).file_name()?.to_str()? {
        "tandemctl" => Some(Role::Ctl),
        "tandem-updated" => Some(Role::Updated),
        "tandem-agent" => Some(Role::Agent),
        "tandem-exec" => Some(Role::Exec),
        "tandem-provision" => Some(Role::Provision),
        _ => None,
    }
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match role(&argv0) {
        Some(Role::Ctl) => {
            // A command-line tool ends quietly when its reader goes away
            // (`tandemctl status | head`) instead of panicking on EPIPE; the
            // daemons keep Rust's ignored SIGPIPE for their sockets.
            // SAFETY: setting a signal disposition before any thread exists.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            match ctl() {
                Ok(code) => code,
                Err(e) => {
                    eprintln!(
                        "tandemctl: {}",
                        tandem_contract::log::error_chain(e.as_ref())
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Some(Role::Updated) => match updater::daemon::run(updater::daemon::Options::default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tandem-updated: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Role::Agent) => {
            agent::daemon::run(agent::daemon::Options::default(), &agent::reboot_via_init)
        }
        Some(Role::Exec) => {
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            exec::run(&args)
        }
        Some(Role::Provision) => provision::run(),
        _ => {
            eprintln!(
                "tandem-node: started as {argv0:?}; install it as tandemctl, tandem-updated, tandem-agent, tandem-exec or tandem-provision"
            );
            ExitCode::from(2)
        }
    }
}

fn ctl() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Ok(ExitCode::from(ctl::run(&args)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_on_basename() {
        assert_eq!(role(OsStr::new("tandemctl")), Some(Role::Ctl));
        assert_eq!(
            role(OsStr::new("/usr/lib/tandem/tandem-updated")),
            Some(Role::Updated)
        );
        assert_eq!(
            role(OsStr::new("/usr/lib/tandem/tandem-agent")),
            Some(Role::Agent)
        );
        assert_eq!(
            role(OsStr::new(tandem_contract::service::EXEC_LAUNCHER)),
            Some(Role::Exec)
        );
        assert_eq!(
            role(OsStr::new(tandem_contract::provision::PROGRAM)),
            Some(Role::Provision)
        );
        assert_eq!(role(OsStr::new("/init")), None, "the init is tandem-init");
        assert_eq!(role(OsStr::new("/sbin/busybox")), None);
        assert_eq!(role(OsStr::new("")), None);
    }
}
