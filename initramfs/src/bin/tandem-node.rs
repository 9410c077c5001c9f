//! `tandem-node`: the node's tools and daemons, one static binary whose
//! role is `argv[0]`: `tandemctl` (the CLI), `tandem-updated` (the update
//! engine) and `tandem-agent` (the reboot agent).

use std::process::ExitCode;

use initramfs::Role;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match initramfs::role(&argv0) {
        Some(Role::Ctl) => {
            // A command-line tool ends quietly when its reader goes away
            // (`tandemctl status | head`) instead of panicking on EPIPE; the
            // daemons keep Rust's ignored SIGPIPE for their sockets.
            // SAFETY: setting a signal disposition before any thread exists.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            match ctl() {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("tandemctl: {e:#}");
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
        _ => {
            eprintln!(
                "tandem-node: started as {argv0:?}; install it as tandemctl, tandem-updated or tandem-agent"
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
    Ok(ExitCode::from(initramfs::ctl::run(&args)?))
}
