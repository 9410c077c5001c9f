//! Running the standard Debian tools the builder wraps (mkfs.erofs, mke2fs,
//! debugfs, dpkg-deb, apt), with errors that say which package is missing or
//! what the tool said.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// A tool and the Debian package that provides it.
#[derive(Clone, Copy, Debug)]
pub struct Tool {
    /// Program name.
    pub program: &'static str,
    /// Debian package.
    pub package: &'static str,
}

/// `mkfs.erofs`.
pub const MKFS_EROFS: Tool = Tool {
    program: "mkfs.erofs",
    package: "erofs-utils",
};
/// `mke2fs`.
pub const MKE2FS: Tool = Tool {
    program: "mke2fs",
    package: "e2fsprogs",
};
/// `debugfs`.
pub const DEBUGFS: Tool = Tool {
    program: "debugfs",
    package: "e2fsprogs",
};
/// `dpkg-deb`.
pub const DPKG_DEB: Tool = Tool {
    program: "dpkg-deb",
    package: "dpkg",
};
/// `mkfs.vfat`.
pub const MKFS_VFAT: Tool = Tool {
    program: "mkfs.vfat",
    package: "dosfstools",
};
/// `mmd` (mtools).
pub const MMD: Tool = Tool {
    program: "mmd",
    package: "mtools",
};
/// `mcopy` (mtools).
pub const MCOPY: Tool = Tool {
    program: "mcopy",
    package: "mtools",
};
/// `apt-cache`.
pub const APT_CACHE: Tool = Tool {
    program: "apt-cache",
    package: "apt",
};
/// `apt-get`.
pub const APT_GET: Tool = Tool {
    program: "apt-get",
    package: "apt",
};

impl Tool {
    /// A command for this tool.
    pub fn command(&self) -> Command {
        let mut c = Command::new(self.program);
        // Tools must not prompt or localise their messages.
        c.env("LC_ALL", "C").stdin(Stdio::null());
        c
    }

    /// Runs `cmd` to completion, capturing output; a non-zero exit is an
    /// error carrying the tool's stderr.
    pub fn run(&self, cmd: &mut Command) -> Result<Output> {
        let out = cmd.output().map_err(|e| self.spawn_error(e))?;
        if !out.status.success() {
            return Err(self.failed(cmd, &out));
        }
        Ok(out)
    }

    /// Runs `program args…` and returns stdout as text.
    pub fn run_args<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        let out = self.run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The error for a spawn failure: missing tool or something else.
    pub fn spawn_error(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::ToolMissing {
                tool: self.program.into(),
                package: self.package.into(),
            }
        } else {
            Error::ToolFailed {
                command: self.program.into(),
                status: "could not start".into(),
                stderr: e.to_string(),
            }
        }
    }

    /// The error for a tool that exited unsuccessfully.
    pub fn failed(&self, cmd: &Command, out: &Output) -> Error {
        Error::ToolFailed {
            command: command_line(cmd),
            status: out.status.to_string(),
            stderr: last_lines(&out.stderr, 8),
        }
    }
}

fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last `n` non-empty lines of a tool's output, for error messages.
pub fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
