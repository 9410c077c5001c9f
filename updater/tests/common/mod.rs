//! Test fixtures built on the spot (nothing checked in): slot images with a
//! real dm-verity tree, a signed update repository, a file-backed boot disk
//! (GPT from tandem-slot, FAT ESP and OEM from mkfs.vfat/mtools), a node
//! root for [`Paths::under`], and a small HTTP server with Range support,
//! a request log and faults (cut the payload off, flip a byte).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use repository::keys::PrivateKey;
use repository::payload;
use repository::repo::{
    ChannelPointer, Envelope, FileRef, Manifest, Rollout, Signature, UsrImage, Verity,
};
use sha2::{Digest, Sha256};
use tandem_contract::Partition;
use tandem_contract::cmdline::UsrVerity;
use tandem_contract::esp::{self, SlotConf, SlotFiles, Writer};
use tandem_slot::gpt::Entry;
use tandem_slot::{FileDisk, Gpt, GptPrio, Guid, Slot, SlotPair, verity};
use updater::engine::{self, CheckOutcome, Engine, Offer};
use updater::error::Error;
use updater::http::Http;
use updater::node::{EarlyBoot, Paths};
use updater::state::State;
use updater::status::ApplyReport;

pub const IMAGE: &str = "demo";
pub const CHUNK: u64 = 256 << 10;
pub const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef";

/// A slot image: file system blocks, then the verity tree.
#[derive(Clone, Debug)]
pub struct SlotImage {
    pub bytes: Vec<u8>,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
    pub root: String,
}

/// Deterministic, somewhat compressible file-system blocks.
pub fn blocks(seed: u64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4096);
    for i in 0..n {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (i as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        for j in 0..4096 {
            if j % 8 == 0 && j < 512 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            out.push(if j < 512 {
                (x >> (j % 8 * 8)) as u8
            } else {
                (i as u8) ^ (j as u8 & 0xf0)
            });
        }
    }
    out
}

pub fn slot_image(data: Vec<u8>) -> SlotImage {
    let salt: Vec<u8> = Sha256::digest(&data[..64]).to_vec();
    salted_slot_image(data, salt)
}

/// A slot image with the given verity salt (the builder gives every
/// version of an image the same).
pub fn salted_slot_image(data: Vec<u8>, salt: Vec<u8>) -> SlotImage {
    assert_eq!(data.len() % 4096, 0);
    let data_blocks = (data.len() / 4096) as u64;
    let tree = verity::build(&mut data.as_slice(), data_blocks, &salt, |_| {}).expect("tree");
    let mut bytes = data;
    bytes.extend_from_slice(&tree.tree);
    SlotImage {
        bytes,
        data_blocks,
        salt,
        root: verity::hex(&tree.root),
    }
}

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A repository directory and its signing key.
pub struct Repo {
    pub dir: PathBuf,
    pub key: PrivateKey,
    /// Publish the uncompressed image too (`usr.img`, block fetches).
    pub raw: bool,
}

pub fn key() -> PrivateKey {
    PrivateKey::from_seed([7; 32], "test-release")
}

pub fn now() -> u64 {
    updater::clock::now_unix()
}

/// What was published for a version.
#[derive(Clone, Debug)]
pub struct Published {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub payload: Vec<u8>,
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
}

impl Published {
    pub fn manifest_ref(&self) -> FileRef {
        FileRef {
            path: format!("{IMAGE}/{}/manifest.json", self.manifest.version),
            size: self.manifest_bytes.len() as u64,
            sha256: sha(&self.manifest_bytes),
        }
    }
}

impl Repo {
    pub fn new(dir: &Path) -> Repo {
        std::fs::create_dir_all(dir).expect("repo dir");
        Repo {
            dir: dir.to_path_buf(),
            key: key(),
            raw: false,
        }
    }

    fn write(&self, rel: &str, bytes: &[u8]) {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, bytes).expect("write");
    }

    /// Publishes `version` with `img`: payload, kernel, initrd, manifest.
    pub fn publish(&self, version: &str, img: &SlotImage) -> Published {
        self.publish_with(version, img, |_| {})
    }

    /// Publishes with a chance to change the manifest before it is written.
    pub fn publish_with(
        &self,
        version: &str,
        img: &SlotImage,
        edit: impl FnOnce(&mut Manifest),
    ) -> Published {
        let dir = format!("{IMAGE}/{version}");
        let mut payload_bytes = Vec::new();
        let opts = payload::Options {
            chunk_size: CHUNK,
            threads: 2,
            ..payload::Options::default()
        };
        let enc = payload::encode(img.bytes.as_slice(), &mut payload_bytes, &opts, |_| {})
            .expect("encode");
        let kernel = format!("kernel of {version}\n").repeat(1000).into_bytes();
        let initrd = format!("initrd of {version}\n").repeat(3000).into_bytes();
        let file = |name: &str, b: &[u8]| FileRef {
            path: format!("{dir}/{name}"),
            size: b.len() as u64,
            sha256: sha(b),
        };
        let mut manifest = Manifest {
            format: 1,
            image: IMAGE.into(),
            arch: "x86_64".into(),
            version: version.parse().expect("version"),
            min_source_version: None,
            usr: UsrImage {
                size: enc.image_size,
                verity: Verity {
                    root_hash: img.root.clone(),
                    salt: hex::encode(&img.salt),
                    data_blocks: img.data_blocks,
                },
                payload: enc.payload_ref(format!("{dir}/usr.payload")),
                chunk_size: enc.chunk_size,
                chunks: enc.chunks.clone(),
                raw: self.raw.then(|| file("usr.img", &img.bytes)),
            },
            kernel: file("vmlinuz", &kernel),
            initrd: file("initrd", &initrd),
        };
        edit(&mut manifest);
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).expect("json");
        self.write(&format!("{dir}/usr.payload"), &payload_bytes);
        if self.raw {
            self.write(&format!("{dir}/usr.img"), &img.bytes);
        }
        self.write(&format!("{dir}/vmlinuz"), &kernel);
        self.write(&format!("{dir}/initrd"), &initrd);
        self.write(&format!("{dir}/manifest.json"), &manifest_bytes);
        Published {
            manifest,
            manifest_bytes,
            payload: payload_bytes,
            kernel,
            initrd,
        }
    }

    pub fn pointer(&self, channel: &str, p: &Published, expires: u64) -> ChannelPointer {
        ChannelPointer {
            format: 1,
            image: IMAGE.into(),
            channel: channel.into(),
            version: p.manifest.version.clone(),
            manifest: p.manifest_ref(),
            rollout: Rollout {
                start: 0,
                duration_secs: 0,
            },
            issued: now() - 10,
            expires,
        }
    }

    pub fn signed(pointer: &ChannelPointer, key: &PrivateKey) -> Vec<u8> {
        let signed = serde_json::to_string(pointer).expect("json");
        let signature = key.sign(signed.as_bytes());
        serde_json::to_vec(&Envelope {
            signed,
            signatures: vec![Signature {
                key_id: key.public().id(),
                signature,
            }],
        })
        .expect("json")
    }

    /// Points `channel` at `p`, signed with the repository key, valid for an hour.
    pub fn point(&self, channel: &str, p: &Published) {
        let ptr = self.pointer(channel, p, now() + 3600);
        self.write_pointer(channel, &Repo::signed(&ptr, &self.key));
    }

    pub fn write_pointer(&self, channel: &str, bytes: &[u8]) {
        self.write(&format!("{IMAGE}/channels/{channel}.json"), bytes);
    }
}

/// Partition layout of the test disk (512-byte blocks).
pub const ESP_MIB: u64 = 40;
pub const USR_MIB: u64 = 12;
pub const OEM_MIB: u64 = 8;

/// A node: a root directory for [`Paths::under`] and a disk image.
pub struct Node {
    pub root: PathBuf,
    pub paths: Paths,
    pub disk: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fat_image(path: &Path, mib: u64, fat32: bool, files: &[(&str, &[u8])]) {
    let _ = std::fs::remove_file(path);
    let mut mkfs = Command::new("mkfs.vfat");
    if fat32 {
        mkfs.args(["-F", "32", "-s", "1"]);
    }
    run(mkfs
        .args(["-S", "512", "-C"])
        .arg(path)
        .arg((mib * 1024).to_string()));
    let img = path.to_str().expect("utf8");
    let mut dirs: Vec<String> = Vec::new();
    for (target, _) in files {
        let parts: Vec<&str> = target.split('/').collect();
        for i in 1..parts.len() {
            let d = format!("::{}", parts[..i].join("/"));
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    if !dirs.is_empty() {
        run(Command::new("mmd").args(["-i", img]).args(&dirs));
    }
    let staging = path.with_extension("staging");
    std::fs::create_dir_all(&staging).expect("staging");
    for (i, (target, content)) in files.iter().enumerate() {
        let src = staging.join(i.to_string());
        std::fs::write(&src, content).expect("stage");
        run(Command::new("mcopy")
            .args(["-o", "-i", img])
            .arg(&src)
            .arg(format!("::{target}")));
    }
    let _ = std::fs::remove_dir_all(&staging);
}

/// The `slot-a.conf` the image builder writes.
pub fn slot_conf(version: &str, img: &SlotImage) -> String {
    let verity = UsrVerity {
        root_hash: img.root.clone(),
        salt: hex::encode(&img.salt),
        data_blocks: img.data_blocks,
    };
    SlotConf::new(version, &verity).render(Writer::Builder)
}

/// Options of a test node.
pub struct NodeSpec<'a> {
    pub running: &'a SlotImage,
    pub version: &'a str,
    pub server: Option<String>,
    pub oem_toml: Option<String>,
    pub admin_toml: Option<String>,
}

pub fn node(dir: &Path, spec: NodeSpec<'_>) -> Node {
    let root = dir.join("root");
    let paths = Paths::under(&root);
    let disk = dir.join("disk.img");
    let mib = 1u64 << 20;
    let bs = 512u64;
    // p1 at 1 MiB, then 3, 4, 6, 9 back to back.
    let layout = Partition::ALL.map(|p| {
        let mib = match p {
            Partition::Esp => ESP_MIB,
            Partition::UsrA | Partition::UsrB => USR_MIB,
            Partition::Oem => OEM_MIB,
            Partition::Root => 1,
        };
        (p.number(), p.type_guid(), mib, p.label())
    });
    let total_mib = 1 + layout.iter().map(|l| l.2).sum::<u64>() + 1;
    let f = std::fs::File::create(&disk).expect("disk");
    f.set_len(total_mib * mib).expect("size");
    drop(f);
    let mut gpt = Gpt::new(total_mib * mib / bs, bs, Guid::from_hash([9; 16])).expect("gpt");
    let mut at = mib;
    let mut offsets = std::collections::HashMap::new();
    for (n, ty, size, label) in layout {
        let first = at / bs;
        let last = (at + size * mib) / bs - 1;
        *gpt.partition_mut(n).expect("entry") =
            Entry::new(ty, Guid::from_hash([n as u8; 16]), first, last, label);
        offsets.insert(n, at);
        at += size * mib;
    }
    gpt.partition_mut(3).expect("a").attributes = GptPrio::new(1, 0, true).0;
    let mut dev = FileDisk::open(&disk).expect("open");
    gpt.write(&mut dev).expect("write gpt");
    drop(dev);

    let put = |offset: u64, bytes: &[u8]| {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&disk)
            .expect("open");
        f.write_all_at(bytes, offset).expect("write");
    };
    put(offsets[&Slot::A.partition_number()], &spec.running.bytes);
    let esp = dir.join("esp.img");
    let conf = slot_conf(spec.version, spec.running);
    let files = SlotFiles::of(Slot::A);
    let kernel = b"running kernel".repeat(100);
    let initrd = b"running initrd".repeat(100);
    fat_image(
        &esp,
        ESP_MIB,
        true,
        &[
            (esp::BOOTLOADER, b"bootloader"),
            (esp::LOADER_CONF, b"timeout 0\n"),
            (&files.kernel, &kernel),
            (&files.initrd, &initrd),
            (&files.conf, conf.as_bytes()),
        ],
    );
    put(
        offsets[&Partition::Esp.number()],
        &std::fs::read(&esp).expect("esp"),
    );
    let oem = dir.join("oem.img");
    match &spec.oem_toml {
        Some(t) => fat_image(&oem, OEM_MIB, false, &[("update.toml", t.as_bytes())]),
        None => fat_image(&oem, OEM_MIB, false, &[]),
    }
    put(
        offsets[&Partition::Oem.number()],
        &std::fs::read(&oem).expect("oem"),
    );

    let w = |p: &Path, text: &str| {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    w(
        &paths.os_release,
        &format!(
            "NAME=Tandem\nIMAGE_ID={IMAGE}\nVERSION_ID={}\nTANDEM_ARCH=x86_64\nTANDEM_CHANNEL=stable\n",
            spec.version
        ),
    );
    w(&paths.machine_id, &format!("{MACHINE_ID}\n"));
    w(
        &paths.trust_dir.join("release.pub"),
        &key().public().to_file(),
    );
    set_running(&paths, &disk, Slot::A);
    let mut admin = String::new();
    if let Some(s) = &spec.server {
        admin.push_str(&format!("server = \"{s}\"\n"));
    }
    if let Some(t) = &spec.admin_toml {
        admin.push_str(t);
    }
    if !admin.is_empty() {
        w(&paths.admin_config, &admin);
    }
    Node { root, paths, disk }
}

/// Writes early.json as the early init would after booting `slot`.
pub fn set_running(paths: &Paths, disk: &Path, slot: Slot) {
    let early = EarlyBoot {
        slot,
        disk: disk.display().to_string(),
        usr_partition: format!("{}{}", disk.display(), slot.partition_number()),
        initramfs_started_us: 0,
        switch_root_us: 0,
        usr_device: String::new(),
        root_partition: String::new(),
        modules_failed: Vec::new(),
        root_grow: None,
        steps: Vec::new(),
        live: false,
    };
    std::fs::create_dir_all(paths.early.parent().expect("run")).expect("mkdir");
    std::fs::write(&paths.early, serde_json::to_vec(&early).expect("json")).expect("write");
}

impl Node {
    pub fn boot_disk(&self) -> updater::disk::BootDisk {
        updater::disk::BootDisk::open(&self.disk, false).expect("disk")
    }

    pub fn slots(&self) -> SlotPair {
        self.boot_disk().slots().expect("slots")
    }

    pub fn set_slots(&self, pair: SlotPair) {
        updater::disk::BootDisk::open(&self.disk, true)
            .expect("disk")
            .modify("test", |p| {
                *p = pair;
                Ok(())
            })
            .expect("modify");
    }

    /// `len` bytes of slot `slot` from `offset`.
    pub fn slot_bytes(&self, slot: Slot, offset: u64, len: usize) -> Vec<u8> {
        let r = self.boot_disk().slot(slot).expect("slot");
        let mut buf = vec![0; len];
        r.read_at(offset, &mut buf).expect("read");
        buf
    }

    pub fn fill_slot(&self, slot: Slot, byte: u8) {
        let r = updater::disk::BootDisk::open(&self.disk, true)
            .expect("disk")
            .slot(slot)
            .expect("slot");
        r.write_at(0, &vec![byte; r.len() as usize]).expect("fill");
    }

    pub fn esp_file(&self, path: &str) -> Option<Vec<u8>> {
        let d = self.boot_disk();
        let esp =
            updater::esp::Fat::open(&d.partition(Partition::Esp).expect("esp"), Partition::Esp)
                .expect("fat");
        esp.read(path).expect("read")
    }

    /// The ESP partition copied out, for fsck.vfat.
    pub fn esp_copy(&self, to: &Path) {
        let d = self.boot_disk();
        let esp = d.partition(Partition::Esp).expect("esp");
        let mut buf = vec![0; esp.len() as usize];
        esp.read_at(0, &mut buf).expect("read");
        std::fs::write(to, buf).expect("write");
    }

    pub fn disk_sha(&self) -> String {
        sha(&std::fs::read(&self.disk).expect("disk"))
    }
}

/// One request the server saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub path: String,
    /// `start..end` (end exclusive) if a Range was asked for.
    pub range: Option<(u64, u64)>,
}

/// Faults the server injects.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Serve at most this many bytes of file bodies (all but the JSON
    /// pointer and manifest) in total, then drop connections mid-body.
    pub payload_budget: Option<u64>,
    /// Flip the byte at this offset of this file when serving it.
    pub flip: Option<(String, u64)>,
}

/// A tiny HTTP/1.1 file server over a directory.
pub struct Server {
    pub url: String,
    pub log: Arc<Mutex<Vec<Logged>>>,
    pub faults: Arc<Mutex<Faults>>,
}

impl Server {
    pub fn start(dir: &Path) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let faults = Arc::new(Mutex::new(Faults::default()));
        let (dir, l2, f2) = (dir.to_path_buf(), log.clone(), faults.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (dir, l3, f3) = (dir.clone(), l2.clone(), f2.clone());
                std::thread::spawn(move || handle(s, &dir, &l3, &f3));
            }
        });
        Server { url, log, faults }
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().expect("log").clone()
    }

    pub fn clear(&self) {
        self.log.lock().expect("log").clear();
    }

    pub fn set(&self, f: Faults) {
        *self.faults.lock().expect("faults") = f;
    }

    /// Range requests for uncompressed images (block fetches), in order.
    pub fn block_ranges(&self) -> Vec<(u64, u64)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("usr.img"))
            .filter_map(|r| r.range)
            .collect()
    }

    /// Range requests for payloads, in order.
    pub fn payload_ranges(&self) -> Vec<(u64, u64)> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.ends_with("usr.payload"))
            .filter_map(|r| r.range)
            .collect()
    }
}

fn handle(
    mut s: TcpStream,
    dir: &Path,
    log: &Mutex<Vec<Logged>>,
    faults: &Mutex<Faults>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            let spec = v.trim().trim_start_matches("bytes=");
            let (a, b) = spec.split_once('-').unwrap_or(("0", ""));
            range = Some((a.parse::<u64>().unwrap_or(0), b.parse::<u64>().ok()));
        }
    }
    let Ok(mut body) = std::fs::read(dir.join(&path)) else {
        log.lock().expect("log").push(Logged { path, range: None });
        s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    };
    let mut f = faults.lock().expect("faults");
    if let Some((p, at)) = &f.flip
        && *p == path
        && (*at as usize) < body.len()
    {
        body[*at as usize] ^= 0x55;
    }
    let len = body.len() as u64;
    let (status, start, end) = match range {
        Some((a, b)) => {
            let end = b.map_or(len, |b| (b + 1).min(len));
            ("206 Partial Content", a, end)
        }
        None => ("200 OK", 0, len),
    };
    log.lock().expect("log").push(Logged {
        path: path.clone(),
        range: range.map(|_| (start, end)),
    });
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        end - start
    );
    if range.is_some() {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end - 1
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let mut slice = &body[start as usize..end as usize];
    if !path.ends_with(".json")
        && let Some(budget) = f.payload_budget.as_mut()
    {
        let n = (*budget).min(slice.len() as u64);
        *budget -= n;
        if n < slice.len() as u64 {
            s.write_all(&slice[..n as usize])?;
            s.flush()?;
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
        slice = &slice[..n as usize];
    }
    drop(f);
    s.write_all(slice)?;
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

// An installing node and its repository, for the install tests.

pub struct World {
    pub _dir: tempfile::TempDir,
    pub repo: Repo,
    pub server: Server,
    pub node: Node,
}

/// v1.0.0 runs in slot A; the repository is empty until a test publishes.
pub fn world(v1: &SlotImage) -> World {
    let dir = tempfile::tempdir().expect("tmp");
    let repo = Repo::new(&dir.path().join("repo"));
    let server = Server::start(&repo.dir);
    let node = node(
        dir.path(),
        NodeSpec {
            running: v1,
            version: "1.0.0",
            server: Some(server.url.clone()),
            oem_toml: None,
            admin_toml: None,
        },
    );
    World {
        _dir: dir,
        repo,
        server,
        node,
    }
}

pub fn v1() -> SlotImage {
    slot_image(blocks(1, 2000))
}

pub fn offer(w: &World) -> (Engine, Box<Offer>) {
    let mut engine = Engine::new(w.node.paths.clone());
    let mut http = Http::new(&w.server.url, &updater::transport::Transport::direct());
    match engine.check(&mut http).expect("check") {
        CheckOutcome::Available(o) => (engine, o),
        other => panic!("expected an update, got {other:?}"),
    }
}

pub fn install(w: &World) -> Result<ApplyReport, Error> {
    let (engine, offer) = offer(w);
    let ctx = engine.install_context().expect("context");
    engine::install(
        &ctx,
        &offer,
        &mut Http::new(&w.server.url, &updater::transport::Transport::direct()),
        &engine.status,
    )
}

pub fn assert_installed(w: &World, img: &SlotImage, p: &Published) {
    assert_eq!(
        w.node.slot_bytes(Slot::B, 0, img.bytes.len()),
        img.bytes,
        "slot B holds the new image"
    );
    let pair = w.node.slots();
    assert_eq!(
        pair.a,
        GptPrio::new(1, 0, true),
        "running slot drops to priority 1, stays confirmed"
    );
    assert_eq!(
        pair.b,
        GptPrio::new(2, tandem_slot::TRIAL_BOOTS, false),
        "new slot: priority 2, its trial boots"
    );
    assert_eq!(
        w.node.esp_file("EFI/tandem/vmlinuz-b"),
        Some(p.kernel.clone())
    );
    assert_eq!(
        w.node.esp_file("EFI/tandem/initrd-b"),
        Some(p.initrd.clone())
    );
    let conf = String::from_utf8(
        w.node
            .esp_file("EFI/tandem/slot-b.conf")
            .expect("slot-b.conf"),
    )
    .expect("utf8");
    let parsed = tandem_contract::esp::parse_slot_conf(conf.as_bytes()).value;
    assert_eq!(
        parsed.version.as_deref(),
        Some(p.manifest.version.to_string().as_str())
    );
    let verity = parsed.usr_verity().expect("verity arguments");
    assert_eq!(verity.data_blocks, img.data_blocks);
    assert_eq!(verity.root_hash, img.root);
    assert!(
        conf.contains(&format!("tandem.usrsalt={}", hex::encode(&img.salt))),
        "{conf}"
    );
    let state = State::load(&w.node.paths.state_file()).expect("state");
    let pending = state.pending.expect("pending record");
    assert_eq!(
        (pending.version.to_string(), pending.slot.as_str()),
        (p.manifest.version.to_string(), "B")
    );
    assert!(
        !w.node.paths.progress_file().exists(),
        "progress.json is removed after activation"
    );
}
