//! `tandem build`.

use std::path::PathBuf;

use anyhow::Context;
use image_builder::progress::Progress;
use image_builder::{BuildOptions, Definition};

/// Arguments of `tandem build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image definition (see docs/image-definition.md).
    definition: PathBuf,
    /// Output directory: disk.raw, usr.img, vmlinuz, initrd, build.json.
    #[arg(long, short)]
    out: PathBuf,
    /// Directory holding tandem-init (static) and BOOTX64.EFI, as `cargo xtask build` leaves them.
    #[arg(long, env = "TANDEM_ARTIFACTS")]
    artifacts: PathBuf,
    /// Where downloaded Debian packages are kept between builds.
    #[arg(long, env = "TANDEM_CACHE", default_value_os_t = default_cache())]
    cache: PathBuf,
    /// Keep the work directory (<out>/.work) for debugging.
    #[arg(long)]
    keep_work: bool,
    /// Print build.json to stdout instead of a summary.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
    /// Print how long each step took.
    #[arg(long)]
    timings: bool,
}

fn default_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("tandem/packages")
}

/// Runs the build and prints what it made.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let def = Definition::load(&args.definition)?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    let opts = BuildOptions {
        out_dir: args.out.clone(),
        artifacts_dir: args.artifacts,
        cache_dir: args.cache,
        source_date_epoch: epoch,
        keep_work: args.keep_work,
    };
    let mut progress = Progress::new(args.quiet || args.json);
    let result = image_builder::build(&def, &opts, &mut progress)
        .with_context(|| format!("building {} {}", def.image.name, def.image.version))?;
    let m = &result.manifest;
    if args.timings {
        for (step, took) in &progress.steps {
            eprintln!("{:>8.2} s  {step}", took.as_secs_f64());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(0);
    }
    for note in &result.notes {
        eprintln!("note: {note}");
    }
    println!(
        "built {} {} ({}) in {:.1} s",
        m.image.name,
        m.image.version,
        m.image.channel,
        progress.elapsed().as_secs_f64()
    );
    let out = args.out.display();
    println!(
        "  disk    {out}/{} ({} MiB, sparse)",
        m.disk.file,
        m.disk.size >> 20
    );
    println!(
        "  /usr    {out}/{} ({} MiB, erofs + dm-verity, root hash {})",
        m.usr.file,
        m.usr.size >> 20,
        m.usr.verity.root_hash
    );
    println!(
        "  kernel  {} ({} initramfs modules)",
        m.kernel.release,
        m.kernel.initramfs_modules.len()
    );
    println!("  manifest {out}/build.json");
    Ok(0)
}
