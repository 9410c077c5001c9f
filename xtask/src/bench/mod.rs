//! `cargo xtask bench <which>`: figures next to a reference run in the same
//! process, and their ratio.

use std::time::Duration;

use anyhow::Result;

mod boot;
mod boot_peer;
mod dashboard;
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
    /// QEMU start to system ready, split by boot stage; Debian 12 booting
    /// its own way on the same kernel (systemd, initramfs-tools) against
    /// it; the container host to a serving container.
    Boot,
    /// Only the Debian 12 peer of `bench boot`, on the minimal image's
    /// kernel (made by an earlier `bench boot` or `cargo xtask test`):
    /// for working on the peer.
    #[command(hide = true)]
    BootPeer,
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
    /// The fleet dashboard on a real etcd holding 1,000 node records: each
    /// page's response time against reading those records from etcd alone.
    Dashboard,
}

/// Runs a benchmark.
pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Image => image::run(),
        Which::Boot => boot::run(),
        Which::BootPeer => boot::run_peer(),
        Which::Install => install::run(),
        Which::Update => update::run(),
        Which::Lock => lock::run(),
        Which::Dashboard => dashboard::run(),
    }
}

/// Median, 99th percentile and mean.
pub(crate) struct Latency {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) mean: Duration,
}

pub(crate) fn percentiles(mut v: Vec<Duration>) -> Latency {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    let mean = v.iter().sum::<Duration>() / v.len().max(1) as u32;
    Latency {
        p50: at(0.50),
        p99: at(0.99),
        mean,
    }
}
