//! `tandem-init`: the initramfs `/init`, PID 1 for the machine's whole life:
//! the early init, then (after the switch root, in the same process) the
//! system init. Kept apart from the daemons (`tandem-node`) so the binary
//! packed into every initramfs stays small.

use std::process::ExitCode;

use initramfs::Role;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    match initramfs::role(&argv0) {
        Some(Role::Early) => initramfs::early::main(),
        _ => {
            eprintln!(
                "tandem-init: started as {argv0:?}; it is the initramfs /init (tandemctl and the daemons are tandem-node)"
            );
            ExitCode::from(2)
        }
    }
}
