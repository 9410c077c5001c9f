//! Reading a cloud-config: the header, the YAML, every key checked and
//! typed into the [`CloudConfig`] model, units translated into services,
//! and everything found reported as diagnostics in the file's order.

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, Report, Severity};
use crate::files::{self, Encoding};
use crate::keys::{self, Part};
use crate::model::{
    CloudConfig, CoreosStrategy, DropIn, Etcd2, Locksmith, ManageEtcHosts, Unit, UnitCommand,
    Update, User, WriteFile,
};
use crate::translate::{self, Activation, Context, TranslatedService};
use crate::unit::UnitFile;
use crate::yaml::{self, Node, Pos, Resolved, Style, Value};
use tandem_contract::service::{NameOrId, Restart, StdioMode};

/// The header every cloud-config starts with.
pub const HEADER: &str = "#cloud-config";

/// What reading a config gave.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Validation {
    /// What was read (parts with errors are left out).
    pub config: CloudConfig,
    /// The units translated into Tandem services, then `tandem.services`.
    pub services: Vec<TranslatedService>,
    /// The diagnostics.
    pub report: Report,
}

/// Reads and checks a cloud-config's text.
pub fn validate(text: &str) -> Validation {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut r = Reader {
        raw: text,
        diags: Vec::new(),
        unit_texts: Vec::new(),
        native_at: Vec::new(),
    };
    let first = text.lines().next().unwrap_or("");
    let start = Pos::new(1, 1);
    if text.trim().is_empty() {
        r.error(
            start,
            "",
            "the file is empty: a cloud-config starts with the line `#cloud-config`",
        );
        return r.finish(CloudConfig::default(), Vec::new());
    }
    if first.starts_with("#!") {
        r.error(start, "", "this is a script (`#!`): Tandem does not run user-data scripts; write a cloud-config (first line `#cloud-config`), with commands as units or tandem.services");
        return r.finish(CloudConfig::default(), Vec::new());
    }
    if text.trim_start().starts_with('{') {
        r.error(start, "", "this looks like Ignition JSON: Tandem does not read Ignition configs; write a cloud-config (first line `#cloud-config`)");
        return r.finish(CloudConfig::default(), Vec::new());
    }
    if first.trim_end() != HEADER {
        r.error(
            start,
            "",
            format!("the first line must be `{HEADER}`: without it the file is not a cloud-config and is not applied (found {:?})", first.trim_end()),
        );
    }
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(crate::Error::Yaml {
            line,
            column,
            message,
        }) => {
            r.error(
                Pos::new(line, column),
                "",
                format!("not valid YAML: {message}"),
            );
            return r.finish(CloudConfig::default(), Vec::new());
        }
        Err(other) => {
            r.error(start, "", other.to_string());
            return r.finish(CloudConfig::default(), Vec::new());
        }
    };
    let config = r.top(&root);
    let mut services = r.units(&config);
    let native = config.tandem.services.clone();
    let positions = std::mem::take(&mut r.native_at);
    for (s, (pos, path)) in native.iter().zip(positions) {
        if services.iter().any(|t| t.name == s.name) {
            r.error(
                pos,
                path,
                format!("the service `{}` is also a unit in coreos.units", s.name),
            );
        }
    }
    services.extend(native);
    r.finish(config, services)
}

/// The positions of a unit's texts, to place the translation's findings.
struct UnitTexts {
    path: String,
    content_path: String,
    content: Option<TextAt>,
    drop_ins: Vec<(String, Option<TextAt>)>,
}

/// Where a scalar's text is in the file.
#[derive(Clone, Copy, Debug)]
struct TextAt {
    /// The scalar's position.
    pos: Pos,
    /// The file's line of the text's first line, for a block scalar (whose
    /// position is its first line that is not empty).
    first_line: Option<usize>,
}

impl TextAt {
    fn of(v: &Node) -> TextAt {
        let first_line = match &v.value {
            Value::Scalar {
                text,
                style: Style::Block,
            } => {
                let leading = text.chars().take_while(|c| *c == '\n').count();
                Some(v.pos.line.saturating_sub(leading))
            }
            _ => None,
        };
        TextAt {
            pos: v.pos,
            first_line,
        }
    }
}

struct Reader<'t> {
    raw: &'t str,
    diags: Vec<Diagnostic>,
    unit_texts: Vec<UnitTexts>,
    /// Where each service of `tandem.services` is named, in order.
    native_at: Vec<(Pos, String)>,
}

type Entries<'n> = Vec<(String, String, &'n Node, &'n Node)>;

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'t> Reader<'t> {
    fn finish(self, config: CloudConfig, services: Vec<TranslatedService>) -> Validation {
        Validation {
            config,
            services,
            report: Report::new(self.diags),
        }
    }

    fn error(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(pos, path, message));
    }

    fn warning(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>) {
        self.diags.push(Diagnostic::warning(pos, path, message));
    }

    /// A mapping's entries with known keys, as (canonical, written, key, value);
    /// unknown and repeated keys are reported and left out.
    fn entries<'n>(&mut self, node: &'n Node, path: &str, part: Part) -> Entries<'n> {
        let pairs = match &node.value {
            Value::Map(pairs) => pairs,
            _ if node.is_null() => return Vec::new(),
            _ => {
                let what = if path.is_empty() {
                    "a cloud-config"
                } else {
                    path
                };
                self.error(
                    node.pos,
                    path,
                    format!(
                        "{what} must be a mapping of keys, found {}",
                        node.describe()
                    ),
                );
                return Vec::new();
            }
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for (k, v) in pairs {
            let Some(written) = k
                .text()
                .filter(|_| !matches!(k.value, Value::Map(_) | Value::Seq(_)))
            else {
                self.error(
                    k.pos,
                    path,
                    format!("a key must be a string, found {}", k.describe()),
                );
                continue;
            };
            let key_path = join(path, written);
            let canon = keys::canonical(written);
            if !part.keys().contains(&canon.as_str()) {
                self.error(k.pos, key_path, keys::unknown_key(part, written));
                continue;
            }
            if let Some(line) = seen.get(&canon) {
                self.error(k.pos, key_path, format!("`{written}` is given twice (first on line {line}); dashes and underscores are the same"));
                continue;
            }
            seen.insert(canon.clone(), k.pos.line);
            out.push((canon, written.to_string(), k, v));
        }
        out
    }

    fn string(&mut self, v: &Node, path: &str) -> Option<String> {
        match v.resolve() {
            Some(Resolved::Null) => {
                self.warning(v.pos, path, "has no value; ignored");
                None
            }
            Some(Resolved::Bool(_)) | None => {
                self.error(
                    v.pos,
                    path,
                    format!("must be a string, found {}", v.describe()),
                );
                None
            }
            Some(_) => v.text().map(str::to_string),
        }
    }

    fn boolean(&mut self, v: &Node, path: &str) -> Option<bool> {
        match v.resolve() {
            Some(Resolved::Bool(b)) => Some(b),
            Some(Resolved::Null) => {
                self.warning(v.pos, path, "has no value; ignored");
                None
            }
            Some(Resolved::Str(s))
                if matches!(
                    s.to_ascii_lowercase().as_str(),
                    "yes" | "no" | "on" | "off" | "y" | "n"
                ) =>
            {
                self.error(
                    v.pos,
                    path,
                    format!("`{s}` is a string in YAML 1.2, not a boolean: write true or false"),
                );
                None
            }
            _ => {
                self.error(
                    v.pos,
                    path,
                    format!("must be true or false, found {}", v.describe()),
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, v: &'n Node, path: &str) -> &'n [Node] {
        match &v.value {
            Value::Seq(items) => items,
            _ if v.is_null() => &[],
            _ => {
                self.error(
                    v.pos,
                    path,
                    format!("must be a list, found {}", v.describe()),
                );
                &[]
            }
        }
    }

    fn strings(&mut self, v: &Node, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (i, item) in self.list(v, path).iter().enumerate() {
            if let Some(s) = self.string(item, &format!("{path}[{i}]")) {
                out.push(s);
            }
        }
        out
    }

    fn absolute(&mut self, v: &Node, path: &str) -> Option<String> {
        let s = self.string(v, path)?;
        if !s.starts_with('/') {
            self.error(v.pos, path, format!("{s:?} is not an absolute path"));
            return None;
        }
        Some(s)
    }

    fn top(&mut self, root: &Node) -> CloudConfig {
        let mut c = CloudConfig::default();
        if root.is_null() {
            self.warning(root.pos, "", "the config is empty: nothing to apply");
        }
        for (canon, written, _, v) in self.entries(root, "", Part::Top) {
            let p = written.as_str();
            match canon.as_str() {
                "hostname" => {
                    if let Some(h) = self.string(v, p) {
                        match check_hostname(&h) {
                            Ok(()) => c.hostname = Some(h),
                            Err(m) => self.error(v.pos, p, m),
                        }
                    }
                }
                "ssh_authorized_keys" => c.ssh_authorized_keys = self.keys(v, p),
                "users" => {
                    for (i, u) in self.list(v, p).iter().enumerate() {
                        if let Some(user) = self.user(u, &format!("{p}[{i}]")) {
                            if c.users.iter().any(|o| o.name == user.name) {
                                self.error(
                                    u.pos,
                                    format!("{p}[{i}]"),
                                    format!("the user `{}` is given twice", user.name),
                                );
                                continue;
                            }
                            c.users.push(user);
                        }
                    }
                }
                "write_files" => {
                    for (i, f) in self.list(v, p).iter().enumerate() {
                        if let Some(file) = self.write_file(f, &format!("{p}[{i}]")) {
                            if !file.append && c.write_files.iter().any(|o| o.path == file.path) {
                                self.warning(
                                    f.pos,
                                    format!("{p}[{i}]"),
                                    format!("{} is written twice: the later entry wins", file.path),
                                );
                            }
                            c.write_files.push(file);
                        }
                    }
                }
                "manage_etc_hosts" => match v.resolve() {
                    Some(Resolved::Str("localhost")) | Some(Resolved::Bool(true)) => {
                        c.manage_etc_hosts = Some(ManageEtcHosts::Localhost)
                    }
                    Some(Resolved::Bool(false)) => c.manage_etc_hosts = Some(ManageEtcHosts::Off),
                    _ => self.error(
                        v.pos,
                        p,
                        format!(
                            "must be \"localhost\" (or true, or false), found {}",
                            v.describe()
                        ),
                    ),
                },
                "coreos" => self.coreos(v, p, &mut c),
                "tandem" => {
                    for (canon, written, _, sv) in self.entries(v, p, Part::Tandem) {
                        let sp = join(p, &written);
                        match canon.as_str() {
                            "services" => c.tandem.services = self.tandem_services(sv, &sp),
                            "network" => c.tandem.network = self.network(sv, &sp),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    fn keys(&mut self, v: &Node, path: &str) -> Vec<String> {
        let items = self.list(v, path).to_vec();
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{path}[{i}]");
            if let Some(k) = self.string(item, &ip) {
                if looks_like_ssh_key(&k) {
                    out.push(k);
                } else {
                    self.error(
                        item.pos,
                        ip,
                        "does not look like an OpenSSH public key (`ssh-ed25519 AAAA… comment`)",
                    );
                }
            }
        }
        out
    }

    fn user(&mut self, node: &Node, path: &str) -> Option<User> {
        let mut u = User {
            pos: node.pos,
            ..User::default()
        };
        let mut named = false;
        for (canon, written, _, v) in self.entries(node, path, Part::User) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "name" => {
                    if let Some(n) = self.string(v, p) {
                        if files::is_account_name(&n) {
                            u.name = n;
                            named = true;
                        } else {
                            self.error(v.pos, p, format!("{n:?} is not a user name ([a-z_][a-z0-9_-]*, at most 32 characters)"));
                            return None;
                        }
                    }
                }
                "gecos" => u.gecos = self.string(v, p),
                "passwd" => {
                    if let Some(h) = self.string(v, p) {
                        if h.starts_with('$') || h == "*" || h.starts_with('!') {
                            u.passwd = Some(h);
                        } else {
                            self.error(v.pos, p, "passwd is a password hash, not a password: make one with `mkpasswd --method=SHA-512` or `openssl passwd -6`");
                        }
                    }
                }
                "homedir" => u.homedir = self.absolute(v, p),
                "shell" => u.shell = self.absolute(v, p),
                "primary_group" => u.primary_group = self.group_name(v, p),
                "groups" => {
                    let items = self.list(v, p).to_vec();
                    for (i, g) in items.iter().enumerate() {
                        if let Some(g) = self.group_name(g, &format!("{p}[{i}]")) {
                            u.groups.push(g);
                        }
                    }
                }
                "ssh_authorized_keys" => u.ssh_authorized_keys = self.keys(v, p),
                "no_create_home" => u.no_create_home = self.boolean(v, p).unwrap_or(false),
                "no_user_group" => u.no_user_group = self.boolean(v, p).unwrap_or(false),
                "system" => u.system = self.boolean(v, p).unwrap_or(false),
                "no_log_init" => u.no_log_init = self.boolean(v, p).unwrap_or(false),
                "lock_passwd" => u.lock_passwd = self.boolean(v, p),
                _ => {}
            }
        }
        if !named {
            self.error(node.pos, path, "a user needs a `name`");
            return None;
        }
        Some(u)
    }

    fn group_name(&mut self, v: &Node, path: &str) -> Option<String> {
        let g = self.string(v, path)?;
        if files::is_account_name(&g) {
            Some(g)
        } else {
            self.error(v.pos, path, format!("{g:?} is not a group name"));
            None
        }
    }

    fn write_file(&mut self, node: &Node, path: &str) -> Option<WriteFile> {
        let mut file_path = None;
        let mut content: Option<(String, Pos, String)> = None;
        let mut owner = None;
        let mut permissions = None;
        let mut encoding: Option<(Encoding, String)> = None;
        let mut append = false;
        let mut ok = true;
        for (canon, written, _, v) in self.entries(node, path, Part::File) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "path" => {
                    if let Some(fp) = self.string(v, p) {
                        match files::check_path(&fp) {
                            Ok(()) => file_path = Some(fp),
                            Err(m) => {
                                self.error(v.pos, p, m);
                                ok = false;
                            }
                        }
                    }
                }
                "content" => {
                    if let Some(c) = self.string(v, p) {
                        content = Some((c, v.pos, p.to_string()));
                    }
                }
                "owner" => {
                    if let Some(o) = self.string(v, p) {
                        match files::parse_owner(&o) {
                            Ok(o) => owner = Some(o),
                            Err(m) => {
                                self.error(v.pos, p, m);
                                ok = false;
                            }
                        }
                    }
                }
                "permissions" => {
                    let mode = match (v.resolve(), v.text()) {
                        (Some(Resolved::Int(_)), Some(t)) => files::permissions_from_int(t),
                        (Some(Resolved::Str(s)), _) => files::permissions_from_str(s),
                        _ => Err(format!(
                            "permissions must be an octal mode such as '0644', found {}",
                            v.describe()
                        )),
                    };
                    match mode {
                        Ok(m) => permissions = Some(m),
                        Err(m) => {
                            self.error(v.pos, p, m);
                            ok = false;
                        }
                    }
                }
                "encoding" => {
                    if let Some(e) = self.string(v, p) {
                        match Encoding::parse(&e) {
                            Ok(enc) => encoding = Some((enc, e)),
                            Err(m) => {
                                self.error(v.pos, p, m);
                                ok = false;
                            }
                        }
                    }
                }
                "append" => append = self.boolean(v, p).unwrap_or(false),
                _ => {}
            }
        }
        let Some(file_path) = file_path else {
            if ok {
                self.error(node.pos, path, "a file needs a `path`");
            }
            return None;
        };
        let decoded = match content {
            None => Vec::new(),
            Some((text, pos, p)) => {
                let (enc, name) = encoding
                    .as_ref()
                    .map_or((None, ""), |(e, n)| (Some(*e), n.as_str()));
                match files::decode(&text, enc, name) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        self.error(pos, p, e.to_string());
                        return None;
                    }
                }
            }
        };
        ok.then_some(WriteFile {
            pos: node.pos,
            path: file_path,
            content: decoded,
            owner,
            permissions,
            encoding: encoding.map(|(e, _)| e),
            append,
        })
    }

    fn coreos(&mut self, node: &Node, path: &str, c: &mut CloudConfig) {
        for (canon, written, k, v) in self.entries(node, path, Part::Coreos) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "update" => c.coreos.update = Some(self.update(v, p)),
                "locksmith" => c.coreos.locksmith = Some(self.locksmith(v, p)),
                "units" => {
                    let items = self.list(v, p).to_vec();
                    for (i, u) in items.iter().enumerate() {
                        let up = format!("{p}[{i}]");
                        if let Some(unit) = self.unit(u, &up) {
                            if c.coreos.units.iter().any(|o| o.name == unit.name) {
                                self.error(u.pos, up, format!("the unit `{}` is given twice", unit.name));
                                self.unit_texts.pop();
                                continue;
                            }
                            c.coreos.units.push(unit);
                        }
                    }
                }
                "etcd2" => {
                    self.warning(k.pos, p, "etcd2 runs an etcd member only on an image that carries Debian's etcd-server: the node checks that when it applies the config; this validator cannot know the image");
                    c.coreos.etcd2 = Some(self.etcd2(v, p));
                }
                "etcd" => self.warning(k.pos, p, "etcd 0.4 settings (`etcd`) are not supported: use `etcd2`; ignored"),
                "fleet" => self.warning(k.pos, p, "fleet is not part of Tandem: run workloads as services or containers (coreos.units, tandem.services); see docs/provisioning.md; ignored"),
                "flannel" => self.warning(k.pos, p, "flannel is not part of Tandem: use the container runtime's own networks or host networking; see docs/provisioning.md; ignored"),
                "oem" => self.warning(k.pos, p, "coreos.oem describes a CoreOS OEM image and has no meaning on Tandem; ignored"),
                _ => {}
            }
        }
    }

    fn update(&mut self, node: &Node, path: &str) -> Update {
        let mut u = Update::default();
        for (canon, written, _, v) in self.entries(node, path, Part::Update) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "reboot_strategy" => {
                    if matches!(v.resolve(), Some(Resolved::Bool(_))) {
                        self.error(v.pos, p, "must be reboot, etcd-lock, best-effort or off, found a boolean (write `off`, which YAML 1.2 reads as a string)");
                    } else if let Some(s) = self.string(v, p) {
                        match CoreosStrategy::parse(&s) {
                            Some(st) => u.reboot_strategy = Some(st),
                            None => self.error(v.pos, p, format!("unknown reboot strategy {s:?}: use reboot, etcd-lock, best-effort or off")),
                        }
                    }
                }
                "group" => {
                    if let Some(g) = self.string(v, p) {
                        if g.is_empty()
                            || !g
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        {
                            self.error(
                                v.pos,
                                p,
                                format!("{g:?} is not a channel name (letters, digits, -, _, .)"),
                            );
                        } else {
                            u.group = Some(g);
                        }
                    }
                }
                "server" => {
                    if let Some(s) = self.string(v, p) {
                        if !(s.starts_with("http://") || s.starts_with("https://")) {
                            self.error(
                                v.pos,
                                p,
                                format!("{s:?} is not an http:// or https:// URL"),
                            );
                        } else {
                            if s.contains("core-os.net")
                                || s.contains("flatcar")
                                || s.contains("/v1/update")
                            {
                                self.warning(v.pos, p, "this looks like an Omaha update server: Tandem reads a Tandem update repository (docs/updates.md), not Omaha");
                            }
                            u.server = Some(s);
                        }
                    }
                }
                "proxy" => {
                    if let Some(s) = self.string(v, p) {
                        if s == "none" || s.starts_with("http://") || s.starts_with("https://") {
                            u.proxy = Some(s);
                        } else {
                            self.error(
                                v.pos,
                                p,
                                format!(
                                    "{:?} is not a proxy: http://[user:password@]host:port, or none",
                                    s.split('@').next_back().unwrap_or("")
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        u
    }

    fn locksmith(&mut self, node: &Node, path: &str) -> Locksmith {
        let mut l = Locksmith::default();
        let mut start_pos = None;
        let mut length_pos = None;
        for (canon, written, _, v) in self.entries(node, path, Part::Locksmith) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "endpoint" => {
                    if let Some(e) = self.string(v, p) {
                        for url in e.split(',').map(str::trim) {
                            if url.starts_with("http://") || url.starts_with("https://") {
                                l.endpoints.push(url.to_string());
                            } else {
                                self.error(v.pos, p, format!("{url:?} is not an http:// or https:// URL (several are separated by commas)"));
                            }
                        }
                    }
                }
                "etcd_cafile" => l.etcd_cafile = self.absolute(v, p),
                "etcd_certfile" => l.etcd_certfile = self.absolute(v, p),
                "etcd_keyfile" => l.etcd_keyfile = self.absolute(v, p),
                "etcd_username" => l.etcd_username = self.string(v, p),
                "etcd_password" => l.etcd_password = self.string(v, p),
                "group" => l.group = self.string(v, p),
                "window_start" => {
                    start_pos = Some((v.pos, p.to_string()));
                    if let Some(s) = self.string(v, p) {
                        match check_window_start(&s) {
                            Ok(()) => l.window_start = Some(s),
                            Err(m) => self.error(v.pos, p, m),
                        }
                    }
                }
                "window_length" => {
                    length_pos = Some((v.pos, p.to_string()));
                    if let Some(s) = self.string(v, p) {
                        match tandem_contract::time::parse_duration(&s) {
                            Ok(d) if d.is_zero() => {
                                self.error(v.pos, p, "a reboot window cannot be empty")
                            }
                            Ok(d) => l.window_length = Some(d),
                            Err(m) => self.error(v.pos, p, m),
                        }
                    }
                }
                _ => {}
            }
        }
        if let (Some(start), Some(length), Some((pos, p))) =
            (&l.window_start, l.window_length, &length_pos)
        {
            // The agent's own check: a length longer than the period.
            let text = tandem_contract::time::format_duration(length);
            if let Err(e @ tandem_contract::window::WindowError::Length { .. }) =
                tandem_contract::window::Window::parse(start, &text, None)
            {
                self.error(*pos, p.clone(), e.to_string());
            }
        }
        match (start_pos, length_pos) {
            (Some((pos, p)), None) => {
                self.error(pos, p, "window_start needs window_length too (e.g. 1h)")
            }
            (None, Some((pos, p))) => self.error(
                pos,
                p,
                "window_length needs window_start too (e.g. \"Thu 04:00\")",
            ),
            _ => {}
        }
        if l.etcd_certfile.is_some() != l.etcd_keyfile.is_some() {
            self.error(node.pos, path, "etcd_certfile and etcd_keyfile go together");
        }
        l
    }

    fn etcd2(&mut self, node: &Node, path: &str) -> Etcd2 {
        let mut e = Etcd2::default();
        let Value::Map(pairs) = &node.value else {
            if !node.is_null() {
                self.error(
                    node.pos,
                    path,
                    format!("must be a mapping of etcd flags, found {}", node.describe()),
                );
            }
            return e;
        };
        for (k, v) in pairs {
            let Some(written) = k.text() else {
                self.error(k.pos, path, "a key must be a string");
                continue;
            };
            let p = join(path, written);
            let flag = written.replace('_', "-");
            if !ETCD_FLAGS.contains(&flag.as_str()) {
                self.error(k.pos, &p, format!("`{written}` is not an etcd flag Tandem knows (etcd's own flag names, e.g. initial-cluster, listen-client-urls)"));
                continue;
            }
            if e.flags.iter().any(|(f, _)| *f == flag) {
                self.error(k.pos, &p, format!("`{written}` is given twice"));
                continue;
            }
            let Some(value) = (match v.resolve() {
                Some(Resolved::Bool(b)) => Some(b.to_string()),
                _ => self.string(v, &p),
            }) else {
                continue;
            };
            if let Err(m) = check_etcd_flag(&flag, &value) {
                self.error(v.pos, &p, m);
                continue;
            }
            e.flags.push((flag, value));
        }
        e
    }

    fn unit(&mut self, node: &Node, path: &str) -> Option<Unit> {
        let mut u = Unit {
            pos: node.pos,
            ..Unit::default()
        };
        let mut texts = UnitTexts {
            path: path.to_string(),
            content_path: join(path, "content"),
            content: None,
            drop_ins: Vec::new(),
        };
        let mut named = false;
        for (canon, written, _, v) in self.entries(node, path, Part::Unit) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "name" => {
                    if let Some(n) = self.string(v, p) {
                        match check_unit_name(&n) {
                            Ok(_) => {
                                u.name = n;
                                named = true;
                            }
                            Err(m) => {
                                self.error(v.pos, p, m);
                                return None;
                            }
                        }
                    }
                }
                "runtime" => u.runtime = self.boolean(v, p).unwrap_or(false),
                "enable" => u.enable = self.boolean(v, p),
                "mask" => u.mask = self.boolean(v, p).unwrap_or(false),
                "content" => {
                    u.content = self.string(v, p);
                    texts.content = Some(TextAt::of(v));
                    texts.content_path = p.to_string();
                }
                "command" => {
                    if let Some(c) = self.string(v, p) {
                        match UnitCommand::parse(&c) {
                            Some(cmd) => u.command = Some(cmd),
                            None => self.error(v.pos, p, format!("unknown command {c:?}: use start, stop, restart, reload, try-restart, reload-or-restart or reload-or-try-restart")),
                        }
                    }
                }
                "drop_ins" => {
                    let items = self.list(v, p).to_vec();
                    for (i, d) in items.iter().enumerate() {
                        let dp = format!("{p}[{i}]");
                        let mut drop_in = DropIn::default();
                        let mut content_pos = None;
                        let mut content_path = dp.clone();
                        let mut name_given = false;
                        for (canon, written, _, dv) in self.entries(d, &dp, Part::DropIn) {
                            let q = join(&dp, &written);
                            if canon == "name" {
                                name_given = true;
                                if let Some(n) = self.string(dv, &q) {
                                    if n.ends_with(".conf") && !n.contains('/') {
                                        drop_in.name = n;
                                    } else {
                                        self.error(dv.pos, &q, format!("{n:?} is not a drop-in name (a file name ending in .conf)"));
                                    }
                                }
                            } else if let Some(c) = self.string(dv, &q) {
                                drop_in.content = c;
                                content_pos = Some(TextAt::of(dv));
                                content_path = q;
                            }
                        }
                        if drop_in.name.is_empty() {
                            if !name_given {
                                self.error(d.pos, &dp, "a drop-in needs a `name` ending in .conf");
                            }
                            continue;
                        }
                        texts.drop_ins.push((content_path, content_pos));
                        u.drop_ins.push(drop_in);
                    }
                }
                _ => {}
            }
        }
        if !named {
            self.error(node.pos, path, "a unit needs a `name` (e.g. hello.service)");
            return None;
        }
        self.unit_texts.push(texts);
        Some(u)
    }

    /// The position in the YAML of `line` of a unit's text (0: the text's key).
    fn text_pos(&self, at: Option<TextAt>, line: usize) -> Pos {
        match at {
            Some(TextAt {
                first_line: Some(first),
                ..
            }) if line > 0 => {
                let yaml_line = first + line - 1;
                let indent = self
                    .raw
                    .lines()
                    .nth(yaml_line.saturating_sub(1))
                    .map_or(0, |l| l.len() - l.trim_start().len());
                Pos::new(yaml_line.max(1), indent + 1)
            }
            Some(at) => at.pos,
            None => Pos::new(1, 1),
        }
    }

    /// Classifies and translates every unit.
    fn units(&mut self, c: &CloudConfig) -> Vec<TranslatedService> {
        let defined: Vec<String> = c
            .coreos
            .units
            .iter()
            .filter(|u| u.content.is_some() && u.name.ends_with(".service"))
            .map(|u| u.name.clone())
            .collect();
        let mut out = Vec::new();
        let texts = std::mem::take(&mut self.unit_texts);
        for (u, t) in c.coreos.units.iter().zip(&texts) {
            let here = (u.pos, t.path.as_str());
            let (_, kind) = check_unit_name(&u.name).unwrap_or(("", "service"));
            if kind != "service" {
                self.warning(
                    u.pos,
                    here.1,
                    format!("`{}`: {}", u.name, unsupported_unit(kind)),
                );
                continue;
            }
            let Some(content) = &u.content else {
                if let Some(m) = image_unit_note(&u.name) {
                    self.warning(u.pos, here.1, format!("`{}`: {m}", u.name));
                } else if !u.drop_ins.is_empty() {
                    self.warning(u.pos, here.1, format!("drop-ins for `{}` cannot apply: the image's services are Tandem service files, not systemd units; give the whole unit as `content`, or use tandem.services", u.name));
                }
                continue;
            };
            if u.name.contains("@.") {
                self.warning(u.pos, here.1, "a template unit is not translated: write one unit per instance (name@instance.service)");
                continue;
            }
            let mut file = match UnitFile::parse(content, 0) {
                Ok(f) => f,
                Err(e) => {
                    let line = match &e {
                        crate::Error::Unit { line, .. } => *line,
                        _ => 0,
                    };
                    self.error(
                        self.text_pos(t.content, line),
                        &t.content_path,
                        e.to_string(),
                    );
                    continue;
                }
            };
            let mut bad_drop_in = false;
            for (i, d) in u.drop_ins.iter().enumerate() {
                let at = t.drop_ins.get(i).and_then(|(_, p)| *p);
                let dpath = t
                    .drop_ins
                    .get(i)
                    .map_or(t.path.as_str(), |(p, _)| p.as_str())
                    .to_string();
                match UnitFile::parse(&d.content, i + 1) {
                    Ok(f) => file.merge(f),
                    Err(e) => {
                        let line = match &e {
                            crate::Error::Unit { line, .. } => *line,
                            _ => 0,
                        };
                        self.error(self.text_pos(at, line), dpath, e.to_string());
                        bad_drop_in = true;
                    }
                }
            }
            if bad_drop_in {
                continue;
            }
            let activation = Activation {
                enable: u.enable,
                command: u.command,
                mask: u.mask,
            };
            let ctx = Context {
                units: &defined,
                image_services: None,
            };
            let tr = translate::translate(&u.name, &file, activation, &ctx);
            for f in tr.findings {
                let (at, path) = match f.origin.checked_sub(1).and_then(|i| t.drop_ins.get(i)) {
                    Some((p, at)) => (*at, p.clone()),
                    None => (t.content, t.content_path.clone()),
                };
                let pos = if f.line == 0 && f.origin == 0 {
                    u.pos
                } else {
                    self.text_pos(at, f.line)
                };
                let path = if f.line == 0 && f.origin == 0 {
                    here.1.to_string()
                } else {
                    path
                };
                match f.severity {
                    Severity::Error => self.error(pos, path, f.message),
                    Severity::Warning => self.warning(pos, path, f.message),
                }
            }
            if let Some(s) = tr.service {
                if !is_service_name(&s.name) {
                    self.error(
                        u.pos,
                        here.1,
                        format!(
                            "`{}` cannot be a Tandem service name (letters, digits, -, _, ., @)",
                            s.name
                        ),
                    );
                    continue;
                }
                out.push(s);
            }
        }
        out
    }

    fn tandem_services(&mut self, node: &Node, path: &str) -> Vec<TranslatedService> {
        let mut out = Vec::new();
        let Value::Map(pairs) = &node.value else {
            if !node.is_null() {
                self.error(
                    node.pos,
                    path,
                    format!(
                        "must be a mapping of service names to services, found {}",
                        node.describe()
                    ),
                );
            }
            return out;
        };
        for (k, v) in pairs {
            let Some(name) = k.text() else {
                self.error(k.pos, path, "a service name must be a string");
                continue;
            };
            let sp = join(path, name);
            if !is_service_name(name) {
                self.error(
                    k.pos,
                    &sp,
                    format!("{name:?} is not a service name (letters, digits, -, _, ., @)"),
                );
                continue;
            }
            if out.iter().any(|s: &TranslatedService| s.name == name) {
                self.error(k.pos, &sp, format!("the service `{name}` is given twice"));
                continue;
            }
            if let Some(s) = self.tandem_service(name, v, &sp) {
                self.native_at.push((k.pos, sp));
                out.push(s);
            }
        }
        out
    }

    fn int(&mut self, v: &Node, path: &str, min: i128, max: i128) -> Option<i128> {
        match v.resolve() {
            Some(Resolved::Int(n)) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    v.pos,
                    path,
                    format!(
                        "must be a whole number from {min} to {max}, found {}",
                        v.describe()
                    ),
                );
                None
            }
        }
    }

    fn tandem_service(&mut self, name: &str, node: &Node, path: &str) -> Option<TranslatedService> {
        let mut t = TranslatedService::new(name);
        let s = &mut t.file;
        let mut exec_given = false;
        let errors_before = self
            .diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        for (canon, written, _, v) in self.entries(node, path, Part::TandemService) {
            let p = join(path, &written);
            let p = p.as_str();
            match canon.as_str() {
                "description" => s.description = self.string(v, p),
                "type" => match self.string(v, p).as_deref() {
                    Some("simple") => s.kind = Some(tandem_contract::run::ServiceType::Simple),
                    Some("oneshot") => s.kind = Some(tandem_contract::run::ServiceType::Oneshot),
                    Some(other) => self.error(
                        v.pos,
                        p,
                        format!("unknown type {other:?}: simple or oneshot"),
                    ),
                    None => {}
                },
                "exec" => {
                    exec_given = true;
                    let argv = self.strings(v, p);
                    match argv.first() {
                        Some(prog) if prog.starts_with('/') => s.exec = argv,
                        Some(prog) => self.error(
                            v.pos,
                            p,
                            format!("the program {prog:?} must be an absolute path"),
                        ),
                        None => self.error(v.pos, p, "exec needs the program and its arguments"),
                    }
                }
                "restart" => match self.string(v, p).as_deref() {
                    Some("always") => s.restart = Some(Restart::Always),
                    Some("on-failure") => s.restart = Some(Restart::OnFailure),
                    Some("never") => s.restart = Some(Restart::Never),
                    Some(other) => self.error(
                        v.pos,
                        p,
                        format!("unknown restart {other:?}: always, on-failure or never"),
                    ),
                    None => {}
                },
                "restart_delay_ms" => {
                    s.restart_delay_ms = self
                        .int(v, p, 0, i128::from(u32::MAX))
                        .and_then(|n| u64::try_from(n).ok())
                }
                "stop_timeout_secs" => {
                    s.stop_timeout_secs = self
                        .int(v, p, 0, i128::from(u32::MAX))
                        .and_then(|n| u64::try_from(n).ok())
                }
                "enabled" => s.enabled = self.boolean(v, p),
                "after_network" => s.after_network = self.boolean(v, p),
                "stdio" => match self.string(v, p).as_deref() {
                    Some("log") => s.stdio = Some(StdioMode::Log),
                    Some("console") => s.stdio = Some(StdioMode::Console),
                    Some("null") => s.stdio = Some(StdioMode::Null),
                    Some("tty") => s.stdio = Some(StdioMode::Tty),
                    Some(other) => self.error(
                        v.pos,
                        p,
                        format!("unknown stdio {other:?}: log, console, null or tty"),
                    ),
                    None => {}
                },
                "after" => s.after = self.strings(v, p),
                "memory_max" => {
                    let size = match v.resolve() {
                        Some(Resolved::Int(n)) => Some(u64::try_from(n).ok().filter(|&n| n > 0)),
                        _ => self
                            .string(v, p)
                            .map(|t| tandem_contract::service::parse_size(&t)),
                    };
                    if size == Some(None) {
                        self.error(v.pos, p, "must be bytes or a number with K, M or G (\"512M\", powers of 1024), more than 0");
                    }
                    s.memory_max = size.flatten().map(tandem_contract::service::render_size);
                }
                "cpu_weight" => {
                    s.cpu_weight = self
                        .int(v, p, 1, 10_000)
                        .and_then(|n| i64::try_from(n).ok())
                }
                "tasks_max" => {
                    s.tasks_max = self
                        .int(v, p, 1, i128::from(u32::MAX))
                        .and_then(|n| i64::try_from(n).ok())
                }
                "working_directory" => s.working_directory = self.absolute(v, p).map(Into::into),
                "user" | "group" => {
                    let who = match v.resolve() {
                        Some(Resolved::Int(_)) => self
                            .int(v, p, 0, i128::from(u32::MAX - 1))
                            .and_then(|n| u32::try_from(n).ok())
                            .map(NameOrId::Id),
                        _ => match self.string(v, p) {
                            Some(n) if tandem_contract::sysusers::valid_name(&n) => {
                                Some(NameOrId::Name(n))
                            }
                            Some(n) => {
                                self.error(v.pos, p, format!("{n:?} is not a user or group name"));
                                None
                            }
                            None => None,
                        },
                    };
                    if canon == "user" {
                        s.user = who;
                    } else {
                        s.group = who;
                    }
                }
                "env" => {
                    if let Value::Map(pairs) = &v.value {
                        for (ek, ev) in pairs {
                            let Some(key) = ek.text() else { continue };
                            if let Some(val) = self.string(ev, &join(p, key)) {
                                s.env.insert(key.to_string(), val);
                            }
                        }
                    } else if !v.is_null() {
                        self.error(
                            v.pos,
                            p,
                            format!("must be a mapping of variables, found {}", v.describe()),
                        );
                    }
                }
                _ => {}
            }
        }
        if !exec_given {
            self.error(node.pos, path, "a service needs `exec`");
        }
        let errors_after = self
            .diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        if errors_after == errors_before
            && let Err(e) = t.check()
        {
            self.error(node.pos, path, e.to_string());
            return None;
        }
        (errors_after == errors_before).then_some(t)
    }
}

/// Tandem's service names: letters, digits, `-`, `_`, `.`, `@`.
fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

/// Whether `h` is an RFC 1123 host name, short or fully qualified (labels
/// of letters, digits and `-`, 1 to 63 long, not starting or ending with
/// `-`; at most 253 in all). The node checks the platform's names with it.
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// RFC 1123 host names (a short name or a fully qualified one).
fn check_hostname(h: &str) -> Result<(), String> {
    if valid_hostname(h) || h.contains('$') {
        Ok(())
    } else {
        Err(format!(
            "{h:?} is not a host name (letters, digits and -, in labels of at most 63 separated by dots)"
        ))
    }
}

fn looks_like_ssh_key(k: &str) -> bool {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let words: Vec<&str> = k.split_whitespace().collect();
    words
        .windows(2)
        .any(|w| TYPES.contains(&w[0]) && w[1].starts_with("AAAA"))
}

/// locksmith's window start: `Thu 04:00`, `thursday 04:00` or `04:00`,
/// read by the parser the reboot agent uses on the node
/// ([`tandem_contract::window::Start::parse`]).
fn check_window_start(s: &str) -> Result<(), String> {
    tandem_contract::window::Start::parse(s)
        .map(drop)
        .map_err(|_| {
            format!("window_start {s:?} is not `HH:MM` or `Day HH:MM` (e.g. \"Thu 04:00\")")
        })
}

/// A unit name: `prefix[@instance].type`; returns the prefix and the type.
fn check_unit_name(name: &str) -> Result<(&str, &str), String> {
    const TYPES: &[&str] = &[
        "service",
        "socket",
        "device",
        "mount",
        "automount",
        "swap",
        "target",
        "path",
        "timer",
        "slice",
        "scope",
    ];
    let bad = |why: &str| format!("{name:?} is not a unit name: {why}");
    let (prefix, kind) = name
        .rsplit_once('.')
        .ok_or_else(|| bad("it needs a type suffix such as .service"))?;
    if !TYPES.contains(&kind) {
        return Err(bad(&format!(
            "`.{kind}` is not a unit type (service, socket, timer, path, mount, ...)"
        )));
    }
    if prefix.is_empty() || name.len() > 255 {
        return Err(bad("the name before the type is empty or too long"));
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'))
    {
        return Err(bad("only letters, digits and :-_.\\@ are allowed"));
    }
    if prefix.matches('@').count() > 1 || prefix.starts_with('@') {
        return Err(bad("at most one `@`, after the name"));
    }
    Ok((prefix, kind))
}

fn unsupported_unit(kind: &str) -> &'static str {
    match kind {
        "socket" => {
            "socket activation is not supported: let the service listen on its port itself (e.g. `dockerd -H tcp://0.0.0.0:2375`, or `podman system service tcp://0.0.0.0:2375` as a service); ignored"
        }
        "timer" => {
            "timers are not supported: run a service that loops with `sleep`, or a oneshot at boot; ignored"
        }
        "path" => "path units are not supported: have the service watch the path itself; ignored",
        "mount" | "automount" => {
            "mount units are not supported: mount from a oneshot service (`/usr/bin/mount …`); ignored"
        }
        "swap" => "swap units are not supported: run `swapon` from a oneshot service; ignored",
        "target" => {
            "targets are not needed: Tandem orders services with `after` and `after_network`; ignored"
        }
        _ => "this unit type is managed by systemd and has no equivalent on Tandem; ignored",
    }
}

/// What to say about a unit entry without content that names one of
/// CoreOS's own services.
fn image_unit_note(name: &str) -> Option<String> {
    Some(match name {
        "fleet.service" | "fleet.socket" => "fleet is not part of Tandem: run workloads as services or containers; see docs/provisioning.md; ignored".into(),
        "flanneld.service" => "flannel is not part of Tandem: use the container runtime's own networks or host networking; see docs/provisioning.md; ignored".into(),
        "etcd.service" | "etcd2.service" | "etcd-member.service" => "etcd runs from `coreos.etcd2`, on an image that carries Debian's etcd-server (the node checks at apply time); this entry adds nothing; ignored".into(),
        "locksmithd.service" => "locksmithd is Tandem's reboot agent: configure it with coreos.locksmith and coreos.update.reboot-strategy; ignored".into(),
        "update-engine.service" => "update-engine is Tandem's update daemon: to keep a node from rebooting into updates set coreos.update.reboot-strategy: off; ignored".into(),
        _ => return None,
    })
}

/// etcd (v2/v3 server) flags read under `coreos.etcd2`, with dashes.
const ETCD_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "snapshot-count",
    "heartbeat-interval",
    "election-timeout",
    "listen-peer-urls",
    "listen-client-urls",
    "max-snapshots",
    "max-wals",
    "cors",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "advertise-client-urls",
    "discovery",
    "discovery-srv",
    "discovery-fallback",
    "discovery-proxy",
    "strict-reconfig-check",
    "proxy",
    "proxy-failure-wait",
    "proxy-refresh-interval",
    "proxy-dial-timeout",
    "proxy-write-timeout",
    "proxy-read-timeout",
    "ca-file",
    "cert-file",
    "key-file",
    "client-cert-auth",
    "trusted-ca-file",
    "auto-tls",
    "peer-ca-file",
    "peer-cert-file",
    "peer-key-file",
    "peer-client-cert-auth",
    "peer-trusted-ca-file",
    "peer-auto-tls",
    "debug",
    "log-package-levels",
    "force-new-cluster",
];

fn check_etcd_flag(flag: &str, value: &str) -> Result<(), String> {
    let url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    match flag {
        "listen-peer-urls"
        | "listen-client-urls"
        | "initial-advertise-peer-urls"
        | "advertise-client-urls" => {
            if let Some(bad) = value.split(',').map(str::trim).find(|u| !url(u)) {
                return Err(format!(
                    "{bad:?} is not an http:// or https:// URL (several are separated by commas)"
                ));
            }
        }
        "initial-cluster" => {
            for member in value.split(',').map(str::trim) {
                match member.split_once('=') {
                    Some((n, u)) if !n.is_empty() && url(u) => {}
                    _ => {
                        return Err(format!(
                            "{member:?} is not `name=http://address:2380` (members are separated by commas)"
                        ));
                    }
                }
            }
        }
        "initial-cluster-state" if !matches!(value, "new" | "existing") => {
            return Err(format!("{value:?}: use new or existing"));
        }
        "proxy" if !matches!(value, "off" | "on" | "readonly") => {
            return Err(format!("{value:?}: use off, on or readonly"));
        }
        "data-dir" | "wal-dir" | "ca-file" | "cert-file" | "key-file" | "trusted-ca-file"
        | "peer-ca-file" | "peer-cert-file" | "peer-key-file"
            if !value.starts_with('/') =>
        {
            return Err(format!("{value:?} is not an absolute path"));
        }
        _ => {}
    }
    Ok(())
}

mod network;
#[cfg(test)]
mod tests;
