//! Debian packages from apt's configured archives: look versions up
//! (`apt-cache show`), download the .deb into a local cache (checked
//! against the sha256 in apt's lists), and unpack its files and its control
//! files without installing anything. Which packages is decided in
//! [`crate::build::resolve`]. Needs no root: `apt-cache`, `apt-get download`
//! and `dpkg-deb` run as any user.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::build::tools::{APT_CACHE, APT_GET, DPKG_DEB};
use crate::error::{Error, IoContext, Result};

/// A version of a package as apt's lists describe it.
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
    /// Size of the .deb in bytes.
    pub size: u64,
    /// Installed size in bytes (`Installed-Size` is in KiB).
    pub installed_size: u64,
    /// `Depends:` entries, alternatives and version constraints removed.
    pub depends: Vec<String>,
}

/// Looks up package versions in one `apt-cache show --no-all-versions`
/// (loading apt's lists is most of its time, so one call for all).
/// `specs` are `name` (the candidate) or `name=version`; the answer has one
/// record per spec apt knows, in apt's order, with each record's text.
pub fn show(cache: &Cache, specs: &[String]) -> Result<Vec<(PackageInfo, String)>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = cache.apt(APT_CACHE, None);
    cmd.args(["show", "--no-all-versions", "--"]).args(specs);
    let out = cmd.output().map_err(|e| APT_CACHE.spawn_error(e))?;
    // apt-cache exits 100 when one name is unknown but still prints the
    // others: the caller checks what is missing and names it.
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(stanzas(&text)
        .filter_map(|s| parse_stanza(s).map(|p| (p, s.to_string())))
        .collect())
}

/// The records of `apt-cache show` output (separated by empty lines).
pub fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .map(|s| s.trim_matches('\n'))
        .filter(|s| !s.trim().is_empty())
}

/// Parses the first stanza of `apt-cache show` output.
pub fn parse_stanza(text: &str) -> Option<PackageInfo> {
    let stanza = stanzas(text).next()?;
    let fields = fields(stanza);
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
    let sha256 =
        get("SHA256").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some(PackageInfo {
        name: get("Package")?,
        version: get("Version")?,
        arch: get("Architecture")?,
        filename: get("Filename")?,
        sha256,
        size: get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
        installed_size: get("Installed-Size")
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(0, |k| k * 1024),
        depends,
    })
}

/// The fields of a stanza, continuation lines joined onto their field.
fn fields(stanza: &str) -> Vec<(String, String)> {
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
    fields
}

/// Whether `name` is a package that holds a kernel image
/// (`linux-image-<release>`, not a metapackage such as `linux-image-cloud-amd64`).
pub fn is_kernel_image_package(name: &str) -> bool {
    name.strip_prefix("linux-image-")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

/// A directory of downloaded .deb files, keyed by their archive file name,
/// with the packages unpacked (`unpacked/`), their control files
/// (`control/`) and apt's source package cache (`apt/`).
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    /// `<dir>/apt` when this process may write there.
    apt_dir: Option<PathBuf>,
}

impl Cache {
    /// A cache in `dir` (created on first use where possible; a read-only
    /// cache filled by another user is fine for reading).
    pub fn new(dir: PathBuf) -> Self {
        // apt reads relative paths in `-o Dir::…` options as relative to
        // its own directories (/var/cache/apt, /var/lib/apt), not to ours.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let apt = dir.join("apt");
        let apt_dir = (std::fs::create_dir_all(&apt).is_ok() && writable(&apt)).then_some(apt);
        Cache { dir, apt_dir }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/apt` if this process may write there.
    pub fn apt_dir(&self) -> Option<&Path> {
        self.apt_dir.as_deref()
    }

    /// An apt command that reads `status` as dpkg's package state (nothing
    /// installed when `None`: the host's installed packages never matter)
    /// and keeps apt's source package cache in this cache. Debian's
    /// container images disable that cache (`Dir::Cache::srcpkgcache ""`),
    /// which makes every apt call re-parse all package lists (~1 s); the
    /// status part is merged in memory (`Dir::Cache::pkgcache ""`), cheap
    /// for the small status files used here, so calls with different
    /// status files never invalidate each other's cache.
    pub fn apt(&self, tool: crate::build::tools::Tool, status: Option<&Path>) -> Command {
        let mut cmd = tool.command();
        let status = status.unwrap_or(Path::new("/dev/null"));
        cmd.arg("-o")
            .arg(format!("Dir::State::status={}", status.display()))
            .args(["-o", "Dir::State::extended_states=/dev/null"])
            .args(["-o", "Dir::Cache::pkgcache="]);
        if let Some(apt) = &self.apt_dir {
            cmd.arg("-o").arg(format!(
                "Dir::Cache::srcpkgcache={}",
                apt.join("srcpkgcache.bin").display()
            ));
        }
        cmd
    }

    /// Where the .deb of `pkg` is kept.
    fn deb_path(&self, pkg: &PackageInfo) -> PathBuf {
        let name = Path::new(&pkg.filename)
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| format!("{}_{}_{}.deb", pkg.name, pkg.version, pkg.arch).into());
        self.dir.join(name)
    }

    /// The cached .deb for `pkg`, downloading it if absent or damaged.
    pub fn fetch(&self, pkg: &PackageInfo) -> Result<PathBuf> {
        self.fetch_all(&[pkg])?;
        Ok(self.deb_path(pkg))
    }

    /// Whether building with `pkg` needs its .deb (its files or control
    /// files are not extracted in the cache yet).
    pub fn needs_deb(&self, pkg: &PackageInfo) -> bool {
        !(self.extracted_dir("unpacked", pkg).is_dir()
            && self.extracted_dir("control", pkg).is_dir())
    }

    /// Makes sure the .deb of each of `pkgs` is in the cache, downloading
    /// the absent or damaged ones in one `apt-get download` (one start of
    /// apt and one connection for all) and checking each against the
    /// sha256 of apt's lists. Downloads go to a private directory and are
    /// renamed into place once checked: an interrupted download never looks
    /// like a cached package.
    pub fn fetch_all(&self, pkgs: &[&PackageInfo]) -> Result<()> {
        let mut missing = Vec::new();
        for &p in pkgs {
            let path = self.deb_path(p);
            if !(path.exists() && sha256_file(&path)? == p.sha256) {
                missing.push(p);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).io("create package cache", &self.dir)?;
        let tmp = self.dir.join(format!(".download-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).io("create download directory", &tmp)?;
        let result = self.download_into(&missing, &tmp);
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }

    fn download_into(&self, pkgs: &[&PackageInfo], tmp: &Path) -> Result<()> {
        let mut cmd = self.apt(APT_GET, None);
        cmd.current_dir(tmp).args(["download", "-q", "--"]);
        cmd.args(pkgs.iter().map(|p| format!("{}={}", p.name, p.version)));
        APT_GET.run(&mut cmd)?;
        let mut debs: Vec<PathBuf> = std::fs::read_dir(tmp)
            .io("read download directory", tmp)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "deb"))
            .collect();
        debs.sort();
        let mut placed = vec![false; pkgs.len()];
        for deb in debs {
            let got = sha256_file(&deb)?;
            if let Some(i) = pkgs.iter().position(|p| p.sha256 == got) {
                let dest = self.deb_path(pkgs[i]);
                std::fs::rename(&deb, &dest).io("move downloaded package to", &dest)?;
                placed[i] = true;
                continue;
            }
            // A file no package has the sha256 of: name whose it is.
            let file = deb
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(p) = pkgs
                .iter()
                .find(|p| file.starts_with(&format!("{}_", p.name)))
            {
                return Err(Error::PackageChecksum {
                    path: deb,
                    want: p.sha256.clone(),
                    got,
                });
            }
        }
        if let Some(i) = placed.iter().position(|done| !done) {
            return Err(Error::ToolFailed {
                command: format!("apt-get download {}={}", pkgs[i].name, pkgs[i].version),
                status: "no .deb produced".into(),
                stderr: String::new(),
            });
        }
        Ok(())
    }
}

impl Cache {
    /// The package's files, unpacked once into the cache and reused by later
    /// builds (keyed by the .deb's sha256, so a new version unpacks anew).
    pub fn unpacked(&self, pkg: &PackageInfo) -> Result<PathBuf> {
        self.extracted("unpacked", pkg, unpack)
    }

    /// The package's control files (`control`, `preinst`, `postinst`, …),
    /// extracted once into the cache like [`Cache::unpacked`].
    pub fn control(&self, pkg: &PackageInfo) -> Result<PathBuf> {
        self.extracted("control", pkg, unpack_control)
    }

    fn extracted_dir(&self, kind: &str, pkg: &PackageInfo) -> PathBuf {
        let hash = pkg.sha256.get(..16).unwrap_or(&pkg.sha256);
        self.dir.join(kind).join(format!("{}_{hash}", pkg.name))
    }

    fn extracted(
        &self,
        kind: &str,
        pkg: &PackageInfo,
        extract: fn(&Path, &Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let dir = self.extracted_dir(kind, pkg);
        if dir.is_dir() {
            return Ok(dir);
        }
        let deb = self.fetch(pkg)?;
        let tmp = self
            .dir
            .join(kind)
            .join(format!(".{}-{}", pkg.name, std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        extract(&deb, &tmp)?;
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            // Another build sharing the cache got there first.
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(Error::Io {
                    action: "move extracted package to",
                    path: dir,
                    cause: e,
                });
            }
        }
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

/// Extracts a .deb's control files (maintainer scripts among them) into
/// `dest` (`dpkg-deb --control`).
pub fn unpack_control(deb: &Path, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).io("create directory", parent)?;
    }
    let mut cmd = DPKG_DEB.command();
    cmd.arg("--control").arg(deb).arg(dest);
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

    const SHA: &str = "ba4f88f73dbc3ae9055f3c20f4523bfdbaf1ad13ff95e258924f77d20b4fbedf";

    fn show_text() -> String {
        format!(
            "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\nInstalled-Size: 13\nArchitecture: amd64\nDepends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2), foo | bar,\n baz:any (>= 1)\nFilename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.192-2_amd64.deb\nSize: 1448\nSHA256: {SHA}\n\nPackage: other\n"
        )
    }

    #[test]
    fn stanza_fields_and_depends() {
        let p = parse_stanza(&show_text()).expect("parses");
        assert_eq!(p.name, "linux-image-cloud-amd64");
        assert_eq!(p.version, "6.1.192-2");
        assert_eq!(p.size, 1448);
        assert_eq!(p.installed_size, 13 * 1024);
        assert_eq!(
            p.depends,
            ["linux-image-6.1.0-56-cloud-amd64", "foo", "baz"]
        );
        assert!(parse_stanza("Package: x\n").is_none());
        assert_eq!(stanzas(&show_text()).count(), 2);
    }

    #[test]
    fn a_stanza_without_a_usable_sha256_is_not_a_package() {
        let text = show_text().replace(SHA, "abcd");
        assert!(parse_stanza(&text).is_none());
        let text = show_text().replace(SHA, &format!("{}/x", &SHA[..62]));
        assert!(parse_stanza(&text).is_none());
    }

    #[test]
    fn kernel_image_package_names() {
        assert!(is_kernel_image_package("linux-image-6.1.0-56-cloud-amd64"));
        assert!(!is_kernel_image_package("linux-image-cloud-amd64"));
        assert!(!is_kernel_image_package("busybox-static"));
    }
}
