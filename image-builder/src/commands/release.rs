//! `tandem release publish | promote | status | mirror | export`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use image_builder::clock::{self, Duration};
use image_builder::progress::Progress;
use image_builder::release::{
    self, BuildDir, ChannelUpdate, PromoteOptions, PublishOptions, RolloutStart, Schedule,
};
use repository::payload;
use tandem_contract::Version;

/// Arguments of `tandem release`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Publish a build as a new version and point a channel at it.
    Publish(PublishArgs),
    /// Point a channel at the version another channel serves (or re-sign a channel).
    Promote(PromoteArgs),
    /// Show what every channel of a repository serves and whether it is sound.
    Status(StatusArgs),
    /// Copy channels of a repository (directory or URL) into a directory any
    /// static web server can serve, checking every signature and hash; only
    /// what the mirror lacks is fetched.
    Mirror(MirrorArgs),
    /// Write channels of a repository, checked as `mirror` checks them, onto a
    /// FAT volume (a file to write to a USB stick) for `tandemctl update apply
    /// --from <device>` on nodes without a network.
    Export(ExportArgs),
}

/// Rollout and expiry of a new pointer.
#[derive(clap::Args, Debug)]
struct ScheduleArgs {
    /// When nodes start to become eligible: `now`, Unix seconds, or `+30m` from now.
    #[arg(long, default_value = "now", value_name = "WHEN")]
    rollout_start: RolloutStart,
    /// Over how long nodes become eligible, spread evenly: 0 (all at once), 45m, 2h, 1d.
    #[arg(long, default_value = "0", value_name = "DURATION")]
    rollout_duration: Duration,
    /// How long the signed pointer is valid; nodes refuse it afterwards (30d, 7d).
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    expires_in: Duration,
}

impl ScheduleArgs {
    fn schedule(&self) -> Schedule {
        Schedule {
            start: self.rollout_start,
            duration_secs: self.rollout_duration.0,
            expires_in_secs: self.expires_in.0,
        }
    }
}

#[derive(clap::Args, Debug)]
struct PublishArgs {
    /// Output directory of `tandem build` (build.json, usr.img, vmlinuz, initrd).
    build_dir: PathBuf,
    /// The repository's root directory (created if missing).
    #[arg(long)]
    repo: PathBuf,
    /// Channel to point at the version (stable, beta, …).
    #[arg(long)]
    channel: String,
    /// Private signing key (`tandem keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Oldest version nodes may update from directly.
    #[arg(long, value_name = "VERSION")]
    min_source_version: Option<Version>,
    /// zstd level of the payload (1–19).
    #[arg(long, default_value_t = payload::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
struct PromoteArgs {
    /// The version the --from channel must serve (a guard against promoting the wrong one).
    version: Option<Version>,
    /// The repository's root directory.
    #[arg(long)]
    repo: PathBuf,
    /// Image name; needed only when the repository holds several.
    #[arg(long)]
    image: Option<String>,
    /// Channel whose version is promoted.
    #[arg(long)]
    from: String,
    /// Channel that gets it (the same as --from re-signs the channel).
    #[arg(long)]
    to: String,
    /// Private signing key (`tandem keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    /// The repository's root directory.
    #[arg(long)]
    repo: PathBuf,
    /// Public keys to check signatures against (as the nodes would).
    #[arg(long, value_name = "PUBKEY", num_args = 1..)]
    trust: Vec<PathBuf>,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct MirrorArgs {
    /// The repository to copy from: a directory, or an http:// or https:// URL
    /// (proxy from https_proxy/http_proxy/no_proxy).
    source: String,
    /// The mirror's root directory (created if missing).
    dest: PathBuf,
    /// IMAGE/CHANNEL to copy (repeatable); default: every channel of a directory.
    #[arg(long = "channel", value_name = "IMAGE/CHANNEL")]
    channels: Vec<String>,
    /// Public keys the channel pointers must be signed by (as the nodes check them).
    #[arg(long, value_name = "PUBKEY", num_args = 1.., required = true)]
    trust: Vec<PathBuf>,
    /// Print what was copied as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// The repository to copy from: a directory, or an http:// or https:// URL.
    source: String,
    /// IMAGE/CHANNEL to put on the volume (repeatable); default: every channel of a directory.
    #[arg(long = "channel", value_name = "IMAGE/CHANNEL")]
    channels: Vec<String>,
    /// Public keys the channel pointers must be signed by.
    #[arg(long, value_name = "PUBKEY", num_args = 1.., required = true)]
    trust: Vec<PathBuf>,
    /// The volume to write (e.g. update.img; `dd` it to a stick, or attach it to a VM).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

/// Runs a release subcommand.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Publish(a) => publish(a),
        Command::Promote(a) => promote(a),
        Command::Status(a) => status(a),
        Command::Mirror(a) => mirror(a),
        Command::Export(a) => export(a),
    }
}

fn publish(args: PublishArgs) -> anyhow::Result<u8> {
    let started = Instant::now();
    let build = BuildDir::load(&args.build_dir)?;
    let (key, key_notes) = image_builder::release::keys::load_signing_key(&args.key)?;
    let opts = PublishOptions {
        repo: &args.repo,
        channel: &args.channel,
        key: &key,
        min_source_version: args.min_source_version,
        schedule: args.schedule.schedule(),
        now: clock::now(),
        payload: payload::Options {
            level: args.level,
            ..payload::Options::default()
        },
    };
    let mut progress = Progress::new(args.quiet || args.json);
    let p = release::publish(&build, &opts, &mut progress).with_context(|| {
        format!(
            "publishing {} {} to {}",
            build.image(),
            build.version,
            args.repo.display()
        )
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let mut v = serde_json::to_value(&p)?;
        v["seconds"] = serde_json::json!(seconds);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    let c = &p.channel.pointer;
    println!(
        "published {} {} to channel {} in {seconds:.1} s",
        c.image, c.version, c.channel
    );
    println!(
        "  version   {}/{} ({})",
        args.repo.display(),
        p.version_dir,
        if p.reused {
            "already published with identical content: reused"
        } else {
            "new"
        }
    );
    println!(
        "  /usr      {:.1} MiB image -> {:.1} MiB payload ({:.0} %), {} chunks of {} KiB",
        mib(p.image_size),
        mib(p.payload_size),
        100.0 * p.payload_size as f64 / p.image_size.max(1) as f64,
        p.chunks,
        repository::repo::CHUNK_SIZE >> 10
    );
    println!("  boot      kernel + initramfs {:.1} MiB", mib(p.boot_size));
    print_channel(&args.repo, &p.channel, &key.name);
    for n in key_notes {
        eprintln!("note: {n}");
    }
    Ok(0)
}

fn promote(args: PromoteArgs) -> anyhow::Result<u8> {
    let (key, key_notes) = image_builder::release::keys::load_signing_key(&args.key)?;
    let opts = PromoteOptions {
        repo: &args.repo,
        image: args.image.as_deref(),
        from: &args.from,
        to: &args.to,
        version: args.version.as_ref(),
        key: &key,
        schedule: args.schedule.schedule(),
        now: clock::now(),
    };
    let mut progress = Progress::new(args.json);
    let c = release::promote(&opts, &mut progress).with_context(|| {
        format!(
            "promoting {} to {} in {}",
            args.from,
            args.to,
            args.repo.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(0);
    }
    println!(
        "promoted {} {} from {} to {}",
        c.pointer.image, c.pointer.version, args.from, args.to
    );
    print_channel(&args.repo, &c, &key.name);
    for n in key_notes {
        eprintln!("note: {n}");
    }
    Ok(0)
}

/// Copies `channels` (IMAGE/CHANNEL; all of a directory when empty) from
/// `source` into `dest`, checking everything against `trust`.
fn copy_channels(
    source: &str,
    dest: &std::path::Path,
    channels: &[String],
    trust: &[PathBuf],
) -> anyhow::Result<Vec<release::MirroredChannel>> {
    use updater::http::{Fetch, Servers};
    use updater::local::Dir;
    use updater::transport::Transport;
    let trusted = image_builder::release::keys::load_public_keys(trust)?;
    let is_url = source.starts_with("http://") || source.starts_with("https://");
    let mut pairs = Vec::new();
    for c in channels {
        let (image, channel) = c
            .split_once('/')
            .filter(|(i, c)| release::valid_image(i) && release::valid_channel(c))
            .with_context(|| {
                format!("--channel {c:?}: give IMAGE/CHANNEL, e.g. tandem-minimal/stable")
            })?;
        pairs.push((image.to_string(), channel.to_string()));
    }
    if pairs.is_empty() {
        anyhow::ensure!(
            !is_url,
            "a repository URL cannot be listed: name what to copy with --channel IMAGE/CHANNEL"
        );
        let src = PathBuf::from(source);
        for image in release::list_images(&src)? {
            for channel in release::list_channels(&src, &image) {
                pairs.push((image.clone(), channel));
            }
        }
        anyhow::ensure!(!pairs.is_empty(), "{source} has no channels");
    }
    let mut fetch: Box<dyn Fetch> = if is_url {
        let transport = Transport::host();
        Box::new(Servers::new(&[source.to_string()], &transport)?)
    } else {
        Box::new(Dir::new(std::path::Path::new(source)))
    };
    Ok(release::mirror(release::MirrorOptions {
        source: fetch.as_mut(),
        dest,
        channels: &pairs,
        trusted: &trusted,
        now: clock::now(),
    })?)
}

fn print_copied(copied: &[release::MirroredChannel]) {
    for c in copied {
        println!(
            "{}/{} {}: {:.1} MiB fetched in {} requests, {:.1} MiB already there",
            c.image,
            c.channel,
            c.version,
            mib(c.fetched_bytes),
            c.requests,
            mib(c.reused_bytes)
        );
    }
}

fn mirror(args: MirrorArgs) -> anyhow::Result<u8> {
    let copied = copy_channels(&args.source, &args.dest, &args.channels, &args.trust)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&copied)?);
    } else {
        print_copied(&copied);
    }
    Ok(0)
}

fn export(args: ExportArgs) -> anyhow::Result<u8> {
    // Beside the output, removed when done (kept on failure, to look at).
    let staging = args.output.with_extension("export-dir");
    let _ = std::fs::remove_dir_all(&staging);
    let copied = copy_channels(&args.source, &staging, &args.channels, &args.trust)?;
    print_copied(&copied);
    let size = release::export_volume(&staging, &args.output)?;
    let _ = std::fs::remove_dir_all(&staging);
    println!(
        "wrote {} ({:.0} MiB FAT volume): write it to a stick (dd if={} of=/dev/sdX bs=4M), then on a node: tandemctl update apply --from /dev/sdX",
        args.output.display(),
        mib(size),
        args.output.display()
    );
    Ok(0)
}

fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let trusted = image_builder::release::keys::load_public_keys(&args.trust)?;
    let st = release::status(&args.repo, &trusted, clock::now())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", release::render_status(&st));
    }
    Ok(if st.problems == 0 {
        0
    } else {
        crate::exit::PROBLEMS
    })
}

fn print_channel(repo: &std::path::Path, c: &ChannelUpdate, key_name: &str) {
    let p = &c.pointer;
    println!(
        "  channel   {}/{} now serves {}{}",
        repo.display(),
        c.path,
        p.version,
        c.previous
            .as_ref()
            .map_or(" (new channel)".to_string(), |v| format!(" (before: {v})"))
    );
    let start = clock::utc(p.rollout.start);
    if p.rollout.duration_secs == 0 {
        println!("  rollout   all nodes from {start}");
    } else {
        println!(
            "  rollout   from {start} over {}, nodes spread evenly",
            clock::format_duration(p.rollout.duration_secs)
        );
    }
    println!(
        "  expires   {} (in {}): re-sign before then (`tandem release promote --from {ch} --to {ch}`)",
        clock::utc(p.expires),
        clock::approx_duration(p.expires.saturating_sub(p.issued)),
        ch = p.channel
    );
    let name = if key_name.is_empty() {
        String::new()
    } else {
        format!(" ({key_name})")
    };
    println!("  signed    key {}{name}", c.key_id);
    for n in &c.notes {
        eprintln!("note: {n}");
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}
