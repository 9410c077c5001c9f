//! `tandem-init`: PID 1, in two roles chosen by `argv[0]`: `/init` in the
//! initramfs (early init) and `/usr/lib/tandem/tandem-init` after switch
//! root (system init). Kept apart from the daemons (`tandem-node`) so the
//! binary read through dm-verity at every boot and packed into every
//! initramfs stays small.

use std::process::ExitCode;

use initramfs::Role;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match initramfs::role(&argv0) {
        Some(Role::Early) => initramfs::early::main(),
        Some(Role::System) => initramfs::system::main(),
        _ => {
            eprintln!(
                "tandem-init: started as {argv0:?}; install it as /init or tandem-init (tandemctl and the daemons are tandem-node)"
            );
            ExitCode::from(2)
        }
    }
}
