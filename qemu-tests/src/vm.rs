//! A QEMU machine: OVMF (pflash code + a private copy of the vars), TCG,
//! virtio disk and network (user mode, with host port forwards), the serial
//! console on stdio, captured to a log file with arrival times. Or, for a
//! system that is not Tandem's (the Debian 12 peer of `cargo xtask bench
//! boot`), the same machine started by a direct kernel boot: QEMU loads a
//! kernel and an initramfs itself, without firmware or bootloader.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::disk::Disk;

/// OVMF firmware code (read-only pflash).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// OVMF variable store template, copied per machine.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// How to start a machine.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Name used in messages and log file names.
    pub name: String,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Host port → guest port forwards (TCP, on 127.0.0.1).
    pub forwards: Vec<(u16, u16)>,
    /// Extra options of the user network (`net=169.254.169.0/24`,
    /// `guestfwd=…`).
    pub net_options: Vec<String>,
    /// Extra QEMU arguments.
    pub extra: Vec<String>,
    /// Also copy the console to stderr as it arrives (demo, debugging).
    pub echo: bool,
    /// Start this kernel directly instead of OVMF and the disk's bootloader.
    pub direct_boot: Option<DirectBoot>,
}

/// A direct kernel boot (`-kernel`, `-initrd`, `-append`): QEMU's own
/// BIOS loads them, no UEFI firmware and no bootloader run.
#[derive(Clone, Debug)]
pub struct DirectBoot {
    /// The kernel image (`vmlinuz`).
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
}

impl VmConfig {
    /// A machine with 1 GiB and networking.
    pub fn new(name: &str) -> Self {
        VmConfig {
            name: name.into(),
            memory_mib: 1024,
            forwards: Vec::new(),
            net_options: Vec::new(),
            extra: Vec::new(),
            echo: std::env::var_os("TANDEM_ECHO_CONSOLE").is_some(),
            direct_boot: None,
        }
    }
}

/// A free port on the host's loopback, for a QEMU port forward.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One console line and when it arrived (since QEMU started).
#[derive(Clone, Debug)]
pub struct Line {
    /// Arrival time.
    pub at: Duration,
    /// Text without the line ending.
    pub text: String,
}

#[derive(Default)]
struct Console {
    text: String,
    lines: Vec<Line>,
    /// Where each of `lines` ends in `text` (the offset of its `\n`), to
    /// find a match's own line: a line printed at every boot (`system
    /// ready`) has the same text each time.
    ends: Vec<usize>,
    partial: String,
    closed: bool,
}

impl Console {
    /// When the line ending at `end` (its `\n`'s offset) arrived.
    fn arrival(&self, end: usize) -> Duration {
        self.ends
            .iter()
            .position(|&e| e >= end)
            .and_then(|i| self.lines.get(i))
            .map_or(Duration::ZERO, |l| l.at)
    }
}

/// A running machine. Dropping it kills QEMU.
pub struct Vm {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    console: Arc<(Mutex<Console>, Condvar)>,
    cursor: usize,
    log: PathBuf,
    _vars: tempfile::TempDir,
    next_token: u32,
    started: Instant,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vm({})", self.name)
    }
}

impl Vm {
    /// Starts QEMU on `disk`.
    pub fn start(cfg: &VmConfig, disk: &Disk) -> Result<Vm> {
        let vars = tempfile::tempdir()?;
        let vars_path = vars.path().join("OVMF_VARS.fd");
        if cfg.direct_boot.is_none() {
            std::fs::copy(OVMF_VARS, &vars_path)
                .with_context(|| format!("copy {OVMF_VARS} (package ovmf)"))?;
        }
        let log = log_dir().join(format!("{}.log", cfg.name));
        let mut net = String::from("user,id=n0");
        for (host, guest) in &cfg.forwards {
            net.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        for option in &cfg.net_options {
            net.push(',');
            net.push_str(option);
        }
        let mut cmd = Command::new("qemu-system-x86_64");
        // Every CPU feature TCG emulates except two that only cost under
        // emulation. 5-level paging: no cloud instance type exposes it, and
        // each extra page-table level makes every TLB miss dearer (about a
        // fifth of the boot time on these machines). ERMS: with it the
        // kernel copies and clears memory with `rep movsb`/`rep stosb`,
        // which TCG runs one byte per emulated iteration; without it, 8
        // bytes (loading the initramfs modules, which copies each file
        // twice, took 12 % less in 8 paired boots).
        cmd.args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-cpu",
            "max,la57=off,erms=off",
            "-smp",
            "1",
        ])
        .args(["-m", &cfg.memory_mib.to_string()]);
        match &cfg.direct_boot {
            None => cmd
                .args([
                    "-drive",
                    &format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                ])
                .args([
                    "-drive",
                    &format!("if=pflash,format=raw,file={}", vars_path.display()),
                ]),
            Some(boot) => cmd
                .arg("-kernel")
                .arg(&boot.kernel)
                .arg("-initrd")
                .arg(&boot.initrd)
                .args(["-append", &boot.cmdline]),
        };
        cmd.args([
            "-drive",
            &format!(
                "file={},format={},if=virtio",
                disk.path().display(),
                disk.format()
            ),
        ])
        .args(["-netdev", &net, "-device", "virtio-net-pci,netdev=n0"])
        .args([
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-no-user-config",
        ])
        .args(&cfg.extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .context("cannot start qemu-system-x86_64 (package qemu-system-x86)")?;
        let stdout = child.stdout.take().context("no QEMU stdout")?;
        let stdin = child.stdin.take();
        let console: Arc<(Mutex<Console>, Condvar)> = Arc::default();
        let started = Instant::now();
        let reader = Arc::clone(&console);
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let echo = cfg.echo;
        std::thread::spawn(move || pump(stdout, log_file, started, &reader, echo));
        Ok(Vm {
            name: cfg.name.clone(),
            child,
            stdin,
            console,
            cursor: 0,
            log,
            _vars: vars,
            next_token: 0,
            started,
        })
    }

    /// When QEMU was started: a [`Line::at`] is relative to it (to order
    /// the lines of several machines).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits until a console line after the last match contains `needle`;
    /// returns that line. On timeout or QEMU exit, the error carries the
    /// console's tail.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<Line> {
        self.wait_for_any(&[needle], timeout).map(|(_, l)| l)
    }

    /// Like [`Vm::wait_for`] for the first of several needles; returns its
    /// index and the line.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> Result<(usize, Line)> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.console;
        let mut c = lock
            .lock()
            .map_err(|_| anyhow::anyhow!("console lock poisoned"))?;
        loop {
            // Only whole lines: a line still arriving could match a prefix.
            let complete = c.text.rfind('\n').map_or(0, |p| p + 1);
            let rest = c
                .text
                .get(self.cursor.min(complete)..complete)
                .unwrap_or_default();
            let hit = needles
                .iter()
                .enumerate()
                .filter_map(|(i, n)| rest.find(n).map(|pos| (pos, i)))
                .min();
            if let Some((pos, i)) = hit {
                let abs = self.cursor + pos;
                let line_start = c.text[..abs].rfind('\n').map_or(0, |p| p + 1);
                let line_end = c.text[abs..].find('\n').map_or(c.text.len(), |p| abs + p);
                let text = c.text[line_start..line_end]
                    .trim_end_matches('\r')
                    .to_string();
                let at = c.arrival(line_end);
                self.cursor = line_end;
                return Ok((i, Line { at, text }));
            }
            let now = Instant::now();
            if c.closed || now >= deadline {
                let why = if c.closed { "QEMU exited" } else { "timed out" };
                let tail = tail_of(&c.text, 40);
                drop(c);
                bail!(
                    "{}: {why} after waiting {timeout:?} for {needles:?}; console tail ({}):\n{tail}",
                    self.name,
                    self.log.display()
                );
            }
            c = cvar
                .wait_timeout(c, deadline - now)
                .map_err(|_| anyhow::anyhow!("console lock poisoned"))?
                .0;
        }
    }

    /// Types `text` on the serial console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("QEMU stdin closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Runs a shell command on the serial console and returns its output;
    /// a non-zero exit status is an error carrying the output.
    pub fn run(&mut self, command: &str, timeout: Duration) -> Result<String> {
        let (status, out) = self.run_status(command, timeout)?;
        if status != 0 {
            bail!("{}: `{command}` exited {status}: {out}", self.name);
        }
        Ok(out)
    }

    /// Runs a shell command; returns its exit status and output.
    pub fn run_status(&mut self, command: &str, timeout: Duration) -> Result<(i32, String)> {
        self.next_token += 1;
        let token = format!("@@{}-{}@@", std::process::id(), self.next_token);
        // The echoed command line shows `{token}$?`; the output shows the digits.
        self.send(&format!("{command}; echo {token}$?\n"))?;
        let start = self.cursor;
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.wait_for(&token, deadline.saturating_duration_since(Instant::now()))?;
            let Some(after) = line.text.split(&token).nth(1) else {
                continue;
            };
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            let Ok(status) = digits.parse::<i32>() else {
                continue;
            };
            let (lock, _) = &*self.console;
            let c = lock
                .lock()
                .map_err(|_| anyhow::anyhow!("console lock poisoned"))?;
            let span = &c.text[start.min(c.text.len())..self.cursor.min(c.text.len())];
            // Drop the echoed command line (the terminal may echo it twice:
            // once as typed, once redrawn by the shell) and the status line.
            let lines: Vec<&str> = span.lines().map(|l| l.trim_end_matches('\r')).collect();
            let body_start = lines
                .iter()
                .rposition(|l| l.contains(&format!("{token}$?")))
                .map_or(0, |p| p + 1);
            let body_end = lines.len().saturating_sub(1).max(body_start);
            return Ok((status, lines[body_start..body_end].join("\n")));
        }
    }

    /// The update engine's status (`tandemctl update status --json`).
    pub fn update_status(&mut self) -> Result<serde_json::Value> {
        let out = self.run("tandemctl update status --json", Duration::from_secs(30))?;
        serde_json::from_str(&out)
            .with_context(|| format!("{}: update status is not JSON: {out}", self.name))
    }

    /// Polls the update status until `done` accepts it; returns that status.
    /// The error names what was awaited and the last status seen.
    pub fn wait_update(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            // A status request can fail while the daemon (re)starts.
            if let Ok(s) = self.update_status() {
                if done(&s) {
                    return Ok(s);
                }
                last = s;
            }
            std::thread::sleep(Duration::from_millis(700));
        }
        bail!(
            "{}: waited {timeout:?} for {what}; last update status:\n{last:#}\nconsole tail:\n{}",
            self.name,
            self.tail(20)
        )
    }

    /// Waits for QEMU to exit by itself (e.g. after poweroff).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{}: QEMU still running after {timeout:?}; console tail:\n{}",
                    self.name,
                    self.tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills QEMU at once (power cut).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last `n` lines of the console.
    pub fn tail(&self, n: usize) -> String {
        let (lock, _) = &*self.console;
        lock.lock().map(|c| tail_of(&c.text, n)).unwrap_or_default()
    }

    /// When the machine went down for a reboot and came back in slot B on
    /// `version` (as instants), from its console.
    pub fn reboot_window(&self, version: &str) -> Result<(Instant, Instant)> {
        let lines = self.lines();
        let down = lines
            .iter()
            .find(|l| l.text.contains("tandem: stopping services for reboot"))
            .context("no reboot on the console")?;
        let up = lines
            .iter()
            .find(|l| {
                l.text
                    .contains(&format!("tandem: system ready (slot B, version {version})"))
            })
            .context("not back on the new version")?;
        Ok((self.started + down.at, self.started + up.at))
    }

    /// All console lines so far, with arrival times.
    pub fn lines(&self) -> Vec<Line> {
        let (lock, _) = &*self.console;
        lock.lock().map(|c| c.lines.clone()).unwrap_or_default()
    }

    /// The console log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pump(
    mut stdout: impl Read,
    mut log: std::fs::File,
    started: Instant,
    console: &(Mutex<Console>, Condvar),
    echo: bool,
) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let (lock, cvar) = console;
        let Ok(mut c) = lock.lock() else { return };
        if n == 0 {
            c.closed = true;
            cvar.notify_all();
            return;
        }
        let _ = log.write_all(&buf[..n]);
        if echo {
            let _ = std::io::stderr().write_all(&buf[..n]);
        }
        let chunk = String::from_utf8_lossy(&buf[..n]).into_owned();
        let at = started.elapsed();
        // Where the unfinished line starts in `text`.
        let mut start = c.text.len() - c.partial.len();
        c.text.push_str(&chunk);
        c.partial.push_str(&chunk);
        while let Some(p) = c.partial.find('\n') {
            let line: String = c.partial.drain(..=p).collect();
            let text = line.trim_end_matches(['\n', '\r']).to_string();
            c.lines.push(Line { at, text });
            c.ends.push(start + p);
            start += p + 1;
        }
        cvar.notify_all();
    }
}

/// Where the time of one boot went, from the console markers' arrival
/// times (see docs/boot-chain.md).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootTimes {
    /// QEMU start to the bootloader's decision line.
    pub firmware_and_bootloader: Duration,
    /// Decision line to `tandem-init: initramfs started`.
    pub kernel: Duration,
    /// Initramfs start to `/usr verified …, switching root`.
    pub initramfs: Duration,
    /// Switch root to `tandem: system ready`.
    pub system_init: Duration,
}

impl BootTimes {
    /// The split of the first complete boot in `lines`, if there is one.
    pub fn from_lines(lines: &[Line]) -> Option<BootTimes> {
        let at = |needle: &str, after: Duration| {
            lines
                .iter()
                .find(|l| l.at >= after && l.text.contains(needle))
                .map(|l| l.at)
        };
        let boot = at("tandem-boot: booting slot", Duration::ZERO)?;
        let init = at("tandem-init: initramfs started", boot)?;
        let switch = at("switching root", init)?;
        let ready = at("tandem: system ready", switch)?;
        Some(BootTimes {
            firmware_and_bootloader: boot,
            kernel: init - boot,
            initramfs: switch - init,
            system_init: ready - switch,
        })
    }

    /// QEMU start to system ready.
    pub fn total(&self) -> Duration {
        self.firmware_and_bootloader + self.kernel + self.initramfs + self.system_init
    }
}

fn tail_of(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where console logs go: `$TANDEM_LOG_DIR` or `target/tandem/logs`.
pub fn log_dir() -> PathBuf {
    let dir = std::env::var_os("TANDEM_LOG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tandem/logs"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader giving one chunk per read, with a pause before each.
    struct Slow(Vec<&'static str>);

    impl Read for Slow {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(Duration::from_millis(30));
            let chunk = self.0.remove(0).as_bytes();
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn a_repeated_line_has_its_own_arrival_time() {
        let console: (Mutex<Console>, Condvar) = Default::default();
        let log = tempfile::tempfile().expect("log");
        let reader = Slow(vec!["boot\nready", " (A)\n", "reboot\nready (A)\n"]);
        pump(reader, log, Instant::now(), &console, false);
        let c = console.0.lock().expect("lock");
        let first = c.text.find("ready (A)\n").expect("first") + "ready (A)".len();
        let second = c.text.rfind("ready (A)\n").expect("second") + "ready (A)".len();
        assert!(c.closed);
        assert_eq!(c.lines.len(), 4);
        assert_eq!(c.arrival(first), c.lines[1].at);
        assert_eq!(c.arrival(second), c.lines[3].at);
        assert!(c.arrival(second) > c.arrival(first));
    }
}
