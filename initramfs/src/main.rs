//! `tandem-init`: one static binary, three roles chosen by `argv[0]`
//! (`/init` in the initramfs, `tandem-init` after switch root, `tandemctl`).

use std::process::ExitCode;

use initramfs::Role;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match initramfs::role(&argv0) {
        Some(Role::Early) => initramfs::early::main(),
        Some(Role::System) => initramfs::system::main(),
        Some(Role::Ctl) => match ctl() {
            Ok(code) => code,
            Err(e) => {
                eprintln!("tandemctl: {e:#}");
                ExitCode::FAILURE
            }
        },
        None => {
            eprintln!(
                "tandem-init: started as {argv0:?}; install it as /init, tandem-init or tandemctl"
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
