//! How a node's `/etc` is filled without maintainer scripts: the image
//! carries the packages' `/etc` files as factory copies, which the system
//! init copies into `/etc` when missing (never over anything there); users
//! and groups come from [`crate::sysusers`] and [`crate::accounts`];
//! directories, files and links outside `/etc` from `tmpfiles.d` lines.
//!
//! Per-node secrets are never in the image: SSH host keys are made on the
//! node at first boot, the machine id by the system init.

/// The packages' `/etc` files, as the image builder places them; copied to
/// `/etc` at boot where missing.
pub const FACTORY_ETC: &str = "/usr/share/factory/etc";
/// Where [`FACTORY_ETC`] is copied to.
pub const ETC: &str = "/etc";
/// The image's `tmpfiles.d` lines (packages').
pub const TMPFILES_IMAGE_DIR: &str = "/usr/lib/tmpfiles.d";
/// The administrator's `tmpfiles.d` lines: a file here replaces the image's
/// file of the same name.
pub const TMPFILES_ADMIN_DIR: &str = "/etc/tmpfiles.d";
/// Per-user SSH keys of the image definition's users, one file per user
/// name (as factory copies under [`FACTORY_ETC`]): Tandem's sshd reads
/// `AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u`.
pub const AUTHORIZED_KEYS_DIR: &str = "/etc/ssh/authorized_keys.d";

/// Whether a path relative to `/etc` (`ssh/ssh_host_ed25519_key`) is a
/// per-node secret or identity that an image must not carry: SSH host keys
/// (`ssh/ssh_host_*`) and the machine id.
pub fn node_secret(relative: &str) -> bool {
    let rel = relative.trim_start_matches('/');
    rel == "machine-id"
        || rel
            .strip_prefix("ssh/")
            .is_some_and(|name| name.starts_with("ssh_host_") && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets() {
        for secret in [
            "ssh/ssh_host_ed25519_key",
            "ssh/ssh_host_rsa_key.pub",
            "/ssh/ssh_host_ecdsa_key",
            "machine-id",
        ] {
            assert!(node_secret(secret), "{secret}");
        }
        for fine in [
            "ssh/sshd_config",
            "ssh/moduli",
            "ssh/sshd_config.d/ssh_host_keys.conf",
            "sshx/ssh_host_key",
            "machine-info",
            "dbus-1/machine-id",
        ] {
            assert!(!node_secret(fine), "{fine}");
        }
    }

    #[test]
    fn factory_is_under_usr() {
        assert!(FACTORY_ETC.starts_with("/usr/"));
        assert!(FACTORY_ETC.ends_with(ETC));
        assert!(AUTHORIZED_KEYS_DIR.starts_with(ETC));
    }
}
