//! What the boot steps that stand in for maintainer scripts cost: the
//! factory /etc copy, users and groups, and `tmpfiles.d`, on a tree the
//! size of a 60-package image (some 420 factory entries, 60 accounts, 15
//! tmpfiles lines). Timed on the first boot (everything made) and on a
//! later boot (nothing to do, which is every boot but the first), and
//! printed: `cargo test -p initramfs --test etc_boot_cost -- --nocapture`.
//!
//! The later boot must write nothing: the same modification times.

use std::path::Path;
use std::time::{Duration, Instant};

use initramfs::system::{factory, tmpfiles, users};

const PACKAGES: usize = 60;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A factory /etc like 60 packages': per package a directory of four
/// files, a top-level file, a file in each of a few shared directories and
/// an rc.d-style link.
fn image(root: &Path) {
    let etc = root.join("usr/share/factory/etc");
    for p in 0..PACKAGES {
        for f in 0..4 {
            write(
                &etc.join(format!("pkg{p}.d/conf-{f}")),
                &"# a setting\nkey = value\n".repeat(10),
            );
        }
        write(&etc.join(format!("pkg{p}.conf")), "option yes\n");
        for shared in ["default", "pam.d"] {
            write(&etc.join(shared).join(format!("pkg{p}")), "x\n");
        }
        std::fs::create_dir_all(etc.join("rc2.d")).expect("mkdir");
        std::os::unix::fs::symlink(
            format!("../init.d/pkg{p}"),
            etc.join(format!("rc2.d/S01pkg{p}")),
        )
        .expect("link");
    }
    let mut resolved = String::from("g root 0\ng adm 4\ng shadow 42\ng utmp 43\ng nogroup 65534\n");
    for g in 0..30 {
        resolved.push_str(&format!("g group{g} {}\n", 200 + g));
    }
    resolved.push_str("u root 0:0 root /root /bin/sh\nu nobody 65534:65534 nobody /nonexistent /usr/sbin/nologin\n");
    for u in 0..25 {
        resolved.push_str(&format!(
            "g svc{u} {0}\nu svc{u} {0}:{0} \"Service {u}\" / /usr/sbin/nologin\n",
            300 + u
        ));
    }
    resolved.push_str(
        "g core 1000\nu core 1000:1000 Core /home/core /bin/sh\nm core adm\nm svc1 adm\n",
    );
    write(&root.join("usr/lib/tandem/sysusers.conf"), &resolved);
    write(
        &root.join("usr/lib/tmpfiles.d/base.conf"),
        "d /run/sshd 0755 root root -\n\
         d /run/lock/subsys 0755 root root -\n\
         d /run/user 0755 root root -\n\
         f+! /run/utmp 0664 root utmp -\n\
         d /var/log 0755 - - -\n\
         f /var/log/wtmp 0664 root utmp -\n\
         f /var/log/btmp 0660 root utmp -\n\
         d /var/cache 0755 - - -\n\
         d /var/lib/svc1 0750 svc1 svc1 -\n\
         L /var/run - - - - ../run\n\
         L /var/lock - - - - ../run/lock\n\
         r! /etc/passwd.lock\n\
         r! /etc/group.lock\n\
         x /tmp/podman-run-*\n\
         D! /tmp/.X11-unix 1777 root root 10d\n",
    );
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::create_dir_all(root.join("home")).expect("mkdir");
}

fn spec() -> tmpfiles::Specifiers {
    tmpfiles::Specifiers {
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
        hostname: "node".into(),
        ..Default::default()
    }
}

struct Times {
    factory: Duration,
    users: Duration,
    tmpfiles: Duration,
}

fn boot(root: &Path) -> (Times, usize) {
    let t0 = Instant::now();
    let (copied, errors) = factory::populate_etc(root);
    assert!(errors.is_empty(), "{errors:?}");
    let t1 = Instant::now();
    let (accounts, report, errors) = users::ensure_accounts(root);
    assert!(errors.is_empty(), "{errors:?}");
    let t2 = Instant::now();
    let (made, errors) = tmpfiles::run(root, &spec(), &accounts);
    assert!(errors.is_empty(), "{errors:?}");
    let t3 = Instant::now();
    let work = copied.files + copied.links + copied.dirs + report.written.len() + made.created;
    (
        Times {
            factory: t1 - t0,
            users: t2 - t1,
            tmpfiles: t3 - t2,
        },
        work,
    )
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[test]
fn a_60_package_image_costs_little_and_a_later_boot_writes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    image(root);
    let (first, work) = boot(root);
    assert!(work > 400, "first boot made {work} things");
    assert!(root.join("etc/pkg59.d/conf-3").is_file());
    assert!(root.join("home/core").is_dir());
    assert!(root.join("var/lib/svc1").is_dir());
    let stamps: Vec<_> = [
        "etc/passwd",
        "etc/shadow",
        "etc/group",
        "etc/gshadow",
        "etc/pkg0.conf",
    ]
    .iter()
    .map(|f| mtime(&root.join(f)))
    .collect();
    // /run and /tmp are tmpfs on a node: empty at every boot.
    for volatile in ["run", "tmp"] {
        let _ = std::fs::remove_dir_all(root.join(volatile));
    }
    let mut later = Vec::new();
    for _ in 0..5 {
        for volatile in ["run", "tmp"] {
            let _ = std::fs::remove_dir_all(root.join(volatile));
        }
        let (t, _) = boot(root);
        later.push(t);
    }
    let after: Vec<_> = [
        "etc/passwd",
        "etc/shadow",
        "etc/group",
        "etc/gshadow",
        "etc/pkg0.conf",
    ]
    .iter()
    .map(|f| mtime(&root.join(f)))
    .collect();
    assert_eq!(stamps, after, "a later boot wrote to /etc");
    let median = |f: fn(&Times) -> Duration| {
        let mut v: Vec<Duration> = later.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let (fac, usr, tmp_) = (
        median(|t| t.factory),
        median(|t| t.users),
        median(|t| t.tmpfiles),
    );
    println!(
        "first boot: factory /etc {:?}, users {:?}, tmpfiles {:?}",
        first.factory, first.users, first.tmpfiles
    );
    println!("later boots (median of 5): factory /etc {fac:?}, users {usr:?}, tmpfiles {tmp_:?}");
    // Generous bounds, for slow or busy build machines: the point is the
    // order of magnitude (a later boot takes about a millisecond here).
    assert!(
        fac + usr + tmp_ < Duration::from_millis(250),
        "{fac:?} {usr:?} {tmp_:?}"
    );
}
