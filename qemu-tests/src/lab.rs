//! An update lab for one scenario: a repository served by `tandem serve`
//! (through a fault-injecting proxy), and nodes booted from fixture images
//! whose OEM partition points them at it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::disk::Disk;
use crate::env::Env;
use crate::fixtures::{Build, Fixtures};
use crate::server::{Proxy, Server};
use crate::vm::{Vm, VmConfig};

/// A repository, its server and proxy.
#[derive(Debug)]
pub struct Lab {
    /// Artefact paths.
    pub env: Env,
    /// Keys and builds.
    pub fixtures: &'static Fixtures,
    /// The repository directory.
    pub repo: PathBuf,
    /// `tandem serve` on the repository.
    pub server: Server,
    /// A proxy in front of the server; nodes talk to it.
    pub proxy: Proxy,
    _dir: tempfile::TempDir,
}

/// How a node is set up.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    /// What the node was flashed with.
    pub build: Build,
    /// `reboot-strategy` (`reboot`, `off`, `etcd-lock`, `fleetlock`).
    pub strategy: &'static str,
    /// `channel`, if the OEM config names one.
    pub channel: Option<&'static str>,
    /// Extra lines for the OEM update.toml.
    pub extra: String,
    /// The OEM agent.toml (none if empty).
    pub agent_toml: String,
}

impl NodeSetup {
    /// A node flashed with `build`, rebooting by itself.
    pub fn new(build: Build) -> Self {
        NodeSetup {
            build,
            strategy: "reboot",
            channel: None,
            extra: String::new(),
            agent_toml: String::new(),
        }
    }
}

impl Lab {
    /// An empty repository with its server and proxy, for the artefacts
    /// named by the environment ([`Env::get`]).
    pub fn new(name: &str) -> Result<Lab> {
        Self::with_env(Env::get()?, name)
    }

    /// An empty repository with its server and proxy.
    pub fn with_env(env: Env, name: &str) -> Result<Lab> {
        let fixtures = Fixtures::get(&env)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("lab-{name}-"))
            .tempdir()?;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo)?;
        let log = crate::vm::log_dir().join(format!("{name}.requests.jsonl"));
        let _ = std::fs::remove_file(&log);
        let server = Server::start(&env.tandem, &repo, &log)?;
        let proxy = Proxy::start(server.addr)?;
        Ok(Lab {
            env,
            fixtures,
            repo,
            server,
            proxy,
            _dir: dir,
        })
    }

    /// Publishes `build` to `channel`, signed with the trusted key.
    pub fn publish(&self, channel: &str, build: Build, extra: &[&str]) -> Result<()> {
        self.fixtures
            .publish(&self.repo, channel, build, &self.fixtures.key, extra)
    }

    /// Size of the published payload of `build`'s version.
    pub fn payload_size(&self, build: Build) -> Result<u64> {
        let path = self
            .repo
            .join(crate::fixtures::IMAGE)
            .join(build.version())
            .join("manifest.json");
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        m["usr"]["payload"]["size"]
            .as_u64()
            .context("manifest has no payload size")
    }

    /// The /usr bytes a node running `from` fetches to install `to` (both
    /// published), by the node's own code run on the host against the
    /// server: what an update costs when nothing interrupts it.
    pub fn usr_fetch_cost(&self, from: Build, to: Build) -> Result<u64> {
        let path = self
            .repo
            .join(crate::fixtures::IMAGE)
            .join(to.version())
            .join("manifest.json");
        let manifest: repository::repo::Manifest = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("{} is not published", to.version()))?,
        )?;
        let dir = tempfile::tempdir()?;
        let counters = crate::server::write_slot_on_host(
            self.server.addr,
            &manifest,
            Some(&self.fixtures.build(from)?.join("usr.img")),
            &dir.path().join("slot.img"),
        )?;
        Ok(counters.downloaded)
    }

    /// A private disk flashed with `setup.build`, its OEM update.toml
    /// pointing at the proxy with a 5 s check interval.
    pub fn disk(&self, setup: &NodeSetup) -> Result<Disk> {
        let image = self.fixtures.build(setup.build)?;
        let disk = Disk::copy(&image.join("disk.raw"))?;
        let mut toml = format!(
            "# OEM settings of the test lab\nserver = \"{}\"\ncheck-interval = \"5s\"\nreboot-strategy = \"{}\"\n",
            self.proxy.guest_url(),
            setup.strategy
        );
        if let Some(c) = setup.channel {
            toml.push_str(&format!("channel = \"{c}\"\n"));
        }
        toml.push_str(&setup.extra);
        disk.put_oem_file("update.toml", toml.as_bytes())?;
        if !setup.agent_toml.is_empty() {
            disk.put_oem_file("agent.toml", setup.agent_toml.as_bytes())?;
        }
        Ok(disk)
    }

    /// Boots `disk` and waits for `system ready`.
    pub fn boot(&self, name: &str, disk: &Disk) -> Result<Vm> {
        self.boot_with(&VmConfig::new(name), disk)
    }

    /// Boots `disk` with `cfg` and waits for `system ready`.
    pub fn boot_with(&self, cfg: &VmConfig, disk: &Disk) -> Result<Vm> {
        let mut vm = Vm::start(cfg, disk)?;
        vm.wait_for("tandem: system ready", Duration::from_secs(180))?;
        Ok(vm)
    }
}
