//! The hash tree is byte-for-byte what `veritysetup format --no-superblock`
//! writes, and `veritysetup verify` accepts our root hash. Needs
//! `veritysetup` (Debian package cryptsetup-bin; `cargo xtask test` installs it).

use std::process::Command;

use tandem_slot::verity;

fn veritysetup(args: &[&str]) -> String {
    let out = Command::new("veritysetup")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run veritysetup ({e}): install cryptsetup-bin (`cargo xtask setup`)")
        });
    assert!(
        out.status.success(),
        "veritysetup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tree_and_root_match_veritysetup() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1, 128, 129 and 16385 blocks cover one, two and three levels.
    for blocks in [1usize, 128, 129, 16_385] {
        let data: Vec<u8> = (0..blocks * verity::BLOCK_SIZE)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8)
            .collect();
        let salt = [0x5au8; 32];
        let ours =
            verity::build(&mut data.as_slice(), blocks as u64, &salt, |_| {}).expect("build");

        let data_path = dir.path().join("data");
        let hash_path = dir.path().join("hash");
        std::fs::write(&data_path, &data).expect("write data");
        let _ = std::fs::remove_file(&hash_path);
        let salt_hex = verity::hex(&salt);
        let (d, h) = (
            data_path.to_str().expect("utf-8"),
            hash_path.to_str().expect("utf-8"),
        );
        let out = veritysetup(&[
            "format",
            "--no-superblock",
            "--hash=sha256",
            &format!("--salt={salt_hex}"),
            d,
            h,
        ]);
        let root_line = out
            .lines()
            .find_map(|l| l.strip_prefix("Root hash:"))
            .expect("veritysetup prints the root hash");
        assert_eq!(root_line.trim(), verity::hex(&ours.root), "{blocks} blocks");
        let theirs = std::fs::read(&hash_path).expect("read tree");
        assert_eq!(theirs, ours.tree, "{blocks} blocks: tree bytes differ");

        veritysetup(&[
            "verify",
            "--no-superblock",
            &format!("--salt={salt_hex}"),
            d,
            h,
            &verity::hex(&ours.root),
        ]);
    }
}
