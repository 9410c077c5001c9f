//! `tandem inspect`.

use std::path::PathBuf;

use image_builder::inspect;

/// Arguments of `tandem inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The disk image (or block device) to inspect.
    disk: PathBuf,
    /// Re-hash each slot's /usr and compare it with its dm-verity root hash.
    #[arg(long)]
    verify: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Prints the inspection; exit status 3 when problems were found.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let i = inspect::inspect(&args.disk, args.verify)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&i)?);
    } else {
        print!("{}", inspect::render(&i));
    }
    Ok(if i.problems.is_empty() {
        0
    } else {
        crate::exit::PROBLEMS
    })
}
