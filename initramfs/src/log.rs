//! Console lines. The early init prefixes them with `tandem-init: `, the
//! system init with `tandem: ` (the markers in docs/boot-chain.md). Each line
//! goes out in one write so that lines from different threads never mix.

use std::fmt;
use std::io::Write;

/// Prefix of the early init's lines.
pub const EARLY: &str = "tandem-init";
/// Prefix of the system init's lines.
pub const SYSTEM: &str = "tandem";

/// Writes `<prefix>: <message>\n` to standard output (the console).
pub fn line(prefix: &str, message: fmt::Arguments<'_>) {
    let text = format!("{prefix}: {message}\n");
    let mut out = std::io::stdout().lock();
    // The console is all there is; if it fails there is nowhere to report it.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// A line from the early init: `tandem-init: ...`.
#[macro_export]
macro_rules! early_log {
    ($($arg:tt)*) => { $crate::log::line($crate::log::EARLY, format_args!($($arg)*)) };
}

/// A line from the system init: `tandem: ...`.
#[macro_export]
macro_rules! system_log {
    ($($arg:tt)*) => { $crate::log::line($crate::log::SYSTEM, format_args!($($arg)*)) };
}
