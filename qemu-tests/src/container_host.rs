//! The container host example (`examples/container-host`) as the test and
//! `cargo xtask bench boot` deploy it: its workload (busybox's httpd in an
//! OCI image built from Debian's busybox-static, pushed to a [`Registry`]
//! on the host), its service pointed at that registry, and HTTP checks of
//! the container's port from the host.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::disk::{output, run};
use crate::env::Env;
use crate::examples::{self, examples_dir};
use crate::registry::{OciImage, Registry};

/// The container's HTTP port on the node (host network).
pub const WEB_PORT: u16 = 8080;
/// The workload's repository and tag in the registry.
const WEB: (&str, &str) = ("web", "1");

/// The workload: busybox's httpd serving the service's data directory
/// (`/data`), which appends a line to `/data/starts` at each start.
pub fn web_image() -> Result<OciImage> {
    let dir = tempfile::tempdir()?;
    run(Command::new("apt-get").current_dir(dir.path()).args([
        "download",
        "-q",
        "busybox-static",
    ]))?;
    let deb = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download busybox-static gave no .deb")?;
    let unpacked = dir.path().join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin"))?;
    std::fs::create_dir_all(rootfs.join("data"))?;
    std::fs::copy(unpacked.join("bin/busybox"), rootfs.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh"))?;
    OciImage::from_dir(
        &rootfs,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            // PID 1 of the container: without a handler, SIGTERM (the
            // service's stop) would be ignored until the stop timeout.
            "trap 'exit 0' TERM; /bin/busybox date +%s >> /data/starts; /bin/busybox httpd -f -p 8080 -h /data & wait",
        ],
    )
}

/// Starts a registry on the host and pushes the workload to it.
pub fn registry_with_workload() -> Result<Registry> {
    let registry = Registry::start()?;
    registry.push(WEB.0, WEB.1, &web_image()?)?;
    Ok(registry)
}

/// Builds the example as a user would deploy it, as `variant`: its service
/// names `registry` (plain HTTP, at the guest's view of the host), its
/// version is `version`, `definition_extra` is appended to its
/// `image.toml` and `files` are written into the copy (path inside the
/// example → content).
pub fn build(
    env: &Env,
    registry: &Registry,
    (variant, version): (&str, &str),
    definition_extra: &str,
    files: &[(&str, &[u8])],
) -> Result<PathBuf> {
    let example = examples_dir().join("container-host");
    let definition = std::fs::read_to_string(example.join("image.toml"))?
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""))
        + definition_extra;
    let web = std::fs::read_to_string(example.join("files/services/web.toml"))?.replace(
        "\"registry.example.com/web:1\"",
        &format!(
            "\"--tls-verify=false\", \"10.0.2.2:{}/{}:{}\"",
            registry.port, WEB.0, WEB.1
        ),
    );
    let mut replace: Vec<(&str, &[u8])> = vec![
        ("image.toml", definition.as_bytes()),
        ("files/services/web.toml", web.as_bytes()),
    ];
    replace.extend_from_slice(files);
    examples::build(env, "container-host", variant, &replace)
}

/// The body of `http://127.0.0.1:<port><path>`, `None` if it does not answer.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    output(
        Command::new("curl")
            .args(["-sf", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{port}{path}")),
    )
    .ok()
}

/// Polls [`http_get`] until it answers or `timeout` has passed.
pub fn wait_http(port: u16, path: &str, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(body) = http_get(port, path) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("http://127.0.0.1:{port}{path} did not answer within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
