//! What the agent itself can fail at: setting up its etcd client and lock
//! backend from agent.toml, and the etcd reads and lock operations of its
//! loop. Each variant is one place that fails, names what failed on what
//! (the group, the version, the file) and carries the cause. The clients
//! keep their own errors ([`crate::etcd::Error`], [`crate::lock::Error`],
//! [`crate::fleetlock::FleetLockError`]), wrapped here with that context.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ConfigError;
use crate::etcd;
use crate::fleetlock::FleetLockError;
use crate::lock;

/// What the agent can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `[etcd] username` is set, `password-file` is not.
    #[error(
        "[etcd] username {user:?} is set without password-file: add password-file (a file holding the password) under [etcd] in agent.toml"
    )]
    NoPasswordFile {
        /// The user name.
        user: String,
    },
    /// The etcd password file cannot be read.
    #[error(
        "cannot read the etcd password file {}: {source}: check [etcd] password-file in agent.toml",
        path.display()
    )]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No etcd client can be made from `[etcd]` (endpoints, TLS files).
    #[error("{0}")]
    EtcdClient(#[source] etcd::Error),
    /// `[etcd]` was not usable when agent.toml was read (kept for every
    /// round until agent.toml changes).
    #[error("[etcd] settings in agent.toml: {0}")]
    EtcdSettings(#[source] Arc<Error>),
    /// agent.toml has errors; the last good configuration stays in force.
    #[error("agent.toml is not valid: {}", joined(.0))]
    Config(Vec<ConfigError>),
    /// Strategy `etcd-lock` without `[etcd] endpoints`.
    #[error(
        "no [etcd] endpoints in agent.toml (/etc/tandem/agent.toml or the OEM partition): reboot-strategy etcd-lock needs them"
    )]
    NoEtcd,
    /// Strategy `fleetlock` without `[fleetlock] url`.
    #[error(
        "no [fleetlock] url in agent.toml: reboot-strategy fleetlock needs url = \"http://<host>:<port>\" under [fleetlock]"
    )]
    NoFleetLockUrl,
    /// No FleetLock client can be made (the URL, the machine id, the group).
    #[error("{0}")]
    FleetLockClient(#[source] FleetLockError),
    /// Reading the cluster's failed versions from etcd failed.
    #[error("reading the cluster's failed versions: {0}")]
    ReadFailedVersions(#[source] etcd::Error),
    /// Reading whether this node holds group's reboot lock failed.
    #[error("reading the reboot lock of group {group:?}: {source}")]
    LockStatus {
        /// The reboot group.
        group: String,
        /// Why.
        source: Box<lock::Error>,
    },
    /// Checking whether this boot's rollback is recorded in etcd failed.
    #[error("checking whether the rollback of {version} is recorded in etcd: {source}")]
    RollbackRecorded {
        /// The version that rolled back.
        version: tandem_contract::Version,
        /// Why.
        source: Box<etcd::Error>,
    },
    /// Taking a slot of the group's etcd semaphore failed.
    #[error("group {group:?}: {source}")]
    TakeLock {
        /// The reboot group.
        group: String,
        /// Why.
        source: Box<lock::Error>,
    },
    /// Giving the slot of the group's etcd semaphore back failed.
    #[error("group {group:?}: {source}")]
    ReleaseLock {
        /// The reboot group.
        group: String,
        /// Why.
        source: Box<lock::Error>,
    },
    /// The FleetLock server refused or did not answer `pre-reboot`.
    #[error("{0}")]
    TakeFleetLock(#[source] FleetLockError),
    /// The FleetLock server refused or did not answer `steady-state`.
    #[error("{0}")]
    ReleaseFleetLock(#[source] FleetLockError),
}

/// The errors of agent.toml's layers, one after the other.
fn joined(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What is wrong with a layer of agent.toml, or with their combination
/// ([`ConfigError`] says which file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    /// The file cannot be read.
    #[error("{0}")]
    Read(#[source] Shared<updater::Error>),
    /// Not TOML, or a key or value agent.toml does not have.
    #[error("{}", .0.to_string().trim_end().replace('\n', " "))]
    Toml(#[source] toml::de::Error),
    /// A group name FleetLock would refuse.
    #[error(
        "group {0:?} is invalid: letters, digits, '.' and '-' (at most 63; the FleetLock rule, so one name works for both)"
    )]
    Group(String),
    /// The window's start or timezone, or the window as a whole.
    #[error("{0}")]
    Window(#[source] crate::window::WindowError),
    /// The window's length is not a duration.
    #[error("window length: {0}")]
    WindowLength(String),
    /// A URL that is not `http://` or `https://`.
    #[error("{key} {url:?} must start with http:// or https://")]
    UrlScheme {
        /// `etcd endpoint` or `fleetlock url`.
        key: &'static str,
        /// The URL.
        url: String,
    },
    /// A URL without a host.
    #[error("{key} {url:?} names no host")]
    UrlNoHost {
        /// `etcd endpoint` or `fleetlock url`.
        key: &'static str,
        /// The URL.
        url: String,
    },
    /// A file setting that is not an absolute path.
    #[error("{key} {:?} must be an absolute path", path.display())]
    RelativePath {
        /// `password-file`, `ca-file`, `cert-file` or `key-file`.
        key: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// An etcd user name that cannot be one.
    #[error("etcd username {0:?} is invalid")]
    Username(String),
    /// `[window] length` without `start`.
    #[error(
        "[window] has a length but no start: add start = \"Thu 23:00\" (or \"23:00\" for every day)"
    )]
    LengthWithoutStart,
    /// `[window] start` without `length`.
    #[error("[window] has a start but no length: add length = \"2h\" (or remove the window)")]
    StartWithoutLength,
    /// `[etcd]` settings without endpoints.
    #[error("[etcd] has settings but no endpoints: add endpoints = [\"http://host:2379\"]")]
    EtcdWithoutEndpoints,
    /// `username` without `password-file` or the other way round.
    #[error("[etcd] username and password-file go together")]
    UsernameWithoutPasswordFile,
    /// `cert-file` without `key-file` or the other way round.
    #[error("[etcd] cert-file and key-file go together")]
    CertWithoutKey,
}

/// An error of another crate that can be cloned and compared (two are
/// equal when they say the same), for errors that must be `Clone` and
/// `Eq` ([`ConfigProblem::Read`], [`crate::semaphore::Error::Format`]).
#[derive(Debug)]
pub struct Shared<E>(pub Arc<E>);

impl<E> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for Shared<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl<E: std::fmt::Display> PartialEq for Shared<E> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl<E: std::fmt::Display> Eq for Shared<E> {}

impl<E> From<E> for Shared<E> {
    fn from(e: E) -> Self {
        Shared(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{EtcdSettings, read_password};
    use crate::daemon::connect;

    #[test]
    fn setup_errors_name_the_setting_and_the_file() {
        let s = EtcdSettings {
            endpoints: vec!["http://h:2379".into()],
            username: Some("tandem".into()),
            ..EtcdSettings::default()
        };
        let e = connect(&s).expect_err("no password file");
        assert!(matches!(e, Error::NoPasswordFile { .. }), "{e:?}");
        assert!(e.to_string().contains("password-file"), "{e}");
        let e = read_password(Path::new("/nonexistent/etcd-password")).expect_err("missing");
        let text = e.to_string();
        assert!(
            matches!(e, Error::PasswordFile { .. })
                && text.contains("/nonexistent/etcd-password")
                && text.contains("[etcd] password-file"),
            "{text}"
        );
        let s = EtcdSettings {
            endpoints: vec!["ftp://h".into()],
            ..EtcdSettings::default()
        };
        let e = connect(&s).expect_err("not a URL");
        assert!(
            matches!(e, Error::EtcdClient(etcd::Error::Endpoint { .. })),
            "{e:?}"
        );
    }

    #[test]
    fn shared_errors_compare_by_what_they_say() {
        let a: Shared<std::io::Error> = std::io::Error::other("x").into();
        let b: Shared<std::io::Error> = std::io::Error::other("x").into();
        let c: Shared<std::io::Error> = std::io::Error::other("y").into();
        assert_eq!(a, b);
        assert_eq!(a.clone(), a);
        assert_ne!(a, c);
    }
}
