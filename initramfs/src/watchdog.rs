//! The boot watchdog (/dev/watchdog, softdog in a VM): armed by the early init
//! as soon as its driver is loaded, kept open by PID 1 across the switch
//! root, petted by the system init's main loop, and disarmed (magic close)
//! only on a clean shutdown. A hang anywhere in between ends in a reboot,
//! so the slot's tries counter can work.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// The device node.
pub const DEVICE: &str = "/dev/watchdog";

/// _IOWR('W', 6, int)
const WDIOC_SETTIMEOUT: u64 = 0xC004_5706;
/// _IOR('W', 7, int)
const WDIOC_GETTIMEOUT: u64 = 0x8004_5707;

/// An armed watchdog.
#[derive(Debug)]
pub struct Watchdog {
    file: File,
}

impl Watchdog {
    /// Opens (and thereby arms) the watchdog at `path`.
    pub fn open(path: &Path) -> io::Result<Watchdog> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Watchdog { file })
    }

    /// Resets the timer.
    pub fn pet(&mut self) -> io::Result<()> {
        // Any write pets; it must not contain 'V' (the magic close character).
        self.file.write_all(b"\0")
    }

    /// Sets the timeout; returns what the driver accepted.
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<Duration> {
        let mut secs = libc::c_int::try_from(timeout.as_secs()).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int.
        unsafe { crate::sys::ioctl_ptr(self.file.as_raw_fd(), WDIOC_SETTIMEOUT, &mut secs) }?;
        Ok(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
    }

    /// The current timeout.
    pub fn timeout(&self) -> io::Result<Duration> {
        let mut secs: libc::c_int = 0;
        // SAFETY: WDIOC_GETTIMEOUT writes one int.
        unsafe { crate::sys::ioctl_ptr(self.file.as_raw_fd(), WDIOC_GETTIMEOUT, &mut secs) }?;
        Ok(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
    }

    /// Stops the watchdog: magic close ('V', then close), honoured because
    /// the kernel is built without WATCHDOG_NOWAYOUT.
    pub fn disarm(mut self) -> io::Result<()> {
        self.file.write_all(b"V")
    }
}
