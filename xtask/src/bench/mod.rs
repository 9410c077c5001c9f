//! `cargo xtask bench <which>`: figures next to a reference run in the same
//! process, and their ratio.

use anyhow::Result;

mod boot;
mod image;
mod install;
mod lock;
mod update;

/// Which benchmark.
#[derive(clap::Subcommand, Debug)]
pub enum Which {
    /// Seconds to build the example image: `tandem build` against a pipeline
    /// of standard tools on the same inputs.
    Image,
    /// QEMU start to system ready, split by boot stage; the container host
    /// to a serving container.
    Boot,
    /// Installing the example image from the ISO onto a blank disk
    /// against `dd` of its raw disk onto the same kind of disk.
    Install,
    /// Update apply throughput against curl | sha256sum + dd, and the bytes
    /// of a one-file update.
    Update,
    /// The etcd reboot semaphore on a real one-member etcd: lock + unlock
    /// round trip against a bare compare-and-swap transaction (p50, p99),
    /// and hand-offs per second with 50 contenders for one slot.
    Lock,
}

/// Runs a benchmark.
pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Image => image::run(),
        Which::Boot => boot::run(),
        Which::Install => install::run(),
        Which::Update => update::run(),
        Which::Lock => lock::run(),
    }
}
