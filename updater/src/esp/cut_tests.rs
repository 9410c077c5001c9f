//! Power cuts during an ESP install, simulated write by write: every write
//! `install_slot` makes is recorded, then for many cut points only the
//! first k land on a copy of the volume, the repair runs, and `fsck.vfat
//! -n` must find nothing, slot A must be untouched, and a later install
//! must work.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tandem_contract::esp::{self as files, SlotFiles};
use tandem_slot::Slot;

use super::repair::{self, Geometry};
use super::*;

/// Deterministic bytes (xorshift): a file's content says which file it is.
fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The ESP test volume size (KiB): the smallest round size with enough
/// clusters of 512 bytes for FAT32.
const KIB: u32 = 36 * 1024;

fn mkfs(path: &Path) {
    let _ = std::fs::remove_file(path);
    run(Command::new("mkfs.vfat")
        .args([
            "--invariant",
            "-S",
            "512",
            "-F",
            "32",
            "-n",
            "EFI-SYSTEM",
            "-C",
        ])
        .arg(path)
        .arg(KIB.to_string()));
}

/// A volume holding `files`, written with mtools as the image builder does.
fn esp_image(path: &Path, files: &[(&str, Vec<u8>)]) {
    mkfs(path);
    let img = path.to_str().expect("utf8");
    run(Command::new("mmd").args(["-i", img, "::EFI", "::EFI/BOOT", "::EFI/tandem"]));
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

/// What fsck.vfat -n says beyond its banner and summary; `Ok` if nothing.
fn fsck(path: &Path) -> Result<(), String> {
    let out = Command::new("fsck.vfat")
        .arg("-n")
        .arg(path)
        .output()
        .expect("fsck.vfat");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = format!("{}: ", path.display());
    let extra: Vec<&str> = text
        .lines()
        .filter(|l| {
            let banner = l.starts_with("fsck.fat ");
            let totals = l.starts_with(&summary) && l.contains(" files, ");
            !banner && !totals
        })
        .collect();
    let alarming = [
        "Dirty",
        "differ",
        "Reclaimed",
        "lost",
        "Free cluster summary",
        "wrong",
    ];
    if out.status.success() && extra.is_empty() && !alarming.iter().any(|w| text.contains(w)) {
        Ok(())
    } else {
        Err(format!("fsck.vfat -n: {}\n{text}", out.status))
    }
}

/// Records every write that reaches the device.
struct Recorder<D> {
    inner: D,
    log: Vec<(u64, Vec<u8>)>,
}

impl<D: Read> Read for Recorder<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<D: Write + Seek> Write for Recorder<D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let at = self.inner.stream_position()?;
        let n = self.inner.write(buf)?;
        self.log.push((at, buf[..n].to_vec()));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<D: Seek> Seek for Recorder<D> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

/// A file whose writes are logged and can be undone.
struct Undo {
    file: File,
    pos: u64,
    len: u64,
    undo: Vec<(u64, Vec<u8>)>,
}

impl Undo {
    fn open(path: &Path) -> Undo {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        let len = file.metadata().expect("len").len();
        Undo {
            file,
            pos: 0,
            len,
            undo: Vec::new(),
        }
    }

    fn writes(&self) -> usize {
        self.undo.len()
    }

    fn revert(&mut self) {
        for (at, old) in self.undo.drain(..).rev() {
            self.file.write_all_at(&old, at).expect("undo");
        }
    }
}

impl Read for Undo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Undo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut old = vec![0u8; buf.len()];
        self.file.read_exact_at(&mut old, self.pos)?;
        self.undo.push((self.pos, old));
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Undo {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.saturating_add_signed(d),
            SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

/// Reads a file from the volume at `path` (fatfs writes nothing on reads).
fn read(img: &Path, file: &str) -> Option<Vec<u8>> {
    let f = File::open(img).expect("open");
    let fs = fatfs::FileSystem::new(f, fatfs::FsOptions::new()).expect("fatfs");
    let mut out = Vec::new();
    let mut h = fs.root_dir().open_file(file).ok()?;
    h.read_to_end(&mut out).expect("read");
    Some(out)
}

fn names(img: &Path, dir: &str) -> Vec<String> {
    let f = File::open(img).expect("open");
    let fs = fatfs::FileSystem::new(f, fatfs::FsOptions::new()).expect("fatfs");
    let d = fs.root_dir().open_dir(dir).expect("dir");
    d.iter().map(|e| e.expect("entry").file_name()).collect()
}

fn repair_file(dev: &mut Undo) -> Repair {
    repair::check_and_repair(dev, "test ESP", &is_leftover_temp).expect("repair")
}

struct Content {
    a: Vec<(String, Vec<u8>)>,
}

fn layout() -> (Vec<(&'static str, Vec<u8>)>, Content) {
    let a = SlotFiles::of(Slot::A);
    let b = SlotFiles::of(Slot::B);
    let keep = vec![
        (files::BOOTLOADER.to_string(), bytes(1, 20_000)),
        (files::LOADER_CONF.to_string(), b"timeout 0\n".to_vec()),
        (a.kernel.clone(), bytes(2, 600_000)),
        (a.initrd.clone(), bytes(3, 400_000)),
        (
            a.conf.clone(),
            b"version 1.0.0\noptions tandem.usrhash=aa\n".to_vec(),
        ),
        // Two more short names fill EFI/tandem's first cluster: the install
        // has to grow it (fatfs links a cluster, then zeroes it).
        ("EFI/tandem/README".to_string(), bytes(11, 3000)),
        ("EFI/tandem/NOTES".to_string(), bytes(12, 700)),
    ];
    let old_b = [
        (b.kernel.clone(), bytes(4, 500_000)),
        (b.initrd.clone(), bytes(5, 300_000)),
        (b.conf.clone(), b"version 0.9.0\n".to_vec()),
    ];
    let all: Vec<(&'static str, Vec<u8>)> = keep
        .iter()
        .chain(old_b.iter())
        .map(|(p, c)| (&*String::leak(p.clone()), c.clone()))
        .collect();
    (all, Content { a: keep })
}

fn check_slot_a(img: &Path, content: &Content) -> Result<(), String> {
    for (path, want) in &content.a {
        match read(img, path) {
            Some(got) if got == *want => {}
            Some(got) => return Err(format!("{path} changed ({} bytes)", got.len())),
            None => return Err(format!("{path} is gone")),
        }
    }
    Ok(())
}

fn no_temp(img: &Path) -> Result<(), String> {
    let left: Vec<String> = names(img, files::DIR)
        .into_iter()
        .filter(|n| n.to_ascii_lowercase().ends_with(".new"))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("left: {left:?}"))
    }
}

#[test]
fn fresh_and_populated_volumes_get_no_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("fresh.img");
    mkfs(&img);
    let mut dev = Undo::open(&img);
    let r = repair_file(&mut dev);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(dev.writes(), 0);
    assert_eq!(r.to_string(), "ESP clean");

    let (all, _) = layout();
    esp_image(&img, &all);
    fsck(&img).expect("mtools image");
    let mut dev = Undo::open(&img);
    let r = repair_file(&mut dev);
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(dev.writes(), 0);
}

#[test]
fn not_fat32_is_refused_without_a_write() {
    let dir = tempfile::tempdir().expect("tmp");
    let img = dir.path().join("fat16.img");
    run(Command::new("mkfs.vfat")
        .args(["--invariant", "-S", "512", "-F", "16", "-C"])
        .arg(&img)
        .arg("32768"));
    let mut dev = Undo::open(&img);
    let err = repair::check_and_repair(&mut dev, "p1", &is_leftover_temp).expect_err("fat16");
    assert!(matches!(err, Error::NotFat32 { .. }), "{err}");
    assert!(err.to_string().contains("p1"), "{err}");
    assert_eq!(dev.writes(), 0);

    let zeros = dir.path().join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 1 << 20]).expect("zeros");
    let mut dev = Undo::open(&zeros);
    let err = repair::check_and_repair(&mut dev, "p1", &is_leftover_temp).expect_err("zeros");
    assert!(matches!(err, Error::NotFat32 { .. }), "{err}");
    assert_eq!(dev.writes(), 0);
}

/// Whether a write is file data (a whole cluster of non-zero bytes in the
/// data area) rather than metadata (boot sector, FSInfo, FAT, entries,
/// a directory cluster being zeroed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fat,
    Data,
    Meta,
}

#[test]
fn cuts_during_an_install_are_repaired() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tmp");
    let base = dir.path().join("base.img");
    let (all, content) = layout();
    esp_image(&base, &all);
    let mut original = std::fs::read(&base).expect("read");
    let geo = Geometry::parse(&original[..512]).expect("geometry");
    let fat_start = u64::from(geo.reserved) * 512;
    let data_start = fat_start + u64::from(geo.fats) * u64::from(geo.fat_sectors) * 512;
    // Free clusters hold old data, as on a used ESP: a directory cluster
    // fatfs linked but had not zeroed yet reads as garbage entries.
    let junk = bytes(99, 1 << 16);
    for c in 2..geo.clusters as usize + 2 {
        let e = fat_start as usize + 4 * c;
        if original[e..e + 4] == [0; 4] {
            let at = data_start as usize + (c - 2) * 512;
            let from = (c * 512) % (junk.len() - 512);
            original[at..at + 512].copy_from_slice(&junk[from..from + 512]);
        }
    }
    std::fs::write(&base, &original).expect("junk");
    fsck(&base).expect("base image");

    // Record the install of slot B.
    let kernel = bytes(7, 600_000);
    let initrd = bytes(8, 400_000);
    let conf = "version 2.0.0\noptions tandem.usrhash=bb\n";
    let mut rec = Recorder {
        inner: io::Cursor::new(original.clone()),
        log: Vec::new(),
    };
    let r = install_slot_on(
        &mut rec,
        "test ESP",
        Slot::B,
        &kernel,
        &initrd,
        conf,
        &mut |_| {},
    )
    .expect("install");
    assert!(r.is_clean());
    let writes = rec.log;
    let kinds: Vec<Kind> = writes
        .iter()
        .map(|(at, b)| {
            if (fat_start..data_start).contains(at) {
                Kind::Fat
            } else if *at >= data_start && b.len() >= 256 && b.iter().any(|&x| x != 0) {
                Kind::Data
            } else {
                Kind::Meta
            }
        })
        .collect();
    let count = |k| kinds.iter().filter(|&&x| x == k).count();
    let n = writes.len();
    let zeroed = writes
        .iter()
        .filter(|(at, b)| *at >= data_start && b.len() == 512 && b.iter().all(|&x| x == 0))
        .count();

    // Cut points (k = writes that landed): around every metadata write,
    // the FAT writes next to one, and an even sample of the rest.
    let mut cuts: Vec<usize> = Vec::new();
    for (i, k) in kinds.iter().enumerate() {
        if *k == Kind::Meta {
            cuts.extend(i.saturating_sub(1)..=(i + 2).min(n));
        }
    }
    for kind in [Kind::Fat, Kind::Data] {
        let idx: Vec<usize> = (0..n).filter(|&i| kinds[i] == kind).collect();
        let step = (idx.len() / 40).max(1);
        cuts.extend(idx.iter().step_by(step).map(|&i| i + 1));
    }
    cuts.push(n);
    cuts.sort_unstable();
    cuts.dedup();
    // Torn writes: only the first 512-byte sector of write k lands.
    let torn: Vec<usize> = (0..n)
        .filter(|&i| {
            let (at, b) = &writes[i];
            (at % 512) as usize + b.len() > 512
        })
        .collect();

    let work = dir.path().join("work.img");
    std::fs::write(&work, &original).expect("work");
    let mut dev = Undo::open(&work);
    let mut applied = 0usize;
    let mut failures = Vec::new();
    let mut repaired = 0;
    let mut garbage = 0;
    let mut installs = 0;
    let mut unrepaired = 0;
    let mut repair_cuts = 0;
    let new_kernel = bytes(9, 600_000);
    let new_initrd = bytes(10, 400_000);
    let new_conf = "version 3.0.0\n";
    let b = SlotFiles::of(Slot::B);
    let points: Vec<(usize, bool)> = cuts
        .iter()
        .map(|&k| (k, false))
        .chain(torn.iter().map(|&k| (k, true)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (i, &(k, is_torn)) in points.iter().enumerate() {
        while applied < k {
            let (at, b) = &writes[applied];
            dev.file.write_all_at(b, *at).expect("apply");
            applied += 1;
        }
        if is_torn {
            let (at, b) = &writes[k];
            let part = 512 - (at % 512) as usize;
            dev.write_all_at_logged(*at, &b[..part]);
        }
        let what = format!(
            "cut after {k} of {n} writes{}",
            if is_torn { " (torn)" } else { "" }
        );
        if i % 10 == 5 && fsck(&work).is_err() {
            // The cut alone leaves what fsck complains about (the check
            // below sees the repair's work, not a clean cut).
            unrepaired += 1;
        }
        let r = repair_file(&mut dev);
        if !r.is_clean() {
            repaired += 1;
        }
        if r.stray_slots > 0 || !r.broken_removed.is_empty() || !r.dirs_truncated.is_empty() {
            garbage += 1;
        }
        let check = fsck(&work)
            .and_then(|()| no_temp(&work))
            .and_then(|()| check_slot_a(&work, &content))
            .and_then(|()| {
                let mut again = Undo::open(&work);
                let r2 = repair_file(&mut again);
                if again.writes() == 0 {
                    Ok(())
                } else {
                    Err(format!("second repair wrote: {r2}"))
                }
            });
        if let Err(e) = check {
            failures.push(format!("{what}: {r}: {e}"));
        } else if r.writes >= 6 && i % 60 == 0 {
            // The repair itself cut after each of its writes: the next
            // repair finishes the job.
            let done: Vec<(u64, Vec<u8>)> = dev
                .undo
                .iter()
                .map(|(at, old)| {
                    let mut new = vec![0u8; old.len()];
                    dev.file.read_exact_at(&mut new, *at).expect("read");
                    (*at, new)
                })
                .collect();
            dev.revert();
            for j in 1..done.len() {
                for (at, new) in &done[..j] {
                    dev.write_all_at_logged(*at, new);
                }
                repair_cuts += 1;
                let r = repair_file(&mut dev);
                let check = fsck(&work)
                    .and_then(|()| no_temp(&work))
                    .and_then(|()| check_slot_a(&work, &content));
                if let Err(e) = check {
                    failures.push(format!("{what}, repair cut after {j} writes: {r}: {e}"));
                }
                dev.revert();
            }
        } else if i % 6 == 0 || is_torn || k == n {
            // A later install into slot B works on the repaired volume.
            installs += 1;
            let res = install_slot_on(
                &mut dev,
                "test ESP",
                Slot::B,
                &new_kernel,
                &new_initrd,
                new_conf,
                &mut |_| {},
            );
            let check = res
                .map_err(|e| e.to_string())
                .and_then(|r2| {
                    if r2.is_clean() {
                        Ok(())
                    } else {
                        Err(format!("install repaired again: {r2}"))
                    }
                })
                .and_then(|()| fsck(&work))
                .and_then(|()| check_slot_a(&work, &content))
                .and_then(|()| {
                    for (path, want) in [
                        (&b.kernel, &new_kernel),
                        (&b.initrd, &new_initrd),
                        (&b.conf, &new_conf.as_bytes().to_vec()),
                    ] {
                        if read(&work, path).as_ref() != Some(want) {
                            return Err(format!("{path} is not the new one"));
                        }
                    }
                    Ok(())
                });
            if let Err(e) = check {
                failures.push(format!("{what}, then an install: {e}"));
            }
        }
        dev.revert();
    }
    eprintln!(
        "{} writes recorded ({} FAT, {} data, {} other metadata); {} cut points ({} torn), {} repaired, {} followed by an install, {} cuts of a repair, {} with stray or broken entries, {} directory clusters zeroed; {:.1} s",
        n,
        count(Kind::Fat),
        count(Kind::Data),
        count(Kind::Meta),
        points.len(),
        torn.len(),
        repaired,
        installs,
        repair_cuts,
        garbage,
        zeroed,
        started.elapsed().as_secs_f64()
    );
    assert!(points.len() >= 60, "{} cut points", points.len());

    // The production path: install_slot on a partition cut in the middle
    // of writing vmlinuz-b.new repairs it first and says so.
    let data: Vec<usize> = (0..n).filter(|&i| kinds[i] == Kind::Data).collect();
    let k = data[data.len() / 4];
    let cut = dir.path().join("cut.img");
    let mut image = original.clone();
    for (at, b) in &writes[..k] {
        image[*at as usize..*at as usize + b.len()].copy_from_slice(b);
    }
    std::fs::write(&cut, &image).expect("cut image");
    assert!(fsck(&cut).is_err(), "the cut left nothing to repair");
    let region = crate::disk::Region::whole(&cut, true).expect("region");
    let mut steps = Vec::new();
    install_slot(
        &region,
        Slot::B,
        &new_kernel,
        &new_initrd,
        new_conf,
        &mut |s| steps.push(s.to_string()),
    )
    .expect("install_slot");
    let said = &steps[0];
    for part in [
        "ESP repaired: ",
        "leaked clusters",
        "dirty flag cleared",
        "EFI/tandem/vmlinuz-b.new removed",
    ] {
        assert!(said.contains(part), "{said}");
    }
    fsck(&cut).expect("after install_slot");
    check_slot_a(&cut, &content).expect("slot A");
    assert_eq!(read(&cut, &b.kernel), Some(new_kernel.clone()));
    assert!(check_and_repair_esp(&region).expect("check").is_clean());
    assert!(unrepaired > 0, "no cut left anything for fsck to find");
    assert!(repair_cuts > 0, "no repair was cut");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

impl Undo {
    fn write_all_at_logged(&mut self, at: u64, buf: &[u8]) {
        self.seek(SeekFrom::Start(at)).expect("seek");
        self.write_all(buf).expect("write");
    }
}
