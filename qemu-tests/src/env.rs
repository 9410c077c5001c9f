//! What the tests run against, handed over by `cargo xtask test`.

use std::path::PathBuf;

use anyhow::{Context, Result};

/// Paths to the built artefacts.
#[derive(Clone, Debug)]
pub struct Env {
    /// Output directory of the example image (disk.raw, build.json, …).
    pub image: PathBuf,
    /// Directory with tandem-init and BOOTX64.EFI.
    pub artifacts: PathBuf,
    /// The host `tandem` binary.
    pub tandem: PathBuf,
    /// Package cache shared by every build.
    pub cache: PathBuf,
}

impl Env {
    /// Reads `TANDEM_IMAGE`, `TANDEM_ARTIFACTS`, `TANDEM_BIN`, `TANDEM_CACHE`.
    pub fn get() -> Result<Env> {
        let var = |name: &str| -> Result<PathBuf> {
            std::env::var_os(name)
                .map(PathBuf::from)
                .with_context(|| format!("{name} is not set: run the end-to-end tests with `cargo xtask test`, which builds the images first"))
        };
        Ok(Env {
            image: var("TANDEM_IMAGE")?,
            artifacts: var("TANDEM_ARTIFACTS")?,
            tandem: var("TANDEM_BIN")?,
            cache: var("TANDEM_CACHE")?,
        })
    }

    /// The example image's disk.
    pub fn disk(&self) -> PathBuf {
        self.image.join("disk.raw")
    }

    /// The example image's build.json.
    pub fn manifest(&self) -> Result<serde_json::Value> {
        let p = self.image.join("build.json");
        let text = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
    }
}
