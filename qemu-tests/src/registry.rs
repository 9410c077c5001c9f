//! A real container registry on the host (Debian's `docker-registry`, the
//! CNCF distribution server) and OCI images built from a directory and
//! pushed to it with the registry's HTTP API: the tests have no internet,
//! so the images a node pulls are made here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::disk::{output, run};

/// A registry listening on loopback (a QEMU guest reaches it at
/// `10.0.2.2:<port>`). Dropping it stops it.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts `docker-registry` with storage in a temporary directory.
    pub fn start() -> Result<Registry> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start docker-registry (package docker-registry)")?;
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !registry.answers() {
            if Instant::now() > deadline {
                bail!("docker-registry did not answer on port {port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(registry)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn answers(&self) -> bool {
        output(
            Command::new("curl")
                .args(["-sf", "-o", "/dev/null"])
                .arg(self.url("/v2/")),
        )
        .is_ok()
    }

    /// Pushes `image` as `<name>:<tag>`.
    pub fn push(&self, name: &str, tag: &str, image: &OciImage) -> Result<()> {
        for blob in [&image.layer, &image.config] {
            self.put_blob(name, blob)?;
        }
        let manifest = image.manifest();
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), &manifest)?;
        run(Command::new("curl")
            .args(["-sSf", "-X", "PUT", "-H"])
            .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
            .arg("--data-binary")
            .arg(format!("@{}", file.path().display()))
            .arg(self.url(&format!("/v2/{name}/manifests/{tag}"))))
    }

    fn put_blob(&self, name: &str, blob: &Blob) -> Result<()> {
        let headers = output(
            Command::new("curl")
                .args(["-sSf", "-X", "POST", "-D", "-", "-o", "/dev/null"])
                .arg(self.url(&format!("/v2/{name}/blobs/uploads/"))),
        )?;
        let location = headers
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("location")
                    .then(|| v.trim().to_string())
            })
            .with_context(|| format!("no Location in the upload answer: {headers}"))?;
        let location = if location.starts_with('/') {
            self.url(&location)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        run(Command::new("curl")
            .args([
                "-sSf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", blob.path.display()))
            .arg(format!("{location}{sep}digest={}", blob.digest)))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A content-addressed file.
#[derive(Debug)]
pub struct Blob {
    path: PathBuf,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

impl Blob {
    fn of(path: PathBuf) -> Result<Blob> {
        let bytes = std::fs::read(&path)?;
        Ok(Blob {
            digest: digest(&bytes),
            size: bytes.len() as u64,
            path,
        })
    }
}

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// A one-layer OCI image.
#[derive(Debug)]
pub struct OciImage {
    /// The layer (tar + gzip).
    pub layer: Blob,
    /// The image configuration.
    pub config: Blob,
    _dir: tempfile::TempDir,
}

impl OciImage {
    /// An image whose one layer is `rootfs` (owned by root, timestamps 0)
    /// and whose command is `cmd`.
    pub fn from_dir(rootfs: &Path, cmd: &[&str]) -> Result<OciImage> {
        let dir = tempfile::tempdir()?;
        let tar = dir.path().join("layer.tar");
        run(Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=@0",
                "-C",
            ])
            .arg(rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg("."))?;
        let diff_id = digest(&std::fs::read(&tar)?);
        run(Command::new("gzip").args(["-n", "-f"]).arg(&tar))?;
        let layer = Blob::of(dir.path().join("layer.tar.gz"))?;
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Cmd": cmd, "WorkingDir": "/" },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        });
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, serde_json::to_vec(&config)?)?;
        Ok(OciImage {
            layer,
            config: Blob::of(config_path)?,
            _dir: dir,
        })
    }

    fn manifest(&self) -> Vec<u8> {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": self.config.digest,
                "size": self.config.size,
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": self.layer.digest,
                "size": self.layer.size,
            }],
        });
        serde_json::to_vec(&m).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs `docker-registry` (installed by `cargo xtask setup`).
    #[test]
    fn pushed_image_is_served_by_tag() -> Result<()> {
        let registry = Registry::start()?;
        let rootfs = tempfile::tempdir()?;
        std::fs::write(rootfs.path().join("hello"), "hello\n")?;
        let image = OciImage::from_dir(rootfs.path(), &["/hello"])?;
        registry.push("test/hello", "1", &image)?;
        let manifest = output(
            Command::new("curl")
                .args([
                    "-sSf",
                    "-H",
                    "Accept: application/vnd.oci.image.manifest.v1+json",
                ])
                .arg(registry.url("/v2/test/hello/manifests/1")),
        )?;
        assert!(manifest.contains(&image.layer.digest), "{manifest}");
        let layer = output(
            Command::new("curl")
                .args(["-sSf", "-o", "/dev/null", "-w", "%{size_download}"])
                .arg(registry.url(&format!("/v2/test/hello/blobs/{}", image.layer.digest))),
        )?;
        assert_eq!(layer.trim(), image.layer.size.to_string());
        Ok(())
    }
}
