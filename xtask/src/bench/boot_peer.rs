//! The peer of `cargo xtask bench boot`: Debian 12 booting its own way on
//! the kernel the Tandem image boots, under the same QEMU.
//!
//! The peer is a Debian 12 root made by debootstrap (minbase, the host's
//! mirror) with `systemd-sysv`, `udev`, `ifupdown`, `isc-dhcp-client` and
//! `initramfs-tools` installed by apt as Debian installs them (with their
//! recommends: dbus, logind, timesyncd, AppArmor), the minimal image's
//! kernel package installed with `apt-get install ./linux-image-….deb`,
//! whose hook makes the initramfs-tools initramfs (`MODULES=most`, as
//! shipped), the network as the Debian installer writes it
//! (`allow-hotplug enp0s2` + `iface enp0s2 inet dhcp`), root on `/dev/vda`
//! in `/etc/fstab`, and root's password empty so the bench can log in on
//! the serial console after the boot. Nothing else is configured or tuned.
//! It becomes a 2 GiB ext4 disk (`mke2fs -d`) that boots once and is shut
//! down cleanly (what installing does: the first boot's one-off work, such
//! as the hardware database and the persistent journal, is then done), and
//! is kept in `target/tandem/cache/debian-peer-<kernel package sha256>-r<recipe>`.
//!
//! Each measured boot runs on a copy-on-write overlay of that disk, by a
//! direct kernel boot of the package's `vmlinuz` and `initrd.img` with the
//! console settings of the minimal image (`console=ttyS0,115200`, the
//! kernel's default log level), on the machine of the Tandem boots (TCG, 1
//! vCPU, 1 GiB, virtio disk and network). By the guest's own clocks: `/init`
//! starting is the printk time of the kernel's `Run /init as init process`,
//! ready is the `CLOCK_MONOTONIC` time at which systemd reached
//! `multi-user.target` (`ActiveEnterTimestampMonotonic`), both since the
//! kernel started. The console's arrival times are kept as the host's view.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use qemu_tests::debian_root::{self, Mounted, chroot};
use qemu_tests::fixtures::file_sha;
use qemu_tests::vm::{DirectBoot, Line};
use qemu_tests::{Disk, Vm, VmConfig};

use crate::util;

/// Bump when the peer's recipe changes: the cached disk is made again.
const RECIPE: u32 = 2;
/// What the peer installs besides minbase and the kernel.
const PACKAGES: &str = "systemd-sysv udev ifupdown isc-dhcp-client initramfs-tools";
const HOSTNAME: &str = "debian-peer";
/// The virtio network device's name under this QEMU machine (q35, the
/// device in slot 2), as the Debian installer would find and write it.
const INTERFACE: &str = "enp0s2";
/// The minimal image's console settings (its `[boot] cmdline`), so both
/// systems print the same way to the same slow serial console.
const CONSOLE: &str = "console=ttyS0,115200 panic=10";
const DISK_SIZE: &str = "2G";
/// systemd's status line when it reaches `multi-user.target`.
const MULTI_USER: &str = "Multi-User System";
const INIT_LINE: &str = "Run /init as init process";
/// Generous: the manual measurement on this kind of machine was 42 s from
/// `/init` to multi-user.
const BOOT_TIMEOUT: Duration = Duration::from_secs(400);
const COMMAND: Duration = Duration::from_secs(60);

/// The peer's disk and boot files, built and booted once.
pub(crate) struct Peer {
    dir: PathBuf,
    /// The kernel release (`6.1.0-57-cloud-amd64`).
    pub(crate) release: String,
    /// The kernel package's version.
    pub(crate) kernel_version: String,
    /// Versions of systemd and initramfs-tools in the peer.
    pub(crate) systemd: String,
    pub(crate) initramfs_tools: String,
}

/// One boot of the peer.
pub(crate) struct PeerBoot {
    /// Kernel start to `/init` starting (printk time).
    pub(crate) init: Duration,
    /// Kernel start to `multi-user.target` reached (`CLOCK_MONOTONIC`).
    pub(crate) ready: Duration,
    /// By the host's clock: the arrival of the `/init` line to that of the
    /// multi-user line.
    pub(crate) console_init_to_ready: Duration,
    /// When dhclient had its lease (journal, `CLOCK_MONOTONIC`), if it did.
    pub(crate) lease: Option<Duration>,
    /// `systemd-analyze`'s summary.
    pub(crate) analyze: String,
    /// The three slowest units (`systemd-analyze blame`).
    pub(crate) blame: Vec<String>,
}

impl PeerBoot {
    pub(crate) fn init_to_ready(&self) -> Duration {
        self.ready.saturating_sub(self.init)
    }
}

impl Peer {
    /// The peer for the kernel of the Tandem image in `image` (its
    /// build.json names the package, found in `cache`): from the cache, or
    /// built there.
    pub(crate) fn get(image: &Path, cache: &Path) -> Result<Peer> {
        let manifest = image.join("build.json");
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&manifest)
                .with_context(|| format!("read {}", manifest.display()))?,
        )
        .with_context(|| format!("parse {}", manifest.display()))?;
        let field = |v: &serde_json::Value, what: &str| -> Result<String> {
            v.as_str().map(str::to_string).with_context(|| {
                format!(
                    "{} lacks kernel.{what}: rebuild the image",
                    manifest.display()
                )
            })
        };
        let k = &m["kernel"];
        let release = field(&k["release"], "release")?;
        let name = field(&k["package"]["name"], "package.name")?;
        let version = field(&k["package"]["version"], "package.version")?;
        let sha256 = field(&k["package"]["sha256"], "package.sha256")?;
        // Package file names drop the version's epoch.
        let file_version = version.split_once(':').map_or(version.as_str(), |(_, v)| v);
        let deb = cache.join(format!("{name}_{file_version}_amd64.deb"));
        let have = file_sha(&deb).with_context(|| {
            format!(
                "the kernel package of {} is not in the cache: build the image (`cargo xtask build`)",
                image.display()
            )
        })?;
        if have != sha256 {
            bail!(
                "{} has sha256 {have}, build.json says {sha256}: delete it and rebuild the image",
                deb.display()
            );
        }
        let key = format!(
            "debian-peer-{}-r{RECIPE}",
            sha256.get(..16).unwrap_or(&sha256)
        );
        let dir = cache.join(&key);
        if !dir.join("peer.json").exists() {
            remove_stale(cache, &key)?;
            build(&dir, &deb, &release, cache, &image.join("vmlinuz"))?;
        }
        let info = dir.join("peer.json");
        let p: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&info).with_context(|| format!("read {}", info.display()))?,
        )
        .with_context(|| format!("parse {}", info.display()))?;
        let get = |k: &str| p[k].as_str().unwrap_or("?").to_string();
        Ok(Peer {
            dir,
            release,
            kernel_version: version,
            systemd: get("systemd"),
            initramfs_tools: get("initramfs-tools"),
        })
    }

    /// Boots a fresh overlay of the peer's disk to `multi-user.target`
    /// and reads its timeline.
    pub(crate) fn boot(&self, name: &str) -> Result<PeerBoot> {
        let disk = Disk::overlay(&self.dir.join("disk.raw"))?;
        let mut vm = Vm::start(&config(&self.dir, name), &disk)?;
        let ready_line = vm.wait_for(MULTI_USER, BOOT_TIMEOUT)?;
        let lines = vm.lines();
        let init_line = lines
            .iter()
            .find(|l| l.text.contains(INIT_LINE))
            .with_context(|| {
                format!(
                    "{name}: no `{INIT_LINE}` on the console ({})",
                    vm.log_path().display()
                )
            })?;
        let init = printk_time(init_line).with_context(|| {
            format!(
                "{name}: no printk time on `{}`: the kernel must print times (printk.time)",
                init_line.text
            )
        })?;
        login(&mut vm)?;
        let ready_us = shell(
            &mut vm,
            "systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target",
        )?;
        let ready_us: u64 = ready_us.trim().parse().with_context(|| {
            format!("{name}: multi-user.target's ActiveEnterTimestampMonotonic is {ready_us:?}")
        })?;
        let addr = shell(&mut vm, &format!("ip -4 -o addr show dev {INTERFACE}"))?;
        if !addr.contains("inet ") {
            bail!(
                "{name}: {INTERFACE} has no IPv4 address ({addr:?}): the peer's network is not configured as Debian would; is the interface called otherwise under this QEMU (`ip link` on the console, {})? Fix INTERFACE in {} and bump RECIPE",
                vm.log_path().display(),
                file!()
            );
        }
        // The rest only describes the boot; it waits for systemd's jobs.
        let _ = vm.run_status("systemctl is-system-running --wait", COMMAND);
        let analyze = shell(&mut vm, "systemd-analyze")?
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        let blame = shell(&mut vm, "systemd-analyze blame --no-pager | head -n 3")?
            .lines()
            // `5.785s dev-vda.device` → `dev-vda.device 5.785s`.
            .filter_map(|l| {
                let (time, unit) = l.trim().split_once(char::is_whitespace)?;
                Some(format!("{} {time}", unit.trim()))
            })
            .collect();
        // JSON: `shell` would take the short formats' `[  13.137010]` for
        // a kernel message.
        let lease = shell(
            &mut vm,
            "journalctl -b -t dhclient -o json --no-pager | grep -m1 'bound to' || true",
        )?;
        let lease = serde_json::from_str::<serde_json::Value>(lease.trim())
            .ok()
            .and_then(|j| j["__MONOTONIC_TIMESTAMP"].as_str()?.parse::<u64>().ok())
            .map(Duration::from_micros);
        Ok(PeerBoot {
            init,
            ready: Duration::from_micros(ready_us),
            console_init_to_ready: ready_line.at.saturating_sub(init_line.at),
            lease,
            analyze,
            blame,
        })
    }
}

/// Makes the peer in `dir` (through `<dir>.partial`).
fn build(dir: &Path, deb: &Path, release: &str, cache: &Path, tandem_kernel: &Path) -> Result<()> {
    eprintln!(
        "bench boot: making the Debian 12 peer in {} (once per kernel package)",
        dir.display()
    );
    let partial = dir.with_extension("partial");
    debian_root::remove(&partial)
        .with_context(|| format!("delete the unfinished {}", partial.display()))?;
    std::fs::create_dir_all(&partial).with_context(|| format!("create {}", partial.display()))?;
    // Not a temporary directory: that would be deleted even with /dev still
    // bound inside it. `debian_root::remove` checks.
    let root = dir.with_extension("root");
    debian_root::remove(&root)?;
    let made = install(&root, deb, release, cache);
    // Whatever happened, the mounts are gone by now (`install` owns them).
    let made = made.and_then(|()| {
        for (from, to) in [
            (format!("boot/vmlinuz-{release}"), "vmlinuz"),
            (format!("boot/initrd.img-{release}"), "initrd.img"),
        ] {
            std::fs::copy(root.join(&from), partial.join(to))
                .with_context(|| format!("copy {from} out of the peer's root"))?;
        }
        let ours = std::fs::read(partial.join("vmlinuz"))?;
        let theirs = std::fs::read(tandem_kernel)
            .with_context(|| format!("read {}", tandem_kernel.display()))?;
        if ours != theirs {
            bail!(
                "the kernel package's vmlinuz differs from {}: the peer would not boot the same kernel",
                tandem_kernel.display()
            );
        }
        util::output(
            Command::new("mke2fs")
                .args(["-q", "-t", "ext4", "-L", "debian-root", "-d"])
                .arg(&root)
                .arg(partial.join("disk.raw"))
                .arg(DISK_SIZE),
        )
        .context("making the peer's ext4 disk (package e2fsprogs)")?;
        let versions = chroot(
            &root,
            "dpkg-query -W -f '${Package} ${Version}\\n' systemd initramfs-tools",
        )?;
        let version = |package: &str| {
            versions
                .lines()
                .find_map(|l| l.strip_prefix(package)?.strip_prefix(' '))
                .unwrap_or("?")
                .to_string()
        };
        let info = serde_json::json!({
            "kernel-release": release,
            "kernel-package": deb.file_name().map(|n| n.to_string_lossy().into_owned()),
            "systemd": version("systemd"),
            "initramfs-tools": version("initramfs-tools"),
        });
        Ok(info)
    });
    let removed = debian_root::remove(&root);
    let info = made?;
    removed?;
    first_boot(&partial)?;
    std::fs::write(
        partial.join("peer.json"),
        serde_json::to_string_pretty(&info)?,
    )
    .context("write peer.json")?;
    std::fs::rename(&partial, dir)
        .with_context(|| format!("rename {} to {}", partial.display(), dir.display()))?;
    Ok(())
}

/// debootstrap and apt: the root as Debian installs it.
fn install(root: &Path, deb: &Path, release: &str, cache: &Path) -> Result<()> {
    debian_root::minbase(cache, root)?;
    std::fs::copy(deb, root.join("tmp/kernel.deb"))
        .with_context(|| format!("copy {} into the peer's root", deb.display()))?;
    // No service starts inside the chroot while packages are installed.
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n").context("write policy-rc.d")?;
    chroot(root, "chmod 755 /usr/sbin/policy-rc.d")?;
    {
        let _mounts = Mounted::system(root)?;
        chroot(root, "apt-get update -qq")?;
        chroot(root, "apt-get upgrade -y -qq >/dev/null")?;
        chroot(
            root,
            &format!("apt-get install -y -qq {PACKAGES} /tmp/kernel.deb >/dev/null"),
        )
        .context("installing the peer's packages (apt, the host's mirror)")?;
        // The kernel's postinst hook made it; make sure.
        if !root.join(format!("boot/initrd.img-{release}")).exists() {
            chroot(root, &format!("update-initramfs -c -k {release}"))?;
        }
        chroot(root, "apt-get clean")?;
    }
    std::fs::remove_file(&policy).context("remove policy-rc.d")?;
    std::fs::remove_file(root.join("tmp/kernel.deb")).context("remove the kernel package")?;
    let write = |path: &str, text: &str| {
        std::fs::write(root.join(path), text).with_context(|| format!("write the peer's /{path}"))
    };
    write("etc/hostname", &format!("{HOSTNAME}\n"))?;
    write(
        "etc/hosts",
        &format!("127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"),
    )?;
    write("etc/fstab", "/dev/vda\t/\text4\terrors=remount-ro\t0\t1\n")?;
    // What the Debian installer (netcfg) writes for a DHCP interface.
    write(
        "etc/network/interfaces",
        &format!(
            "# This file describes the network interfaces available on your system\n\
             # and how to activate them. For more information, see interfaces(5).\n\n\
             source /etc/network/interfaces.d/*\n\n\
             # The loopback network interface\nauto lo\niface lo inet loopback\n\n\
             # The primary network interface\nallow-hotplug {INTERFACE}\niface {INTERFACE} inet dhcp\n"
        ),
    )?;
    chroot(root, "passwd -d root >/dev/null")?;
    Ok(())
}

/// Boots the new disk once and shuts it down: the first boot's one-off
/// work is then done, as on an installed machine.
fn first_boot(dir: &Path) -> Result<()> {
    let disk = Disk::overlay(&dir.join("disk.raw"))?;
    let mut vm = Vm::start(&config(dir, "bench-debian-first-boot"), &disk)?;
    vm.wait_for(MULTI_USER, BOOT_TIMEOUT)?;
    login(&mut vm)?;
    let _ = vm.run_status("systemctl is-system-running --wait", COMMAND);
    vm.send("systemctl poweroff\n")?;
    vm.wait_exit(Duration::from_secs(120))
        .context("the peer's first boot did not power off")?;
    drop(vm);
    util::run(
        Command::new("qemu-img")
            .arg("commit")
            .arg("-q")
            .arg(disk.path()),
    )
    .context("keeping the first boot's changes in the peer's disk (qemu-img commit)")
}

/// The machine of the Tandem boots, started by a direct kernel boot of the
/// peer in `dir`.
fn config(dir: &Path, name: &str) -> VmConfig {
    let mut cfg = VmConfig::new(name);
    cfg.direct_boot = Some(DirectBoot {
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        cmdline: format!("root=/dev/vda ro {CONSOLE}"),
    });
    cfg
}

/// Logs in as root on the serial console (empty password) once the getty
/// shows its banner; turns off bash's bracketed paste and systemd's pager.
fn login(vm: &mut Vm) -> Result<()> {
    vm.wait_for(&format!("{HOSTNAME} ttyS0"), COMMAND)
        .context("no login prompt on the peer's serial console")?;
    vm.send("root\n")?;
    let mut tries = 0;
    loop {
        match vm.run_status(
            "bind 'set enable-bracketed-paste off'; export SYSTEMD_PAGER=cat SYSTEMD_COLORS=0",
            Duration::from_secs(20),
        ) {
            Ok(_) => return Ok(()),
            Err(e) if tries == 2 => {
                return Err(e).context(format!(
                    "cannot log in as root on the peer's serial console ({})",
                    vm.log_path().display()
                ));
            }
            Err(_) => {
                tries += 1;
                vm.send("root\n")?;
            }
        }
    }
}

/// Runs `command` in the peer's shell; its output without escape
/// sequences and without kernel messages that landed in it.
fn shell(vm: &mut Vm, command: &str) -> Result<String> {
    let out = vm.run(command, COMMAND)?;
    Ok(out
        .lines()
        .map(strip_escapes)
        .filter(|l| !looks_like_printk(l))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn looks_like_printk(line: &str) -> bool {
    let t = line.trim_start();
    t.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .is_some_and(|(stamp, _)| stamp.trim().parse::<f64>().is_ok())
}

/// The text without ANSI escape sequences and carriage returns.
fn strip_escapes(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters final-byte (@ to ~).
                if chars.clone().next() == Some('[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// The printk time of a kernel line (`[    1.809580] Run /init …`).
fn printk_time(line: &Line) -> Option<Duration> {
    let t = line.text.trim_start().strip_prefix('[')?;
    let stamp = t.split(']').next()?.trim();
    stamp.parse::<f64>().ok().map(Duration::from_secs_f64)
}

/// Deletes peers of other kernels or recipes (2 GiB sparse disks each).
fn remove_stale(cache: &Path, keep: &str) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("debian-peer-") && name != keep {
            debian_root::remove(&e.path())
                .with_context(|| format!("delete the old peer {}", e.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_printk_times_and_strips_escapes() {
        let line = Line {
            at: Duration::ZERO,
            text: "[    1.809580] Run /init as init process".into(),
        };
        assert_eq!(printk_time(&line), Some(Duration::from_micros(1_809_580)));
        assert_eq!(
            strip_escapes("\u{1b}[?2004l\r5123456"),
            "5123456".to_string()
        );
        assert!(looks_like_printk("[   12.298362] audit: type=1400"));
        assert!(!looks_like_printk("[  OK  ] Reached target"));
    }
}
