//! The QEMU test harness: boots real Tandem images under OVMF (TCG), drives
//! them through the serial console and inspects their disks from the host.
//!
//! - [`env`]: the artefacts `cargo xtask test` built, found through the
//!   environment;
//! - [`disk`]: copy-on-write overlays and private copies of an image, and
//!   reading its partition table from the host between boots;
//! - [`vm`]: a running machine, its console log, waiting for lines and
//!   running shell commands; under OVMF, or a direct kernel boot;
//! - [`debian_root`]: a clean Debian 12 root made by debootstrap, commands
//!   run in it with `chroot`;
//! - [`fixtures`]: signing keys and a set of image versions built once and
//!   shared by every scenario, and update repositories made from them;
//! - [`server`]: `tandem serve` on the host, its request log, and a proxy
//!   that stalls, drops or throttles connections;
//! - [`lab`]: a repository, its server and nodes pointed at it, for the
//!   update scenarios;
//! - [`examples`]: the repository's example images built for a test;
//! - [`registry`]: a container registry on the host and OCI images pushed to it;
//! - [`container_host`]: the container host example deployed against such a
//!   registry, its workload and HTTP checks from the host;
//! - [`etcd`]: real etcd members on loopback (killed, restarted, stopped)
//!   for the reboot-coordination tests and `cargo xtask bench lock`, and a
//!   key's history read back from etcd;
//! - [`web`]: Debian's nginx serving a repository over HTTPS, tinyproxy
//!   as a node's only way out;
//! - [`dashboard`]: `tandem dashboard`, its pages in a real headless
//!   Chromium, its `/metrics` through the Prometheus client's parser.
//!
//! The scenarios live in `tests/`, one file each.
#![warn(missing_docs)]

pub mod container_host;
pub mod dashboard;
pub mod debian_root;
pub mod disk;
pub mod env;
pub mod etcd;
pub mod examples;
pub mod fixtures;
pub mod lab;
pub mod registry;
pub mod seed;
pub mod server;
pub mod ssh;
pub mod vm;
pub mod web;

/// The agent library (etcd client, semaphore), for `cargo xtask bench lock`.
pub use agent;
pub use disk::Disk;
pub use env::Env;
pub use vm::{Vm, VmConfig};
