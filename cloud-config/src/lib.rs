//! The CoreOS cloud-config dialect as Tandem reads it: parsed with the
//! position of every node, checked key by key, typed into a model, and its
//! systemd units translated into Tandem service descriptions. Pure logic:
//! the only I/O is [`command`], the `config validate` both command lines
//! (`tandem`, `tandemctl`) run.
//!
//! ```
//! let v = cloud_config::validate("#cloud-config\nhostname: web-1\nunits: []\n");
//! assert!(!v.report.valid());
//! let d = &v.report.diagnostics[0];
//! assert_eq!((d.line, d.column), (3, 1));
//! assert_eq!(d.message, "`units` belongs under `coreos:`, not at the top level");
//! assert_eq!(v.config.hostname.as_deref(), Some("web-1"));
//! ```
//!
//! Modules, one concept each: [`yaml`] (the tree with positions), [`keys`]
//! (which keys go where), [`model`], [`validate`], [`files`] (paths, modes,
//! owners, encodings), [`substitute`] (`$private_ipv4` and friends),
//! [`unit`] (systemd unit files), [`exec`] (command-line quoting),
//! [`translate`] (unit → Tandem service), [`diagnostics`], [`command`].

#![warn(missing_docs)]

pub mod command;
pub mod diagnostics;
mod error;
pub mod exec;
pub mod files;
pub mod keys;
pub mod model;
pub mod substitute;
pub mod translate;
pub mod unit;
pub mod validate;
pub mod yaml;

pub use diagnostics::{Diagnostic, Report, Severity};
pub use error::Error;
pub use model::CloudConfig;
pub use translate::TranslatedService;
pub use validate::{Validation, validate};
