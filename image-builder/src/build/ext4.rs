//! The ROOT file system: ext4 made by `mke2fs` and filled by `debugfs`
//! (both e2fsprogs, no mounts, no root). `E2FSPROGS_FAKE_TIME` pins every
//! timestamp and the UUID and hash seed are fixed, so the result is
//! reproducible (`mke2fs -d` copies host ctimes and is not).

use std::path::{Path, PathBuf};

use crate::build::tools::{DEBUGFS, MKE2FS};
use crate::error::{Error, Result};

/// One thing to create in the file system, with its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Absolute path in the file system.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What a [`Node`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory with permission bits.
    Dir(u32),
    /// A symbolic link to a target.
    Symlink(String),
    /// A regular file copied from the host, with permission bits.
    File(PathBuf, u32),
}

impl Node {
    /// A directory owned by root.
    pub fn dir(path: impl Into<String>, mode: u32) -> Node {
        Node::root_owned(path.into(), Kind::Dir(mode))
    }

    /// A symbolic link owned by root.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Node {
        Node::root_owned(path.into(), Kind::Symlink(target.into()))
    }

    /// A file copied from `source` on the host, owned by root.
    pub fn file(path: impl Into<String>, source: impl Into<PathBuf>, mode: u32) -> Node {
        Node::root_owned(path.into(), Kind::File(source.into(), mode))
    }

    /// The same node owned by `uid:gid`.
    pub fn owned_by(self, uid: u32, gid: u32) -> Node {
        Node { uid, gid, ..self }
    }

    fn root_owned(path: String, kind: Kind) -> Node {
        Node {
            path,
            kind,
            uid: 0,
            gid: 0,
        }
    }
}

/// Creates an ext4 file system of `size` bytes at `path` holding `nodes`
/// (parents before children) with their owners.
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

/// The debugfs commands that create `nodes` with their modes and owners.
fn script(nodes: &[Node]) -> Result<String> {
    let mut s = String::new();
    for node in nodes {
        let q = quote(&node.path)?;
        let mode = match &node.kind {
            Kind::Dir(m) => {
                s.push_str(&format!("mkdir {q}\n"));
                0o040000 | m
            }
            Kind::Symlink(target) => {
                s.push_str(&format!("symlink {q} {}\n", quote(target)?));
                0o120777
            }
            Kind::File(src, m) => {
                let src = src
                    .to_str()
                    .ok_or_else(|| bad_name(&src.display().to_string()))?;
                s.push_str(&format!("write {} {q}\n", quote(src)?));
                0o100000 | m
            }
        };
        s.push_str(&format!(
            "sif {q} mode 0{mode:o}\nsif {q} uid {}\nsif {q} gid {}\n",
            node.uid, node.gid
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
        let s =
            script(&[Node::dir("/tmp", 0o1777), Node::symlink("/bin", "usr/bin")]).expect("script");
        assert!(
            s.contains(
                "mkdir \"/tmp\"\nsif \"/tmp\" mode 041777\nsif \"/tmp\" uid 0\nsif \"/tmp\" gid 0\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("symlink \"/bin\" \"usr/bin\"\nsif \"/bin\" mode 0120777"),
            "{s}"
        );
        assert!(script(&[Node::dir("a\"b", 0o755)]).is_err());
    }

    #[test]
    fn script_gives_each_node_its_owner() {
        let s = script(&[
            Node::dir("/home/core", 0o700).owned_by(1234, 1235),
            Node::file("/etc/shadow", "/work/shadow", 0o640).owned_by(0, 42),
        ])
        .expect("script");
        assert_eq!(
            s,
            "mkdir \"/home/core\"\nsif \"/home/core\" mode 040700\n\
             sif \"/home/core\" uid 1234\nsif \"/home/core\" gid 1235\n\
             write \"/work/shadow\" \"/etc/shadow\"\nsif \"/etc/shadow\" mode 0100640\n\
             sif \"/etc/shadow\" uid 0\nsif \"/etc/shadow\" gid 42\n"
        );
    }

    #[test]
    fn owners_are_written_and_the_image_is_reproducible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shadow = dir.path().join("shadow");
        std::fs::write(&shadow, "root:*:::::::\n").expect("write");
        let nodes = [
            Node::dir("/etc", 0o755),
            Node::file("/etc/shadow", &shadow, 0o640).owned_by(0, 42),
            Node::dir("/home", 0o755),
            Node::dir("/home/core", 0o700).owned_by(1234, 1235),
        ];
        let uuid = "6c1d7a34-7c4e-4f59-9a6f-0b3c2d1e4f5a";
        let a = dir.path().join("a.img");
        let b = dir.path().join("b.img");
        build(&a, 8 << 20, "ROOT", uuid, 1_700_000_000, &nodes).expect("build a");
        build(&b, 8 << 20, "ROOT", uuid, 1_700_000_000, &nodes).expect("build b");
        assert!(
            std::fs::read(&a).expect("a") == std::fs::read(&b).expect("b"),
            "the same nodes, the same bytes"
        );
        for (path, owner) in [
            ("/home/core", "User:  1234   Group:  1235"),
            ("/etc/shadow", "User:     0   Group:    42"),
        ] {
            let out = DEBUGFS
                .command()
                .arg("-R")
                .arg(format!("stat {path}"))
                .arg(&a)
                .output()
                .expect("debugfs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains(owner), "{path}: {text}");
        }
    }
}
