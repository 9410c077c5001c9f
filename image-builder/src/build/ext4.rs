//! The ROOT file system: ext4 made by `mke2fs` and filled by `debugfs`
//! (both e2fsprogs, no mounts, no root). `E2FSPROGS_FAKE_TIME` pins every
//! timestamp and the UUID and hash seed are fixed, so the result is
//! reproducible (`mke2fs -d` copies host ctimes and is not).

use std::path::{Path, PathBuf};

use crate::build::tools::{DEBUGFS, MKE2FS};
use crate::error::{Error, Result};

/// One thing to create in the file system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory with permission bits.
    Dir(String, u32),
    /// A symbolic link: path, target.
    Symlink(String, String),
    /// A regular file copied from the host, with permission bits.
    File(String, PathBuf, u32),
}

/// Creates an ext4 file system of `size` bytes at `path` holding `nodes`
/// (parents before children), all owned by root.
pub fn build(
    path: &Path,
    size: u64,
    label: &str,
    uuid: &str,
    epoch: i64,
    nodes: &[Node],
) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut mk = MKE2FS.command();
    mk.env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-L", label, "-U", uuid,
        ])
        .arg("-E")
        .arg(format!("hash_seed={uuid},root_owner=0:0,nodiscard"))
        .arg(path)
        .arg(format!("{}k", size / 1024));
    MKE2FS.run(&mut mk)?;

    let script = script(nodes)?;
    let mut dbg = DEBUGFS.command();
    dbg.env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .args(["-w", "-f", "-"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = dbg.spawn().map_err(|e| DEBUGFS.spawn_error(e))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| DEBUGFS.spawn_error(e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| DEBUGFS.spawn_error(e))?;
    // debugfs exits 0 even when a command fails; anything on stderr besides
    // its banner is a failure.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !problems.is_empty() {
        return Err(Error::ToolFailed {
            command: format!("debugfs -w {}", path.display()),
            status: out.status.to_string(),
            stderr: problems.join("\n"),
        });
    }
    Ok(())
}

/// The debugfs commands that create `nodes` owned by root.
fn script(nodes: &[Node]) -> Result<String> {
    let mut s = String::new();
    for node in nodes {
        let (path, mode) = match node {
            Node::Dir(p, m) => {
                s.push_str(&format!("mkdir {}\n", quote(p)?));
                (p, 0o040000 | m)
            }
            Node::Symlink(p, target) => {
                s.push_str(&format!("symlink {} {}\n", quote(p)?, quote(target)?));
                (p, 0o120777)
            }
            Node::File(p, src, m) => {
                let src = src
                    .to_str()
                    .ok_or_else(|| bad_name(&src.display().to_string()))?;
                s.push_str(&format!("write {} {}\n", quote(src)?, quote(p)?));
                (p, 0o100000 | m)
            }
        };
        let q = quote(path)?;
        s.push_str(&format!(
            "sif {q} mode 0{mode:o}\nsif {q} uid 0\nsif {q} gid 0\n"
        ));
    }
    Ok(s)
}

fn quote(p: &str) -> Result<String> {
    if p.contains(['"', '\n', '\\']) {
        return Err(bad_name(p));
    }
    Ok(format!("\"{p}\""))
}

fn bad_name(p: &str) -> Error {
    Error::DefinitionValue {
        path: PathBuf::new(),
        field: "root.files".into(),
        message: format!(
            "{p:?}: names with quotes, backslashes or newlines are not supported on ROOT"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_sets_owner_and_type_bits() {
        let s = script(&[
            Node::Dir("/tmp".into(), 0o1777),
            Node::Symlink("/bin".into(), "usr/bin".into()),
        ])
        .expect("script");
        assert!(
            s.contains("mkdir \"/tmp\"\nsif \"/tmp\" mode 041777\nsif \"/tmp\" uid 0\n"),
            "{s}"
        );
        assert!(
            s.contains("symlink \"/bin\" \"usr/bin\"\nsif \"/bin\" mode 0120777"),
            "{s}"
        );
        assert!(script(&[Node::Dir("a\"b".into(), 0o755)]).is_err());
    }
}
