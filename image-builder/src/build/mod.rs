//! `tandem build`: an image definition ([`definition`]) becomes a dual-root
//! GPT disk image and the per-slot artefacts the release side publishes
//! ([`pipeline`] runs the steps).
//!
//! - inputs: [`definition`] (image.toml), [`resolve`] (which Debian
//!   packages: apt's resolver, the base set), [`lockfile`] (image.lock),
//!   [`apt`] (looking up, downloading and unpacking packages), [`kernel`]
//!   (the kernel and its modules), [`tools`] (the host programs the steps
//!   run);
//! - what packages ask for: [`maintscripts`] (their preinst and postinst
//!   read, not run), [`tmpfiles`] (their /var files, declared for boot);
//! - file systems and archives: [`usr_tree`] (the /usr tree), [`erofs`]
//!   (/usr image), [`ext4`] (OEM and ROOT), [`root`] (ROOT's /etc as a
//!   node's first boot would leave it: the factory /etc, the accounts, the
//!   homes), [`fat`] (the ESP), [`cpio`] and [`initrd`] (the initramfs);
//! - the disk: [`layout`] (partition plan, identities) and [`disk`] (GPT);
//! - accounts: [`users`] (the image's users and groups, resolved with
//!   stable ids, and their SSH keys);
//! - the output's description: [`manifest`] (build.json).

pub mod apt;
pub mod cpio;
pub mod definition;
pub mod disk;
pub mod erofs;
pub mod ext4;
pub mod fat;
pub mod initrd;
pub mod kernel;
pub mod layout;
pub mod lockfile;
pub mod maintscripts;
pub mod manifest;
pub mod pipeline;
pub mod resolve;
pub mod root;
pub mod tmpfiles;
pub mod tools;
pub mod users;
pub mod usr_tree;

pub use definition::Definition;
pub use pipeline::{BuildOptions, build};
