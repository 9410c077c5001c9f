//! What can go wrong in `tandemctl`: a node-level step (reading a file, the
//! partition table, a system call), asking PID 1 over its control socket,
//! or a command of the update daemon or of the cluster.

/// A failed `tandemctl` command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the node's state or signalling PID 1 failed.
    #[error(transparent)]
    Node(#[from] initramfs::Error),
    /// `tandemctl update` failed.
    #[error(transparent)]
    Update(#[from] updater::Error),
    /// A cluster or lock command failed (`agent::cli`).
    #[error(transparent)]
    Cluster(#[from] agent::cli::Error),
    /// PID 1 could not be asked (`tandemctl stop|start|restart`).
    #[error(transparent)]
    Control(#[from] tandem_contract::control::CallError),
    /// `tandemctl install` failed.
    #[error(transparent)]
    Install(#[from] updater::install::InstallError),
    /// The status could not be written as JSON.
    #[error("writing the status as JSON failed: {0}")]
    Json(#[from] serde_json::Error),
    /// tandemctl was called wrongly.
    #[error("{0}")]
    Usage(String),
}
