//! `tandem run`.

use std::io::IsTerminal;
use std::path::PathBuf;

use image_builder::vm::{self, Accel, RunOptions};

/// Arguments of `tandem run`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "The image is never written to: the machine writes to a copy-on-write overlay that is removed when QEMU ends. An ISO boots with a blank disk attached to install onto (`tandemctl install /dev/vdb` on its console)."
)]
pub struct Args {
    /// disk.raw, disk.qcow2, an ISO, or a `tandem build --out` directory.
    image: PathBuf,
    /// Cloud-config (user-data) for the node, attached as a NoCloud volume.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Host port forwarded to the node's SSH port; a free one when not given.
    #[arg(long)]
    ssh_port: Option<u16>,
    /// Memory in MiB.
    #[arg(long, default_value_t = 1024)]
    memory: u32,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
    /// auto: KVM when it works here, TCG (emulation) otherwise.
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// Size of the blank disk an ISO installs onto, in GiB.
    #[arg(long, default_value_t = 8)]
    install_disk_gib: u64,
}

/// Boots the image and returns QEMU's exit status.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let ssh_port = match args.ssh_port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let opts = RunOptions {
        image: args.image,
        config: args.config,
        ssh_port,
        memory_mib: args.memory,
        cpus: args.cpus,
        accel: args.accel,
        install_disk_size: args.install_disk_gib << 30,
        interactive: std::io::stdin().is_terminal(),
    };
    let status = vm::run(&opts, |line| eprintln!("tandem run: {line}"))?;
    Ok(status.code().map_or(1, |c| c.clamp(0, 255) as u8))
}
