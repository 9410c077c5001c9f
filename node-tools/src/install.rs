//! `tandemctl install <disk> [--from <iso>] [--config <user-data>]`:
//! writes the image a Tandem ISO carries onto a disk (`updater::install`),
//! after saying what it will erase; the config goes to the installed
//! node's OEM partition, where its provisioning step finds it at every
//! boot. On a live boot the ISO is the one the node runs from.
//!
//! `tandemctl install --unattended` is the live ISO's `install` service: it
//! does what `tandem iso customize` embedded in the ISO, if anything, then
//! reboots or powers off.

use std::path::{Path, PathBuf};

use initramfs::status::{self, EarlyBoot};
use initramfs::system::Shutdown;
use tandem_contract::live::{AfterInstall, UnattendedInstall};
use updater::install::{self, Progress, Source, Target};

use crate::error::Error;

/// Usage of `tandemctl install`.
pub const USAGE: &str =
    "usage: tandemctl install <disk> [--from <iso file or device>] [--config <user-data>]
       tandemctl install --unattended
  writes the Tandem image the ISO carries onto <disk> (erasing it), checked against the
  release signature with this image's trusted keys; --config is checked, then written to the
  installed node's OEM partition (its user-data at every boot). --from defaults to the ISO a
  live node runs from. --unattended does what `tandem iso customize` embedded in that ISO.";

/// The parsed arguments.
#[derive(Debug, PartialEq, Eq)]
enum Args {
    Install {
        disk: PathBuf,
        from: Option<PathBuf>,
        config: Option<PathBuf>,
    },
    Unattended,
}

fn parse(args: &[&str]) -> Result<Args, Error> {
    let usage = || Error::Usage(USAGE.to_string());
    if args == ["--unattended"] {
        return Ok(Args::Unattended);
    }
    let mut disk = None;
    let mut from = None;
    let mut config = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--from" => from = Some(PathBuf::from(it.next().ok_or_else(usage)?)),
            "--config" => config = Some(PathBuf::from(it.next().ok_or_else(usage)?)),
            other if other.starts_with('-') || disk.is_some() => return Err(usage()),
            other => disk = Some(PathBuf::from(other)),
        }
    }
    Ok(Args::Install {
        disk: disk.ok_or_else(usage)?,
        from,
        config,
    })
}

/// The ISO this node booted from, on a live boot.
fn live_iso() -> Option<PathBuf> {
    let early: EarlyBoot = status::read_json(Path::new(status::EARLY_FILE)).ok()?;
    (early.live && !early.disk.is_empty()).then(|| PathBuf::from(early.disk))
}

/// Runs `tandemctl install …`.
pub fn run(args: &[&str]) -> Result<u8, Error> {
    match parse(args)? {
        Args::Unattended => unattended(),
        Args::Install { disk, from, config } => {
            let from = from.or_else(live_iso).ok_or_else(|| {
                Error::Usage(
                    "this node did not boot from a Tandem ISO: give the ISO with --from <file or device>"
                        .into(),
                )
            })?;
            let config = match &config {
                None => None,
                Some(path) => Some(checked_config(path)?),
            };
            install_from(&from, &disk, config.as_deref())
        }
    }
}

/// The live ISO's `install` service.
fn unattended() -> Result<u8, Error> {
    let Some(iso) = live_iso() else {
        println!("tandemctl: not a live boot from a Tandem ISO: nothing to install");
        return Ok(0);
    };
    let Some(UnattendedInstall {
        dest_device,
        config,
        then,
    }) = Source::open(&iso)?.embedded()?.install
    else {
        println!(
            "tandemctl: no unattended install embedded in {}; to install: tandemctl install <disk> [--config <user-data>]",
            iso.display()
        );
        return Ok(0);
    };
    let dest = PathBuf::from(&dest_device);
    if let Some(found) = installed_tandem(&dest) {
        return Err(Error::Usage(format!(
            "unattended install: {dest_device} already holds Tandem ({found}); not installing over it without a keystroke. Remove the ISO to boot that disk, or run `tandemctl install {dest_device}` to install again"
        )));
    }
    if let Some(text) = &config {
        let v = cloud_config::validate(text);
        if v.report.errors() > 0 {
            eprint!("{}", v.report.render("the embedded config", false));
            return Err(Error::Usage(
                "the embedded config has errors: nothing was written".into(),
            ));
        }
    }
    install_from(&iso, &dest, config.as_deref().map(str::as_bytes))?;
    match then {
        AfterInstall::Reboot => {
            println!("tandemctl: rebooting into the installed system");
            crate::ctl::signal_init(Shutdown::Reboot)
        }
        AfterInstall::Poweroff => {
            println!("tandemctl: powering off; remove the ISO before the next start");
            crate::ctl::signal_init(Shutdown::PowerOff)
        }
    }
}

/// A Tandem disk layout on `disk` (its USR-A partition), described.
fn installed_tandem(disk: &Path) -> Option<String> {
    let mut dev = tandem_slot::FileDisk::open_read_only(disk).ok()?;
    let gpt = tandem_slot::Gpt::read(&mut dev).ok()?;
    tandem_slot::table::slot_pair(&gpt).ok()?;
    Some("a GPT with USR-A and USR-B".into())
}

/// Installs the image of the ISO at `from` onto `disk`.
fn install_from(from: &Path, disk: &Path, config: Option<&[u8]>) -> Result<u8, Error> {
    let source = Source::open(from)?;
    let trust = updater::node::Paths::default().trust_dir;
    let (keys, key_errors) = repository::keys::load_trust_dir(&trust);
    for e in key_errors {
        eprintln!("tandemctl: warning: trusted key ignored: {e}");
    }
    let manifest = source.manifest(&keys)?;
    let target = Target::open(disk)?;
    eprintln!(
        "tandemctl: installing {} {} ({}, signature checked) from {} onto {}",
        manifest.image,
        manifest.version,
        manifest.channel,
        from.display(),
        disk.display()
    );
    eprintln!(
        "tandemctl: erasing {}: {}",
        disk.display(),
        target.describe()
    );
    let mut shown = 0;
    let report = install::install(&source, &manifest, &target, config, |p: Progress| {
        let percent = p.done * 100 / p.total.max(1);
        if percent >= shown + 10 || p.done == p.total {
            shown = percent;
            eprintln!(
                "tandemctl: install: {percent} % ({} / {} MiB)",
                p.done >> 20,
                p.total >> 20
            );
        }
    })?;
    println!(
        "installed {} {} onto {} in {:.1} s ({} MiB written, {} MiB zeroed){}; its first boot grows ROOT to the disk's {} MiB",
        manifest.image,
        manifest.version,
        disk.display(),
        report.seconds,
        report.written >> 20,
        report.zeroed >> 20,
        if config.is_some() {
            ", config on its OEM partition"
        } else {
            ""
        },
        target.size() >> 20,
    );
    Ok(0)
}

/// The config's bytes, refused when the validator finds errors: the
/// installed node would not apply it.
fn checked_config(path: &Path) -> Result<Vec<u8>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))?;
    let v = cloud_config::validate(&text);
    if v.report.errors() > 0 {
        eprint!("{}", v.report.render(&path.display().to_string(), false));
        return Err(Error::Usage(format!(
            "{} has errors: fix them first (nothing was written)",
            path.display()
        )));
    }
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(
            parse(&["/dev/vdc", "--from", "/dev/vdb", "--config", "/tmp/u"]).ok(),
            Some(Args::Install {
                disk: "/dev/vdc".into(),
                from: Some("/dev/vdb".into()),
                config: Some("/tmp/u".into()),
            })
        );
        assert_eq!(
            parse(&["/dev/vdc"]).ok(),
            Some(Args::Install {
                disk: "/dev/vdc".into(),
                from: None,
                config: None,
            })
        );
        assert_eq!(parse(&["--unattended"]).ok(), Some(Args::Unattended));
        assert!(parse(&["--unattended", "/dev/vdc"]).is_err());
        assert!(parse(&["--from", "/dev/vdb"]).is_err(), "no disk");
        assert!(parse(&["/dev/vdc", "/dev/vdd", "--from", "x"]).is_err());
        assert!(parse(&["/dev/vdc", "--from"]).is_err());
    }
}
