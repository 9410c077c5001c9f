//! Services: declared in TOML files, supervised by the system init.
//!
//! Image services live in `/usr/lib/tandem/services/<name>.toml`; a file of
//! the same name in `/etc/tandem/services/` replaces the image's entirely
//! (`enabled = false` there turns an image service off). The format is
//! documented in docs/node-configuration.md.
//!
//! The parts that decide (file parsing, merging, start order, restart
//! policy and backoff) are pure; [`Supervisor`] adds spawning, cgroups and
//! bookkeeping.
//!
//! - [`spec`]: the file format, layers and the built-in console;
//! - [`order`]: `after`, which services may start now;
//! - [`restart`]: restart policy and backoff;
//! - [`supervisor`]: the services' states, driven through
//!   [`Syscall`](crate::syscall::Syscall);
//! - [`spawn`](mod@spawn): starting a service's process.

pub mod order;
pub mod restart;
pub mod spawn;
pub mod spec;
pub mod supervisor;

pub use restart::{Exit, next_streak, restart_after};
pub use spawn::{console_tty, spawn, spawn_stop};
#[cfg(test)]
pub(crate) use spec::test_def;
pub use spec::{
    Limits, Restart, RunsOn, ServiceDef, ServiceSpec, ServiceType, StdioMode, apply_runs_on,
    builtin_console, merge, parse, parse_size, read_dir, valid_name,
};
pub use supervisor::{Event, StartNow, StopStep, Supervisor};

/// Services that come with the image.
pub const IMAGE_DIR: &str = "/usr/lib/tandem/services";
/// Administrator's services and overrides.
pub const ADMIN_DIR: &str = "/etc/tandem/services";
/// Where `stdio = "log"` output goes.
pub const LOG_DIR: &str = "/run/tandem/log";
/// Default PATH of services.
pub const DEFAULT_PATH: &str = "/usr/bin:/usr/sbin:/bin:/sbin";
