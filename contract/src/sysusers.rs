//! System users and groups declared in systemd's `sysusers.d` syntax: the
//! packages' `/usr/lib/sysusers.d/*.conf` and the administrator's
//! `/etc/sysusers.d/*.conf`, and the file the image builder resolves them
//! into ([`RESOLVED`]), which the system init applies to `/etc/passwd` and
//! friends at every boot ([`crate::accounts`]).
//!
//! ```text
//! #Type Name      ID          GECOS           Home       Shell
//! u     httpd     404         "HTTP User"
//! u     postgres  -           "PostgreSQL"    /var/lib/pgsql
//! u     sync      4:65534     -               /bin       /bin/sync
//! g     input     -
//! m     httpd     input
//! r     -         500-900
//! ```
//!
//! Supported: `u` (and `u!`), `g`, `m`, `r`; ids `-`, numeric, `uid:gid`
//! (gid numeric or a group name); fields quoted with `"` or `'`, `\`
//! escapes; `%%` in any field. Not supported (a line error): ids taken from
//! a file's owner (`u name /path`), other `%` specifiers.
//!
//! Ids for `-` come from [`allocate`]: a hash of the name picks a start in
//! the range and the first free id from there (linear probing), so the same
//! name gets the same id in every image and on every node unless that id is
//! already taken.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

/// The packages' declarations, in the image.
pub const IMAGE_DIR: &str = "/usr/lib/sysusers.d";
/// The administrator's declarations, applied at boot after the image's.
pub const ADMIN_DIR: &str = "/etc/sysusers.d";
/// The image's users and groups with their ids, resolved at build time
/// (base-passwd, the packages' `sysusers.d`, the image definition):
/// `g` and `u` lines with numeric ids only, then `m` lines.
pub const RESOLVED: &str = "/usr/lib/tandem/sysusers.conf";

/// Ids of system users and groups allocated for `-` (Debian's
/// `FIRST_SYSTEM_UID`..`LAST_SYSTEM_UID`, systemd's `SYS_UID_MAX`).
pub const SYSTEM_IDS: RangeInclusive<u32> = 100..=999;
/// Ids of login (non-system) users (Debian's `UID_MIN`..`UID_MAX`). An
/// account whose uid is in this range is a login account: its shadow entry
/// is `*` (no password, not locked, so that key logins work) rather than
/// `!*`, and its home directory is created.
pub const LOGIN_IDS: RangeInclusive<u32> = 1000..=59999;
/// Home of a system user declared without one.
pub const DEFAULT_HOME: &str = "/";
/// Shell of a system user other than root declared without one.
pub const NOLOGIN_SHELL: &str = "/usr/sbin/nologin";
/// Shell of root and of login users declared without one.
pub const LOGIN_SHELL: &str = "/bin/sh";

/// Whether `uid` is a login user's.
pub fn is_login_id(uid: u32) -> bool {
    LOGIN_IDS.contains(&uid)
}

/// Whether an account with `uid` is created unlocked (shadow `*`), so that
/// key logins work: login users, and root, which is everybody's
/// administrator account (whether sshd lets it in is sshd's
/// `PermitRootLogin`). Every other account is created locked (`!*`).
pub fn may_log_in(uid: u32) -> bool {
    uid == 0 || is_login_id(uid)
}

/// One line of a `sysusers.d` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `u`: a user (and, unless `uid:gid` names another, a group of the
    /// same name).
    User(User),
    /// `g`: a group.
    Group(Group),
    /// `m user group`: membership; a missing user or group is created as by
    /// `u user -` or `g group -`.
    Member {
        /// The user.
        user: String,
        /// The group.
        group: String,
    },
    /// `r - lo-hi`: ids for `-` of system users and groups come from these
    /// ranges instead of [`SYSTEM_IDS`].
    Range(u32, u32),
}

/// A `u` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User name.
    pub name: String,
    /// Wanted uid; `None` for `-`.
    pub uid: Option<u32>,
    /// Primary group from `uid:gid`; `None`: a group of the user's name.
    pub group: Option<GroupRef>,
    /// GECOS (`-` = empty).
    pub gecos: String,
    /// Home; `None` for `-` ([`DEFAULT_HOME`], or `/home/<name>` for a
    /// login user).
    pub home: Option<String>,
    /// Shell; `None` for `-` ([`NOLOGIN_SHELL`], or [`LOGIN_SHELL`] for
    /// root and login users).
    pub shell: Option<String>,
    /// A login user: `-` ids come from [`LOGIN_IDS`]. Never set by the
    /// parser (the syntax declares system users); the image definition's
    /// non-system users set it.
    pub login: bool,
}

impl User {
    /// A system user with every field `-`.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            uid: None,
            group: None,
            gecos: String::new(),
            home: None,
            shell: None,
            login: false,
        }
    }

    /// Home after defaults.
    pub fn home_or_default(&self) -> String {
        match &self.home {
            Some(h) => h.clone(),
            None if self.login => format!("/home/{}", self.name),
            None => DEFAULT_HOME.to_string(),
        }
    }

    /// Shell after defaults, for the uid the user got.
    pub fn shell_or_default(&self, uid: u32) -> String {
        match &self.shell {
            Some(s) => s.clone(),
            None if uid == 0 || self.login || is_login_id(uid) => LOGIN_SHELL.to_string(),
            None => NOLOGIN_SHELL.to_string(),
        }
    }
}

/// The primary group of `uid:gid`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRef {
    /// A numeric gid.
    Gid(u32),
    /// A group name.
    Name(String),
}

/// A `g` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Wanted gid; `None` for `-`.
    pub gid: Option<u32>,
}

/// A line that could not be read, with its 1-based number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// The entries of a file with their 1-based line numbers, and the lines
/// that could not be read.
pub fn parse(text: &str) -> (Vec<(usize, Entry)>, Vec<LineError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(e)) => entries.push((i + 1, e)),
            Ok(None) => {}
            Err(reason) => errors.push(LineError {
                line: i + 1,
                reason,
            }),
        }
    }
    (entries, errors)
}

/// One line: `None` for blank lines and comments.
pub fn parse_line(line: &str) -> Result<Option<Entry>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let words = split_words(trimmed)?;
    let field = |i: usize| words.get(i).map(String::as_str);
    let kind = field(0).unwrap_or_default();
    let name = field(1).ok_or("no name")?;
    let id = field(2);
    // `-` and absent are the same; `u` takes up to 6 fields, others 3.
    let unset = |f: Option<&str>| f.is_none_or(|v| v == "-");
    let max = if kind.starts_with('u') { 6 } else { 3 };
    if let Some(extra) = words.get(max..)
        && extra.iter().any(|w| w != "-")
    {
        return Err(format!("lines of type {kind:?} take at most {max} fields"));
    }
    match kind {
        "u" | "u!" => {
            check_name(name)?;
            let (uid, group) = match id {
                None | Some("-") => (None, None),
                Some(id) => parse_user_id(id)?,
            };
            let text_field = |i: usize, what: &str| -> Result<Option<String>, String> {
                match field(i) {
                    None | Some("-") => Ok(None),
                    Some(v) if v.contains([':', '\n']) => {
                        Err(format!("{what} {v:?} contains ':' or a newline"))
                    }
                    Some(v) if i > 3 && !v.starts_with('/') => {
                        Err(format!("{what} {v:?} is not an absolute path"))
                    }
                    Some(v) => Ok(Some(v.to_string())),
                }
            };
            Ok(Some(Entry::User(User {
                name: name.to_string(),
                uid,
                group,
                gecos: text_field(3, "GECOS")?.unwrap_or_default(),
                home: text_field(4, "home")?,
                shell: text_field(5, "shell")?,
                login: false,
            })))
        }
        "g" => {
            check_name(name)?;
            let gid = match id {
                None | Some("-") => None,
                Some(id) => Some(parse_id(id)?),
            };
            Ok(Some(Entry::Group(Group {
                name: name.to_string(),
                gid,
            })))
        }
        "m" => {
            check_name(name)?;
            let group = id.ok_or("m lines need a group")?;
            check_name(group)?;
            Ok(Some(Entry::Member {
                user: name.to_string(),
                group: group.to_string(),
            }))
        }
        "r" => {
            if name != "-" {
                return Err("r lines take `-` as name".into());
            }
            let range = id.ok_or("r lines need a range lo-hi")?;
            let (lo, hi) = match range.split_once('-') {
                Some((lo, hi)) => (parse_id(lo)?, parse_id(hi)?),
                None => (parse_id(range)?, parse_id(range)?),
            };
            if lo > hi {
                return Err(format!("range {range:?} is empty"));
            }
            Ok(Some(Entry::Range(lo, hi)))
        }
        _ if unset(Some(kind)) => Err("no type".into()),
        other => Err(format!(
            "unknown type {other:?} (u, g, m and r are supported)"
        )),
    }
}

fn parse_user_id(id: &str) -> Result<(Option<u32>, Option<GroupRef>), String> {
    let (uid, gid) = match id.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (id, None),
    };
    let uid = match uid {
        "-" => None,
        u => Some(parse_id(u)?),
    };
    let group = match gid {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(n) => GroupRef::Gid(valid_id(n, g)?),
            Err(_) => {
                check_name(g)?;
                GroupRef::Name(g.to_string())
            }
        }),
    };
    Ok((uid, group))
}

fn parse_id(text: &str) -> Result<u32, String> {
    if text.starts_with('/') {
        return Err(format!(
            "{text:?}: taking an id from a file's owner is not supported; give a number or `-`"
        ));
    }
    let n = text
        .parse::<u32>()
        .map_err(|_| format!("{text:?} is not an id (a number or `-`)"))?;
    valid_id(n, text)
}

/// 65535 and 4294967295 mean "no id" to the kernel and the C library.
fn valid_id(n: u32, text: &str) -> Result<u32, String> {
    if n == u32::from(u16::MAX) || n == u32::MAX {
        return Err(format!("{text:?} is not a usable id"));
    }
    Ok(n)
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid user or group name (letters, digits, '_', '-'; not starting with a digit or '-'; at most 31 characters)"
        ))
    }
}

/// A user or group name as systemd accepts in strict mode: ASCII letters,
/// digits, `_` and `-`, not starting with a digit or `-`, 1 to 31
/// characters (Debian's package users include `Debian-exim`).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 31
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Splits a line into words: whitespace separates, `"…"` and `'…'` quote,
/// `\` escapes the next character, `%%` is `%`.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or("line ends in a backslash")?;
                word.get_or_insert_default().push(match next {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
            }
            '%' => match chars.next() {
                Some('%') => word.get_or_insert_default().push('%'),
                Some(s) => return Err(format!("specifier %{s} is not supported (only %%)")),
                None => return Err("line ends in a lone %".into()),
            },
            q if Some(q) == quote => quote = None,
            '"' | '\'' if quote.is_none() => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            w if w.is_whitespace() && quote.is_none() => {
                if let Some(done) = word.take() {
                    words.push(done);
                }
            }
            other => word.get_or_insert_default().push(other),
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    words.extend(word);
    Ok(words)
}

/// A field as the parser reads it back: `-` when empty, quoted when it
/// holds blanks, quotes, backslashes, `%` or a leading `#`.
fn quote(field: &str) -> String {
    if field.is_empty() {
        return "-".into();
    }
    let plain = !field.starts_with('#')
        && field
            .chars()
            .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '\\' | '%'));
    if plain {
        return field.to_string();
    }
    let mut out = String::from("\"");
    for c in field.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes entries in the syntax [`parse`] reads (one line each).
pub fn render(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        let _ = match e {
            Entry::User(u) => {
                let id = match (&u.uid, &u.group) {
                    (None, None) => "-".to_string(),
                    (uid, group) => {
                        let uid = uid.map_or("-".to_string(), |n| n.to_string());
                        match group {
                            None => uid,
                            Some(GroupRef::Gid(g)) => format!("{uid}:{g}"),
                            Some(GroupRef::Name(g)) => format!("{uid}:{g}"),
                        }
                    }
                };
                writeln!(
                    out,
                    "u {} {id} {} {} {}",
                    u.name,
                    quote(&u.gecos),
                    quote(u.home.as_deref().unwrap_or_default()),
                    quote(u.shell.as_deref().unwrap_or_default()),
                )
            }
            Entry::Group(g) => writeln!(
                out,
                "g {} {}",
                g.name,
                g.gid.map_or("-".to_string(), |n| n.to_string())
            ),
            Entry::Member { user, group } => writeln!(out, "m {user} {group}"),
            Entry::Range(lo, hi) => writeln!(out, "r - {lo}-{hi}"),
        };
    }
    out
}

/// The 32-bit FNV-1a hash of `name`: where [`allocate`] starts looking.
/// Part of the contract: changing it would move every allocated id.
pub fn name_hash(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The id for `name` in `ranges` (taken as one sequence, in order): the
/// one at `name_hash(name) mod size`, or the next one after it (wrapping)
/// for which `free` says yes. `None` when the ranges are full.
pub fn allocate(
    name: &str,
    ranges: &[RangeInclusive<u32>],
    mut free: impl FnMut(u32) -> bool,
) -> Option<u32> {
    let sizes: Vec<u64> = ranges
        .iter()
        .map(|r| (u64::from(*r.end()) + 1).saturating_sub(u64::from(*r.start())))
        .collect();
    let total: u64 = sizes.iter().sum();
    if total == 0 {
        return None;
    }
    let start = u64::from(name_hash(name)) % total;
    (0..total).find_map(|k| {
        let mut i = (start + k) % total;
        for (r, size) in ranges.iter().zip(&sizes) {
            if i < *size {
                let id = *r.start() + i as u32;
                return (valid_id(id, "").is_ok() && free(id)).then_some(id);
            }
            i -= size;
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Entry {
        parse_line(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .unwrap_or_else(|| panic!("{line}: no entry"))
    }

    fn user(line: &str) -> User {
        match one(line) {
            Entry::User(u) => u,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn users_with_every_id_form() {
        let u = user("u httpd 404 \"HTTP User\"");
        assert_eq!(u.name, "httpd");
        assert_eq!(u.uid, Some(404));
        assert_eq!(u.group, None);
        assert_eq!(u.gecos, "HTTP User");
        assert_eq!((u.home, u.shell), (None, None));
        let u = user("u sync 4:65534 - /bin /bin/sync");
        assert_eq!(u.uid, Some(4));
        assert_eq!(u.group, Some(GroupRef::Gid(65534)));
        assert_eq!(u.gecos, "");
        assert_eq!(u.home.as_deref(), Some("/bin"));
        assert_eq!(u.shell.as_deref(), Some("/bin/sync"));
        let u = user("u _apt 42:nogroup");
        assert_eq!(u.group, Some(GroupRef::Name("nogroup".into())));
        let u = user("u postgres - \"PostgreSQL administrator\" /var/lib/postgresql /bin/bash");
        assert_eq!(u.uid, None);
        assert_eq!(u.home.as_deref(), Some("/var/lib/postgresql"));
        let u = user("u svc -:adm");
        assert_eq!((u.uid, u.group), (None, Some(GroupRef::Name("adm".into()))));
        let u = user("u! locked - -");
        assert_eq!(u.name, "locked");
        assert!(!u.login);
    }

    #[test]
    fn groups_members_ranges() {
        assert_eq!(
            one("g input -"),
            Entry::Group(Group {
                name: "input".into(),
                gid: None
            })
        );
        assert_eq!(
            one("g  nogroup\t65534   -"),
            Entry::Group(Group {
                name: "nogroup".into(),
                gid: Some(65534)
            })
        );
        assert_eq!(
            one("m httpd input"),
            Entry::Member {
                user: "httpd".into(),
                group: "input".into()
            }
        );
        assert_eq!(one("r - 500-900"), Entry::Range(500, 900));
        assert_eq!(one("r - 42"), Entry::Range(42, 42));
    }

    #[test]
    fn quoting_and_escapes() {
        assert_eq!(user("u a - 'single quoted'").gecos, "single quoted");
        assert_eq!(user(r#"u a - "say \"hi\"""#).gecos, "say \"hi\"");
        assert_eq!(user(r"u a - back\ slash").gecos, "back slash");
        assert_eq!(user("u a - 100%%").gecos, "100%");
        assert_eq!(user("u a - \"\"").gecos, "");
        assert_eq!(user("u a - x\"y z\"w").gecos, "xy zw");
    }

    #[test]
    fn comments_and_blank_lines() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(parse_line("# u x -"), Ok(None));
        assert_eq!(parse_line("  #x"), Ok(None));
    }

    #[test]
    fn bad_lines_say_why() {
        for (line, needle) in [
            ("x foo -", "unknown type"),
            ("u", "no name"),
            ("u 1abc -", "not a valid user or group name"),
            ("u -x -", "not a valid"),
            ("u ab:c -", "not a valid"),
            (&format!("u {} -", "a".repeat(32)), "not a valid"),
            ("u a /etc/passwd", "file's owner"),
            ("u a abc", "not an id"),
            ("u a 65535", "not a usable id"),
            ("u a 1:4294967295", "not a usable id"),
            ("u a 1:1x", "not a valid"),
            ("u a - a:b", "contains ':'"),
            ("u a - - home", "not an absolute path"),
            ("u a - - /h sh", "not an absolute path"),
            ("u a - - /h /bin/sh extra", "at most 6 fields"),
            ("g a - x", "at most 3 fields"),
            ("g a x", "not an id"),
            ("m a", "need a group"),
            ("m a b c", "at most 3 fields"),
            ("r x 1-2", "take `-`"),
            ("r - 9-2", "empty"),
            ("u a - \"open", "unterminated quote"),
            ("u a - %m", "specifier %m"),
            ("u a - x\\", "backslash"),
        ] {
            let e = parse_line(line).expect_err(line);
            assert!(e.contains(needle), "{line}: {e}");
        }
        assert!(
            parse_line("g a - -").is_ok(),
            "trailing dashes are unset fields"
        );
        assert!(parse_line("m a b - -").is_ok());
    }

    #[test]
    fn a_file_reports_line_numbers() {
        let (entries, errors) = parse("# header\ng a 10\n\nu b zz\nm b a\n");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, 2);
        assert_eq!(entries[1].0, 5);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 4);
    }

    #[test]
    fn render_and_parse_agree() {
        let entries = vec![
            Entry::Group(Group {
                name: "adm".into(),
                gid: Some(4),
            }),
            Entry::Group(Group {
                name: "auto".into(),
                gid: None,
            }),
            Entry::User(User {
                name: "alice".into(),
                uid: Some(1000),
                group: Some(GroupRef::Gid(1000)),
                gecos: "Alice \"Al\" O'Neil, 100% #1".into(),
                home: Some("/home/alice".into()),
                shell: Some("/bin/sh".into()),
                login: false,
            }),
            Entry::User(User {
                group: Some(GroupRef::Name("adm".into())),
                ..User::new("svc")
            }),
            Entry::User(User {
                gecos: "#hash\tand tab\\".into(),
                ..User::new("odd")
            }),
            Entry::Member {
                user: "alice".into(),
                group: "adm".into(),
            },
            Entry::Range(100, 200),
        ];
        let text = render(&entries);
        let (back, errors) = parse(&text);
        assert_eq!(errors, vec![], "{text}");
        let back: Vec<Entry> = back.into_iter().map(|(_, e)| e).collect();
        assert_eq!(back, entries, "{text}");
        assert!(
            text.starts_with("g adm 4\ng auto -\nu alice 1000:1000 "),
            "{text}"
        );
    }

    #[test]
    fn defaults_depend_on_the_kind_of_user() {
        let sys = User::new("daemon");
        assert_eq!(sys.home_or_default(), "/");
        assert_eq!(sys.shell_or_default(1), NOLOGIN_SHELL);
        assert_eq!(sys.shell_or_default(0), LOGIN_SHELL, "root");
        assert_eq!(sys.shell_or_default(1500), LOGIN_SHELL, "a login uid");
        let login = User {
            login: true,
            ..User::new("alice")
        };
        assert_eq!(login.home_or_default(), "/home/alice");
        assert_eq!(login.shell_or_default(1000), LOGIN_SHELL);
        assert!(is_login_id(1000) && is_login_id(59999));
        assert!(!is_login_id(999) && !is_login_id(60000) && !is_login_id(65534));
    }

    #[test]
    fn names() {
        for ok in [
            "root",
            "_apt",
            "www-data",
            "Debian-exim",
            "a",
            &"x".repeat(31),
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "a b",
            "a:b",
            "a.b",
            "ä",
            &"x".repeat(32),
            "a$",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    /// These values are part of the contract: ids on nodes depend on them.
    #[test]
    fn the_hash_is_fnv1a_and_never_changes() {
        assert_eq!(name_hash(""), 0x811c_9dc5);
        assert_eq!(name_hash("a"), 0xe40c_292c);
        assert_eq!(name_hash("foobar"), 0xbf9c_f968);
        let sys = [SYSTEM_IDS];
        assert_eq!(
            allocate("messagebus", &sys, |_| true),
            Some(100 + name_hash("messagebus") % 900)
        );
        assert_eq!(
            allocate("systemd-network", &sys, |_| true),
            Some(100 + name_hash("systemd-network") % 900)
        );
    }

    #[test]
    fn allocation_probes_and_wraps() {
        let sys = [SYSTEM_IDS];
        let first = allocate("svc", &sys, |_| true).expect("id");
        assert!(SYSTEM_IDS.contains(&first));
        let next = allocate("svc", &sys, |id| id != first).expect("id");
        assert_eq!(next, if first == 999 { 100 } else { first + 1 });
        // Only one id free: found wherever the start is.
        assert_eq!(allocate("svc", &sys, |id| id == 100), Some(100));
        assert_eq!(allocate("svc", &sys, |id| id == 999), Some(999));
        assert_eq!(allocate("svc", &sys, |_| false), None);
        assert_eq!(allocate("svc", &[], |_| true), None);
        // Several ranges form one sequence.
        let split = [10..=11, 20..=21];
        let mut seen: Vec<u32> = (0..4)
            .filter_map(|k| allocate(&format!("n{k}"), &split, |_| true))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert!(
            seen.iter().all(|id| [10, 11, 20, 21].contains(id)),
            "{seen:?}"
        );
        let all: Vec<u32> = {
            let mut taken = Vec::new();
            while let Some(id) = allocate("x", &split, |id| !taken.contains(&id)) {
                taken.push(id);
            }
            taken
        };
        assert_eq!(all.len(), 4);
        // 65535 is never handed out.
        assert_eq!(allocate("x", &[65535..=65535], |_| true), None);
    }
}
