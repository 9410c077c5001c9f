//! Scenario fixtures: a release signing key (and one the images do not
//! trust), and versions of the example image built once for the whole suite
//! and reused while their inputs do not change (builds are reproducible, so
//! a stamp of the inputs is enough to know). Repositories are made per
//! scenario with `tandem release publish`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

use crate::disk::{output, run};
use crate::env::Env;

/// Image name of every fixture version (they are one image's releases).
pub const IMAGE: &str = "tandem-minimal";

/// The versions the scenarios use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// 1.0.0: what nodes are flashed with.
    V1,
    /// 1.1.0: one file (the motd) differs from 1.0.0.
    V2,
    /// 1.1.0 with 24 MiB of incompressible data added to /usr: most of its
    /// payload must be downloaded (for interrupting downloads).
    V2Big,
    /// 1.2.0.
    V3,
    /// 1.2.0 that cannot boot: its initramfs lacks the /usr file system
    /// driver (erofs), so the early init cannot mount /usr
    /// ([`BROKEN_BOOT`] on the console) and reboots.
    V3Broken,
    /// 1.1.0 with one more Debian package than 1.0.0 (`ncurses-base`, the
    /// terminfo database): a one-package change (`bench update`).
    V2Package,
    /// 0.9.0 on the kernel before 1.0.0's (`linux-image-6.1.0-56`): 1.0.0
    /// is a kernel change from it (`bench update`).
    V0OlderKernel,
}

/// The kernel package of [`Build::V0OlderKernel`].
pub const OLDER_KERNEL: &str = "linux-image-6.1.0-56-cloud-amd64";

/// Part of the FATAL line of a boot of [`Build::V3Broken`].
pub const BROKEN_BOOT: &str = "no erofs driver loaded";

impl Build {
    /// The image version.
    pub fn version(self) -> &'static str {
        match self {
            Build::V0OlderKernel => "0.9.0",
            Build::V1 => "1.0.0",
            Build::V2 | Build::V2Big | Build::V2Package => "1.1.0",
            Build::V3 | Build::V3Broken => "1.2.0",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Build::V2Big => "1.1.0-big",
            Build::V3Broken => "1.2.0-broken",
            Build::V2Package => "1.1.0-package",
            Build::V0OlderKernel => "0.9.0-kernel",
            other => other.version(),
        }
    }

    fn definition(self) -> String {
        let blob = match self {
            Build::V2Big => {
                "\n[[usr.files]]\nsource = \"blob\"\ntarget = \"/usr/share/tandem/blob\"\n"
            }
            _ => "",
        };
        let fs_driver = match self {
            Build::V3Broken => "",
            _ => ", \"erofs\"",
        };
        let kernel = match self {
            Build::V0OlderKernel => OLDER_KERNEL,
            _ => "linux-image-cloud-amd64",
        };
        let package = match self {
            Build::V2Package => ", \"ncurses-base\"",
            _ => "",
        };
        format!(
            "[image]\nname = \"{IMAGE}\"\nversion = \"{v}\"\nchannel = \"stable\"\n\n\
             [kernel]\npackage = \"{kernel}\"\n\
             initramfs-modules = [\"virtio_pci\", \"virtio_blk\", \"dm_verity\"{fs_driver}, \"softdog\"]\n\n\
             [usr]\npackages = [\"busybox-static\"{package}]\nbusybox-applets = true\n\n\
             [[usr.files]]\nsource = \"motd\"\ntarget = \"/usr/share/tandem/motd\"\n{blob}\n\
             [update]\ntrusted-keys = [\"keys/test-release.pub\"]\n",
            v = self.version()
        )
    }
}

/// Keys and built versions.
#[derive(Debug)]
pub struct Fixtures {
    /// Where everything lives.
    pub dir: PathBuf,
    /// The release key the fixture images trust.
    pub key: PathBuf,
    /// A key they do not trust.
    pub untrusted_key: PathBuf,
    env: Env,
    build_lock: Mutex<()>,
}

impl Fixtures {
    /// The fixtures of this test process (keys made on first use).
    pub fn get(env: &Env) -> Result<&'static Fixtures> {
        static F: OnceLock<Fixtures> = OnceLock::new();
        // Tests run on parallel threads: one makes the keys, the others wait.
        static INIT: Mutex<()> = Mutex::new(());
        let _guard = INIT
            .lock()
            .map_err(|_| anyhow::anyhow!("fixture lock poisoned"))?;
        if let Some(f) = F.get() {
            return Ok(f);
        }
        let dir = env
            .image
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| env.image.join("fixtures"), |p| p.join("fixtures"));
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys)?;
        for name in ["test-release", "untrusted"] {
            if !keys.join(format!("{name}.key")).exists() {
                run(Command::new(&env.tandem)
                    .args(["keygen", name, "--out-dir"])
                    .arg(&keys))?;
            }
        }
        let f = Fixtures {
            key: keys.join("test-release.key"),
            untrusted_key: keys.join("untrusted.key"),
            dir,
            env: env.clone(),
            build_lock: Mutex::new(()),
        };
        Ok(F.get_or_init(|| f))
    }

    /// The output directory of `build`, building it if its inputs changed.
    pub fn build(&self, build: Build) -> Result<PathBuf> {
        let _guard = self
            .build_lock
            .lock()
            .map_err(|_| anyhow::anyhow!("fixture lock poisoned"))?;
        let src = self.dir.join("src").join(build.dir_name());
        let out = self.dir.join("builds").join(build.dir_name());
        std::fs::create_dir_all(src.join("keys"))?;
        std::fs::copy(
            self.dir.join("keys/test-release.pub"),
            src.join("keys/test-release.pub"),
        )?;
        std::fs::write(
            src.join("motd"),
            format!("Tandem fixture image {}\n", build.version()),
        )?;
        if build == Build::V2Big && !src.join("blob").exists() {
            std::fs::write(src.join("blob"), incompressible(24 << 20))?;
        }
        let def = build.definition();
        std::fs::write(src.join("image.toml"), &def)?;
        // The builder is an input too: how it lays images out (the verity
        // salt, say) is part of what the scenarios check.
        let stamp = format!(
            "{def}\n{}\n{}\n{}\n{}",
            file_sha(&self.env.tandem)?,
            file_sha(&self.env.artifacts.join("tandem-init"))?,
            file_sha(&self.env.artifacts.join("tandem-node"))?,
            file_sha(&self.env.artifacts.join("BOOTX64.EFI"))?
        );
        if std::fs::read_to_string(out.join(".inputs")).ok().as_deref() == Some(stamp.as_str())
            && out.join("build.json").exists()
        {
            return Ok(out);
        }
        run(Command::new(&self.env.tandem)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .arg("build")
            .arg(src.join("image.toml"))
            .args(["--quiet", "--out"])
            .arg(&out)
            .arg("--artifacts")
            .arg(&self.env.artifacts)
            .arg("--cache")
            .arg(&self.env.cache))?;
        std::fs::write(out.join(".inputs"), stamp)?;
        Ok(out)
    }

    /// Publishes `build` to `channel` of the repository at `repo`, signed
    /// with `key`, with extra `tandem release publish` arguments.
    pub fn publish(
        &self,
        repo: &Path,
        channel: &str,
        build: Build,
        key: &Path,
        extra: &[&str],
    ) -> Result<()> {
        let out = self.build(build)?;
        run(Command::new(&self.env.tandem)
            .args(["release", "publish", "--repo"])
            .arg(repo)
            .args(["--channel", channel, "--key"])
            .arg(key)
            .args(extra)
            .arg(&out))
    }

    /// Points `to` at what `from` serves (`tandem release promote`).
    pub fn promote(&self, repo: &Path, from: &str, to: &str, extra: &[&str]) -> Result<()> {
        run(Command::new(&self.env.tandem)
            .args(["release", "promote", "--repo"])
            .arg(repo)
            .args(["--from", from, "--to", to, "--key"])
            .arg(&self.key)
            .args(extra))
    }
}

/// `len` bytes that do not compress (a sha256 counter stream), the same
/// every time.
fn incompressible(len: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(len + 32);
    let mut i: u64 = 0;
    while out.len() < len {
        out.extend_from_slice(&Sha256::digest(i.to_le_bytes()));
        i += 1;
    }
    out.truncate(len);
    out
}

/// The sha256 of a file, in hex (`sha256sum`).
pub fn file_sha(p: &Path) -> Result<String> {
    let out = output(Command::new("sha256sum").arg(p))
        .with_context(|| format!("sha256 of {}", p.display()))?;
    out.split_whitespace()
        .next()
        .map(String::from)
        .context("sha256sum output")
}
