//! `tandem run`: boots a built image in QEMU under UEFI firmware, as
//! `mkosi vm` and Flatcar's `flatcar_production_qemu.sh` do. The image
//! stays pristine: the machine writes to a qcow2 overlay in a directory of
//! its own, removed when QEMU ends. A cloud-config given on the command
//! line becomes a NoCloud volume (FAT labelled `cidata`), guest port 22 is
//! forwarded to the host, the serial console is the terminal.
//!
//! The QEMU command line is planned by pure functions ([`qemu_args`]) and
//! only [`run`] starts anything.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::build::fat::{self, Content, Volume};
use crate::build::tools::Tool;
use crate::error::{Error, IoContext, Result};
use crate::export::QEMU_IMG;

/// `qemu-system-x86_64`.
pub const QEMU: Tool = Tool {
    program: "qemu-system-x86_64",
    package: "qemu-system-x86",
};
/// OVMF's firmware code (read-only flash).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF's variable store template, copied per machine.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// A QEMU that exits this soon after starting with KVM did not get KVM to
/// work (on some hosts it aborts setting up the virtual CPU).
const KVM_PROBE: Duration = Duration::from_secs(5);

/// How QEMU runs the guest's CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM if /dev/kvm opens and QEMU starts with it, TCG otherwise.
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Emulation: works everywhere, about 10-50 times slower.
    Tcg,
}

/// What an image file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// A raw disk (`disk.raw`).
    Raw,
    /// qcow2 (`tandem export --format qcow2`).
    Qcow2,
    /// An ISO 9660 image.
    Iso,
}

impl ImageFormat {
    /// Bytes [`ImageFormat::detect`] looks at.
    pub const HEAD: usize = 0x8006;

    /// Tells the format from the first [`ImageFormat::HEAD`] bytes (fewer
    /// for a small file).
    pub fn detect(head: &[u8]) -> ImageFormat {
        if head.starts_with(b"QFI\xfb") {
            ImageFormat::Qcow2
        } else if head.get(0x8001..0x8006) == Some(b"CD001") {
            ImageFormat::Iso
        } else {
            ImageFormat::Raw
        }
    }

    /// QEMU's name of the format.
    pub fn qemu_name(self) -> &'static str {
        match self {
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw | ImageFormat::Iso => "raw",
        }
    }
}

/// Reads the head of `path` and tells its format.
pub fn probe(path: &Path) -> Result<ImageFormat> {
    let mut head = Vec::with_capacity(ImageFormat::HEAD);
    std::fs::File::open(path)
        .and_then(|f| f.take(ImageFormat::HEAD as u64).read_to_end(&mut head))
        .io("read", path)?;
    Ok(ImageFormat::detect(&head))
}

/// A machine to start, its files made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Host port forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// KVM (true) or TCG.
    pub kvm: bool,
    /// The writable disk the machine boots from (an overlay), or installs
    /// onto when booted from an ISO.
    pub disk: PathBuf,
    /// An ISO attached read-only, booted first.
    pub iso: Option<PathBuf>,
    /// The NoCloud volume.
    pub seed: Option<PathBuf>,
    /// This machine's copy of the firmware variables.
    pub vars: PathBuf,
    /// The terminal is interactive: QEMU's monitor shares it (Ctrl-A X quits).
    pub interactive: bool,
}

/// QEMU's arguments for `m`.
pub fn qemu_args(m: &Machine) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    push(&["-machine", "q35", "-no-user-config", "-display", "none"]);
    if m.kvm {
        push(&["-accel", "kvm", "-cpu", "host"]);
    } else {
        // la57 and erms only cost under emulation (see qemu-tests' vm.rs).
        push(&["-accel", "tcg", "-cpu", "max,la57=off,erms=off"]);
    }
    let (memory, cpus) = (m.memory_mib.to_string(), m.cpus.to_string());
    push(&["-m", &memory, "-smp", &cpus]);
    let code = format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}");
    let vars = format!("if=pflash,format=raw,file={}", m.vars.display());
    push(&["-drive", &code, "-drive", &vars]);
    // The ISO first (bootindex 0) so the firmware boots it, not the blank
    // disk; as a virtio disk, like a USB stick.
    if let Some(iso) = &m.iso {
        let drive = format!(
            "file={},format=raw,if=none,id=iso,readonly=on",
            iso.display()
        );
        push(&[
            "-drive",
            &drive,
            "-device",
            "virtio-blk-pci,drive=iso,bootindex=0",
        ]);
    }
    let disk = format!("file={},format=qcow2,if=none,id=disk", m.disk.display());
    push(&[
        "-drive",
        &disk,
        "-device",
        "virtio-blk-pci,drive=disk,bootindex=1",
    ]);
    if let Some(seed) = &m.seed {
        let drive = format!("file={},format=raw,if=virtio,readonly=on", seed.display());
        push(&["-drive", &drive]);
    }
    let net = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22", m.ssh_port);
    push(&["-netdev", &net, "-device", "virtio-net-pci,netdev=n0"]);
    let serial = if m.interactive { "mon:stdio" } else { "stdio" };
    push(&["-serial", serial]);
    if !m.interactive {
        push(&["-monitor", "none"]);
    }
    a
}

/// The command that logs in to the machine as `user`. Host keys are made
/// on the node's first boot, so each run has new ones: no known_hosts.
pub fn ssh_command(port: u16, user: &str) -> String {
    format!(
        "ssh -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {user}@127.0.0.1"
    )
}

/// What `tandem run` was asked to do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// A raw or qcow2 disk, an ISO, or a build directory (its disk.raw).
    pub image: PathBuf,
    /// A cloud-config for the node (NoCloud).
    pub config: Option<PathBuf>,
    /// Host port for the guest's SSH.
    pub ssh_port: u16,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Size of the blank disk an ISO installs onto, in bytes.
    pub install_disk_size: u64,
    /// The terminal is interactive.
    pub interactive: bool,
}

/// A directory of a machine's files, removed when dropped.
struct Workdir(PathBuf);

impl Drop for Workdir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Makes the machine's files, starts QEMU (again with TCG if KVM fails
/// at once under [`Accel::Auto`]), and waits for it to end. `say` hears
/// what a user should know (the SSH command among it) before the console
/// takes over the terminal.
pub fn run(opts: &RunOptions, mut say: impl FnMut(&str)) -> Result<ExitStatus> {
    let image = if opts.image.is_dir() {
        opts.image.join(crate::build::pipeline::outputs::DISK)
    } else {
        opts.image.clone()
    };
    let image = image.canonicalize().io("find", &image)?;
    let format = probe(&image)?;
    let dir = std::env::temp_dir().join(format!("tandem-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).io("create", &dir)?;
    let work = Workdir(dir);
    let disk = work.0.join("disk.qcow2");
    let mut create = QEMU_IMG.command();
    create.args(["create", "-q", "-f", "qcow2"]);
    match format {
        ImageFormat::Iso => {
            create.arg(&disk).arg(opts.install_disk_size.to_string());
        }
        _ => {
            create
                .args(["-F", format.qemu_name(), "-b"])
                .arg(&image)
                .arg(&disk);
        }
    }
    QEMU_IMG.run(&mut create)?;
    let vars = work.0.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).map_err(|cause| Error::Io {
        action: "copy the firmware variables (package ovmf)",
        path: OVMF_VARS.into(),
        cause,
    })?;
    let seed = match &opts.config {
        Some(config) => Some(nocloud_seed(&work.0, config)?),
        None => None,
    };
    let mut machine = Machine {
        memory_mib: opts.memory_mib,
        cpus: opts.cpus,
        ssh_port: opts.ssh_port,
        kvm: opts.accel != Accel::Tcg && kvm_usable(),
        disk,
        iso: (format == ImageFormat::Iso).then_some(image.clone()),
        seed,
        vars,
        interactive: opts.interactive,
    };
    if opts.accel == Accel::Kvm && !machine.kvm {
        return Err(Error::Machine {
            message: "--accel kvm: /dev/kvm cannot be opened read-write (no KVM on this host, or no permission: join the kvm group); use --accel tcg".into(),
        });
    }
    say(&format!(
        "booting {} ({}, {}, {} MiB){}",
        image.display(),
        match format {
            ImageFormat::Iso => "ISO, with a blank disk to install onto",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        },
        if machine.kvm { "KVM" } else { "TCG" },
        opts.memory_mib,
        if machine.seed.is_some() {
            ", cloud-config as a NoCloud volume"
        } else {
            ""
        }
    ));
    say(&format!(
        "log in (once sshd runs): {}",
        ssh_command(opts.ssh_port, "core")
    ));
    if opts.interactive {
        say("console below; Ctrl-A X quits QEMU");
    }
    let mut child = start(&machine)?;
    if machine.kvm
        && opts.accel == Accel::Auto
        && let Some(status) = exited_within(&mut child, KVM_PROBE)?
    {
        if status.success() {
            return Ok(status);
        }
        say(&format!(
            "KVM did not work here (QEMU {status}); starting again with TCG (emulation, slower)"
        ));
        machine.kvm = false;
        std::fs::copy(OVMF_VARS, &machine.vars).io("copy", OVMF_VARS)?;
        child = start(&machine)?;
    }
    child.wait().io("wait for", QEMU.program)
}

/// /dev/kvm opens read-write.
fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// QEMU's pid while it runs, for [`forward_signal`].
static QEMU_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGTERM, SIGINT and SIGHUP to `tandem run` end QEMU, so that `run`
/// returns and the overlay is removed.
extern "C" fn forward_signal(_: libc::c_int) {
    let pid = QEMU_PID.load(std::sync::atomic::Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

fn forward_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only loads an atomic and calls kill(2).
        unsafe {
            libc::signal(
                sig,
                forward_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

fn start(m: &Machine) -> Result<Child> {
    let mut cmd = Command::new(QEMU.program);
    cmd.args(qemu_args(m));
    // QEMU ends with us: a killed `tandem run` leaves no machine behind.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| QEMU.spawn_error(e))?;
    QEMU_PID.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    forward_signals();
    Ok(child)
}

fn exited_within(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Some(status) = child.try_wait().io("wait for", QEMU.program)? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(None)
}

/// A NoCloud volume (FAT labelled `cidata`) with `config` as its user-data
/// and an instance id derived from it: a changed config is a new instance.
fn nocloud_seed(dir: &Path, config: &Path) -> Result<PathBuf> {
    use sha2::Digest;
    let user_data = std::fs::read(config).io("read", config)?;
    let id = hex::encode(&sha2::Sha256::digest(&user_data)[..8]);
    let meta = format!("instance-id: tandem-run-{id}\nlocal-hostname: tandem-run\n");
    let path = dir.join("seed.img");
    fat::build(
        &path,
        Volume {
            size: 4 << 20,
            label: "cidata",
            volume_id: 0x7a4d_0001,
            fat32: false,
            epoch: 0,
        },
        &[
            ("user-data".into(), Content::Bytes(&user_data)),
            ("meta-data".into(), Content::Bytes(meta.as_bytes())),
        ],
    )?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            memory_mib: 1024,
            cpus: 1,
            ssh_port: 2222,
            kvm: false,
            disk: "/w/disk.qcow2".into(),
            iso: None,
            seed: None,
            vars: "/w/vars.fd".into(),
            interactive: false,
        }
    }

    fn joined(m: &Machine) -> String {
        qemu_args(m).join(" ")
    }

    #[test]
    fn formats_are_told_by_their_magic() {
        assert_eq!(
            ImageFormat::detect(b"QFI\xfb\0\0\0\x03"),
            ImageFormat::Qcow2
        );
        let mut iso = vec![0u8; ImageFormat::HEAD];
        iso[0x8001..0x8006].copy_from_slice(b"CD001");
        assert_eq!(ImageFormat::detect(&iso), ImageFormat::Iso);
        assert_eq!(ImageFormat::detect(&[0u8; 512]), ImageFormat::Raw);
        assert_eq!(ImageFormat::detect(b""), ImageFormat::Raw);
    }

    #[test]
    fn a_disk_boots_with_ssh_forwarded_and_the_console_on_stdio() {
        let a = joined(&machine());
        assert!(a.contains("-accel tcg -cpu max,la57=off,erms=off"), "{a}");
        assert!(a.contains("hostfwd=tcp:127.0.0.1:2222-:22"), "{a}");
        assert!(a.contains("file=/w/disk.qcow2,format=qcow2"), "{a}");
        assert!(a.contains("-serial stdio -monitor none"), "{a}");
        assert!(!a.contains("bootindex=0"), "{a}");
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_a_terminal_gets_the_monitor() {
        let mut m = machine();
        m.kvm = true;
        m.interactive = true;
        let a = joined(&m);
        assert!(a.contains("-accel kvm -cpu host"), "{a}");
        assert!(a.contains("-serial mon:stdio"), "{a}");
        assert!(!a.contains("-monitor none"), "{a}");
    }

    #[test]
    fn an_iso_boots_first_read_only_and_the_seed_is_attached() {
        let mut m = machine();
        m.iso = Some("/i/tandem.iso".into());
        m.seed = Some("/w/seed.img".into());
        let a = joined(&m);
        let iso = a.find("file=/i/tandem.iso,format=raw,if=none,id=iso,readonly=on");
        let disk = a.find("file=/w/disk.qcow2");
        assert!(iso.is_some() && iso < disk, "{a}");
        assert!(a.contains("drive=iso,bootindex=0"), "{a}");
        assert!(
            a.contains("file=/w/seed.img,format=raw,if=virtio,readonly=on"),
            "{a}"
        );
    }
}
