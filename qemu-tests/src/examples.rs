//! The repository's example images (`examples/<name>`), built for a test
//! from a private copy in which the test may replace files (a public key to
//! log in with, say), and rebuilt only when their inputs change: builds are
//! reproducible, so a digest of every input file and of the artefacts is
//! enough to know.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::disk::run;
use crate::env::Env;

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Builds `examples/<name>` with `replace` (path inside the example →
/// content) written over or beside its files, as `variant` (one output
/// directory per variant); returns the output directory.
pub fn build(env: &Env, name: &str, variant: &str, replace: &[(&str, &[u8])]) -> Result<PathBuf> {
    // One build at a time: tests run on parallel threads and share the cache.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _guard = BUILDING
        .lock()
        .map_err(|_| anyhow::anyhow!("example build lock poisoned"))?;
    let base = env
        .image
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| env.image.join("examples"), |p| p.join("examples"));
    let src = base.join("src").join(format!("{name}-{variant}"));
    let out = base.join("builds").join(format!("{name}-{variant}"));
    let _ = std::fs::remove_dir_all(&src);
    copy_dir(&examples_dir().join(name), &src)?;
    for (path, content) in replace {
        let dst = src.join(path);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&dst, content)
            .with_context(|| format!("write {path} into the copy of examples/{name}"))?;
    }
    let mut h = Sha256::new();
    digest_dir(&src, &src, &mut h)?;
    for a in ["tandem-init", "tandem-node", "BOOTX64.EFI"] {
        h.update(std::fs::read(env.artifacts.join(a))?);
    }
    let stamp: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if std::fs::read_to_string(out.join(".inputs")).ok().as_deref() == Some(stamp.as_str())
        && out.join("build.json").exists()
    {
        return Ok(out);
    }
    run(Command::new(&env.tandem)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(src.join("image.toml"))
        .args(["--quiet", "--out"])
        .arg(&out)
        .arg("--artifacts")
        .arg(&env.artifacts)
        .arg("--cache")
        .arg(&env.cache))?;
    std::fs::write(out.join(".inputs"), stamp)?;
    Ok(out)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dst)?;
        } else {
            std::fs::copy(entry.path(), &dst)
                .with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Digest of every file's relative path and content, in sorted order.
fn digest_dir(root: &Path, dir: &Path, h: &mut Sha256) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            digest_dir(root, &p, h)?;
        } else if p.extension().is_none_or(|e| e != "lock") {
            // The lock file is an output of the build, not an input.
            h.update(p.strip_prefix(root)?.to_string_lossy().as_bytes());
            h.update(std::fs::read(&p)?);
        }
    }
    Ok(())
}
