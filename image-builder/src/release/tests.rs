//! Release tooling tests.
use super::*;
use crate::build::manifest::{DiskInfo, ImageInfo, KernelInfo, UsrInfo, VerityInfo};
use repository::policy::{NodeFacts, Offer};

const NOW: u64 = 1_800_000_000;

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if i % 3 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                (i % 251) as u8
            }
        })
        .collect()
}

/// A build directory as `tandem build` leaves it, with small files.
fn fake_build(dir: &Path, version: &str, seed: u64) -> BuildDir {
    std::fs::create_dir_all(dir).unwrap();
    let fs_size = 2u64 << 20;
    let usr = bytes((fs_size + 8192) as usize, seed);
    let files = [
        (outputs::USR, usr),
        (outputs::KERNEL, bytes(100_000, seed + 1)),
        (outputs::INITRD, bytes(50_000, seed + 2)),
    ];
    let mut artifacts = std::collections::BTreeMap::new();
    for (name, data) in &files {
        std::fs::write(dir.join(name), data).unwrap();
        artifacts.insert(
            name.to_string(),
            Artifact {
                size: data.len() as u64,
                sha256: sha256_hex(data),
            },
        );
    }
    let m = BuildManifest {
        format: manifest::FORMAT,
        image: ImageInfo {
            name: "demo".into(),
            version: version.into(),
            channel: "stable".into(),
            arch: "x86_64".into(),
        },
        source_date_epoch: 0,
        kernel: KernelInfo {
            release: "6.1.0-test".into(),
            package: None,
            initramfs_modules: vec![],
            system_modules: vec![],
        },
        packages: vec![],
        notes: vec![],
        disk: DiskInfo {
            file: "disk.raw".into(),
            size: 0,
            block_size: 512,
            guid: String::new(),
            partitions: vec![],
        },
        usr: UsrInfo {
            file: outputs::USR.into(),
            filesystem: "erofs".into(),
            fs_size,
            size: fs_size + 8192,
            verity: VerityInfo {
                root_hash: sha256_hex(&seed.to_le_bytes()),
                salt: "00ff".into(),
                algorithm: "sha256".into(),
                data_blocks: fs_size / 4096,
                hash_offset: fs_size,
            },
        },
        artifacts,
    };
    std::fs::write(
        dir.join(outputs::MANIFEST),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    BuildDir::load(dir).unwrap()
}

fn opts<'a>(repo: &'a Path, channel: &'a str, key: &'a PrivateKey) -> PublishOptions<'a> {
    PublishOptions {
        repo,
        channel,
        key,
        min_source_version: None,
        schedule: Schedule {
            start: RolloutStart::In(600),
            duration_secs: 3600,
            expires_in_secs: 7 * 86_400,
        },
        now: NOW,
        payload: payload::Options::default(),
    }
}

fn node<'a>(channel: &'a str, running: &'a Version) -> NodeFacts<'a> {
    NodeFacts {
        image: "demo",
        arch: "x86_64",
        channel,
        running,
        now: NOW + 10,
        allow_downgrade: false,
        failed: &[],
        machine_id: "0123456789abcdef0123456789abcdef",
    }
}

/// Checks a channel as a node would, then every chunk of the payload.
fn check_as_node(repo: &Path, key: &PrivateKey, channel: &str, build: &BuildDir) {
    let running: Version = "0.9".parse().unwrap();
    let n = node(channel, &running);
    let bytes = std::fs::read(repo.join(repo::pointer_path("demo", channel))).unwrap();
    let Offer::Update {
        pointer,
        eligible_at,
    } = policy::check_pointer(&bytes, &[key.public()], &n).unwrap()
    else {
        panic!("no update offered");
    };
    assert!((NOW + 600..NOW + 600 + 3600).contains(&eligible_at));
    let mbytes = std::fs::read(repo.join(&pointer.manifest.path)).unwrap();
    let m = policy::check_manifest(&mbytes, &pointer, &n).unwrap();
    assert_eq!(m.version, build.version);
    assert_eq!(m.usr.verity.root_hash, build.manifest.usr.verity.root_hash);
    let payload = std::fs::read(repo.join(&m.usr.payload.path)).unwrap();
    policy::check_file(&payload, &m.usr.payload).unwrap();
    let mut image = Vec::new();
    for (i, c) in m.usr.chunks.iter().enumerate() {
        let frame = &payload[c.payload_offset as usize..][..c.compressed_size as usize];
        image.extend(payload::decode_chunk(i, c, frame).unwrap());
    }
    assert_eq!(image, std::fs::read(build.file(outputs::USR)).unwrap());
    for (f, name) in [(&m.kernel, outputs::KERNEL), (&m.initrd, outputs::INITRD)] {
        let published = std::fs::read(repo.join(&f.path)).unwrap();
        policy::check_file(&published, f).unwrap();
        assert_eq!(published, std::fs::read(build.file(name)).unwrap());
    }
}

#[test]
fn publish_promote_and_status_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let key = PrivateKey::from_seed([1; 32], "test");
    let mut progress = Progress::new(true);
    let build = fake_build(&tmp.path().join("b1"), "1.0.0", 7);
    // What a crashed publish leaves behind is cleared away.
    std::fs::create_dir_all(repo.join("demo/.incoming-0.9-1/x")).unwrap();

    let p = publish(&build, &opts(&repo, "beta", &key), &mut progress).unwrap();
    assert!(!p.reused);
    assert_eq!(p.version_dir, "demo/1.0.0");
    assert_eq!(p.chunks, 3);
    assert_eq!(p.channel.previous, None);
    assert_eq!(p.channel.key_id, key.public().id());
    assert!(
        p.channel
            .notes
            .iter()
            .any(|n| n.contains("follow channel `stable`")),
        "{:?}",
        p.channel.notes
    );
    check_as_node(&repo, &key, "beta", &build);
    // Nothing but the version and the channel: no leftovers.
    let mut names: Vec<_> = std::fs::read_dir(repo.join("demo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["1.0.0", "channels"]);

    // The same build again: reused, pointer re-signed.
    let again = publish(&build, &opts(&repo, "beta", &key), &mut progress).unwrap();
    assert!(again.reused);
    assert_eq!(again.channel.previous, Some(build.version.clone()));
    check_as_node(&repo, &key, "beta", &build);

    // Promote beta → stable, guarded by the version.
    let stable = PromoteOptions {
        repo: &repo,
        image: None,
        from: "beta",
        to: "stable",
        version: Some(&build.version),
        key: &key,
        schedule: opts(&repo, "", &key).schedule,
        now: NOW,
    };
    let c = promote(&stable, &mut progress).unwrap();
    assert_eq!(c.pointer.version, build.version);
    assert_eq!(c.pointer.channel, "stable");
    check_as_node(&repo, &key, "stable", &build);
    let other: Version = "2.0".parse().unwrap();
    let e = promote(
        &PromoteOptions {
            version: Some(&other),
            ..stable
        },
        &mut progress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("serves demo 1.0.0, not 2.0"), "{e}");
    let e = promote(
        &PromoteOptions {
            from: "alpha",
            version: None,
            ..stable
        },
        &mut progress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no channel `alpha`"), "{e}");

    // Status: everything fine with the right key, not with another.
    let st = status(&repo, &[key.public()], NOW + 20).unwrap();
    assert_eq!(st.problems, 0, "{}", render_status(&st));
    assert_eq!(st.images[0].versions, ["1.0.0"]);
    let beta = &st.images[0].channels[0];
    assert_eq!(
        (beta.channel.as_str(), beta.verified, beta.manifest_ok),
        ("beta", Some(true), true)
    );
    assert_eq!(beta.rollout_eligible, Some(0.0));
    let text = render_status(&st);
    assert!(text.contains("signature verified"), "{text}");
    let stranger = PrivateKey::from_seed([2; 32], "other").public();
    let st = status(&repo, &[stranger], NOW + 20).unwrap();
    assert_eq!(st.problems, 2);
    assert!(render_status(&st).contains("NOT VERIFIED"));
    let st = status(&repo, &[], NOW + 8 * 86_400).unwrap();
    assert!(st.images[0].channels.iter().all(|c| c.expired));
    assert!(
        render_status(&st).contains("EXPIRED"),
        "{}",
        render_status(&st)
    );

    // A damaged payload shows in status and stops promotion.
    let payload_path = repo.join("demo/1.0.0/usr.payload");
    let mut damaged = std::fs::read(&payload_path).unwrap();
    damaged.truncate(damaged.len() - 1);
    std::fs::write(&payload_path, &damaged).unwrap();
    let st = status(&repo, &[key.public()], NOW + 20).unwrap();
    assert!(!st.images[0].channels[0].manifest_ok);
    let e = promote(&stable, &mut progress).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
}

#[test]
fn versions_are_immutable_and_builds_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let key = PrivateKey::from_seed([1; 32], "test");
    let mut progress = Progress::new(true);
    let build = fake_build(&tmp.path().join("b1"), "1.0.0", 7);
    publish(&build, &opts(&repo, "stable", &key), &mut progress).unwrap();
    let pointer_before = std::fs::read(repo.join("demo/channels/stable.json")).unwrap();

    // Same version, other content: refused, nothing changed.
    let other = fake_build(&tmp.path().join("b2"), "1.0.0", 99);
    let e = publish(&other, &opts(&repo, "stable", &key), &mut progress).unwrap_err();
    assert!(matches!(e, Error::VersionExists { .. }), "{e}");
    assert!(e.to_string().contains("verity root hash"), "{e}");
    assert!(e.to_string().contains("immutable"), "{e}");
    // Same content, other min_source_version: also another manifest.
    let mut o = opts(&repo, "stable", &key);
    o.min_source_version = Some("0.5".parse().unwrap());
    let e = publish(&build, &o, &mut progress).unwrap_err();
    assert!(e.to_string().contains("min_source_version"), "{e}");
    assert_eq!(
        std::fs::read(repo.join("demo/channels/stable.json")).unwrap(),
        pointer_before
    );

    // A build modified after the build (same size, other bytes): refused
    // before anything becomes visible.
    let next = fake_build(&tmp.path().join("b3"), "1.1.0", 8);
    let usr = next.file(outputs::USR);
    let mut data = std::fs::read(&usr).unwrap();
    data[1 << 20] ^= 1;
    std::fs::write(&usr, &data).unwrap();
    let e = publish(&next, &opts(&repo, "stable", &key), &mut progress).unwrap_err();
    assert!(e.to_string().contains("modified after the build"), "{e}");
    let mut names: Vec<_> = std::fs::read_dir(repo.join("demo"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["1.0.0", "channels"]);
    // A changed size is caught when loading.
    data.push(0);
    std::fs::write(&usr, &data).unwrap();
    let e = BuildDir::load(&next.path).unwrap_err();
    assert!(e.to_string().contains("modified after the build"), "{e}");

    // Nonsense requests.
    let mut o = opts(&repo, "stable", &key);
    o.min_source_version = Some("2.0".parse().unwrap());
    assert!(publish(&build, &o, &mut progress).is_err());
    let e = publish(&build, &opts(&repo, "../x", &key), &mut progress).unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e}");
    let e = BuildDir::load(tmp.path()).unwrap_err();
    assert!(e.to_string().contains("tandem build"), "{e}");
}

#[test]
fn downgrade_and_expiry_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let key = PrivateKey::from_seed([1; 32], "test");
    let mut progress = Progress::new(true);
    let new = fake_build(&tmp.path().join("b2"), "2.0", 2);
    let old = fake_build(&tmp.path().join("b1"), "1.0", 1);
    publish(&new, &opts(&repo, "stable", &key), &mut progress).unwrap();
    let mut o = opts(&repo, "stable", &key);
    o.schedule.expires_in_secs = 600;
    let p = publish(&old, &o, &mut progress).unwrap();
    let notes = p.channel.notes.join("\n");
    assert!(notes.contains("do not go back to 1.0"), "{notes}");
    assert!(notes.contains("expires"), "{notes}");
    o.schedule.expires_in_secs = 0;
    assert!(publish(&old, &o, &mut progress).is_err());
    let st = status(&repo, &[key.public()], NOW).unwrap();
    assert_eq!(st.images[0].versions, ["1.0", "2.0"]);
}

#[test]
fn lock_is_exclusive() {
    let tmp = tempfile::tempdir().unwrap();
    let held = RepoLock::acquire(tmp.path()).unwrap();
    let e = RepoLock::acquire(tmp.path()).unwrap_err();
    assert!(matches!(e, Error::Busy { .. }), "{e}");
    drop(held);
    RepoLock::acquire(tmp.path()).unwrap();
}

#[test]
fn rollout_starts() {
    assert_eq!("now".parse(), Ok(RolloutStart::Now));
    assert_eq!("+30m".parse(), Ok(RolloutStart::In(1800)));
    assert_eq!("1767225600".parse(), Ok(RolloutStart::At(1_767_225_600)));
    assert!("tomorrow".parse::<RolloutStart>().is_err());
    assert!("+soon".parse::<RolloutStart>().is_err());
    assert_eq!(RolloutStart::In(60).resolve(100), 160);
    assert_eq!(RolloutStart::At(5).resolve(100), 5);
}
