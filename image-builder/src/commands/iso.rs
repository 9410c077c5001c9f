//! `tandem iso create | customize | show`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use image_builder::iso;
use image_builder::progress::Progress;
use tandem_contract::live::{AfterInstall, Embedded, UnattendedInstall};

/// Arguments of `tandem iso`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Make a live and install ISO of a build (boots from CD and USB stick).
    Create(CreateArgs),
    /// Embed an unattended install into an ISO, in place.
    Customize(CustomizeArgs),
    /// Show what an ISO carries and what is embedded in it.
    Show(ShowArgs),
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// A `tandem build --out` directory.
    build: PathBuf,
    /// Private release key (`tandem keygen`): signs the install manifest,
    /// which installers check with the image's trusted keys.
    #[arg(long)]
    key: PathBuf,
    /// The ISO file to write.
    #[arg(long, short)]
    out: PathBuf,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(clap::Args, Debug)]
#[command(
    after_help = "When the ISO boots, it installs onto --dest-device without a keystroke, writes --config to the installed node's OEM partition (where the node finds its user-data at every boot) and reboots (or powers off with --poweroff). The firmware boots the ISO again after the reboot if it comes first in the boot order: remove the ISO, or use --poweroff. An install never overwrites a disk that already holds Tandem unless asked interactively."
)]
struct CustomizeArgs {
    /// The ISO (`tandem iso create`), changed in place.
    iso: PathBuf,
    /// The disk to install onto when the ISO boots (`/dev/vda`, `/dev/disk/by-id/…`).
    #[arg(long, required_unless_present = "reset")]
    dest_device: Option<String>,
    /// Cloud-config (user-data) for the installed node; checked here first.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Power off after the install instead of rebooting.
    #[arg(long)]
    poweroff: bool,
    /// Remove whatever is embedded (the ISO boots to a live node again).
    #[arg(long, conflicts_with_all = ["dest_device", "config", "poweroff"])]
    reset: bool,
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    /// The ISO.
    iso: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `tandem iso …`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args.command {
        Command::Create(a) => create(a),
        Command::Customize(a) => customize(a),
        Command::Show(a) => show(a),
    }
}

fn create(a: CreateArgs) -> anyhow::Result<u8> {
    let (key, notes) = image_builder::release::keys::load_signing_key(&a.key)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    let mut progress = Progress::new(a.quiet);
    let made = iso::create(&a.build, &key, &a.out, &mut progress)
        .with_context(|| format!("making an ISO of {}", a.build.display()))?;
    let m = &made.manifest;
    println!(
        "made {} ({} MiB, label {}): {} {} ({}), install manifest signed by {}, in {:.1} s",
        made.path.display(),
        made.size.div_ceil(1 << 20),
        made.volume_id,
        m.image,
        m.version,
        m.channel,
        key.public().id(),
        progress.elapsed().as_secs_f64()
    );
    println!(
        "  boot it from a CD or USB stick (dd it onto the stick), or `tandem run {}`",
        made.path.display()
    );
    Ok(0)
}

fn customize(a: CustomizeArgs) -> anyhow::Result<u8> {
    let embedded = match a.dest_device {
        None => Embedded::default(),
        Some(dest) => {
            if !dest.starts_with("/dev/") {
                bail!(
                    "--dest-device {dest:?} is not a device path: give /dev/vda, /dev/disk/by-id/…"
                );
            }
            let config = match &a.config {
                None => None,
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let v = cloud_config::validate(&text);
                    if v.report.errors() > 0 {
                        eprint!("{}", v.report.render(&path.display().to_string(), false));
                        bail!(
                            "{} has errors: not embedded (the installed node would not apply it)",
                            path.display()
                        );
                    }
                    Some(text)
                }
            };
            Embedded {
                install: Some(UnattendedInstall {
                    dest_device: dest,
                    config,
                    then: if a.poweroff {
                        AfterInstall::Poweroff
                    } else {
                        AfterInstall::Reboot
                    },
                }),
            }
        }
    };
    iso::customize(&a.iso, &embedded)?;
    match &embedded.install {
        Some(i) => println!(
            "{}: installs onto {} when it boots{}, then {}",
            a.iso.display(),
            i.dest_device,
            if i.config.is_some() {
                " with the config"
            } else {
                ""
            },
            match i.then {
                AfterInstall::Reboot => "reboots",
                AfterInstall::Poweroff => "powers off",
            }
        ),
        None => println!(
            "{}: nothing embedded; it boots to a live node",
            a.iso.display()
        ),
    }
    Ok(0)
}

fn show(a: ShowArgs) -> anyhow::Result<u8> {
    let s = iso::show(&a.iso)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(0);
    }
    let m = &s.manifest;
    println!(
        "{} {} ({}, {}): disk image {} MiB in {} chunks, signed by {}",
        m.image,
        m.version,
        m.channel,
        m.arch,
        m.disk.size >> 20,
        m.disk.chunks.len(),
        s.signed_by.join(", ")
    );
    match &s.embedded.install {
        None => println!("embedded: nothing (boots to a live node)"),
        Some(i) => println!(
            "embedded: unattended install onto {}{}, then {:?}",
            i.dest_device,
            if i.config.is_some() {
                " with a config"
            } else {
                ""
            },
            i.then
        ),
    }
    Ok(0)
}
