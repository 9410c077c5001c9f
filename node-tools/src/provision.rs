//! `tandem-provision`: the provisioning step ([`provision::step`]) as PID 1
//! runs it at every boot, in a process of its own so that a datasource
//! that hangs or a parser that fails cannot take PID 1 with it. It writes
//! the outcome to [`RESULT_FILE`] (PID 1 reads it, puts it in the status
//! and on the console) and prints each problem on standard error.

use std::path::Path;
use std::process::ExitCode;

use tandem_contract::provision::{ProvisionState, RESULT_FILE};

/// Runs the step; success unless the config failed or partly failed.
pub fn run() -> ExitCode {
    let env = provision::datasource::Env::node();
    let outcome = provision::step::run(&env, Path::new("/"), initramfs::sys::boottime_us);
    for p in &outcome.problems {
        eprintln!("tandem-provision: {}: {}: {}", p.at, p.severity, p.message);
    }
    let text = match serde_json::to_vec_pretty(&outcome) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tandem-provision: {RESULT_FILE}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let perm = provision::apply::write::Perm::root(0o644);
    if let Err(e) = provision::apply::write::write_atomic(Path::new(RESULT_FILE), &text, perm) {
        eprintln!("tandem-provision: writing {RESULT_FILE}: {e}");
        return ExitCode::FAILURE;
    }
    match outcome.state {
        ProvisionState::None | ProvisionState::Applied => ExitCode::SUCCESS,
        ProvisionState::Partial | ProvisionState::Failed => ExitCode::FAILURE,
    }
}
