//! `tandem export`.

use std::path::PathBuf;

use image_builder::export::{self, Format};

/// Arguments of `tandem export`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Formats: qcow2 (QEMU/KVM, libvirt, OpenStack), vhd (Azure, Hyper-V: fixed, a whole number of MiB), vmdk (VMware: stream-optimised), gce (Google Compute Engine: disk.raw in a tar.gz). See docs/cloud-formats.md for importing them and how a node finds its config on each platform."
)]
pub struct Args {
    /// A `tandem build --out` directory.
    build: PathBuf,
    /// Where to write the files; the build directory when not given.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Format to make (repeat for several); all of them when not given.
    #[arg(long, short, value_enum)]
    format: Vec<Format>,
    /// Print what was made as JSON.
    #[arg(long)]
    json: bool,
}

/// Converts the build's disk and prints what was made.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let formats = if args.format.is_empty() {
        Format::ALL.to_vec()
    } else {
        args.format
    };
    let quiet = args.json;
    let out = args.out.as_ref().unwrap_or(&args.build);
    let made = export::export(&args.build, out, &formats, |f| {
        if !quiet {
            eprintln!("making {} ({})", f.file_name(), f.platforms());
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&made)?);
        return Ok(0);
    }
    for m in &made {
        println!(
            "  {:<6} {} ({} MiB) for {}",
            m.format.name(),
            m.path.display(),
            m.size.div_ceil(1 << 20),
            m.format.platforms()
        );
    }
    Ok(0)
}
