//! Time: Unix seconds and time since boot; civil dates (for FAT time
//! stamps and status lines) and the duration syntax of update.toml (`1h`,
//! `90s`, `1h30m`, `500ms`) are the contract's ([`tandem_contract::time`]),
//! re-exported here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use tandem_contract::time::{Civil, civil, format_duration, format_unix, parse_duration};

/// Now, Unix seconds.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Time since the kernel started, including suspend (`CLOCK_BOOTTIME`).
pub fn since_boot() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write to.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if r != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
