//! What can fail in the pure parts: the YAML, a unit file, a command line's
//! quoting, a file's encoded content. The validator turns each into a
//! diagnostic with the position it happened at.

/// A failure of one of the parsers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The YAML is not well formed.
    #[error("line {line}, column {column}: {message}")]
    Yaml {
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// What the YAML parser said.
        message: String,
    },
    /// A line of a systemd unit file cannot be read.
    #[error("unit file line {line}: {message}")]
    Unit {
        /// Line within the unit's text, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A command line (`ExecStart=`) or an assignment list (`Environment=`)
    /// has unbalanced quotes or a bad escape.
    #[error("{0}")]
    Quoting(String),
    /// A write_files `content` does not decode with its `encoding`.
    #[error("content does not decode as {encoding}: {reason}")]
    Content {
        /// The encoding, as written.
        encoding: String,
        /// Why not.
        reason: String,
    },
}
