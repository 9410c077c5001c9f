//! Interoperability with Debian's `cgpt` (ChromeOS vboot tools), which reads
//! and writes the same attribute bits: every one of the 512 states of a slot
//! is written by Tandem and read by cgpt, and written by cgpt and read by
//! Tandem. Needs `cgpt` (package `cgpt`; `cargo xtask test` installs it).

use std::path::Path;
use std::process::Command;

use tandem_slot::gpt::Entry;
use tandem_slot::guid::types;
use tandem_slot::{FileDisk, Gpt, GptPrio, Guid, Slot, table};

const BLOCKS: u64 = 16 * 2048; // 16 MiB

fn make_disk(path: &Path) {
    let file = std::fs::File::create(path).expect("create image");
    file.set_len(BLOCKS * 512).expect("size image");
    let mut disk = FileDisk::open(path).expect("open image");
    let mut gpt = Gpt::new(BLOCKS, 512, Guid::from_hash([42; 16])).expect("fits");
    for slot in Slot::ALL {
        let n = slot.partition_number();
        let first = 2048 * u64::from(n);
        *gpt.partition_mut(n).expect("entry") = Entry::new(
            types::USR,
            Guid::from_hash([n as u8; 16]),
            first,
            first + 2047,
            slot.label(),
        );
    }
    gpt.write(&mut disk).expect("write table");
}

fn cgpt(args: &[&str]) -> String {
    let out = Command::new("cgpt")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run cgpt ({e}): install it with `cargo xtask setup` (Debian package cgpt)"
            )
        });
    assert!(
        out.status.success(),
        "cgpt {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn all_states() -> impl Iterator<Item = GptPrio> {
    (0..=15u8)
        .flat_map(|p| (0..=15u8).flat_map(move |t| [false, true].map(|s| GptPrio::new(p, t, s))))
}

#[test]
fn cgpt_reads_what_tandem_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("disk.raw");
    make_disk(&img);
    let path = img.to_str().expect("utf-8 path");
    let mut disk = FileDisk::open(&img).expect("open");
    for attrs in all_states() {
        // B gets a different state so a mix-up between slots shows.
        let other = GptPrio::new(
            15 - attrs.priority(),
            15 - attrs.tries(),
            !attrs.successful(),
        );
        table::modify(&mut disk, |pair| {
            pair.set(Slot::A, attrs);
            pair.set(Slot::B, other);
            Ok(())
        })
        .expect("write attributes");
        for (slot, want) in [(Slot::A, attrs), (Slot::B, other)] {
            let i = slot.partition_number().to_string();
            let got = (
                cgpt(&["show", "-i", &i, "-P", path]),
                cgpt(&["show", "-i", &i, "-T", path]),
                cgpt(&["show", "-i", &i, "-S", path]),
            );
            let want_text = (
                want.priority().to_string(),
                want.tries().to_string(),
                u8::from(want.successful()).to_string(),
            );
            assert_eq!(got, want_text, "slot {slot} written as {want}");
        }
    }
}

#[test]
fn tandem_reads_what_cgpt_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("disk.raw");
    make_disk(&img);
    let path = img.to_str().expect("utf-8 path");
    for attrs in all_states() {
        let (p, t, s) = (
            attrs.priority().to_string(),
            attrs.tries().to_string(),
            u8::from(attrs.successful()).to_string(),
        );
        cgpt(&["add", "-i", "4", "-P", &p, "-T", &t, "-S", &s, path]);
        let mut disk = FileDisk::open_read_only(&img).expect("open");
        let gpt = Gpt::read(&mut disk).expect("cgpt wrote a valid table");
        assert!(gpt.health.is_clean(), "{:?}", gpt.health);
        let pair = table::slot_pair(&gpt).expect("tandem layout");
        assert_eq!(pair.b, attrs, "cgpt set {attrs}");
        assert_eq!(pair.a, GptPrio::new(0, 0, false), "slot A untouched");
    }
}
