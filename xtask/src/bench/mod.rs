//! `cargo xtask bench <which>`: figures next to a reference run in the same
//! process, and their ratio.

use anyhow::Result;

mod boot;
mod image;

/// Which benchmark.
#[derive(clap::Subcommand, Debug)]
pub enum Which {
    /// Seconds to build the example image: `tandem build` against a pipeline
    /// of standard tools on the same inputs.
    Image,
    /// QEMU start to system ready, split by boot stage.
    Boot,
}

/// Runs a benchmark.
pub fn run(which: Which) -> Result<()> {
    match which {
        Which::Image => image::run(),
        Which::Boot => boot::run(),
    }
}
