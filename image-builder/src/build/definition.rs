//! The image definition (`image.toml`): what goes into an image. Unknown keys
//! are errors, so a typo never silently builds the wrong image. Every field
//! is described in `docs/image-definition.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, IoContext, Result};

/// A parsed and checked image definition.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Definition {
    /// Identity of the image.
    pub image: ImageSection,
    /// Which kernel and which of its modules.
    #[serde(default)]
    pub kernel: KernelSection,
    /// Bootloader settings.
    #[serde(default)]
    pub boot: BootSection,
    /// Content of /usr.
    #[serde(default)]
    pub usr: UsrSection,
    /// Update trust root.
    #[serde(default)]
    pub update: UpdateSection,
    /// Partition sizes.
    #[serde(default)]
    pub partitions: PartitionSizes,
    /// Content of the OEM partition.
    #[serde(default)]
    pub oem: OemSection,
    /// Content of ROOT at first boot, beyond the directories every node needs.
    #[serde(default)]
    pub root: RootSection,
    /// Users of the image (`[[users]]`), added to a node's /etc/passwd at
    /// boot when missing.
    #[serde(default)]
    pub users: Vec<UserEntry>,
    /// Groups of the image (`[[groups]]`).
    #[serde(default)]
    pub groups: Vec<GroupEntry>,
    /// Directory of the definition file; relative paths are resolved here.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The definition file.
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[image]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSection {
    /// Image name: lower-case letters, digits and dashes.
    pub name: String,
    /// Dotted numeric version, e.g. `1.0.0` or `3815.2.1`.
    pub version: String,
    /// Release channel the image belongs to.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// CPU architecture; only `x86_64` today.
    #[serde(default = "default_arch")]
    pub arch: String,
}

/// `[kernel]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelSection {
    /// Debian package of the kernel (a metapackage is resolved to the image
    /// package it depends on).
    pub package: Option<String>,
    /// A local kernel instead of a package: the EFI-stub kernel image.
    pub vmlinuz: Option<PathBuf>,
    /// With `vmlinuz`: the `lib/modules/<release>` directory.
    pub modules_dir: Option<PathBuf>,
    /// Modules the initramfs loads to reach /usr (dependencies are added).
    #[serde(default = "default_initramfs_modules")]
    pub initramfs_modules: Vec<String>,
    /// Modules the system init loads after switching root.
    #[serde(default = "default_system_modules")]
    pub system_modules: Vec<String>,
    /// Kernel settings the system init applies at every boot, after the
    /// system modules (`"net.ipv4.ip_forward" = 1`), written to
    /// `/usr/lib/sysctl.d/50-tandem-image.conf` in key order.
    #[serde(default)]
    pub sysctl: std::collections::BTreeMap<String, SysctlValue>,
}

/// A `[kernel] sysctl` value: TOML strings, integers and booleans (as 1 or
/// 0) are all written as the kernel reads them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum SysctlValue {
    /// `"0 2147483647"`.
    Text(String),
    /// `1`.
    Number(i64),
    /// `true` (1) or `false` (0).
    Flag(bool),
}

impl SysctlValue {
    /// The value as written to `/proc/sys`.
    pub fn text(&self) -> String {
        match self {
            SysctlValue::Text(t) => t.clone(),
            SysctlValue::Number(n) => n.to_string(),
            SysctlValue::Flag(b) => u8::from(*b).to_string(),
        }
    }
}

impl KernelSection {
    /// The text of the image's `sysctl.d` file, `None` without settings.
    pub fn sysctl_file(&self) -> std::result::Result<Option<String>, String> {
        if self.sysctl.is_empty() {
            return Ok(None);
        }
        let values: Vec<(&str, String)> = self
            .sysctl
            .iter()
            .map(|(k, v)| (k.as_str(), v.text()))
            .collect();
        tandem_contract::sysctl::render(values.iter().map(|(k, v)| (*k, v.as_str()))).map(Some)
    }
}

/// `[boot]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BootSection {
    /// Seconds the bootloader shows its A/B menu; 0 = no menu.
    #[serde(default)]
    pub timeout: u32,
    /// Kernel arguments for every boot (console, panic, …).
    #[serde(default = "default_cmdline")]
    pub cmdline: Vec<String>,
}

/// `[usr]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UsrSection {
    /// Debian packages unpacked into /usr with their dependencies and the
    /// base set (not installed, no scripts run); `name`, `name=version` or
    /// `name/release`, as `apt-get install` takes them.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Create /usr/bin links for every applet of /usr/bin/busybox.
    #[serde(default)]
    pub busybox_applets: bool,
    /// Files and directories copied into /usr; targets under /etc go to
    /// /usr/share/factory/etc, as packages' /etc files do.
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// `[update]`: the update engine's trust root and defaults, written to
/// `/usr/lib/tandem/trust/` and `/usr/lib/tandem/update.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdateSection {
    /// Public key files (`tandem keygen`) whose signatures the image trusts.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// Root URL of the update repository; none = the node does not check
    /// until an administrator sets one in /etc/tandem/update.toml.
    pub server: Option<String>,
    /// How often the node checks its channel, e.g. `1h`.
    #[serde(default = "default_check_interval")]
    pub check_interval: String,
    /// What happens once an update is written.
    #[serde(default)]
    pub reboot_strategy: RebootStrategy,
}

/// How a node reboots into an installed update (`update.reboot-strategy`).
pub use tandem_contract::RebootStrategy;

/// `[partitions]`: sizes in MiB.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PartitionSizes {
    /// EFI system partition (two kernels and two initramfs images).
    #[serde(default = "default_esp")]
    pub esp: u64,
    /// Each of USR-A and USR-B.
    #[serde(default = "default_usr")]
    pub usr: u64,
    /// OEM partition.
    #[serde(default = "default_oem")]
    pub oem: u64,
    /// ROOT as built; grown to the disk's end on first boot.
    #[serde(default = "default_root")]
    pub root: u64,
}

/// `[oem]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OemSection {
    /// Extra kernel arguments, written to the OEM partition's `cmdline`.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Files copied onto the OEM partition.
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// `[root]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RootSection {
    /// Files placed on ROOT (e.g. under /etc).
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// `[[users]]`: a user every node gets (docs/node-configuration.md#users).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UserEntry {
    /// Login name (Debian style: lower-case letters, digits, `_`, `-`).
    pub name: String,
    /// Fixed uid; default: allocated from the name, the same in every
    /// image (1000–59999, or 100–999 for a system user).
    pub uid: Option<u32>,
    /// Full name or description.
    #[serde(default)]
    pub gecos: String,
    /// Home directory; default `/home/<name>` (`/` for a system user).
    pub home: Option<String>,
    /// Login shell; default `/bin/sh` (`/usr/sbin/nologin` for a system user).
    pub shell: Option<String>,
    /// Supplementary groups: from `[[groups]]`, base-passwd or the packages.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A system (service) account: locked, id below 1000, no home made.
    #[serde(default)]
    pub system: bool,
    /// Public keys placed in `/etc/ssh/authorized_keys.d/<name>`.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
}

/// `[[groups]]`: a group every node gets.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GroupEntry {
    /// Group name (as user names).
    pub name: String,
    /// Fixed gid; default: allocated from the name (100–999).
    pub gid: Option<u32>,
}

/// Whether `name` is a user or group name as Debian's adduser takes it by
/// default: lower-case letters, digits, `_` and `-`, starting with a letter
/// or `_`, at most 31 characters.
pub fn valid_account_name(name: &str) -> bool {
    tandem_contract::sysusers::valid_name(name) && !name.bytes().any(|b| b.is_ascii_uppercase())
}

/// Where a file of `usr.files` lands in the /usr tree, relative to /usr:
/// `/usr/x` at `x`, `/etc/x` at `share/factory/etc/x` (copied to a node's
/// /etc at boot when missing there).
pub fn usr_files_destination(target: &str) -> Option<String> {
    if let Some(rel) = target.strip_prefix("/usr/") {
        return Some(rel.to_string());
    }
    let factory = tandem_contract::etc::FACTORY_ETC.trim_start_matches("/usr/");
    target
        .strip_prefix("/etc/")
        .map(|rel| format!("{factory}/{rel}"))
}

/// A file (or a directory, copied recursively) to place into the image.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileEntry {
    /// Path on the build host, relative to the definition file.
    pub source: PathBuf,
    /// Absolute path in the image.
    pub target: String,
    /// Octal permissions, e.g. `"0755"`; default: the source's.
    pub mode: Option<String>,
}

impl FileEntry {
    /// The permission bits, if given.
    pub fn mode_bits(&self) -> Option<u32> {
        self.mode
            .as_deref()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
    }
}

fn default_check_interval() -> String {
    "1h".into()
}
fn default_channel() -> String {
    "stable".into()
}
fn default_arch() -> String {
    "x86_64".into()
}
fn default_initramfs_modules() -> Vec<String> {
    [
        "virtio_pci",
        "virtio_blk",
        "virtio_scsi",
        "sd_mod",
        "dm_verity",
        "erofs",
        "softdog",
    ]
    .map(String::from)
    .to_vec()
}
fn default_system_modules() -> Vec<String> {
    vec!["virtio_net".into()]
}
fn default_cmdline() -> Vec<String> {
    vec!["console=ttyS0,115200".into(), "panic=10".into()]
}
fn default_esp() -> u64 {
    256
}
fn default_usr() -> u64 {
    1024
}
fn default_oem() -> u64 {
    64
}
fn default_root() -> u64 {
    512
}

impl Default for KernelSection {
    fn default() -> Self {
        KernelSection {
            package: None,
            vmlinuz: None,
            modules_dir: None,
            initramfs_modules: default_initramfs_modules(),
            system_modules: default_system_modules(),
            sysctl: Default::default(),
        }
    }
}

impl Default for UpdateSection {
    fn default() -> Self {
        UpdateSection {
            trusted_keys: Vec::new(),
            server: None,
            check_interval: default_check_interval(),
            reboot_strategy: RebootStrategy::default(),
        }
    }
}

impl Default for BootSection {
    fn default() -> Self {
        BootSection {
            timeout: 0,
            cmdline: default_cmdline(),
        }
    }
}

impl Default for PartitionSizes {
    fn default() -> Self {
        PartitionSizes {
            esp: default_esp(),
            usr: default_usr(),
            oem: default_oem(),
            root: default_root(),
        }
    }
}

/// Whether `entry` is a package as `[usr] packages` takes it: a Debian
/// package name (policy 5.6.1), then optionally `=version` or `/release`.
/// Nothing that apt would read as an option, a pattern or a removal.
pub fn valid_package_entry(entry: &str) -> bool {
    let (name, rest) = match entry.find(['=', '/']) {
        Some(i) => (&entry[..i], &entry[i + 1..]),
        None => (entry, ""),
    };
    let name_ok = name.len() >= 2
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let rest_ok = entry.len() == name.len()
        || (!rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.~:_".contains(c)));
    name_ok && rest_ok
}

/// Where the kernel comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// A Debian package.
    Package(String),
    /// Local files.
    Local {
        /// The kernel image.
        vmlinuz: PathBuf,
        /// `lib/modules/<release>`.
        modules_dir: PathBuf,
    },
}

/// The kernel package used when the definition names none.
pub const DEFAULT_KERNEL_PACKAGE: &str = "linux-image-cloud-amd64";

impl Definition {
    /// Reads, parses and checks a definition file.
    pub fn load(path: &Path) -> Result<Definition> {
        let text = std::fs::read_to_string(path).map_err(|cause| Error::ReadDefinition {
            path: path.to_path_buf(),
            cause,
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, path, &base_dir)
    }

    /// Parses and checks definition text; `path` is used in messages.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Definition> {
        let mut def: Definition = toml::from_str(text).map_err(|e| Error::Definition {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        def.base_dir = base_dir.to_path_buf();
        def.path = path.to_path_buf();
        def.check()?;
        Ok(def)
    }

    /// Resolves a path from the definition against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The kernel source after defaults.
    pub fn kernel_source(&self) -> KernelSource {
        match (&self.kernel.vmlinuz, &self.kernel.modules_dir) {
            (Some(v), Some(m)) => KernelSource::Local {
                vmlinuz: self.resolve(v),
                modules_dir: self.resolve(m),
            },
            _ => KernelSource::Package(
                self.kernel
                    .package
                    .clone()
                    .unwrap_or_else(|| DEFAULT_KERNEL_PACKAGE.into()),
            ),
        }
    }

    fn invalid(&self, field: &str, message: impl Into<String>) -> Error {
        Error::DefinitionValue {
            path: self.path.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn check(&self) -> Result<()> {
        let img = &self.image;
        if !repository::repo::valid_image(&img.name) {
            return Err(self.invalid(
                "image.name",
                format!(
                    "{:?}: use 1 to 64 lower-case letters, digits and dashes, not starting with a dash",
                    img.name
                ),
            ));
        }
        if let Err(e) = img.version.parse::<tandem_contract::Version>() {
            return Err(self.invalid(
                "image.version",
                format!("{e} (versions are compared number by number)"),
            ));
        }
        if !repository::repo::valid_channel(&img.channel) {
            return Err(self.invalid(
                "image.channel",
                format!(
                    "{:?}: use lower-case letters, digits, `.`, `-` and `_`",
                    img.channel
                ),
            ));
        }
        if img.arch != "x86_64" {
            return Err(self.invalid(
                "image.arch",
                format!("{:?}: only x86_64 is supported", img.arch),
            ));
        }
        let k = &self.kernel;
        match (&k.package, &k.vmlinuz, &k.modules_dir) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(self.invalid(
                    "kernel",
                    "give either `package` or `vmlinuz` + `modules-dir`, not both",
                ));
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(self.invalid(
                    "kernel",
                    "a local kernel needs both `vmlinuz` and `modules-dir`",
                ));
            }
            _ => {}
        }
        if let Err(e) = k.sysctl_file() {
            return Err(self.invalid("kernel.sysctl", e));
        }
        if self.boot.timeout > 60 {
            return Err(self.invalid("boot.timeout", "at most 60 seconds"));
        }
        let p = &self.partitions;
        for (key, value, min) in [
            ("esp", p.esp, 64),
            ("usr", p.usr, 16),
            ("oem", p.oem, 8),
            ("root", p.root, 16),
        ] {
            if value < min || value > 1 << 20 {
                return Err(self.invalid(
                    &format!("partitions.{key}"),
                    format!("{value} MiB: must be from {min} MiB to 1 TiB"),
                ));
            }
        }
        for (i, p) in self.usr.packages.iter().enumerate() {
            if !valid_package_entry(p) {
                return Err(self.invalid(
                    &format!("usr.packages[{i}]"),
                    format!(
                        "{p:?} is not a Debian package name: lower-case letters, digits, `+`, `-` and `.`, starting with a letter or digit, optionally `=version` or `/release`"
                    ),
                ));
            }
        }
        for (i, f) in self.usr.files.iter().enumerate() {
            let field = format!("usr.files[{i}].target");
            let Some(rel) = usr_files_destination(&f.target) else {
                return Err(self.invalid(
                    &field,
                    format!(
                        "{:?} must be under /usr/ or /etc/ (the packages' and the image's /etc defaults)",
                        f.target
                    ),
                ));
            };
            if rel.split('/').any(|c| c == "..") {
                return Err(self.invalid(&field, format!("{:?} leaves its directory", f.target)));
            }
            self.refuse_secret(&field, &f.target)?;
        }
        for (section, files) in [("oem", &self.oem.files), ("root", &self.root.files)] {
            for (i, f) in files.iter().enumerate() {
                if !f.target.starts_with('/')
                    || f.target.contains("/../")
                    || f.target.ends_with("/..")
                {
                    return Err(self.invalid(
                        &format!("{section}.files[{i}].target"),
                        format!("{:?} must be an absolute path", f.target),
                    ));
                }
                if section == "root" && (f.target == "/usr" || f.target.starts_with("/usr/")) {
                    return Err(self.invalid(
                        &format!("root.files[{i}].target"),
                        "/usr is the read-only slot: use usr.files",
                    ));
                }
                if section == "root" {
                    self.refuse_secret(&format!("root.files[{i}].target"), &f.target)?;
                }
            }
        }
        let all_files = self
            .usr
            .files
            .iter()
            .chain(&self.oem.files)
            .chain(&self.root.files);
        for f in all_files {
            if f.mode.is_some() && f.mode_bits().is_none_or(|m| m > 0o7777) {
                return Err(self.invalid(
                    "mode",
                    format!("{:?} for {}: use octal such as \"0644\"", f.mode, f.target),
                ));
            }
            let src = self.resolve(&f.source);
            if !src.exists() {
                return Err(self.invalid(
                    "source",
                    format!("{} (for {}) does not exist", src.display(), f.target),
                ));
            }
        }
        for key in &self.update.trusted_keys {
            let path = self.resolve(key);
            let text = std::fs::read_to_string(&path).io("read trusted key", &path)?;
            repository::keys::PublicKey::parse(&text).map_err(|m| {
                self.invalid("update.trusted-keys", format!("{}: {m}", path.display()))
            })?;
        }
        self.check_update()?;
        self.check_accounts()
    }

    /// SSH host keys and the machine id are made on each node: an image
    /// that carried them would give every node the same.
    fn refuse_secret(&self, field: &str, target: &str) -> Result<()> {
        match target.strip_prefix("/etc/") {
            Some(rel) if tandem_contract::etc::node_secret(rel) => Err(self.invalid(
                field,
                format!(
                    "{target:?} is a per-node secret or identity: nodes make their own at first boot (an image's copy would be every node's)"
                ),
            )),
            _ => Ok(()),
        }
    }

    fn check_accounts(&self) -> Result<()> {
        use tandem_contract::sysusers::LOGIN_IDS;
        let bad_name = |what: &str, name: &str| {
            self.invalid(
                what,
                format!(
                    "{name:?}: use lower-case letters, digits, `_` and `-`, starting with a letter or `_`, at most 31 characters"
                ),
            )
        };
        let bad_id = |id: u32| id == u32::from(u16::MAX) || id == u32::MAX;
        let mut groups = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let field = format!("groups[{i}].name");
            if !valid_account_name(&g.name) {
                return Err(bad_name(&field, &g.name));
            }
            if !groups.insert(g.name.as_str()) {
                return Err(self.invalid(&field, format!("{:?} is listed twice", g.name)));
            }
            if g.gid.is_some_and(bad_id) {
                return Err(self.invalid(
                    &format!("groups[{i}].gid"),
                    "65535 and 4294967295 are not usable ids",
                ));
            }
        }
        let mut users = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = |key: &str| format!("users[{i}].{key}");
            if !valid_account_name(&u.name) {
                return Err(bad_name(&at("name"), &u.name));
            }
            if !users.insert(u.name.as_str()) {
                return Err(self.invalid(&at("name"), format!("{:?} is listed twice", u.name)));
            }
            if let Some(uid) = u.uid {
                let range = if u.system {
                    "below 1000"
                } else {
                    "from 1000 to 59999"
                };
                let fits = if u.system {
                    !LOGIN_IDS.contains(&uid) && !bad_id(uid)
                } else {
                    LOGIN_IDS.contains(&uid)
                };
                if !fits {
                    return Err(self.invalid(
                        &at("uid"),
                        format!(
                            "{uid}: a {} user's uid must be {range} (login users are told from system users by their uid)",
                            if u.system { "system" } else { "login" }
                        ),
                    ));
                }
            }
            if u.gecos.contains([':', '\n']) {
                return Err(self.invalid(&at("gecos"), "may not contain ':' or a line break"));
            }
            for (key, value) in [("home", &u.home), ("shell", &u.shell)] {
                if let Some(v) = value
                    && (!v.starts_with('/') || v.contains([':', '\n', ' ']))
                {
                    return Err(self.invalid(
                        &at(key),
                        format!("{v:?}: give an absolute path without ':' or blanks"),
                    ));
                }
            }
            for g in &u.groups {
                if !valid_account_name(g) {
                    return Err(bad_name(&at("groups"), g));
                }
            }
            if u.system && !u.ssh_authorized_keys.is_empty() && u.name != "root" {
                return Err(self.invalid(
                    &at("ssh-authorized-keys"),
                    "a system user's account is locked (sshd refuses it): drop `system = true` or the keys",
                ));
            }
            for key in &u.ssh_authorized_keys {
                let fields = key.split_whitespace().count();
                if key.contains(['\n', '\r']) || fields < 2 {
                    return Err(self.invalid(
                        &at("ssh-authorized-keys"),
                        format!(
                            "{key:?}: give one public key per string, as in authorized_keys (`ssh-ed25519 AAAA… comment`)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_update(&self) -> Result<()> {
        let u = &self.update;
        if let Some(server) = &u.server {
            if server.starts_with("https://") {
                return Err(self.invalid(
                    "update.server",
                    format!("{server:?}: nodes fetch updates over plain http:// (every byte is checked against the signed channel pointer, as apt does); serve the repository over http"),
                ));
            }
            let rest = server.strip_prefix("http://");
            let host = rest.and_then(|r| r.split('/').next()).unwrap_or("");
            let plain = server
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
            if host.is_empty() || !plain {
                return Err(self.invalid(
                    "update.server",
                    format!(
                        "{server:?}: give the repository's root URL, e.g. \"http://updates.example.com/tandem/\""
                    ),
                ));
            }
        }
        match crate::clock::parse_duration(&u.check_interval) {
            Ok(secs) if secs > 0 => Ok(()),
            Ok(_) => Err(self.invalid(
                "update.check-interval",
                format!("{:?}: give a period such as 1h", u.check_interval),
            )),
            Err(e) => Err(self.invalid("update.check-interval", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Definition> {
        Definition::parse(text, Path::new("image.toml"), Path::new("."))
    }

    #[test]
    fn minimal_definition_gets_defaults() {
        let d = parse("[image]\nname = \"demo\"\nversion = \"1.2.3\"\n").expect("valid");
        assert_eq!(d.image.channel, "stable");
        assert_eq!(d.partitions, PartitionSizes::default());
        assert_eq!(
            d.kernel_source(),
            KernelSource::Package(DEFAULT_KERNEL_PACKAGE.into())
        );
        assert!(
            d.kernel
                .initramfs_modules
                .contains(&"dm_verity".to_string())
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[image]\nname = \"demo\"\nversion = \"1\"\nflavour = \"x\"\n")
            .expect_err("unknown key");
        assert!(e.to_string().contains("unknown field `flavour`"), "{e}");
        let e = parse("[image]\nname = \"demo\"\nversion = \"1\"\n[partitons]\n")
            .expect_err("typo section");
        assert!(e.to_string().contains("partitons"), "{e}");
    }

    #[test]
    fn bad_values_say_what_is_right() {
        for (text, needle) in [
            ("[image]\nname = \"Demo\"\nversion = \"1\"", "image.name"),
            ("[image]\nname = \"d\"\nversion = \"1.x\"", "image.version"),
            (
                "[image]\nname = \"d\"\nversion = \"1\"\narch = \"arm\"",
                "only x86_64",
            ),
            (
                "[image]\nname = \"d\"\nversion = \"1\"\n[partitions]\nesp = 8",
                "partitions.esp",
            ),
            (
                "[image]\nname = \"d\"\nversion = \"1\"\n[kernel]\nvmlinuz = \"v\"",
                "needs both",
            ),
            (
                "[image]\nname = \"d\"\nversion = \"1\"\n[[usr.files]]\nsource = \"Cargo.toml\"\ntarget = \"/var/x\"",
                "under /usr/ or /etc/",
            ),
            (
                "[image]\nname = \"d\"\nversion = \"1\"\n[usr]\npackages = [\"-o=Dir=/\"]",
                "usr.packages[0]",
            ),
            (
                "[image]\nname = \"d\"\nversion = \"1\"\n[[usr.files]]\nsource = \"nope\"\ntarget = \"/usr/x\"",
                "does not exist",
            ),
        ] {
            let e = parse(text).expect_err(needle);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn sysctl_values_are_written_as_the_kernel_reads_them() {
        let d = parse(
            "[image]\nname = \"d\"\nversion = \"1\"\n[kernel.sysctl]\n\"net.ipv4.ip_forward\" = true\n\"net.ipv4.ping_group_range\" = \"0 2147483647\"\n\"fs.inotify.max_user_instances\" = 8192\n",
        )
        .expect("valid");
        assert_eq!(
            d.kernel.sysctl_file().unwrap().unwrap(),
            "# [kernel] sysctl of the image definition (written by tandem build)\n\
             fs.inotify.max_user_instances = 8192\n\
             net.ipv4.ip_forward = 1\n\
             net.ipv4.ping_group_range = 0 2147483647\n"
        );
        let d = parse("[image]\nname = \"d\"\nversion = \"1\"").expect("valid");
        assert_eq!(d.kernel.sysctl_file(), Ok(None));
        let e =
            parse("[image]\nname = \"d\"\nversion = \"1\"\n[kernel.sysctl]\n\"net ipv4\" = 1\n")
                .expect_err("blank in key");
        assert!(e.to_string().contains("kernel.sysctl"), "{e}");
    }

    #[test]
    fn package_entries() {
        for ok in [
            "busybox-static",
            "g++",
            "libc6",
            "openssh-server=1:9.2p1-2+deb12u10",
            "foo/bookworm-backports",
            "0ad",
        ] {
            assert!(valid_package_entry(ok), "{ok}");
        }
        for bad in [
            "", "a", "-o", "Foo", "foo bar", "lib.*", "foo=", "foo=1 2", "^task", "foo/",
        ] {
            assert!(!valid_package_entry(bad), "{bad}");
        }
        let d = Definition::parse(
            "[image]\nname = \"d\"\nversion = \"1\"\n[[usr.files]]\nsource = \"Cargo.toml\"\ntarget = \"/etc/ssh/sshd_config\"",
            Path::new("image.toml"),
            Path::new("."),
        )
        .expect("an /etc target is a factory default");
        assert_eq!(d.usr.files[0].target, "/etc/ssh/sshd_config");
    }

    #[test]
    fn versions_are_dotted_numbers() {
        assert!(parse("[image]\nname = \"d\"\nversion = \"3815.2.10\"").is_ok());
        for bad in ["1..2", "1.0-rc1", "v1", ""] {
            let e = parse(&format!("[image]\nname = \"d\"\nversion = \"{bad}\"")).expect_err(bad);
            assert!(e.to_string().contains("image.version"), "{e}");
            assert!(e.to_string().contains("dotted numbers"), "{e}");
        }
    }

    #[test]
    fn update_section() {
        let d = parse("[image]\nname = \"d\"\nversion = \"1\"").expect("valid");
        assert_eq!(d.update.server, None);
        assert_eq!(d.update.check_interval, "1h");
        assert_eq!(d.update.reboot_strategy, RebootStrategy::Reboot);
        let d = parse(
            "[image]\nname = \"d\"\nversion = \"1\"\n[update]\nserver = \"http://10.0.2.2:8080/\"\ncheck-interval = \"10m\"\nreboot-strategy = \"etcd-lock\"",
        )
        .expect("valid");
        assert_eq!(d.update.server.as_deref(), Some("http://10.0.2.2:8080/"));
        assert_eq!(d.update.reboot_strategy.as_str(), "etcd-lock");
        for (update, needle) in [
            ("server = \"ftp://x\"", "update.server"),
            ("server = \"http://\"", "update.server"),
            ("server = \"http://a b/\"", "update.server"),
            ("check-interval = \"soon\"", "update.check-interval"),
            ("check-interval = \"0\"", "a period such as 1h"),
            ("reboot-strategy = \"now\"", "unknown variant `now`"),
            ("health-checks = []", "unknown field `health-checks`"),
        ] {
            let e = parse(&format!(
                "[image]\nname = \"d\"\nversion = \"1\"\n[update]\n{update}"
            ))
            .expect_err(needle);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    const IMAGE: &str = "[image]\nname = \"d\"\nversion = \"1\"\n";

    #[test]
    fn users_and_groups() {
        let d = parse(&format!(
            "{IMAGE}[[groups]]\nname = \"ops\"\n[[groups]]\nname = \"fixed\"\ngid = 2000\n\
             [[users]]\nname = \"core\"\ngecos = \"Core user\"\ngroups = [\"ops\", \"adm\"]\n\
             ssh-authorized-keys = [\"ssh-ed25519 AAAAC3Nza core@host\"]\n\
             [[users]]\nname = \"sshd\"\nsystem = true\nhome = \"/run/sshd\"\nshell = \"/usr/sbin/nologin\"\n"
        ))
        .expect("valid");
        assert_eq!(d.users.len(), 2);
        let core = &d.users[0];
        assert_eq!(
            (core.uid, core.system, core.home.as_deref()),
            (None, false, None)
        );
        assert_eq!(core.groups, ["ops", "adm"]);
        assert_eq!(core.ssh_authorized_keys.len(), 1);
        assert!(d.users[1].system);
        assert_eq!(d.groups[1].gid, Some(2000));
        assert!(parse(IMAGE).expect("valid").users.is_empty());
    }

    #[test]
    fn bad_users_say_what_is_right() {
        for (users, needle) in [
            ("[[users]]\nname = \"Core\"", "users[0].name"),
            ("[[users]]\nname = \"1x\"", "lower-case letters"),
            (
                "[[users]]\nname = \"a\"\n[[users]]\nname = \"a\"",
                "listed twice",
            ),
            ("[[users]]\nname = \"a\"\nuid = 500", "from 1000 to 59999"),
            (
                "[[users]]\nname = \"a\"\nuid = 1500\nsystem = true",
                "below 1000",
            ),
            ("[[users]]\nname = \"a\"\ngecos = \"a:b\"", "users[0].gecos"),
            (
                "[[users]]\nname = \"a\"\nhome = \"home/a\"",
                "absolute path",
            ),
            (
                "[[users]]\nname = \"a\"\nshell = \"/bin/sh -l\"",
                "users[0].shell",
            ),
            (
                "[[users]]\nname = \"a\"\ngroups = [\"Wheel\"]",
                "users[0].groups",
            ),
            (
                "[[users]]\nname = \"a\"\nssh-authorized-keys = [\"AAAA\"]",
                "one public key per string",
            ),
            (
                "[[users]]\nname = \"a\"\nsystem = true\nssh-authorized-keys = [\"ssh-ed25519 AAAA\"]",
                "locked",
            ),
            (
                "[[users]]\nname = \"a\"\npassword = \"x\"",
                "unknown field `password`",
            ),
            (
                "[[groups]]\nname = \"g\"\n[[groups]]\nname = \"g\"",
                "listed twice",
            ),
            ("[[groups]]\nname = \"g\"\ngid = 65535", "not usable"),
        ] {
            let e = parse(&format!("{IMAGE}{users}")).expect_err(needle);
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn etc_files_go_to_the_factory_and_secrets_nowhere() {
        assert_eq!(
            usr_files_destination("/usr/lib/x").as_deref(),
            Some("lib/x")
        );
        assert_eq!(
            usr_files_destination("/etc/ssh/sshd_config").as_deref(),
            Some("share/factory/etc/ssh/sshd_config")
        );
        assert_eq!(usr_files_destination("/var/x"), None);
        assert!(
            parse(&format!(
                "{IMAGE}[[usr.files]]\nsource = \"Cargo.toml\"\ntarget = \"/etc/ssh/sshd_config\""
            ))
            .is_ok()
        );
        for (section, target) in [
            ("usr", "/etc/ssh/ssh_host_ed25519_key"),
            ("root", "/etc/ssh/ssh_host_rsa_key.pub"),
            ("root", "/etc/machine-id"),
        ] {
            let e = parse(&format!(
                "{IMAGE}[[{section}.files]]\nsource = \"Cargo.toml\"\ntarget = \"{target}\""
            ))
            .expect_err(target);
            assert!(e.to_string().contains("per-node secret"), "{e}");
        }
        let e = parse(&format!(
            "{IMAGE}[[usr.files]]\nsource = \"Cargo.toml\"\ntarget = \"/etc/../usr/x\""
        ))
        .expect_err("..");
        assert!(e.to_string().contains("leaves its directory"), "{e}");
    }

    #[test]
    fn trusted_keys_are_checked_with_the_node_parser() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = repository::keys::PrivateKey::from_seed([5; 32], "k");
        std::fs::write(dir.path().join("good.pub"), key.public().to_file()).expect("write");
        std::fs::write(dir.path().join("private.pub"), key.to_file()).expect("write");
        let def = |file: &str| {
            Definition::parse(
                &format!(
                    "[image]\nname = \"d\"\nversion = \"1\"\n[update]\ntrusted-keys = [\"{file}\"]"
                ),
                &dir.path().join("image.toml"),
                dir.path(),
            )
        };
        assert!(def("good.pub").is_ok());
        let e = def("private.pub").expect_err("private key");
        assert!(e.to_string().contains("private key"), "{e}");
    }
}
