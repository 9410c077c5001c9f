//! `tandem build` on real inputs: reproducible output, and bad input turned
//! into errors that name the cause.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result};
use qemu_tests::Env;

fn build(env: &Env, definition: &Path, out: &Path) -> Result<Output> {
    Ok(Command::new(&env.tandem)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(definition)
        .arg("--quiet")
        .arg("--out")
        .arg(out)
        .arg("--artifacts")
        .arg(&env.artifacts)
        .arg("--cache")
        .arg(&env.cache)
        .output()?)
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal/image.toml")
}

#[test]
fn two_builds_are_bit_identical() -> Result<()> {
    let env = Env::get()?;
    let tmp = tempfile::tempdir()?;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for out in [&a, &b] {
        let o = build(&env, &example(), out)?;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let same = Command::new("cmp")
        .arg(a.join("disk.raw"))
        .arg(b.join("disk.raw"))
        .status()?;
    assert!(
        same.success(),
        "disk.raw differs between two builds of the same inputs"
    );
    // And the image the suite boots came from the same inputs too.
    let sha = |dir: &Path| -> Result<String> {
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("build.json"))?)?;
        m["artifacts"]["disk.raw"]["sha256"]
            .as_str()
            .map(String::from)
            .context("sha256")
    };
    assert_eq!(sha(&a)?, sha(&env.image)?);
    assert!(!a.join(".work").exists(), "work directory left behind");
    Ok(())
}

/// Builds a definition text; returns the error output of a failed build.
fn failing(env: &Env, text: &str) -> Result<String> {
    let tmp = tempfile::tempdir()?;
    let def = tmp.path().join("image.toml");
    std::fs::write(&def, text)?;
    let out = tmp.path().join("out");
    let o = build(env, &def, &out)?;
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected failure, got {:?}: {err}",
        o.status
    );
    assert!(
        !out.join("build.json").exists(),
        "a failed build left a build.json"
    );
    Ok(err)
}

#[test]
fn bad_input_names_the_cause() -> Result<()> {
    let env = Env::get()?;
    let head = "[image]\nname = \"t\"\nversion = \"1.0.0\"\n";
    for (tail, needles) in [
        ("colour = \"red\"\n", &["unknown field `colour`"][..]),
        (
            "[usr]\npackages = [\"no-such-package-tandem\"]\n",
            &["no-such-package-tandem", "not in apt's package lists"],
        ),
        (
            "[kernel]\ninitramfs-modules = [\"no_such_module\"]\n",
            &["has no module no_such_module", "choose a kernel"],
        ),
        (
            "[partitions]\nusr = 16\n",
            &["partition USR-A has 16 MiB", "raise `partitions.usr`"],
        ),
    ] {
        let err = failing(&env, &format!("{head}{tail}"))?;
        for n in needles {
            assert!(err.contains(n), "for {tail:?}: {n:?} missing in: {err}");
        }
    }
    Ok(())
}

#[test]
fn missing_artifacts_say_how_to_build_them() -> Result<()> {
    let env = Env::get()?;
    let tmp = tempfile::tempdir()?;
    let o = Command::new(&env.tandem)
        .arg("build")
        .arg(example())
        .arg("--out")
        .arg(tmp.path().join("out"))
        .arg("--artifacts")
        .arg(tmp.path())
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tandem-init not found") && err.contains("cargo xtask build"),
        "{err}"
    );
    // No --artifacts and none installed beside this tandem (a checkout's
    // target/release/tandem): the message says both ways out.
    let o = Command::new(&env.tandem)
        .arg("build")
        .arg(example())
        .arg("--out")
        .arg(tmp.path().join("out"))
        .env_remove("TANDEM_ARTIFACTS")
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no --artifacts given") && err.contains("cargo xtask dist"),
        "{err}"
    );
    Ok(())
}

/// `--locked` builds exactly what image.lock lists: a definition that
/// resolves to anything else fails before a package is downloaded, naming
/// what moved, and leaves neither output nor a changed lock behind. A
/// plain build writes the lock, and it lists what build.json lists.
#[test]
fn locked_build_refuses_a_changed_definition() -> Result<()> {
    let env = Env::get()?;
    let tmp = tempfile::tempdir()?;
    let src = example();
    let dir = src.parent().context("example directory")?;
    std::fs::create_dir_all(tmp.path().join("files"))?;
    std::fs::copy(dir.join("files/motd"), tmp.path().join("files/motd"))?;
    let def = tmp.path().join("image.toml");
    let text = std::fs::read_to_string(&src)?;
    std::fs::write(&def, &text)?;
    let lock = tmp.path().join("image.lock");

    let first = tmp.path().join("first");
    let o = build(&env, &def, &first)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let locked = std::fs::read_to_string(&lock).context("the first build writes image.lock")?;
    assert!(
        locked.starts_with("# Generated by `tandem build`"),
        "{locked}"
    );

    // build.json and the lock list the same packages (the lock also the kernel).
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("build.json"))?)?;
    let mut in_manifest: Vec<(String, String, String)> = m["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("version"), s("sha256"))
        })
        .collect();
    let kernel = &m["kernel"]["package"];
    in_manifest.push((
        kernel["name"].as_str().unwrap_or_default().to_string(),
        kernel["version"].as_str().unwrap_or_default().to_string(),
        kernel["sha256"].as_str().unwrap_or_default().to_string(),
    ));
    in_manifest.sort();
    let table: toml::Table = toml::from_str(&locked)?;
    let mut in_lock: Vec<(String, String, String)> = table["package"]
        .as_array()
        .context("[[package]]")?
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("version"), s("sha256"))
        })
        .collect();
    in_lock.sort();
    assert_eq!(in_manifest, in_lock);
    assert!(
        in_lock.iter().any(|(n, _, _)| n == "libc6"),
        "base set: {in_lock:?}"
    );

    // Another package in the definition: --locked refuses it.
    let changed = text.replace(
        "packages = [\"busybox-static\"]",
        "packages = [\"busybox-static\", \"mawk\"]",
    );
    assert_ne!(changed, text, "the example's packages line moved");
    std::fs::write(&def, changed)?;
    let second = tmp.path().join("second");
    let o = Command::new(&env.tandem)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .arg("build")
        .arg(&def)
        .args(["--locked", "--quiet", "--out"])
        .arg(&second)
        .arg("--artifacts")
        .arg(&env.artifacts)
        .arg("--cache")
        .arg(&env.cache)
        .output()?;
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "expected failure: {err}");
    for needle in ["image.lock", "added mawk", "without --locked"] {
        assert!(err.contains(needle), "{needle:?} missing in: {err}");
    }
    for file in ["build.json", "disk.raw", "usr.img"] {
        assert!(!second.join(file).exists(), "--locked failure left {file}");
    }
    assert_eq!(
        std::fs::read_to_string(&lock)?,
        locked,
        "--locked changed the lock"
    );
    Ok(())
}

/// The build needs no privileges: as user `nobody` (when the suite runs as
/// root, as in CI) it makes the same image, without loop devices or mounts.
#[test]
fn builds_without_root() -> Result<()> {
    let env = Env::get()?;
    let tmp = tempfile::tempdir()?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777))?;
    let out = tmp.path().join("out");
    let root = real_uid() == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&env.tandem);
        c
    } else {
        Command::new(&env.tandem)
    };
    let o = cmd
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("HOME", tmp.path())
        .arg("build")
        .arg(example())
        .args(["--quiet", "--out"])
        .arg(&out)
        .arg("--artifacts")
        .arg(&env.artifacts)
        .arg("--cache")
        .arg(&env.cache)
        .output()?;
    assert!(
        o.status.success(),
        "build as nobody failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("build.json"))?)?;
    let theirs: serde_json::Value = env.manifest()?;
    assert_eq!(
        m["artifacts"]["disk.raw"], theirs["artifacts"]["disk.raw"],
        "same image as the root build"
    );
    Ok(())
}

/// The real user id, from /proc (no libc needed in tests).
fn real_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// A local kernel (vmlinuz + modules directory) instead of a package.
#[test]
fn builds_with_a_local_kernel() -> Result<()> {
    let env = Env::get()?;
    let unpacked = std::fs::read_dir(env.cache.join("unpacked"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-image-6"))
        })
        .context("no unpacked kernel package in the cache")?;
    let vmlinuz = std::fs::read_dir(unpacked.join("boot"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("no vmlinuz")?;
    let release = vmlinuz
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .context("name")?;
    let tmp = tempfile::tempdir()?;
    let def = tmp.path().join("image.toml");
    std::fs::write(
        &def,
        format!(
            "[image]\nname = \"local\"\nversion = \"2.0\"\n[kernel]\nvmlinuz = {:?}\nmodules-dir = {:?}\n",
            vmlinuz,
            unpacked.join("lib/modules").join(&release)
        ),
    )?;
    let out = tmp.path().join("out");
    let o = build(&env, &def, &out)?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("build.json"))?)?;
    assert_eq!(m["kernel"]["release"], release.as_str());
    assert!(m["kernel"]["package"].is_null());
    Ok(())
}
