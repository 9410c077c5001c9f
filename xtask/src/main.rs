//! `cargo xtask <task>`: everything a developer or CI runs, from a fresh
//! Debian 12 machine on. Each task installs what it needs first.

use clap::{Parser, Subcommand};

mod artifacts;
mod bench;
mod demo;
mod dist;
mod lint;
mod setup;
mod test;
mod util;

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "Tandem project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Install Debian packages and Rust targets the project needs (as root).
    Setup,
    /// Build the node binary (musl), the bootloader (UEFI) and `tandem`.
    Build,
    /// Build the example image and show the main job end to end.
    Demo,
    /// Make the Debian package of the host tools (target/tandem/dist/tandem_<version>_amd64.deb).
    Dist,
    /// Run every test: unit, integration and the end-to-end QEMU scenarios.
    Test {
        /// Only run tests whose name contains this.
        filter: Option<String>,
    },
    /// Print benchmark figures against a reference pipeline.
    Bench {
        #[command(subcommand)]
        which: bench::Which,
    },
    /// cargo fmt --check and clippy -D warnings for every target.
    Lint,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| artifacts::build().map(|_| ())),
        Task::Demo => demo::run(),
        Task::Dist => dist::run().map(|_| ()),
        Task::Test { filter } => test::run(filter.as_deref()),
        Task::Bench { which } => bench::run(which),
        Task::Lint => lint::run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
