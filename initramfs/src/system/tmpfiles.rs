//! `tmpfiles.d` at every boot: the directories, files and links that
//! packages declare in `/usr/lib/tmpfiles.d/*.conf` (and the administrator
//! in `/etc/tmpfiles.d/*.conf`; a file there replaces the image's file of
//! the same name, a link to `/dev/null` turns it off), in systemd's syntax:
//!
//! ```text
//! #Type Path              Mode User Group Age Argument
//! d     /run/sshd         0755 root root  -
//! f     /var/log/wtmp     0664 root utmp  -
//! L+    /etc/mtab         -    -    -     -   ../proc/self/mounts
//! ```
//!
//! Honoured: `d` `D` `v` `q` `Q` (a directory, made if missing; an existing
//! one gets the mode and owner given; never emptied or cleaned: no ages),
//! `e` (mode and owner of existing directories), `f` `F` (a file, made if
//! missing with the argument as content; `f+`/`F` write it every boot),
//! `w` `w+` (write or append to existing files), `p` (a FIFO), `L` `L+` (a
//! link; `+` replaces a file or link in the way), `C` `C+` (copy from the
//! argument or `/usr/share/factory/<path>` if missing or empty; `+` merges
//! into an existing directory; nothing is overwritten), `r` `R` (remove;
//! `R` recursively), `z` `Z` `m` (mode and owner, `Z` recursively), `x`
//! `X` (nothing to do: nothing is cleaned). Modifiers `!` (boot), `-`
//! (failures are not reported), `+`; mode prefixes `~` (masked by the
//! existing bits) and `:` (only on creation), owner prefix `:`. `-` fields
//! default to 0755 for directories, 0644 otherwise, root:root. User and
//! group names come from the node's `/etc/passwd` and `/etc/group` as the
//! users step just left them. Globs (`*`, `?`, `[…]`) in the types that
//! take them.
//!
//! Not honoured, each with one warning naming the file and line: `c` `b`
//! (device nodes come from devtmpfs), `a` `A` (ACLs), `t` `T` (extended
//! attributes), `h` `H` (file attributes), the `=`, `~` and `^` modifiers
//! (the rest of such a line is applied), unknown specifiers, unknown users.
//!
//! Specifiers: `%%`, `%m` machine id, `%b` boot id, `%H` host name, `%l`
//! short host name, `%v` kernel release, `%a` architecture, `%o` `%w` `%W`
//! `%B` `%M` `%A` (os-release `ID`, `VERSION_ID`, `VARIANT_ID`, `BUILD_ID`,
//! `IMAGE_ID`, `IMAGE_VERSION`), `%u` `%U` `%g` `%G` `%h` (root), `%t`
//! `%S` `%C` `%L` `%T` `%V` (/run, /var/lib, /var/cache, /var/log, /tmp,
//! /var/tmp).
//!
//! [`parse`] and the glob matcher are pure; [`apply`] works under a root
//! directory (`/` on a node, a temporary tree in the tests).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tandem_contract::accounts::Accounts;
use tandem_contract::etc::{TMPFILES_ADMIN_DIR, TMPFILES_IMAGE_DIR};

use super::factory;
use super::users::{merged_conf_files, under};
use crate::error::Error;

/// What `%` specifiers expand to on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Specifiers {
    /// `%m`.
    pub machine_id: Option<String>,
    /// `%b`.
    pub boot_id: Option<String>,
    /// `%H`.
    pub hostname: String,
    /// `%v`.
    pub kernel_release: String,
    /// The image's os-release text (`%o`, `%w`, `%W`, `%B`, `%M`, `%A`).
    pub os_release: String,
}

impl Specifiers {
    /// Expands the specifiers of `text`.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        if !text.contains('%') {
            return Ok(text.to_string());
        }
        let os = |key: &str| tandem_contract::os_release::value(&self.os_release, key);
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let s = chars.next().ok_or("a lone % at the end")?;
            let value = match s {
                '%' => "%".to_string(),
                'm' => self.machine_id.clone().ok_or("%m: no machine id")?,
                'b' => self.boot_id.clone().ok_or("%b: no boot id")?,
                'H' => self.hostname.clone(),
                'l' => self
                    .hostname
                    .split('.')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                'v' => self.kernel_release.clone(),
                'a' => match std::env::consts::ARCH {
                    "x86_64" => "x86-64".to_string(),
                    "aarch64" => "arm64".to_string(),
                    other => other.to_string(),
                },
                'o' => os("ID").unwrap_or_default(),
                'w' => os("VERSION_ID").unwrap_or_default(),
                'W' => os("VARIANT_ID").unwrap_or_default(),
                'B' => os("BUILD_ID").unwrap_or_default(),
                'M' => os("IMAGE_ID").unwrap_or_default(),
                'A' => os("IMAGE_VERSION").unwrap_or_default(),
                'u' | 'g' => "root".to_string(),
                'U' | 'G' => "0".to_string(),
                'h' => "/root".to_string(),
                't' => "/run".to_string(),
                'S' => "/var/lib".to_string(),
                'C' => "/var/cache".to_string(),
                'L' => "/var/log".to_string(),
                'T' => "/tmp".to_string(),
                'V' => "/var/tmp".to_string(),
                other => return Err(format!("specifier %{other} is not supported")),
            };
            out.push_str(&value);
        }
        Ok(out)
    }
}

/// A mode field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Permission bits.
    pub bits: u32,
    /// `~`: bits the existing node lacks (r, w or x for everyone; the
    /// set-id and sticky bits of non-directories) are dropped.
    pub masked: bool,
    /// `:`: only for a node this line creates.
    pub only_create: bool,
}

/// A user or group field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Name or number.
    pub name: String,
    /// `:`: only for a node this line creates.
    pub only_create: bool,
}

/// One line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The file, as shown in warnings.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// The type letter (`F` is read as `f+`, `m` as `z`).
    pub kind: char,
    /// `+`.
    pub plus: bool,
    /// `-`: failures are not reported.
    pub allow_failure: bool,
    /// Absolute path, specifiers expanded, `/var/run/` as `/run/`.
    pub path: String,
    /// Mode, if not `-`.
    pub mode: Option<Mode>,
    /// User, if not `-`.
    pub user: Option<Owner>,
    /// Group, if not `-`.
    pub group: Option<Owner>,
    /// Argument (escapes and specifiers done; defaults filled in for `L`
    /// and `C`).
    pub argument: Option<String>,
    /// Honoured only in part: the warning to give (the `=`, `~`, `^`
    /// modifiers).
    pub partial: Option<String>,
}

impl Line {
    fn error(&self, reason: impl Into<String>) -> Error {
        Error::ConfigLine {
            path: self.file.clone(),
            line: self.line,
            reason: reason.into(),
        }
    }

    /// Whether the line makes a node (rather than adjusting or removing).
    fn creates(&self) -> bool {
        matches!(
            self.kind,
            'f' | 'd' | 'D' | 'v' | 'q' | 'Q' | 'p' | 'L' | 'C' | 'c' | 'b'
        )
    }

    fn same_effect(&self, other: &Line) -> bool {
        (
            self.kind,
            self.plus,
            &self.mode,
            &self.user,
            &self.group,
            &self.argument,
        ) == (
            other.kind,
            other.plus,
            &other.mode,
            &other.user,
            &other.group,
            &other.argument,
        )
    }
}

const UNSUPPORTED: &[(char, &str)] = &[
    ('c', "device nodes come from devtmpfs"),
    ('b', "device nodes come from devtmpfs"),
    ('a', "ACLs are not supported"),
    ('A', "ACLs are not supported"),
    ('t', "extended attributes are not supported"),
    ('T', "extended attributes are not supported"),
    ('h', "file attributes are not supported"),
    ('H', "file attributes are not supported"),
];

/// Reads one file. `Err` lines are reasons, with their 1-based number.
pub fn parse(text: &str, file: &Path, spec: &Specifiers) -> (Vec<Line>, Vec<Error>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        match parse_line(raw, spec) {
            Ok(None) => {}
            Ok(Some(mut l)) => {
                l.file = file.to_path_buf();
                l.line = i + 1;
                lines.push(l);
            }
            Err(reason) => errors.push(Error::ConfigLine {
                path: file.to_path_buf(),
                line: i + 1,
                reason,
            }),
        }
    }
    (lines, errors)
}

fn parse_line(raw: &str, spec: &Specifiers) -> Result<Option<Line>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let (words, rest) = split_fields(trimmed, 6)?;
    if words.len() < 2 {
        return Err("a line needs at least a type and a path".into());
    }
    let field = |i: usize| {
        words
            .get(i)
            .map(String::as_str)
            .filter(|w| !w.is_empty() && *w != "-")
    };
    let action = &words[0];
    let mut chars = action.chars();
    let mut kind = chars.next().ok_or("no type")?;
    let (mut plus, mut allow_failure) = (false, false);
    let mut partial = Vec::new();
    let mut seen = String::new();
    for m in chars {
        if seen.contains(m) {
            return Err(format!("modifier {m} given twice in {action:?}"));
        }
        seen.push(m);
        match m {
            '!' => {}
            '+' => plus = true,
            '-' => allow_failure = true,
            '=' => partial.push("the = modifier (replace a node of another type) is not supported"),
            '~' => return Err("the ~ modifier (base64 argument) is not supported".into()),
            '^' => return Err("the ^ modifier (credentials) is not supported".into()),
            other => return Err(format!("unknown modifier {other:?} in {action:?}")),
        }
    }
    match kind {
        'F' => {
            kind = 'f';
            plus = true;
        }
        'm' => kind = 'z',
        _ => {}
    }
    if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == kind) {
        return Err(format!("type {kind}: {why}"));
    }
    if !"fwdDevqQpLCxXrRzZ".contains(kind) {
        return Err(format!("unknown type {kind:?}"));
    }
    let path = spec.expand(&words[1])?;
    if !path.starts_with('/') {
        return Err(format!("path {path:?} is not absolute"));
    }
    let mut path = simplify(&path);
    // Below the legacy /var/run (a link to /run), as systemd does; not
    // /var/run itself, which lines make as that link.
    if let Some(rest) = path.strip_prefix("/var/run/") {
        path = format!("/run/{rest}");
    }
    let mode = match field(2) {
        None => None,
        Some(m) => {
            let (mut masked, mut only_create) = (false, false);
            let digits = m.trim_start_matches(|c| match c {
                '~' => {
                    masked = true;
                    true
                }
                ':' => {
                    only_create = true;
                    true
                }
                _ => false,
            });
            let bits = u32::from_str_radix(digits, 8)
                .ok()
                .filter(|b| *b <= 0o7777)
                .ok_or_else(|| format!("mode {m:?} is not octal"))?;
            Some(Mode {
                bits,
                masked,
                only_create,
            })
        }
    };
    let owner = |i: usize| -> Result<Option<Owner>, String> {
        Ok(match field(i) {
            None => None,
            Some(o) => {
                let name = spec.expand(o.trim_start_matches(':'))?;
                Some(Owner {
                    only_create: o.starts_with(':'),
                    name,
                })
            }
        })
    };
    let (user, group) = (owner(3)?, owner(4)?);
    let rest = rest.trim_start();
    let mut argument = if rest.is_empty() || rest == "-" || !"fwLC".contains(kind) {
        None
    } else {
        Some(spec.expand(&cunescape(rest)?)?)
    };
    match kind {
        'w' if argument.is_none() => return Err("w lines need an argument".into()),
        'L' | 'C' if argument.is_none() => {
            argument = Some(format!("/usr/share/factory{path}"));
        }
        'C' if argument.as_deref().is_some_and(|a| !a.starts_with('/')) => {
            return Err("the source of a C line must be an absolute path".into());
        }
        _ => {}
    }
    Ok(Some(Line {
        file: PathBuf::new(),
        line: 0,
        kind,
        plus,
        allow_failure,
        path,
        mode,
        user,
        group,
        argument,
        partial: (!partial.is_empty()).then(|| partial.join("; ")),
    }))
}

/// `//a/./b/` → `/a/b`.
fn simplify(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// The first `n` whitespace-separated fields (quotes removed, C escapes
/// done) and the rest of the line as written.
fn split_fields(line: &str, n: usize) -> Result<(Vec<String>, &str), String> {
    let mut words = Vec::new();
    let mut chars = line.char_indices().peekable();
    while words.len() < n {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&(_, c)) = chars.peek() {
            if quote.is_none() && c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\\' => {
                    let (_, e) = chars.next().ok_or("the line ends in a backslash")?;
                    word.push_str(&cunescape(&format!("\\{e}"))?);
                }
                q if Some(q) == quote => quote = None,
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        words.push(word);
    }
    let rest = chars.peek().map_or("", |(i, _)| &line[*i..]);
    Ok((words, rest))
}

/// C escapes: `\n`, `\t`, `\\`, `\"`, `\xHH`, `\NNN` (octal) and the like.
fn cunescape(text: &str) -> Result<String, String> {
    if !text.contains('\\') {
        return Ok(text.to_string());
    }
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1).ok_or("the argument ends in a backslash")?;
        i += 2;
        out.push(match e {
            b'a' => 7,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 11,
            b's' => b' ',
            b'\\' | b'"' | b'\'' | b' ' => e,
            b'x' => {
                let hex = text.get(i..i + 2).ok_or("\\x needs two hex digits")?;
                i += 2;
                u8::from_str_radix(hex, 16).map_err(|_| format!("\\x{hex} is not hex"))?
            }
            b'0'..=b'7' => {
                let oct = text
                    .get(i - 1..i + 2)
                    .ok_or("octal escapes have three digits")?;
                i += 2;
                u8::from_str_radix(oct, 8).map_err(|_| format!("\\{oct} is not octal"))?
            }
            other => return Err(format!("unknown escape \\{}", other as char)),
        });
    }
    String::from_utf8(out).map_err(|_| "escapes make invalid UTF-8".into())
}

/// Whether `name` matches the shell pattern `pattern` (`*`, `?`, `[…]`
/// with `!`/`^` and ranges, `\` escapes); a leading `.` must be matched
/// by a literal `.` (fnmatch's `FNM_PERIOD`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, length including ']').
        let mut i = 0;
        let negate = matches!(p.first(), Some('!' | '^'));
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        while i < p.len() {
            if p[i] == ']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            let lo = p[i];
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                matched |= (lo..=p[i + 2]).contains(&c);
                i += 3;
            } else {
                matched |= lo == c;
                i += 1;
            }
        }
        None
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match (n.first(), class(&p[1..], *n.first().unwrap_or(&'\0'))) {
                (Some(_), Some((true, len))) => go(&p[1 + len..], &n[1..]),
                (Some(_), Some((false, _))) | (None, _) => false,
                (Some(c), None) => *c == '[' && go(&p[1..], &n[1..]),
            },
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

pub(crate) fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The existing paths under `root` that `path` (a pattern) names.
pub(crate) fn expand(root: &Path, path: &str) -> Vec<PathBuf> {
    if !has_glob(path) {
        let p = under(root, path);
        return if std::fs::symlink_metadata(&p).is_ok() {
            vec![p]
        } else {
            Vec::new()
        };
    }
    let mut found = vec![root.to_path_buf()];
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &found {
            if has_glob(comp) {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<_> = entries
                    .filter_map(Result::ok)
                    .filter(|e| glob_match(comp, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect();
                names.sort();
                next.extend(names);
            } else {
                let p = dir.join(comp);
                if std::fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
            }
        }
        found = next;
    }
    found
}

/// The configuration files in order: `/usr/lib/tmpfiles.d` and
/// `/etc/tmpfiles.d` by file name, `/etc`'s replacing `/usr`'s, links to
/// `/dev/null` in `/etc` turning a file off. (Real path, shown path.)
pub fn config_files(root: &Path) -> (Vec<(PathBuf, PathBuf)>, Vec<Error>) {
    merged_conf_files(root, &[TMPFILES_IMAGE_DIR, TMPFILES_ADMIN_DIR])
}

/// Reads every configuration file; drops later lines that would create
/// the same path differently (one warning each), as systemd does.
pub fn read_config(root: &Path, spec: &Specifiers) -> (Vec<Line>, Vec<Error>) {
    let (files, mut errors) = config_files(root);
    let mut lines: Vec<Line> = Vec::new();
    let mut first: HashMap<String, usize> = HashMap::new();
    for (real, shown) in files {
        let text = match std::fs::read_to_string(&real) {
            Ok(t) => t,
            Err(err) => {
                errors.push(Error::Read { path: shown, err });
                continue;
            }
        };
        let (parsed, bad) = parse(&text, &shown, spec);
        errors.extend(bad);
        for l in parsed {
            if l.creates() {
                if let Some(&i) = first.get(&l.path) {
                    let earlier = &lines[i];
                    if !earlier.same_effect(&l) {
                        errors.push(l.error(format!(
                            "{} is already made by {}:{}; line ignored",
                            l.path,
                            earlier.file.display(),
                            earlier.line
                        )));
                    }
                    continue;
                }
                first.insert(l.path.clone(), lines.len());
            }
            lines.push(l);
        }
    }
    (lines, errors)
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Directories, files, links and FIFOs made (copies count once).
    pub created: usize,
    /// Nodes whose mode or owner was changed, or files written.
    pub adjusted: usize,
    /// Nodes removed.
    pub removed: usize,
}

/// Applies `lines` under `root`: removals first, then everything else,
/// parents before children. User and group names are looked up in
/// `accounts`.
pub fn apply(root: &Path, lines: &[Line], accounts: &Accounts) -> (Report, Vec<Error>) {
    let mut report = Report::default();
    let mut errors = Vec::new();
    let mut order: Vec<&Line> = lines.iter().collect();
    order.sort_by_key(|l| {
        let removal = matches!(l.kind, 'r' | 'R');
        let depth = l.path.matches('/').count();
        (!removal, if removal { 0 } else { depth }, !l.creates())
    });
    for l in order {
        if let Some(why) = &l.partial {
            errors.push(l.error(format!("{why}; the rest of the line is applied")));
        }
        if let Err(reason) = apply_line(root, l, accounts, &mut report)
            && !l.allow_failure
        {
            errors.push(l.error(reason));
        }
    }
    (report, errors)
}

/// The uid and gid a line asks for (`None`: leave as is).
fn owners(l: &Line, accounts: &Accounts) -> Result<(Option<u32>, Option<u32>), String> {
    let uid = match &l.user {
        None => None,
        Some(o) => Some(
            o.name
                .parse()
                .ok()
                .or_else(|| accounts.uid(&o.name))
                .or((o.name == "root").then_some(0))
                .ok_or_else(|| format!("unknown user {:?}", o.name))?,
        ),
    };
    let gid = match &l.group {
        None => None,
        Some(o) => Some(
            o.name
                .parse()
                .ok()
                .or_else(|| accounts.gid(&o.name))
                .or((o.name == "root").then_some(0))
                .ok_or_else(|| format!("unknown group {:?}", o.name))?,
        ),
    };
    Ok((uid, gid))
}

fn io(what: &str, path: &Path, err: std::io::Error) -> String {
    format!("{what} {}: {err}", path.display())
}

fn apply_line(
    root: &Path,
    l: &Line,
    accounts: &Accounts,
    report: &mut Report,
) -> Result<(), String> {
    let (uid, gid) = owners(l, accounts)?;
    let path = under(root, &l.path);
    let default_mode = if matches!(l.kind, 'd' | 'D' | 'v' | 'q' | 'Q') {
        0o755
    } else {
        0o644
    };
    let perms = Perms {
        mode: l.mode,
        uid,
        gid,
        user_only_create: l.user.as_ref().is_some_and(|o| o.only_create),
        group_only_create: l.group.as_ref().is_some_and(|o| o.only_create),
    };
    let creation_mode = l.mode.map_or(default_mode, |m| m.bits);
    match l.kind {
        'd' | 'D' | 'v' | 'q' | 'Q' => match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => perms.fix(&path, &m, false, report),
            Ok(_) => Err(format!("{} exists and is not a directory", l.path)),
            Err(_) => {
                make_parents(&path)?;
                std::fs::create_dir(&path).map_err(|e| io("creating", &path, e))?;
                created(&path, creation_mode, &perms, report)
            }
        },
        'e' => each(root, &l.path, |p, m| {
            if m.is_dir() {
                perms.fix(p, m, false, report)
            } else {
                Ok(())
            }
        }),
        'f' => match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                if l.plus {
                    let text = l.argument.as_deref().unwrap_or_default();
                    if std::fs::read(&path).ok().as_deref() != Some(text.as_bytes()) {
                        std::fs::write(&path, text).map_err(|e| io("writing", &path, e))?;
                        report.adjusted += 1;
                    }
                }
                perms.fix(&path, &m, false, report)
            }
            Ok(_) => Err(format!("{} exists and is not a regular file", l.path)),
            Err(_) => {
                make_parents(&path)?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(creation_mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| io("creating", &path, e))?;
                if let Some(text) = &l.argument {
                    f.write_all(text.as_bytes())
                        .map_err(|e| io("writing", &path, e))?;
                }
                created(&path, creation_mode, &perms, report)
            }
        },
        'w' => {
            let text = l.argument.as_deref().unwrap_or_default();
            each(root, &l.path, |p, _| {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .append(l.plus)
                    .truncate(!l.plus)
                    .open(p)
                    .map_err(|e| io("opening", p, e))?;
                f.write_all(text.as_bytes())
                    .map_err(|e| io("writing", p, e))?;
                report.adjusted += 1;
                Ok(())
            })
        }
        'p' => match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_fifo() => perms.fix(&path, &m, false, report),
            Ok(_) => Err(format!("{} exists and is not a FIFO", l.path)),
            Err(_) => {
                make_parents(&path)?;
                let c = CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| "a NUL in the path".to_string())?;
                // SAFETY: mkfifo with a valid NUL-terminated path.
                if unsafe { libc::mkfifo(c.as_ptr(), creation_mode) } != 0 {
                    return Err(io("creating", &path, std::io::Error::last_os_error()));
                }
                created(&path, creation_mode, &perms, report)
            }
        },
        'L' => {
            let target = l.argument.as_deref().unwrap_or_default();
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => {
                    let same = std::fs::read_link(&path).is_ok_and(|t| t == Path::new(target));
                    if !same && l.plus {
                        std::fs::remove_file(&path).map_err(|e| io("replacing", &path, e))?;
                        return make_link(&path, target, &perms, report);
                    }
                    perms.fix(&path, &m, false, report)
                }
                Ok(m) if l.plus && m.is_dir() => {
                    Err(format!("{} is a directory: not replaced by a link", l.path))
                }
                Ok(_) if l.plus => {
                    std::fs::remove_file(&path).map_err(|e| io("replacing", &path, e))?;
                    make_link(&path, target, &perms, report)
                }
                // Something else is there: the administrator's.
                Ok(_) => Ok(()),
                Err(_) => {
                    make_parents(&path)?;
                    make_link(&path, target, &perms, report)
                }
            }
        }
        'C' => {
            let source = under(root, l.argument.as_deref().unwrap_or_default());
            let Ok(src_meta) = std::fs::symlink_metadata(&source) else {
                return Ok(()); // no source: nothing to copy (as systemd)
            };
            let copy = match std::fs::symlink_metadata(&path) {
                Err(_) => {
                    make_parents(&path)?;
                    true
                }
                Ok(m) if m.is_dir() && src_meta.is_dir() => {
                    l.plus
                        || std::fs::read_dir(&path)
                            .map_err(|e| io("reading", &path, e))?
                            .next()
                            .is_none()
                }
                Ok(_) => false,
            };
            let was_there = std::fs::symlink_metadata(&path).is_ok();
            if copy {
                let (copied, errors) = factory::copy_missing(&source, &path);
                if let Some(e) = errors.first() {
                    return Err(e.to_string());
                }
                report.created += usize::from(!copied.is_empty());
            }
            match std::fs::symlink_metadata(&path) {
                Ok(m) => perms.fix(&path, &m, !was_there, report),
                Err(_) => Ok(()),
            }
        }
        'x' | 'X' => Ok(()),
        'r' => {
            if l.path == "/" {
                return Err("refusing to remove /".into());
            }
            each(root, &l.path, |p, m| {
                let r = if m.is_dir() {
                    std::fs::remove_dir(p)
                } else {
                    std::fs::remove_file(p)
                };
                match r {
                    Ok(()) => {
                        report.removed += 1;
                        Ok(())
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => Ok(()),
                    Err(e) => Err(io("removing", p, e)),
                }
            })
        }
        'R' => {
            if l.path == "/" {
                return Err("refusing to remove /".into());
            }
            each(root, &l.path, |p, m| {
                if m.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                }
                .map_err(|e| io("removing", p, e))?;
                report.removed += 1;
                Ok(())
            })
        }
        'z' => each(root, &l.path, |p, m| perms.fix(p, m, false, report)),
        'Z' => each(root, &l.path, |p, m| {
            let mut stack = vec![(p.to_path_buf(), m.clone())];
            while let Some((p, m)) = stack.pop() {
                perms.fix(&p, &m, false, report)?;
                if m.is_dir() {
                    let entries = std::fs::read_dir(&p).map_err(|e| io("reading", &p, e))?;
                    for e in entries.filter_map(Result::ok) {
                        if let Ok(em) = std::fs::symlink_metadata(e.path()) {
                            stack.push((e.path(), em));
                        }
                    }
                }
            }
            Ok(())
        }),
        other => Err(format!("type {other} is not supported")),
    }
}

/// Runs `f` on each existing match of `pattern`; the first error ends it.
fn each(
    root: &Path,
    pattern: &str,
    mut f: impl FnMut(&Path, &std::fs::Metadata) -> Result<(), String>,
) -> Result<(), String> {
    for p in expand(root, pattern) {
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            f(&p, &m)?;
        }
    }
    Ok(())
}

fn make_parents(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e)),
        None => Ok(()),
    }
}

fn make_link(path: &Path, target: &str, perms: &Perms, report: &mut Report) -> Result<(), String> {
    std::os::unix::fs::symlink(target, path).map_err(|e| io("creating", path, e))?;
    report.created += 1;
    if perms.uid.is_some() || perms.gid.is_some() {
        std::os::unix::fs::lchown(path, perms.uid, perms.gid)
            .map_err(|e| io("changing the owner of", path, e))?;
    }
    Ok(())
}

/// A node this line just made: its exact mode (the umask narrowed it) and
/// owner.
fn created(path: &Path, mode: u32, perms: &Perms, report: &mut Report) -> Result<(), String> {
    report.created += 1;
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode))
        .map_err(|e| io("setting the mode of", path, e))?;
    if perms.uid.is_some_and(|u| u != 0) || perms.gid.is_some_and(|g| g != 0) {
        std::os::unix::fs::lchown(path, perms.uid, perms.gid)
            .map_err(|e| io("changing the owner of", path, e))?;
    }
    Ok(())
}

struct Perms {
    mode: Option<Mode>,
    uid: Option<u32>,
    gid: Option<u32>,
    user_only_create: bool,
    group_only_create: bool,
}

impl Perms {
    /// Gives an existing node the mode and owner asked for, if it differs.
    fn fix(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
        just_made: bool,
        report: &mut Report,
    ) -> Result<(), String> {
        let mut changed = false;
        let is_link = meta.file_type().is_symlink();
        if let Some(m) = self.mode
            && (just_made || !m.only_create)
            && !is_link
        {
            let have = meta.mode() & 0o7777;
            let want = if m.masked {
                masked(m.bits, have, meta.is_dir())
            } else {
                m.bits
            };
            if have != want {
                std::fs::set_permissions(path, PermissionsExt::from_mode(want))
                    .map_err(|e| io("setting the mode of", path, e))?;
                changed = true;
            }
        }
        let uid = self
            .uid
            .filter(|u| (just_made || !self.user_only_create) && *u != meta.uid());
        let gid = self
            .gid
            .filter(|g| (just_made || !self.group_only_create) && *g != meta.gid());
        if uid.is_some() || gid.is_some() {
            std::os::unix::fs::lchown(path, uid, gid)
                .map_err(|e| io("changing the owner of", path, e))?;
            changed = true;
        }
        report.adjusted += usize::from(changed);
        Ok(())
    }
}

/// `~mode`: keep r, w and x only where the node has them for someone;
/// set-id and sticky bits only on directories.
fn masked(want: u32, have: u32, dir: bool) -> u32 {
    let mut m = want;
    for bit in [0o111, 0o222, 0o444] {
        if have & bit == 0 {
            m &= !bit;
        }
    }
    if !dir {
        m &= !0o7000;
    }
    m
}

/// Reads and applies the configuration under `root`.
pub fn run(root: &Path, spec: &Specifiers, accounts: &Accounts) -> (Report, Vec<Error>) {
    let (lines, mut errors) = read_config(root, spec);
    let (report, more) = apply(root, &lines, accounts);
    errors.extend(more);
    (report, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Specifiers {
        Specifiers {
            machine_id: Some("0123456789abcdef0123456789abcdef".into()),
            boot_id: Some("b00t".into()),
            hostname: "node-1.example".into(),
            kernel_release: "6.1.0-57-cloud-amd64".into(),
            os_release: "ID=tandem\nVERSION_ID=1.2.0\nIMAGE_ID=tandem-ssh\n".into(),
        }
    }

    fn one(text: &str) -> Line {
        let (mut lines, errors) = parse(text, Path::new("t.conf"), &spec());
        assert!(errors.is_empty(), "{text}: {errors:?}");
        assert_eq!(lines.len(), 1, "{text}");
        lines.remove(0)
    }

    fn reason(text: &str) -> String {
        let (lines, errors) = parse(text, Path::new("t.conf"), &spec());
        assert!(lines.is_empty(), "{text}: {lines:?}");
        assert_eq!(errors.len(), 1, "{text}");
        errors[0].to_string()
    }

    #[test]
    fn fields_and_defaults() {
        let l = one("d /run/sshd 0755 root root -");
        assert_eq!((l.kind, l.path.as_str(), l.line), ('d', "/run/sshd", 1));
        assert_eq!(
            l.mode,
            Some(Mode {
                bits: 0o755,
                masked: false,
                only_create: false
            })
        );
        assert_eq!(l.user.as_ref().map(|o| o.name.as_str()), Some("root"));
        let l = one("d\t/var/lib/dbus 0755 - - -");
        assert_eq!((l.user, l.group), (None, None));
        let l = one("q /var 0755 - - -");
        assert_eq!(l.kind, 'q');
        let l = one("d- /root :0700 root :root -");
        assert!(l.allow_failure);
        assert!(l.mode.is_some_and(|m| m.only_create && m.bits == 0o700));
        assert!(l.group.is_some_and(|g| g.only_create && g.name == "root"));
        assert!(!l.user.is_some_and(|u| u.only_create));
        let l = one("Z /run/log/journal/%m ~2750 root systemd-journal - -");
        assert_eq!(l.path, "/run/log/journal/0123456789abcdef0123456789abcdef");
        assert!(l.mode.is_some_and(|m| m.masked && m.bits == 0o2750));
        let l = one("F /run/x");
        assert!(l.kind == 'f' && l.plus);
        assert_eq!(one("m /x 0600").kind, 'z');
        assert_eq!(one("d /var/run/foo").path, "/run/foo");
        assert_eq!(one("L /var/run - - - - ../run").path, "/var/run");
        assert_eq!(one("d //a/./b/").path, "/a/b");
        assert_eq!(one("d \"/with space\"").path, "/with space");
    }

    #[test]
    fn arguments() {
        let l = one("L+ /etc/mtab   -    -    -    -  ../proc/self/mounts");
        assert_eq!(l.argument.as_deref(), Some("../proc/self/mounts"));
        assert!(l.plus);
        let l = one("L /var/lib/dbus/machine-id - - - - /etc/machine-id");
        assert_eq!(l.argument.as_deref(), Some("/etc/machine-id"));
        assert_eq!(
            one("L /etc/x").argument.as_deref(),
            Some("/usr/share/factory/etc/x")
        );
        assert_eq!(
            one("C /etc/y - - - -").argument.as_deref(),
            Some("/usr/share/factory/etc/y")
        );
        let l = one("f+! /run/nologin 0644 - - - \"System is booting up.\"");
        assert_eq!(
            l.argument.as_deref(),
            Some("\"System is booting up.\""),
            "quotes stay, as in systemd"
        );
        let l = one("f /run/a 0644 - - - line one\\nline two %H\\x21");
        assert_eq!(
            l.argument.as_deref(),
            Some("line one\nline two node-1.example!")
        );
        assert_eq!(
            one("w /proc/sys/x - - - - 1").argument.as_deref(),
            Some("1")
        );
        assert_eq!(one("d /x 0755 - - - ignored for d").argument, None);
        assert_eq!(one("f /x 0644 - - - -").argument, None);
    }

    #[test]
    fn specifiers() {
        let s = spec();
        for (text, want) in [
            ("%%m", "%m"),
            ("%b", "b00t"),
            ("%H %l", "node-1.example node-1"),
            ("%v", "6.1.0-57-cloud-amd64"),
            ("%o %w %M %W", "tandem 1.2.0 tandem-ssh "),
            (
                "%t %S %C %L %T %V %h",
                "/run /var/lib /var/cache /var/log /tmp /var/tmp /root",
            ),
            ("%u:%g %U:%G", "root:root 0:0"),
        ] {
            assert_eq!(s.expand(text).as_deref(), Ok(want), "{text}");
        }
        assert!(
            s.expand("%q")
                .expect_err("unknown")
                .contains("%q is not supported")
        );
        let none = Specifiers::default();
        assert!(none.expand("/x/%m").is_err());
    }

    #[test]
    fn what_cannot_be_honoured_is_one_reason() {
        for (text, needle) in [
            (
                "c /dev/x 0600 - - - 1:3",
                "t.conf:1: type c: device nodes come from devtmpfs",
            ),
            (
                "a+ /run/log/journal - - - - group:adm:r-x",
                "ACLs are not supported",
            ),
            ("h /var/log/journal - - - - +C", "file attributes"),
            ("y /x", "unknown type 'y'"),
            ("d", "at least a type and a path"),
            ("d x/y", "not absolute"),
            ("d /x 0999", "not octal"),
            ("f~ /x - - - - aGk=", "base64"),
            ("f^ /etc/hosts - - - - network.hosts", "credentials"),
            ("d!! /x", "given twice"),
            ("d? /x", "unknown modifier"),
            ("w /x", "need an argument"),
            ("d /x/%Z", "%Z is not supported"),
            ("C /x - - - - relative", "absolute path"),
            ("d \"/x", "unterminated quote"),
            ("f /x - - - - \\q", "unknown escape"),
        ] {
            let r = reason(text);
            assert!(r.contains(needle), "{text}: {r}");
        }
        assert_eq!(parse("# c\n\n   \n", Path::new("x"), &spec()).0, vec![]);
    }

    #[test]
    fn globs() {
        for (p, n, want) in [
            ("*", "abc", true),
            ("*", ".hidden", false),
            (".*", ".hidden", true),
            ("systemd-private-*", "systemd-private-abc", true),
            ("systemd-private-*", "systemd-privat", false),
            (".X[0-9]*-lock", ".X0-lock", true),
            (".X[0-9]*-lock", ".X12-lock", true),
            (".X[0-9]*-lock", ".Xa-lock", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[!a]x", "bx", true),
            ("[!a]x", "ax", false),
            ("[^a-c]", "d", true),
            ("[]]", "]", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("[ab", "[ab", true),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} {n}");
        }
    }

    fn accounts() -> Accounts {
        Accounts::parse(
            "root:x:0:0::/root:/bin/sh\nsvc:x:321:321::/:/usr/sbin/nologin\n",
            "root:x:0:\nutmp:x:43:\nsvc:x:321:\n",
            "",
            "",
        )
    }

    fn run_text(root: &Path, text: &str) -> (Report, Vec<Error>) {
        let (lines, mut errors) = parse(text, Path::new("/usr/lib/tmpfiles.d/t.conf"), &spec());
        let (report, more) = apply(root, &lines, &accounts());
        errors.extend(more);
        (report, errors)
    }

    fn meta(p: &Path) -> std::fs::Metadata {
        std::fs::symlink_metadata(p).expect("stat")
    }

    #[test]
    fn directories_files_links() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let text = "d /run/sshd 0755 root root -\n\
                    d /run/svc/deep 0750 svc svc -\n\
                    D /tmp/.X11-unix 1777 root root 10d\n\
                    f /var/log/wtmp 0664 root utmp -\n\
                    f /run/motd 0644 - - - hello\\n\n\
                    L+ /etc/mtab - - - - ../proc/self/mounts\n\
                    L /run/shm - - - - /dev/shm\n\
                    p /run/fifo 0600\n\
                    x /tmp/podman-run-*\n";
        let (report, errors) = run_text(root, text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(report.created, 8);
        let m = meta(&root.join("run/svc/deep"));
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o750, 321, 321));
        assert_eq!(
            meta(&root.join("run/svc")).mode() & 0o7777,
            0o755,
            "parents 0755"
        );
        assert_eq!(
            meta(&root.join("tmp/.X11-unix")).mode() & 0o7777,
            0o1777,
            "not narrowed by the umask"
        );
        let m = meta(&root.join("var/log/wtmp"));
        assert_eq!((m.mode() & 0o7777, m.gid(), m.len()), (0o664, 43, 0));
        assert_eq!(
            std::fs::read_to_string(root.join("run/motd")).expect("read"),
            "hello\n"
        );
        assert_eq!(
            std::fs::read_link(root.join("etc/mtab")).expect("link"),
            Path::new("../proc/self/mounts")
        );
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &meta(&root.join("run/fifo")).file_type()
        ));
        // Again: nothing to do.
        let (again, errors) = run_text(root, text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(again, Report::default());
    }

    #[test]
    fn existing_nodes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("var/cache/man")).expect("mkdir");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/mtab"), "a file").expect("write");
        std::fs::write(root.join("etc/keep"), "admin's").expect("write");
        std::fs::write(root.join("run-file"), "old").expect("write");
        std::fs::create_dir_all(root.join("root")).expect("mkdir");
        std::fs::set_permissions(root.join("root"), PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let (report, errors) = run_text(
            root,
            "d /var/cache/man 0700 svc svc -\n\
             L+ /etc/mtab - - - - ../proc/self/mounts\n\
             L /etc/keep - - - - /elsewhere\n\
             f+ /run-file 0600 - - - new\n\
             d- /root :0700 root :root -\n\
             d /etc/mtab 0755\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "/usr/lib/tmpfiles.d/t.conf:6: /etc/mtab exists and is not a directory"
        );
        let m = meta(&root.join("var/cache/man"));
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o700, 321, 321),
            "adjusted"
        );
        assert!(
            meta(&root.join("etc/mtab")).file_type().is_symlink(),
            "L+ replaced the file"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/keep")).expect("read"),
            "admin's",
            "L leaves it"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("run-file")).expect("read"),
            "new"
        );
        assert_eq!(meta(&root.join("run-file")).mode() & 0o7777, 0o600);
        assert_eq!(
            meta(&root.join("root")).mode() & 0o7777,
            0o755,
            ":mode only on creation"
        );
        assert!(report.adjusted >= 3, "{report:?}");
    }

    #[test]
    fn removal_adjustment_and_globs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        for f in [
            "tmp/.X0-lock",
            "tmp/.X1-lock",
            "tmp/keep",
            "tmp/systemd-private-a/x/y",
            "etc/passwd.lock",
            "data/a/f",
            "data/b",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "").expect("write");
        }
        std::fs::create_dir_all(root.join("tmp/notempty/z")).expect("mkdir");
        let (report, errors) = run_text(
            root,
            "r! /tmp/.X[0-9]*-lock\n\
             R! /tmp/systemd-private-*\n\
             r! /etc/passwd.lock\n\
             r! /etc/group.lock\n\
             r /tmp/notempty\n\
             Z /data 0750 svc -\n\
             z /tmp/keep 0600\n\
             e /data 0700\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!root.join("tmp/.X0-lock").exists() && !root.join("tmp/.X1-lock").exists());
        assert!(!root.join("tmp/systemd-private-a").exists());
        assert!(!root.join("etc/passwd.lock").exists());
        assert!(
            root.join("tmp/notempty").exists(),
            "r leaves a full directory"
        );
        assert_eq!(report.removed, 4);
        for p in ["data", "data/a", "data/a/f", "data/b"] {
            let m = meta(&root.join(p));
            assert_eq!(m.uid(), 321, "{p}");
        }
        assert_eq!(meta(&root.join("data/a/f")).mode() & 0o7777, 0o750);
        assert_eq!(
            meta(&root.join("data")).mode() & 0o7777,
            0o700,
            "e after Z (same depth, later line)"
        );
        assert_eq!(meta(&root.join("tmp/keep")).mode() & 0o7777, 0o600);
    }

    #[test]
    fn copies() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let factory = root.join("usr/share/factory/etc/skel");
        std::fs::create_dir_all(&factory).expect("mkdir");
        std::fs::write(factory.join(".profile"), "x").expect("write");
        std::fs::create_dir_all(root.join("etc/other")).expect("mkdir");
        std::fs::write(root.join("etc/other/mine"), "").expect("write");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("src/new"), "n").expect("write");
        let (report, errors) = run_text(
            root,
            "C /etc/skel\nC /etc/other - - - - /src\nC /var/none - - - - /nowhere\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(root.join("etc/skel/.profile").is_file());
        assert!(
            !root.join("etc/other/new").exists(),
            "C into a full directory: nothing"
        );
        assert!(!root.join("var/none").exists(), "no source: nothing");
        assert_eq!(report.created, 1);
        let (_, errors) = run_text(root, "C+ /etc/other - - - - /src\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert!(root.join("etc/other/new").exists(), "C+ merges");
    }

    #[test]
    fn failures_are_reported_unless_allowed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        std::fs::write(root.join("file"), "").expect("write");
        let (_, errors) = run_text(
            root,
            "d /file/sub\nd- /file/sub2\nd /x 0755 nobody\nd= /y\n",
        );
        let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(
            texts.iter().any(|t| t.contains("t.conf:4: the = modifier")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("t.conf:1: creating")),
            "{texts:?}"
        );
        assert!(
            texts
                .iter()
                .any(|t| t.contains("t.conf:3: unknown user \"nobody\"")),
            "{texts:?}"
        );
        assert!(root.join("y").is_dir(), "= is warned about, the rest done");
    }

    #[test]
    fn etc_replaces_usr_and_dev_null_masks() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let usr = root.join("usr/lib/tmpfiles.d");
        let etc = root.join("etc/tmpfiles.d");
        std::fs::create_dir_all(&usr).expect("mkdir");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(usr.join("a.conf"), "d /from-usr-a\n").expect("write");
        std::fs::write(usr.join("b.conf"), "d /from-usr-b\n").expect("write");
        std::fs::write(usr.join("c.conf"), "d /from-usr-c\n").expect("write");
        std::fs::write(usr.join("notes.txt"), "d /never\n").expect("write");
        std::fs::write(etc.join("b.conf"), "d /from-etc-b\n").expect("write");
        std::os::unix::fs::symlink("/dev/null", etc.join("c.conf")).expect("link");
        std::fs::write(
            etc.join("0-first.conf"),
            "d /from-etc-0 0700\nd /from-usr-a 0700\n",
        )
        .expect("write");
        let (report, errors) = run(root, &spec(), &accounts());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "/usr/lib/tmpfiles.d/a.conf:1: /from-usr-a is already made by /etc/tmpfiles.d/0-first.conf:2; line ignored"
        );
        assert_eq!(report.created, 3);
        for (p, there) in [
            ("from-etc-0", true),
            ("from-usr-a", true),
            ("from-etc-b", true),
            ("from-usr-b", false),
            ("from-usr-c", false),
            ("never", false),
        ] {
            assert_eq!(root.join(p).exists(), there, "{p}");
        }
        assert_eq!(meta(&root.join("from-usr-a")).mode() & 0o7777, 0o700);
    }

    #[test]
    fn masks() {
        assert_eq!(masked(0o2750, 0o644, false), 0o640);
        assert_eq!(masked(0o2750, 0o755, true), 0o2750);
        assert_eq!(masked(0o777, 0o600, false), 0o666);
    }
}
