//! The fleet view: what `tandem dashboard` shows an operator. Everything
//! comes from what Tandem already keeps: each node's record, the reboot
//! semaphores and the failed versions in etcd, and each channel's signed
//! pointer in the update repository.
//!
//! - [`view`] turns one [`view::Snapshot`] of those into a [`view::FleetView`]:
//!   per channel the version served, its rollout and how far it has come;
//!   per node its state and, in one sentence ([`reason`]), why it is there;
//!   the locks and the failed versions. Pure: no clock, no I/O.
//! - [`memory`] remembers nodes whose record expired, so the page can say
//!   "not seen for 3 min" instead of forgetting them.
//! - [`page`] renders the view as HTML (the page and the fragment it
//!   refreshes itself with), [`metrics`] as Prometheus text.
//! - [`source`] reads etcd and the repository (directory or URL): the only
//!   I/O here. The HTTP server is the `tandem` binary's (`tandem dashboard`).
#![warn(missing_docs)]

pub mod memory;
pub mod metrics;
pub mod page;
pub mod reason;
pub mod source;
pub mod view;
mod when;
