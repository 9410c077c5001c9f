//! Which Debian packages go into /usr: the definition's `[usr] packages`
//! and the base set with their full dependency closure, as apt's own
//! resolver decides it against an empty package state (what debootstrap
//! and mkosi do), and the kernel package beside them.
//!
//! Three apt calls, none needing root:
//!
//! 1. `apt-cache show` of `usr-is-merged` and the kernel package;
//! 2. `apt-get -s install <names>` with a status file that declares only
//!    `usr-is-merged` installed (Tandem's /usr is merged by construction;
//!    without it apt satisfies `usrmerge | usr-is-merged` with `usrmerge`,
//!    which pulls in perl) and neither recommends nor suggests;
//! 3. one `apt-cache show name=version …` for the file name, sha256 and
//!    size of exactly the planned versions (and of the kernel image package
//!    a kernel metapackage names).
//!
//! The kernel is not part of the closure: its dependencies
//! (initramfs-tools, …) are for installed Debian systems, and Tandem makes
//! its own initramfs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::build::apt::{self, Cache, PackageInfo, is_kernel_image_package};
use crate::build::manifest::Reason;
use crate::build::tools::APT_GET;
use crate::error::{Error, IoContext, Result};

/// Packages every image gets, whatever the definition lists:
///
/// - `libc6`: the C library and the dynamic loader, which any dynamically
///   linked program needs (Debian packages do not declare it when the
///   program is only a script, and libc6 is only pulled by what links it);
/// - `base-passwd`: Debian's fixed users and groups
///   (`/usr/share/base-passwd/{passwd,group}.master`), the start of the
///   image's user database.
///
/// Essential packages (dash, coreutils, …) are not added: Debian packages
/// do not declare dependencies on them, and in Tandem images busybox
/// provides the shell and the tools (`busybox-static` is the definition's
/// choice).
pub const BASE_PACKAGES: [&str; 2] = ["libc6", "base-passwd"];

/// The package that asserts a merged /usr; declared installed for apt.
pub const MERGED_USR_PACKAGE: &str = "usr-is-merged";

/// What went into /usr, and the kernel package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The package holding the kernel image, if the kernel is a package.
    pub kernel: Option<PackageInfo>,
    /// Every package of the closure, sorted by name.
    pub packages: Vec<Resolved>,
}

/// A package of the closure and why it is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The package as apt's lists describe it.
    pub info: PackageInfo,
    /// Named by the definition, in the base set, or pulled as a dependency.
    pub reason: Reason,
}

/// One package apt plans to install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// Package name (without an architecture qualifier).
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture, from the brackets.
    pub arch: String,
}

/// Parses a simulation line `Inst <name>[:<arch>] [<old>] (<version> <origins> [<arch>])[ […]]`,
/// e.g. `Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []`.
/// Origins may be several, separated by `, `.
pub fn parse_inst_line(line: &str) -> Option<Planned> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, rest) = rest.split_once(' ')?;
    let name = name.split(':').next().unwrap_or(name);
    let open = rest.find('(')?;
    let inner = &rest[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let version = inner.split_whitespace().next()?;
    let arch_open = inner.rfind('[')?;
    let arch = inner[arch_open + 1..].strip_suffix(']')?;
    if name.is_empty() || version.is_empty() || arch.is_empty() {
        return None;
    }
    Some(Planned {
        name: name.to_string(),
        version: version.to_string(),
        arch: arch.to_string(),
    })
}

/// The packages of a simulation's `Inst` lines, in apt's order.
pub fn parse_simulation(stdout: &str) -> Vec<Planned> {
    stdout.lines().filter_map(parse_inst_line).collect()
}

/// apt's `Note, selecting 'X' instead of 'Y'` (a name given for a virtual
/// package with one provider): (provider, name given).
pub fn selected_instead(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Note, selecting '")?;
            let (chosen, rest) = rest.split_once("' instead of '")?;
            let asked = rest.strip_suffix('\'')?;
            Some((chosen.to_string(), asked.to_string()))
        })
        .collect()
}

/// A dpkg status file declaring the package of `stanza` (its `apt-cache
/// show` record) installed. The dependency fields are kept as they are:
/// apt compares them to tell whether the installed version is the
/// archive's.
pub fn fake_status(stanza: &str) -> String {
    const ARCHIVE_ONLY: [&str; 7] = [
        "Filename",
        "Size",
        "MD5sum",
        "SHA1",
        "SHA256",
        "SHA512",
        "Description-md5",
    ];
    let mut out = String::new();
    let mut skipping = false;
    for line in stanza.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if !skipping {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        let key = line.split(':').next().unwrap_or("");
        skipping = ARCHIVE_ONLY.contains(&key) || key == "Status";
        if skipping {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if key == "Package" {
            out.push_str("Status: install ok installed\n");
        }
    }
    out.push('\n');
    out
}

/// The package name of a `[usr] packages` entry: entries may be what
/// `apt-get install` accepts (`name`, `name=version`, `name/release`).
pub fn entry_name(entry: &str) -> &str {
    let end = entry.find(['=', '/', ':']).unwrap_or(entry.len());
    &entry[..end]
}

/// The names given to apt: the definition's entries and the base set,
/// sorted and without repeats (the order a definition lists them in does
/// not change the result), each with why it is asked for.
pub fn wanted(packages: &[String]) -> Vec<(String, Reason)> {
    let mut out: BTreeMap<String, Reason> = BTreeMap::new();
    for base in BASE_PACKAGES {
        out.insert(base.to_string(), Reason::Base);
    }
    for p in packages {
        if let Some(base) = out.keys().find(|k| k.as_str() == entry_name(p)).cloned() {
            out.remove(&base);
        }
        out.insert(p.clone(), Reason::Requested);
    }
    out.into_iter().collect()
}

/// The error for a failed simulation: apt's `E:` lines and the lines that
/// explain them, naming the requested packages apt mentions.
pub fn failure(stdout: &str, stderr: &str, requested: &[String]) -> Error {
    let errors: Vec<String> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| l.starts_with("E: "))
        .map(String::from)
        .collect();
    for e in &errors {
        if let Some(name) = e.strip_prefix("E: Unable to locate package ") {
            return Error::UnknownPackage {
                package: name.trim().to_string(),
                apt: errors.clone(),
            };
        }
    }
    let mut explained: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in stdout.lines() {
        let indented = line.starts_with(' ');
        let t = line.trim();
        if t.is_empty() {
            in_block = false;
            continue;
        }
        if indented && in_block {
            // Items join their header: `…provided by: mawk 1.3.4, gawk 1:5.2.1-2`.
            if let Some(last) = explained.last_mut() {
                if !last.ends_with(':') {
                    last.push(',');
                }
                last.push(' ');
                last.push_str(t);
            }
            continue;
        }
        in_block = false;
        let header = t.ends_with("unmet dependencies:")
            || t.ends_with("is a virtual package provided by:")
            || t.ends_with("However the following packages replace it:");
        let standalone = t.starts_with("Package ")
            && (t.contains("is not available") || t.contains("has no installation candidate"));
        if header {
            in_block = true;
            explained.push(t.to_string());
        } else if standalone {
            explained.push(t.to_string());
        }
    }
    let said: Vec<String> = errors.iter().chain(&explained).cloned().collect();
    let mentions = |name: &str| {
        said.iter().any(|l| {
            l.split(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
                .any(|w| w == name)
        })
    };
    let mut packages: Vec<String> = requested
        .iter()
        .filter(|p| mentions(entry_name(p)))
        .cloned()
        .collect();
    if packages.is_empty() {
        packages = requested.to_vec();
    }
    let all = said.join("\n");
    let hint = if all.contains("is a virtual package provided by") {
        "a virtual package has several providers: name the one you want in [usr] packages"
    } else if all.contains("was not found") {
        "that version is not in apt's lists: see `apt-cache policy <package>`, or drop the version"
    } else if all.contains("unmet dependencies") {
        "a dependency is missing from apt's archives or two packages conflict: drop or replace one of the packages apt names, or add the archive that has the dependency"
    } else {
        "check [usr] packages against apt's lists (`apt-cache policy <package>`), or run `apt-get update` (as root) if the lists are old"
    };
    Error::Unresolvable {
        packages,
        apt: said,
        hint: hint.into(),
    }
}

/// Resolves the kernel package (if any) and the closure of `packages` and
/// the base set. `scratch` is a directory of this build, used for the
/// status file when the cache is not writable.
pub fn resolve(
    cache: &Cache,
    scratch: &Path,
    kernel: Option<&str>,
    packages: &[String],
) -> Result<Resolution> {
    // 1. usr-is-merged's record and the kernel package.
    let mut first = vec![MERGED_USR_PACKAGE.to_string()];
    first.extend(kernel.map(String::from));
    let found = apt::show(cache, &first)?;
    let merged = found
        .iter()
        .find(|(p, _)| p.name == MERGED_USR_PACKAGE)
        .ok_or_else(|| Error::AptAnswer {
            message: format!(
                "apt's lists have no `{MERGED_USR_PACKAGE}` (Debian 12 and later have it)"
            ),
        })?;
    let kernel_pick = match kernel {
        None => None,
        Some(name) => {
            let (meta, _) = found.iter().find(|(p, _)| p.name == name).ok_or_else(|| {
                Error::UnknownPackage {
                    package: name.into(),
                    apt: Vec::new(),
                }
            })?;
            if is_kernel_image_package(&meta.name) {
                Some(KernelPick::Ready(meta.clone()))
            } else {
                let target = meta
                    .depends
                    .iter()
                    .find(|d| is_kernel_image_package(d))
                    .ok_or_else(|| Error::Kernel {
                        kernel: name.into(),
                        message: "package neither holds a kernel image nor depends on a linux-image-<release> package".into(),
                    })?;
                Some(KernelPick::Named(target.clone()))
            }
        }
    };

    // 2. apt's plan against a state where only usr-is-merged is installed.
    let status = status_file(cache, scratch, &fake_status(&merged.1))?;
    let wanted = wanted(packages);
    let names: Vec<String> = wanted.iter().map(|(n, _)| n.clone()).collect();
    let mut cmd = cache.apt(APT_GET, Some(&status));
    cmd.args([
        "-o",
        "APT::Install-Recommends=false",
        "-o",
        "APT::Install-Suggests=false",
        "-o",
        "APT::Get::Show-User-Simulation-Note=false",
        "-s",
        "-q",
        "install",
        "--",
    ])
    .args(&names);
    let out = cmd.output().map_err(|e| APT_GET.spawn_error(e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(failure(&stdout, &stderr, &names));
    }
    let plan = plan_with_reasons(&stdout, &wanted, &merged.0)?;

    // 3. The records of exactly those versions, and the kernel image.
    let mut specs: Vec<String> = plan
        .iter()
        .map(|(p, _)| format!("{}={}", p.name, p.version))
        .collect();
    if let Some(KernelPick::Named(name)) = &kernel_pick {
        specs.push(name.clone());
    }
    let records = apt::show(cache, &specs)?;
    let mut resolved = Vec::new();
    for (p, reason) in plan {
        let info = records
            .iter()
            .map(|(i, _)| i)
            .find(|i| i.name == p.name && i.version == p.version)
            .ok_or_else(|| Error::AptAnswer {
                message: format!(
                    "apt plans to install {} {} but `apt-cache show {}={}` has no record of it with a file and sha256",
                    p.name, p.version, p.name, p.version
                ),
            })?;
        resolved.push(Resolved {
            info: info.clone(),
            reason,
        });
    }
    resolved.sort_by(|a, b| a.info.name.cmp(&b.info.name));
    let kernel = match kernel_pick {
        None => None,
        Some(KernelPick::Ready(info)) => Some(info),
        Some(KernelPick::Named(name)) => Some(
            records
                .iter()
                .map(|(i, _)| i)
                .find(|i| i.name == name)
                .cloned()
                .ok_or_else(|| Error::UnknownPackage {
                    package: name.clone(),
                    apt: Vec::new(),
                })?,
        ),
    };
    Ok(Resolution {
        kernel,
        packages: resolved,
    })
}

enum KernelPick {
    /// The named package holds the image.
    Ready(PackageInfo),
    /// A metapackage: the image package it depends on.
    Named(String),
}

/// apt's plan with why each package is in it. Every wanted name must be
/// there (or be `usr-is-merged`, declared installed, or a virtual name apt
/// chose a provider for).
fn plan_with_reasons(
    stdout: &str,
    wanted: &[(String, Reason)],
    merged: &PackageInfo,
) -> Result<Vec<(Planned, Reason)>> {
    let mut plan: Vec<(Planned, Reason)> = parse_simulation(stdout)
        .into_iter()
        .map(|p| (p, Reason::Dependency))
        .collect();
    let instead = selected_instead(stdout);
    for (entry, reason) in wanted {
        let name = entry_name(entry);
        let chosen = instead
            .iter()
            .find(|(_, asked)| asked == name || asked == entry)
            .map_or(name, |(chosen, _)| chosen.as_str());
        if let Some(slot) = plan.iter_mut().find(|(p, _)| p.name == chosen) {
            slot.1 = slot.1.min(*reason);
        } else if name == MERGED_USR_PACKAGE {
            plan.push((
                Planned {
                    name: merged.name.clone(),
                    version: merged.version.clone(),
                    arch: merged.arch.clone(),
                },
                *reason,
            ));
        } else {
            return Err(Error::AptAnswer {
                message: format!(
                    "`apt-get -s install` planned no package for `{entry}` and said no why"
                ),
            });
        }
    }
    Ok(plan)
}

/// The status file with `text`, in the cache (named by its content, so a
/// file once written never changes under a concurrent build) or, when the
/// cache is not writable, in `scratch`.
fn status_file(cache: &Cache, scratch: &Path, text: &str) -> Result<PathBuf> {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    let (dir, name) = match cache.apt_dir() {
        Some(dir) => (dir.to_path_buf(), format!("status-{}", &hash[..16])),
        None => (scratch.to_path_buf(), "apt-status".to_string()),
    };
    // Absolute: apt reads a relative Dir::State::status below /var/lib/apt.
    let dir = std::path::absolute(&dir).io("resolve path of", &dir)?;
    let path = dir.join(name);
    if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).io("create directory", &dir)?;
    let tmp = dir.join(format!(".status-{}", std::process::id()));
    std::fs::write(&tmp, text).io("write", &tmp)?;
    std::fs::rename(&tmp, &path).io("move status file to", &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    // From `apt-get -s install openssh-server libc6 base-passwd busybox-static`
    // on Debian 12 (shortened).
    const SIMULATION: &str = "Reading package lists...
Building dependency tree...
The following NEW packages will be installed:
  base-passwd libc6 libkrb5-3 openssh-server
Inst gcc-12-base (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64])
Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []
Inst base-passwd (3.6.1 Debian:12.15/oldstable [amd64])
Inst init-system-helpers (1.65.2+deb12u1 Debian:12.15/oldstable [all])
Inst libkrb5-3 (1.20.1-2+deb12u5 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Inst openssh-server (1:9.2p1-2+deb12u10 Debian:12.15/oldstable [amd64])
Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])
";

    #[test]
    fn inst_lines() {
        let p = parse_inst_line("Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []")
            .expect("parses");
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.arch.as_str()),
            ("libc6", "2.36-9+deb12u14", "amd64")
        );
        let p = parse_inst_line(
            "Inst libkrb5-3 (1.20.1-2+deb12u5 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])",
        )
        .expect("parses");
        assert_eq!(
            (p.version.as_str(), p.arch.as_str()),
            ("1.20.1-2+deb12u5", "amd64")
        );
        let p = parse_inst_line("Inst usr-is-merged [37~deb12u1] (38 Debian:13/stable [all])")
            .expect("an upgrade parses");
        assert_eq!((p.version.as_str(), p.arch.as_str()), ("38", "all"));
        let p = parse_inst_line("Inst libc6:i386 (2.36-9 Debian:12.15/oldstable [i386])")
            .expect("qualified");
        assert_eq!((p.name.as_str(), p.arch.as_str()), ("libc6", "i386"));
        for bad in [
            "Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])",
            "Inst libc6",
            "Inst libc6 (2.36)",
            "Inst  ( [])",
        ] {
            assert_eq!(parse_inst_line(bad), None, "{bad}");
        }
        let all = parse_simulation(SIMULATION);
        assert_eq!(all.len(), 6);
        assert_eq!(all[3].arch, "all");
    }

    #[test]
    fn reasons() {
        let merged = PackageInfo {
            name: MERGED_USR_PACKAGE.into(),
            version: "37~deb12u1".into(),
            arch: "all".into(),
            filename: String::new(),
            sha256: String::new(),
            size: 0,
            installed_size: 0,
            depends: Vec::new(),
        };
        let w = wanted(&["openssh-server".into(), "libc6".into()]);
        assert_eq!(
            w,
            [
                ("base-passwd".to_string(), Reason::Base),
                ("libc6".to_string(), Reason::Requested),
                ("openssh-server".to_string(), Reason::Requested)
            ]
        );
        let plan = plan_with_reasons(SIMULATION, &w, &merged).expect("plan");
        let reason = |n: &str| plan.iter().find(|(p, _)| p.name == n).map(|(_, r)| *r);
        assert_eq!(reason("openssh-server"), Some(Reason::Requested));
        assert_eq!(reason("libc6"), Some(Reason::Requested));
        assert_eq!(reason("base-passwd"), Some(Reason::Base));
        assert_eq!(reason("libkrb5-3"), Some(Reason::Dependency));
        // usr-is-merged is declared installed, so apt plans nothing for it.
        let w = wanted(&[MERGED_USR_PACKAGE.into()]);
        let plan = plan_with_reasons(SIMULATION, &w, &merged).expect("plan");
        assert_eq!(
            plan.iter()
                .find(|(p, _)| p.name == MERGED_USR_PACKAGE)
                .map(|(_, r)| *r),
            Some(Reason::Requested)
        );
        // A virtual name apt chose a provider for.
        let text =
            format!("Note, selecting 'openssh-server' instead of 'ssh-server'\n{SIMULATION}");
        let w = wanted(&["ssh-server".into()]);
        let plan = plan_with_reasons(&text, &w, &merged).expect("plan");
        assert_eq!(reason_of(&plan, "openssh-server"), Some(Reason::Requested));
        // A name apt did not plan is an error, never a silent skip.
        let w = wanted(&["nowhere".into()]);
        let e = plan_with_reasons(SIMULATION, &w, &merged).expect_err("missing");
        assert!(e.to_string().contains("`nowhere`"), "{e}");
    }

    fn reason_of(plan: &[(Planned, Reason)], name: &str) -> Option<Reason> {
        plan.iter().find(|(p, _)| p.name == name).map(|(_, r)| *r)
    }

    #[test]
    fn entries_may_pin_a_version_or_release() {
        assert_eq!(entry_name("foo=1.2-3"), "foo");
        assert_eq!(entry_name("foo/bookworm-backports"), "foo");
        assert_eq!(entry_name("foo:amd64"), "foo");
        assert_eq!(entry_name("g++"), "g++");
    }

    #[test]
    fn status_declares_the_candidate_installed() {
        let stanza = "Package: usr-is-merged\nSource: usrmerge\nVersion: 37~deb12u1\nInstalled-Size: 13\nArchitecture: all\nConflicts: acl (<< 2.2.52-3~),\n coreutils (<< 8.24-1~)\nBreaks: cruft-ng (<< 0.4.4~)\nDescription: Transitional package\n to assert a merged-/usr system\nMulti-Arch: foreign\nFilename: pool/main/u/usrmerge/usr-is-merged_37~deb12u1_all.deb\nSize: 5616\nMD5sum: 36826e1d6b6eb875e7053b3c95b02017\nSHA256: 908b80730d99afe6f59ed7f449827b7047ceeeaa7637c368c03e4912e0a6de99\n\nPackage: next\n";
        let s = fake_status(stanza);
        assert_eq!(
            s,
            "Package: usr-is-merged\nStatus: install ok installed\nSource: usrmerge\nVersion: 37~deb12u1\nInstalled-Size: 13\nArchitecture: all\nConflicts: acl (<< 2.2.52-3~),\n coreutils (<< 8.24-1~)\nBreaks: cruft-ng (<< 0.4.4~)\nDescription: Transitional package\n to assert a merged-/usr system\nMulti-Arch: foreign\n\n"
        );
    }

    #[test]
    fn apt_errors_name_the_package_and_quote_apt() {
        let e = failure(
            "Reading package lists...\n",
            "E: Unable to locate package no-such-package-tandem\n",
            &["libc6".into(), "no-such-package-tandem".into()],
        );
        let text = e.to_string();
        assert!(
            text.contains("package `no-such-package-tandem` is not in apt's package lists"),
            "{text}"
        );
        assert!(
            text.contains("E: Unable to locate package no-such-package-tandem"),
            "{text}"
        );

        let stdout = "Reading package lists...
Building dependency tree...
Package awk is a virtual package provided by:
  original-awk 2022-09-12-1
  mawk 1.3.4.20200120-3.1
  gawk 1:5.2.1-2

";
        let e = failure(
            stdout,
            "E: Package 'awk' has no installation candidate\n",
            &["awk".into(), "base-passwd".into(), "libc6".into()],
        );
        let text = e.to_string();
        assert!(
            text.contains("cannot resolve [usr] packages `awk` with"),
            "{text}"
        );
        assert!(
            text.contains("E: Package 'awk' has no installation candidate"),
            "{text}"
        );
        assert!(
            text.contains("Package awk is a virtual package provided by: original-awk 2022-09-12-1, mawk 1.3.4.20200120-3.1, gawk 1:5.2.1-2"),
            "{text}"
        );
        assert!(text.contains("name the one you want"), "{text}");

        let stdout = "Some packages could not be installed. This may mean that you have
requested an impossible situation or if you are using the unstable
distribution that some required packages have not yet been created
or been moved out of Incoming.
The following information may help to resolve the situation:

The following packages have unmet dependencies:
 exim4-config : Conflicts: postfix but 3.7.11-0+deb12u1 is to be installed
 exim4-daemon-light : Conflicts: mail-transport-agent
";
        let e = failure(
            stdout,
            "E: Unable to correct problems, you have held broken packages.\n",
            &[
                "exim4-daemon-light".into(),
                "libc6".into(),
                "postfix".into(),
            ],
        );
        let text = e.to_string();
        assert!(
            text.contains("`exim4-daemon-light`, `postfix` with their dependencies"),
            "{text}"
        );
        assert!(text.contains("exim4-config : Conflicts: postfix"), "{text}");
        assert!(!text.contains("Incoming"), "{text}");
        assert!(text.contains("E: Unable to correct problems"), "{text}");
    }
}
