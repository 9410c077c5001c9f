//! `tandem`: build and inspect Tandem images, publish and serve their updates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Exit codes, as documented in `tandem --help`.
mod exit {
    /// Something failed; the message says what.
    pub const FAILURE: u8 = 1;
    /// `inspect` or `release status` found problems.
    pub const PROBLEMS: u8 = 3;
}

#[derive(Parser, Debug)]
#[command(
    name = "tandem",
    version,
    about = "Build and inspect Tandem A/B disk images, publish and serve their updates",
    after_help = "Exit status: 0 success, 1 failure (the message says why), 2 usage error, 3 `inspect` or `release status` found problems. `config validate`: 0 valid, 1 invalid, 2 cannot read."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build a disk image from an image definition (image.toml).
    Build(commands::build::Args),
    /// The fleet in etcd: `cluster status [--json]`, `cluster forget-failed <version>`.
    Cluster(commands::cluster::Args),
    /// Cloud-config (user-data): `config validate FILE [--json]`.
    Config(commands::config::Args),
    /// Serve the fleet's dashboard and Prometheus metrics from etcd and the update repository.
    Dashboard(commands::dashboard::Args),
    /// Convert a build's disk for clouds and hypervisors (qcow2, vhd, vmdk, gce).
    Export(commands::export::Args),
    /// Show partitions, slot states and problems of a disk image.
    Inspect(commands::inspect::Args),
    /// Live and install ISOs: `iso create BUILD --key K -o x.iso`, `iso customize`, `iso show`.
    Iso(commands::iso::Args),
    /// Make an update signing key pair (<name>.key, <name>.pub).
    Keygen(commands::keygen::Args),
    /// The cluster's reboot semaphore in etcd: `lock status | lock <id> | unlock <id> | set-max <n>`.
    Lock(commands::cluster::Args),
    /// Publish builds to an update repository, promote between channels, show status.
    Release(commands::release::Args),
    /// Boot an image in QEMU (UEFI, overlay, SSH port, cloud-config): `run disk.qcow2 --config user-data`.
    Run(commands::run::Args),
    /// Serve an update repository over HTTP (labs and tests).
    Serve(commands::serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => commands::build::run(a),
        Command::Cluster(a) => commands::cluster::run("cluster", a),
        Command::Config(a) => commands::config::run(a),
        Command::Dashboard(a) => commands::dashboard::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Lock(a) => commands::cluster::run("lock", a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Iso(a) => commands::iso::run(a),
        Command::Keygen(a) => commands::keygen::run(a),
        Command::Release(a) => commands::release::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Serve(a) => commands::serve::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!(
                "tandem: error: {}",
                tandem_contract::log::error_chain(e.as_ref())
            );
            ExitCode::from(exit::FAILURE)
        }
    }
}
