//! Debian packages from apt's configured archives: resolve a name to the
//! candidate version, download the .deb into a local cache (checked against
//! the sha256 in apt's lists), and unpack it without installing anything.
//! Needs no root: `apt-get download` and `dpkg-deb -x` run as any user.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::build::tools::{APT_CACHE, APT_GET, DPKG_DEB};
use crate::error::{Error, IoContext, Result};

/// The candidate version of a package as apt's lists describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageInfo {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Architecture.
    pub arch: String,
    /// Path in the archive (its file name is the cache key).
    pub filename: String,
    /// Expected sha256 of the .deb.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// `Depends:` entries, alternatives and version constraints removed.
    pub depends: Vec<String>,
}

/// Looks up the candidate version of `name` (`apt-cache show`).
fn show(cache: &Cache, name: &str) -> Result<PackageInfo> {
    let mut cmd = cache.apt(APT_CACHE);
    cmd.args(["show", "--no-all-versions", name]);
    let out = cmd.output().map_err(|e| APT_CACHE.spawn_error(e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.trim().is_empty() {
        return Err(Error::UnknownPackage {
            package: name.into(),
        });
    }
    parse_stanza(&text).ok_or_else(|| Error::UnknownPackage {
        package: name.into(),
    })
}

/// Looks up several packages in one `apt-cache show` (loading apt's cache
/// takes most of a second, so one call for all).
fn show_all(cache: &Cache, names: &[String]) -> Result<Vec<PackageInfo>> {
    let mut cmd = cache.apt(APT_CACHE);
    cmd.args(["show", "--no-all-versions"]).args(names);
    let out = cmd.output().map_err(|e| APT_CACHE.spawn_error(e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<PackageInfo> = text.split("\n\n").filter_map(parse_stanza).collect();
    names
        .iter()
        .map(|n| {
            found
                .iter()
                .find(|p| &p.name == n)
                .cloned()
                .ok_or_else(|| Error::UnknownPackage { package: n.clone() })
        })
        .collect()
}

/// Parses the first stanza of `apt-cache show` output.
pub fn parse_stanza(text: &str) -> Option<PackageInfo> {
    let stanza = text.split("\n\n").next()?;
    // Join continuation lines (starting with a space) onto their field.
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in stanza.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = fields.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let depends = get("Depends")
        .map(|d| {
            d.split(',')
                .filter_map(|alt| alt.split('|').next())
                .filter_map(|dep| dep.split_whitespace().next())
                .map(|n| n.split(':').next().unwrap_or(n).to_string())
                .collect()
        })
        .unwrap_or_default();
    Some(PackageInfo {
        name: get("Package")?,
        version: get("Version")?,
        arch: get("Architecture")?,
        filename: get("Filename")?,
        sha256: get("SHA256")?,
        size: get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
        depends,
    })
}

/// Resolves the kernel package (if any) and the other packages with as few
/// apt calls as possible. A kernel metapackage (`linux-image-cloud-amd64`)
/// becomes the package that holds the image (`linux-image-6.1.0-NN-cloud-amd64`).
pub fn resolve(
    cache: &Cache,
    kernel: Option<&str>,
    packages: &[String],
) -> Result<(Option<PackageInfo>, Vec<PackageInfo>)> {
    let mut names: Vec<String> = kernel.map(String::from).into_iter().collect();
    names.extend(packages.iter().cloned());
    if names.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut infos = show_all(cache, &names)?;
    let Some(name) = kernel else {
        return Ok((None, infos));
    };
    let meta = infos.remove(0);
    if is_kernel_image_package(&meta.name) {
        return Ok((Some(meta), infos));
    }
    let target = meta.depends.iter().find(|d| is_kernel_image_package(d)).ok_or_else(|| Error::Kernel {
        kernel: name.into(),
        message: "package neither holds a kernel image nor depends on a linux-image-<release> package".into(),
    })?;
    Ok((Some(show(cache, target)?), infos))
}

fn is_kernel_image_package(name: &str) -> bool {
    name.strip_prefix("linux-image-")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

/// A directory of downloaded .deb files, keyed by their archive file name.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created on first download).
    pub fn new(dir: PathBuf) -> Self {
        Cache { dir }
    }

    /// An apt command that keeps apt's binary package cache in this cache:
    /// Debian's container images disable it (`Dir::Cache::pkgcache ""`),
    /// which makes every apt call re-parse all package lists (~1 s).
    fn apt(&self, tool: crate::build::tools::Tool) -> std::process::Command {
        let mut cmd = tool.command();
        let bin = self.dir.join("apt");
        if std::fs::create_dir_all(&bin).is_ok() && writable(&bin) {
            cmd.arg("-o")
                .arg(format!(
                    "Dir::Cache::pkgcache={}",
                    bin.join("pkgcache.bin").display()
                ))
                .arg("-o")
                .arg(format!(
                    "Dir::Cache::srcpkgcache={}",
                    bin.join("srcpkgcache.bin").display()
                ));
        }
        cmd
    }

    /// The cached .deb for `pkg`, downloading it if absent or damaged.
    pub fn fetch(&self, pkg: &PackageInfo) -> Result<PathBuf> {
        let name = Path::new(&pkg.filename)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| format!("{}_{}_{}.deb", pkg.name, pkg.version, pkg.arch).into());
        let path = self.dir.join(name);
        if path.exists() && sha256_file(&path)? == pkg.sha256 {
            return Ok(path);
        }
        std::fs::create_dir_all(&self.dir).io("create package cache", &self.dir)?;
        // Download into a private directory, check, then rename into place:
        // an interrupted download never looks like a cached package.
        let tmp = self
            .dir
            .join(format!(".download-{}-{}", pkg.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).io("create download directory", &tmp)?;
        let result = self.download_into(pkg, &tmp, &path);
        let _ = std::fs::remove_dir_all(&tmp);
        result?;
        Ok(path)
    }

    fn download_into(&self, pkg: &PackageInfo, tmp: &Path, dest: &Path) -> Result<()> {
        let mut cmd = self.apt(APT_GET);
        cmd.current_dir(tmp)
            .args(["download", "-q", &format!("{}={}", pkg.name, pkg.version)]);
        APT_GET.run(&mut cmd)?;
        let deb = std::fs::read_dir(tmp)
            .io("read download directory", tmp)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| Error::ToolFailed {
                command: format!("apt-get download {}", pkg.name),
                status: "no .deb produced".into(),
                stderr: String::new(),
            })?;
        let got = sha256_file(&deb)?;
        if got != pkg.sha256 {
            return Err(Error::PackageChecksum {
                path: deb,
                want: pkg.sha256.clone(),
                got,
            });
        }
        std::fs::rename(&deb, dest).io("move downloaded package to", dest)
    }
}

impl Cache {
    /// The package's files, unpacked once into the cache and reused by later
    /// builds (keyed by the .deb's sha256, so a new version unpacks anew).
    pub fn unpacked(&self, pkg: &PackageInfo) -> Result<PathBuf> {
        let key = format!("{}_{}", pkg.name, &pkg.sha256[..pkg.sha256.len().min(16)]);
        let dir = self.dir.join("unpacked").join(key);
        if dir.is_dir() {
            return Ok(dir);
        }
        let deb = self.fetch(pkg)?;
        let tmp = self
            .dir
            .join("unpacked")
            .join(format!(".{}-{}", pkg.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        unpack(&deb, &tmp)?;
        std::fs::rename(&tmp, &dir).io("move unpacked package to", &dir)?;
        Ok(dir)
    }
}

/// Whether this process may create files in `dir` (a shared, read-only
/// cache is fine for reading).
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access() reads the NUL-terminated path only.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// Unpacks a .deb's files into `dest` (no maintainer scripts run).
pub fn unpack(deb: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).io("create directory", dest)?;
    let mut cmd = DPKG_DEB.command();
    cmd.arg("-x").arg(deb).arg(dest);
    DPKG_DEB.run(&mut cmd)?;
    Ok(())
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).io("open", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).io("read", path)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nArchitecture: amd64\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2), foo | bar,\n baz:any (>= 1)\nFilename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.192-2_amd64.deb\nSize: 1448\nSHA256: abcd\n\nPackage: other\n";

    #[test]
    fn stanza_fields_and_depends() {
        let p = parse_stanza(SHOW).expect("parses");
        assert_eq!(p.name, "linux-image-cloud-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(p.size, 1448);
        assert_eq!(
            p.depends,
            ["linux-image-6.1.0-56-cloud-amd64", "foo", "baz"]
        );
        assert!(parse_stanza("Package: x\n").is_none());
    }

    #[test]
    fn kernel_image_package_names() {
        assert!(is_kernel_image_package("linux-image-6.1.0-56-cloud-amd64"));
        assert!(!is_kernel_image_package("linux-image-cloud-amd64"));
        assert!(!is_kernel_image_package("busybox-static"));
    }
}
