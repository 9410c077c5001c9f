//! `tandem build`.

use std::path::PathBuf;

use anyhow::Context;
use image_builder::build::manifest::{BuildManifest, Reason};
use image_builder::build::pipeline::{LockOutcome, LockReport};
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
    /// Directory holding tandem-init, tandem-node (static) and BOOTX64.EFI.
    /// Default: where the Debian package puts them (/usr/lib/tandem beside
    /// /usr/bin/tandem); in a source checkout, `target/tandem/artifacts`
    /// (`cargo xtask build` leaves them there).
    #[arg(long, env = "TANDEM_ARTIFACTS")]
    artifacts: Option<PathBuf>,
    /// Where downloaded Debian packages are kept between builds.
    #[arg(long, env = "TANDEM_CACHE", default_value_os_t = default_cache())]
    cache: PathBuf,
    /// Keep the work directory (<out>/.work) for debugging.
    #[arg(long)]
    keep_work: bool,
    /// Build exactly the packages of the lock file beside the definition
    /// (image.toml → image.lock) or fail before downloading anything; the
    /// lock file is not written.
    #[arg(long)]
    locked: bool,
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

/// The artefacts of an installed `tandem`: `<prefix>/lib/tandem` for
/// `<prefix>/bin/tandem` (the Debian package's layout).
/// Without /proc (a bare chroot) the executable's place is unknown: the
/// package's own directory is tried then.
fn installed_artifacts() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_deref()
        .and_then(|e| e.parent()?.parent())
        .map(|prefix| prefix.join("lib/tandem"));
    let candidates = beside.into_iter().chain([PathBuf::from("/usr/lib/tandem")]);
    for dir in candidates {
        if dir
            .join(image_builder::build::pipeline::INIT_BINARY)
            .exists()
        {
            return Ok(dir);
        }
    }
    anyhow::bail!(
        "no --artifacts given and no artefacts installed beside {} (<prefix>/lib/tandem): install the tandem Debian package (`cargo xtask dist`), or in a source checkout pass --artifacts target/tandem/artifacts after `cargo xtask build`",
        exe.map_or_else(|| "this tandem".into(), |e| e.display().to_string())
    )
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
        artifacts_dir: match args.artifacts {
            Some(dir) => dir,
            None => installed_artifacts()?,
        },
        cache_dir: args.cache,
        source_date_epoch: epoch,
        keep_work: args.keep_work,
        locked: args.locked,
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
    print_package_notes(m);
    print_lock(&result.lock);
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
    let count = |r: Reason| m.packages.iter().filter(|p| p.reason == r).count();
    println!(
        "  packages {} ({} requested, {} base, {} dependencies; {} MiB installed, {} MiB of .debs)",
        m.packages.len(),
        count(Reason::Requested),
        count(Reason::Base),
        count(Reason::Dependency),
        m.packages.iter().map(|p| p.installed_size).sum::<u64>() >> 20,
        m.packages.iter().map(|p| p.size).sum::<u64>() >> 20,
    );
    println!("  manifest {out}/build.json");
    Ok(0)
}

/// What packages ask for that the build does not do, grouped by package,
/// on stderr.
fn print_package_notes(m: &BuildManifest) {
    let mut current: Option<&str> = None;
    for n in &m.notes {
        if current != Some(n.package.as_str()) {
            eprintln!(
                "warning: {}: Tandem does not do what it asks for:",
                n.package
            );
            current = Some(n.package.as_str());
        }
        eprintln!("  - {}", n.message);
    }
}

/// What became of the lock file, on stderr.
fn print_lock(lock: &LockReport) {
    let name = lock.path.file_name().map_or_else(
        || lock.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match &lock.outcome {
        LockOutcome::Unchanged => {}
        LockOutcome::Created(n) => eprintln!("wrote {name}: {n} packages (commit it)"),
        LockOutcome::Replaced { packages, reason } => {
            eprintln!("wrote {name}: {packages} packages, replacing an unreadable one ({reason})")
        }
        LockOutcome::Updated(changes) => {
            eprintln!("updated {name}:");
            for c in changes {
                eprintln!("  {c}");
            }
        }
    }
}
