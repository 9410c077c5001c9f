//! Console lines. The early init prefixes them with `tandem-init: `, the
//! system init with `tandem: ` (the markers in docs/boot-chain.md). Each line
//! goes out in one write so that lines from different threads never mix
//! ([`tandem_contract::log`], which the daemons use too).

pub use tandem_contract::log::{EARLY, SYSTEM, line};

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
