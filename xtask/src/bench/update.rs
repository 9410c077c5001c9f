//! `cargo xtask bench update`: apply throughput of the update engine for a
//! payload over 1 GiB, served by `tandem serve` on loopback and written into
//! a file standing in for the inactive partition, next to a reference
//! pipeline on the same bytes in the same run (`curl | sha256sum` plus `dd`
//! with fsync); and everything a node fetches for a one-file, a
//! one-package and a kernel change, beside a full update.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qemu_tests::fixtures::{Build, Fixtures};
use qemu_tests::server::{Server, write_slot_on_host};
use repository::payload::{self, Options};
use repository::repo::{FileRef, Manifest, UsrImage, Verity};
use tandem_slot::{Slot, verity};
use updater::apply::{SlotJob, write_slot};
use updater::disk::Region;
use updater::http::{Fetch, Http};

use crate::{artifacts, setup, util};

/// Data blocks of the synthetic slot image: 1 GiB of file system.
const DATA_BYTES: u64 = 1 << 30;
const RUNS: usize = 3;

/// Runs the benchmark.
pub fn run() -> Result<()> {
    setup::run()?;
    let a = artifacts::build()?;
    let dir = util::out_dir().join("bench-update");
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("bench/1.0.0"))?;

    // A slot image: 1 GiB that does not compress (the worst case for the
    // engine, which also decompresses), then its dm-verity tree.
    eprintln!("bench update: making a 1 GiB slot image and its payload");
    let image = dir.join("usr.img");
    let salt = [7u8; 32];
    write_incompressible(&image, DATA_BYTES)?;
    let tree = {
        let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&image)?);
        verity::build(&mut f, DATA_BYTES / 4096, &salt, |_| {})?
    };
    std::io::Write::write_all(
        &mut std::fs::OpenOptions::new().append(true).open(&image)?,
        &tree.tree,
    )?;
    let payload_path = repo.join("bench/1.0.0/usr.payload");
    let encoded = payload::encode(
        std::fs::File::open(&image)?,
        std::io::BufWriter::new(std::fs::File::create(&payload_path)?),
        &Options::default(),
        |_| {},
    )?;
    let dummy = FileRef {
        path: "bench/1.0.0/vmlinuz".into(),
        size: 1,
        sha256: "0".repeat(64),
    };
    let manifest = Manifest {
        format: repository::repo::FORMAT,
        image: "bench".into(),
        arch: "x86_64".into(),
        version: "1.0.0".parse()?,
        min_source_version: None,
        usr: UsrImage {
            size: encoded.image_size,
            verity: Verity {
                root_hash: verity::hex(&tree.root),
                salt: verity::hex(&salt),
                data_blocks: DATA_BYTES / 4096,
            },
            payload: encoded.payload_ref("bench/1.0.0/usr.payload"),
            chunk_size: encoded.chunk_size,
            chunks: encoded.chunks.clone(),
            raw: None,
        },
        kernel: dummy.clone(),
        initrd: FileRef {
            path: "bench/1.0.0/initrd".into(),
            ..dummy
        },
    };

    let server = Server::start(&a.tandem, &repo, &dir.join("requests.jsonl"))?;
    let url = format!("http://{}/", server.addr);
    let target = dir.join("target.img");
    let reference = dir.join("reference.img");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..RUNS {
        ours.push(apply(&manifest, &url, &target, &dir)?);
        theirs.push(reference_pipeline(
            &format!("{url}bench/1.0.0/usr.payload"),
            &reference,
        )?);
        eprintln!(
            "run {}: tandem apply {:.2} s, reference {:.2} s",
            i + 1,
            ours[i].as_secs_f64(),
            theirs[i].as_secs_f64()
        );
    }
    let (o, t) = (median(&mut ours), median(&mut theirs));
    let mib = |bytes: u64, d: Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let payload_bytes = encoded.payload_size;
    println!(
        "bench update: {} MiB payload ({} MiB slot image) from tandem serve on loopback, median of {RUNS} runs",
        payload_bytes >> 20,
        encoded.image_size >> 20
    );
    println!(
        "  tandem apply (HTTP Range, zstd, sha256 per chunk before writing, fsync): {:.2} s, {:.0} MiB/s of payload",
        o.as_secs_f64(),
        mib(payload_bytes, o)
    );
    println!(
        "  reference (curl | tee >(sha256sum) | dd conv=fsync): {:.2} s, {:.0} MiB/s",
        t.as_secs_f64(),
        mib(payload_bytes, t)
    );
    println!(
        "  ratio (throughput, tandem / reference): {:.2} (goal: >= 0.90)",
        t.as_secs_f64() / o.as_secs_f64()
    );

    // The re-check of the whole written slot against the verity root that
    // follows in a real install, for scale.
    let started = Instant::now();
    let written = Region::whole(&target, false)?;
    updater::apply::verify_slot(&written, &manifest.usr, |_| {}).map_err(anyhow::Error::msg)?;
    println!(
        "  then the verity re-check of the written slot: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    drop(server);
    deltas(&a)?;
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_file(&target);
    let _ = std::fs::remove_file(&reference);
    Ok(())
}

/// One install of the manifest's slot into `target` (created empty).
fn apply(manifest: &Manifest, url: &str, target: &Path, dir: &Path) -> Result<Duration> {
    let _ = std::fs::remove_file(target);
    std::fs::File::create(target)?.set_len(manifest.usr.size)?;
    let progress = dir.join("progress.json");
    let _ = std::fs::remove_file(&progress);
    let region = Region::whole(target, true)?;
    let job = SlotJob {
        manifest,
        manifest_sha256: "bench",
        slot: Slot::B,
        target: &region,
        running: None,
        progress_file: &progress,
    };
    let mut http = Http::new(url, &updater::transport::Transport::direct());
    let started = Instant::now();
    let counters = write_slot(&job, &mut http, &mut |_| {})?;
    let took = started.elapsed();
    if counters.downloaded != manifest.usr.payload.size {
        bail!(
            "downloaded {} of {} payload bytes",
            counters.downloaded,
            manifest.usr.payload.size
        );
    }
    Ok(took)
}

fn reference_pipeline(url: &str, out: &Path) -> Result<Duration> {
    let _ = std::fs::remove_file(out);
    let script = format!(
        "set -o pipefail; curl -sf '{url}' | tee >(sha256sum > /dev/null) | dd of='{}' bs=1M conv=fsync status=none",
        out.display()
    );
    let started = Instant::now();
    let status = Command::new("bash")
        .args(["-c", &script])
        .status()
        .context("run bash")?;
    let took = started.elapsed();
    if !status.success() {
        bail!("reference pipeline failed ({status}); is curl installed?");
    }
    Ok(took)
}

/// An update the node makes: from the build it runs (none: a node with
/// nothing to reuse) to another.
struct Scenario {
    what: &'static str,
    from: Option<Build>,
    to: Build,
}

/// What one update fetched, by the server's log.
#[derive(Default)]
struct Fetched {
    bytes: u64,
    requests: usize,
    /// Bytes per kind: pointer, manifest, /usr, kernel, initramfs.
    kinds: [u64; 5],
}

impl Fetched {
    fn from_log(requests: &[qemu_tests::server::Request]) -> Fetched {
        let mut f = Fetched::default();
        for r in requests {
            f.bytes += r.bytes;
            f.requests += 1;
            let kind = if r.path.contains("/channels/") {
                0
            } else if r.path.ends_with("/manifest.json") {
                1
            } else if r.path.ends_with("/vmlinuz") {
                3
            } else if r.path.ends_with("/initrd") {
                4
            } else {
                2
            };
            f.kinds[kind] += r.bytes;
        }
        f
    }

    fn parts(&self) -> String {
        let [pointer, manifest, usr, kernel, initrd] = self.kinds;
        format!(
            "pointer {}, manifest {}, /usr {}, kernel {}, initramfs {}",
            size(pointer),
            size(manifest),
            size(usr),
            size(kernel),
            size(initrd)
        )
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 1 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// The one-file, one-package and kernel changes, each beside a full
/// update to the same version: everything a node fetches (pointer,
/// manifest, /usr, kernel, initramfs) and its HTTP requests.
fn deltas(a: &artifacts::Artifacts) -> Result<()> {
    let env = qemu_tests::Env {
        image: util::out_dir().join("images/minimal"),
        artifacts: a.dir.clone(),
        tandem: a.tandem.clone(),
        cache: util::out_dir().join("cache"),
    };
    let f = Fixtures::get(&env)?;
    let scenarios = [
        Scenario {
            what: "one file (the motd) 1.0.0 -> 1.1.0",
            from: Some(Build::V1),
            to: Build::V2,
        },
        Scenario {
            what: "one package (ncurses-base added) 1.0.0 -> 1.1.0",
            from: Some(Build::V1),
            to: Build::V2Package,
        },
        Scenario {
            what: "kernel (6.1.0-56 -> 6.1.0-57) 0.9.0 -> 1.0.0",
            from: Some(Build::V0OlderKernel),
            to: Build::V1,
        },
    ];
    println!(
        "bench update: everything a node fetches for an update (pointer, manifest, /usr, kernel, initramfs) from tandem serve, by its request log"
    );
    for (i, sc) in scenarios.iter().enumerate() {
        eprintln!("bench update: building and publishing for {}", sc.what);
        let full = update(a, f, i, &Scenario { from: None, ..*sc }, Fetching::Blocks)?;
        let delta = update(a, f, i, sc, Fetching::Blocks)?;
        let chunks = update(a, f, i, sc, Fetching::ChunksOnly)?;
        let share = |x: &Fetched| 100.0 * x.bytes as f64 / full.bytes as f64;
        // The goal is about the smallest change, the one-file one.
        let goal = if i == 0 {
            format!(
                " (goal < 1 %: {})",
                if share(&delta) < 1.0 {
                    "met"
                } else {
                    "NOT met"
                }
            )
        } else {
            String::new()
        };
        println!(
            "  {}: {} in {} requests = {:.2} % of a full update{goal}",
            sc.what,
            size(delta.bytes),
            delta.requests,
            share(&delta),
        );
        println!("    {}", delta.parts());
        println!(
            "    whole chunks only (no block fetches, as before): {} in {} requests = {:.2} %",
            size(chunks.bytes),
            chunks.requests,
            share(&chunks)
        );
        println!(
            "    full update to {} (nothing local): {} in {} requests; {}",
            sc.to.version(),
            size(full.bytes),
            full.requests,
            full.parts()
        );
    }
    Ok(())
}

/// Whether the node may fetch single blocks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fetching {
    Blocks,
    /// As a node does for a manifest without `usr.raw`.
    ChunksOnly,
}

/// Publishes `sc.to` in a repository of its own, serves it, and updates a
/// file standing in for the inactive slot the way a node does: pointer,
/// manifest, the slot (with the running slot `sc.from` as local source),
/// then the kernel and initramfs unless the running slot's are the same.
fn update(
    a: &artifacts::Artifacts,
    f: &Fixtures,
    i: usize,
    sc: &Scenario,
    fetching: Fetching,
) -> Result<Fetched> {
    let dir = util::out_dir().join(format!("bench-update/delta-{i}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let repo = dir.join("repo");
    f.publish(&repo, "stable", sc.to, &f.key, &[])?;
    let to = f.build(sc.to)?;
    let from = sc.from.map(|b| f.build(b)).transpose()?;
    let server = Server::start(&a.tandem, &repo, &dir.join("requests.jsonl"))?;
    let mut http = Http::new(
        &format!("http://{}/", server.addr),
        &updater::transport::Transport::direct(),
    );
    let envelope: repository::repo::Envelope = serde_json::from_slice(&http.get(
        &repository::repo::pointer_path(qemu_tests::fixtures::IMAGE, "stable"),
        repository::repo::MAX_METADATA_BYTES,
    )?)?;
    let pointer: repository::repo::ChannelPointer = serde_json::from_str(&envelope.signed)?;
    let manifest_bytes = http.get(&pointer.manifest.path, pointer.manifest.size)?;
    let mut manifest: Manifest = serde_json::from_slice(&manifest_bytes)?;
    if fetching == Fetching::ChunksOnly {
        manifest.usr.raw = None;
    }

    let target = dir.join("slot.img");
    write_slot_on_host(
        server.addr,
        &manifest,
        from.as_ref().map(|d| d.join("usr.img")).as_deref(),
        &target,
    )?;
    let written = std::fs::read(&target)?;
    if written != std::fs::read(to.join("usr.img"))? {
        bail!(
            "the update did not reproduce {}'s slot image",
            sc.to.version()
        );
    }
    for (file, name) in [(&manifest.kernel, "vmlinuz"), (&manifest.initrd, "initrd")] {
        let same = from.as_ref().is_some_and(|d| {
            std::fs::read(d.join(name))
                .is_ok_and(|b| repository::policy::check_file(&b, file).is_ok())
        });
        if !same {
            http.get(&file.path, file.size)?;
        }
    }
    let fetched = Fetched::from_log(&server.requests()?);
    let _ = std::fs::remove_file(&target);
    Ok(fetched)
}

/// `len` bytes of xorshift output: incompressible, fast to make, the same
/// every run.
fn write_incompressible(path: &Path, len: u64) -> Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..len >> 20 {
        for word in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        w.write_all(&buf)?;
    }
    w.flush()?;
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
