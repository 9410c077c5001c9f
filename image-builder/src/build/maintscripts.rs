//! What a package's `preinst` and `postinst` would do on a Debian system,
//! and which of it matters for a Tandem image, where no maintainer script
//! runs. Pure: script text in, findings out.
//!
//! The scripts are read with a small shell lexer (quotes, `$(…)`,
//! here-documents, `case` patterns, functions), one simple command at a
//! time. Nothing is evaluated, except that the branches of an `if` only an
//! upgrade enters ([`upgrade_only`]) are skipped: an image is always a
//! first installation. Each command is
//!
//! - glue that does not matter on Tandem (service enablement with
//!   deb-systemd-helper, systemctl, update-rc.d, invoke-rc.d; debconf;
//!   `dpkg-maintscript-helper`; `ldconfig`; `dpkg --compare-versions`;
//!   debhelper's generated blocks; shell control flow, output and queries;
//!   commands acting on a running system; removal of an earlier version's
//!   leftovers): ignored;
//! - a user or group (`adduser`, `addgroup`, `useradd`, `groupadd`): fine
//!   when the package ships `/usr/lib/sysusers.d/*.conf`, else a
//!   [`Finding::User`];
//! - a file made in /etc (`ucf <src> <dest>`, `cp <template> /etc/…`, a
//!   redirection into /etc): a [`Finding::ConfigFile`];
//! - `update-alternatives --install <link> <name> <path> <priority>` with
//!   literal arguments: a [`Finding::Alternative`], which the build honours
//!   by linking in /usr;
//! - anything else: a [`Finding::Command`].

use std::collections::BTreeSet;
use std::fmt;

/// Which maintainer script.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Script {
    /// Runs before the files are unpacked.
    Preinst,
    /// Runs after.
    Postinst,
}

impl fmt::Display for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Script::Preinst => "preinst",
            Script::Postinst => "postinst",
        })
    }
}

/// An alternative (`update-alternatives --install`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Alternative {
    /// The generic name (`awk`).
    pub name: String,
    /// The link (`/usr/bin/awk`).
    pub link: String,
    /// What it points to (`/usr/bin/mawk`).
    pub path: String,
    /// Priority; the highest wins.
    pub priority: i64,
    /// Links that follow the master: (link, name, path).
    pub slaves: Vec<(String, String, String)>,
}

/// Something a script does that matters on Tandem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Finding {
    /// Creates a user or group, and the package ships no sysusers.d file.
    User {
        /// Where.
        script: Script,
        /// The user or group, when the command names it literally.
        name: Option<String>,
        /// The command.
        command: String,
    },
    /// Creates a file in /etc.
    ConfigFile {
        /// Where.
        script: Script,
        /// The file in /etc.
        target: String,
        /// The package's template, when the script copies one.
        template: Option<String>,
    },
    /// Installs an alternative (honoured by the build).
    Alternative(Alternative),
    /// Runs a command Tandem does not run.
    Command {
        /// Where.
        script: Script,
        /// The program.
        program: String,
        /// The first such command as written.
        command: String,
        /// How many more commands of the same program the script runs.
        more: usize,
    },
}

impl Finding {
    /// What to tell the image's author, or `None` for what the build
    /// honours itself.
    pub fn message(&self, package: &str) -> Option<String> {
        match self {
            Finding::User {
                script,
                name,
                command,
            } => Some(match name {
                Some(n) => format!(
                    "{script} of {package} creates `{n}` (`{command}`), which Tandem does not run: declare `{n}` in the image definition's [[users]]"
                ),
                None => format!(
                    "{script} of {package} runs `{command}`, which Tandem does not run: declare the user or group in the image definition's [[users]]"
                ),
            }),
            Finding::ConfigFile {
                script,
                target,
                template,
            } => Some(format!(
                "{script} of {package} creates {target}, which Tandem does not run: provide {target}: [[usr.files]] source = \"…\" target = \"{target}\"{}",
                template
                    .as_ref()
                    .map(|t| format!(" (the package's template is {t})"))
                    .unwrap_or_default()
            )),
            Finding::Alternative(_) => None,
            Finding::Command {
                script,
                program,
                command,
                more,
            } => Some(format!(
                "{script} of {package} runs `{command}`{}, which Tandem does not run: check whether {package} needs its effect",
                match more {
                    0 => String::new(),
                    1 => format!(" and one more `{program}` command"),
                    n => format!(" and {n} more `{program}` commands"),
                }
            )),
        }
    }
}

/// The findings of a package's `preinst` and `postinst`, sorted, without
/// repeats. `ships_sysusers`: the package has `/usr/lib/sysusers.d/*.conf`.
pub fn classify(
    preinst: Option<&str>,
    postinst: Option<&str>,
    ships_sysusers: bool,
) -> Vec<Finding> {
    let pre = preinst.map(commands).unwrap_or_default();
    let post = postinst.map(commands).unwrap_or_default();
    // A file the preinst creates and the postinst removes is transient
    // (libc6's /etc/ld.so.nohwcap during an upgrade).
    let removed_later: BTreeSet<String> = post
        .iter()
        .filter(|c| matches!(c.program(), "rm" | "unlink"))
        .flat_map(|c| c.operands().into_iter().map(|w| root_path(&w)))
        .collect();
    let mut out: Vec<Finding> = Vec::new();
    let mut seen: BTreeSet<(Script, String, String)> = BTreeSet::new();
    for (script, cmds) in [(Script::Preinst, &pre), (Script::Postinst, &post)] {
        let ctx = Context::of(cmds);
        for c in cmds.iter().filter(|c| !c.upgrade_only) {
            if script == Script::Preinst
                && c.program() == "touch"
                && c.operands()
                    .iter()
                    .all(|o| removed_later.contains(&root_path(o)))
            {
                continue;
            }
            match judge(script, c, &ctx, ships_sysusers) {
                // One finding per program and script: the first command
                // and how many more.
                Some(Finding::Command {
                    script,
                    program,
                    command,
                    ..
                }) => {
                    if !seen.insert((script, program.clone(), command.clone())) {
                        continue;
                    }
                    let same = out.iter_mut().find_map(|f| match f {
                        Finding::Command {
                            script: s,
                            program: p,
                            more,
                            ..
                        } if *s == script && *p == program => Some(more),
                        _ => None,
                    });
                    match same {
                        Some(more) => *more += 1,
                        None => out.push(Finding::Command {
                            script,
                            program,
                            command,
                            more: 0,
                        }),
                    }
                }
                Some(f) if !out.contains(&f) => out.push(f),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// What the commands of one script define: its functions (calls to them
/// are not commands of their own) and its scratch files.
struct Context {
    functions: BTreeSet<String>,
    /// Variables holding `mktemp` files.
    scratch: BTreeSet<String>,
    /// (scratch variable, file copied into it).
    copies: Vec<(String, String)>,
    /// Variables assigned once, to a value without expansions
    /// (`SUDOERS=/etc/sudoers`); `None` for the others.
    values: std::collections::BTreeMap<String, Option<String>>,
    /// The first word of every value assigned to each variable, for
    /// `$idl stop` after `idl="invoke-rc.d $service"`.
    programs: std::collections::BTreeMap<String, Vec<String>>,
}

impl Context {
    fn of(cmds: &[Command]) -> Context {
        let mut ctx = Context {
            functions: cmds.iter().filter_map(|c| c.defines.clone()).collect(),
            scratch: BTreeSet::new(),
            copies: Vec::new(),
            values: std::collections::BTreeMap::new(),
            programs: std::collections::BTreeMap::new(),
        };
        for c in cmds {
            for (var, value) in &c.assignments {
                if value.contains("mktemp") {
                    ctx.scratch.insert(var.clone());
                }
                let plain = value.trim_matches(['"', '\'']);
                let literal = !value.contains(['`', '(']) && !plain.contains(['"', '\'']);
                if let Some(first) = plain.split_whitespace().next() {
                    ctx.programs
                        .entry(var.clone())
                        .or_default()
                        .push(first.to_string());
                }
                ctx.values
                    .entry(var.clone())
                    .and_modify(|v| *v = None)
                    .or_insert_with(|| literal.then(|| plain.to_string()));
            }
        }
        for c in cmds {
            let ops = c.operands();
            if c.program() == "cp"
                && ops.len() == 2
                && let Some(var) = ctx.scratch_var(&ops[1])
            {
                ctx.copies.push((var, root_path(&ops[0])));
            }
        }
        ctx
    }

    /// The variable name if `word` is exactly a scratch variable.
    fn scratch_var(&self, word: &str) -> Option<String> {
        let v = word.strip_prefix('$')?;
        let v = v
            .strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .unwrap_or(v);
        self.scratch.contains(v).then(|| v.to_string())
    }

    fn is_scratch(&self, word: &str) -> bool {
        self.scratch_var(word).is_some()
    }

    /// `word` with variables of known value replaced (`$SUDOERS.x` →
    /// `/etc/sudoers.x`); `$DPKG_ROOT` and unknown ones are kept.
    fn expand(&self, word: &str) -> String {
        let mut out = String::new();
        let mut rest = word;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, len) = match after.strip_prefix('{') {
                Some(inner) => match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                },
                None => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], end)
                }
            };
            match self.values.get(name) {
                Some(Some(value)) if !name.is_empty() && name != "DPKG_ROOT" => {
                    out.push_str(value);
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Commands that only read, print or steer the shell.
const NO_EFFECT: &[&str] = &[
    ":",
    "true",
    "false",
    "echo",
    "printf",
    "test",
    "[",
    "[[",
    "read",
    "set",
    "unset",
    "shift",
    "exit",
    "return",
    "break",
    "continue",
    "trap",
    "umask",
    "cd",
    "wait",
    "sleep",
    "command",
    "type",
    "hash",
    "which",
    "getent",
    "grep",
    "egrep",
    "fgrep",
    "awk",
    "mawk",
    "gawk",
    "cut",
    "tr",
    "sort",
    "uniq",
    "head",
    "tail",
    "wc",
    "cat",
    "basename",
    "dirname",
    "readlink",
    "realpath",
    "id",
    "uname",
    "ischroot",
    "mktemp",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "cmp",
    "diff",
    "stat",
    "ls",
    "env",
    "expr",
    "seq",
    "date",
    "locale",
    "nproc",
    "printenv",
    "logger",
    "tty",
    "local",
    "export",
    "readonly",
    "declare",
    "typeset",
    "dpkg-query",
    "dpkg-architecture",
    "pidof",
    ".",
    "source",
    "print",
    "sha512sum",
    "runlevel",
    "who",
    "getcap",
];

/// Packaging glue that does not matter on Tandem: service enablement for
/// other inits, debconf, dpkg's own bookkeeping, caches rebuilt at boot,
/// files the package ships for boot-time tools (tmpfiles.d, sysusers.d).
const GLUE: &[&str] = &[
    "deb-systemd-helper",
    "deb-systemd-invoke",
    "systemctl",
    "update-rc.d",
    "invoke-rc.d",
    "dpkg-maintscript-helper",
    "ldconfig",
    "ucfr",
    "dpkg-trigger",
    "runit-helper",
    "restorecon",
    "systemd-tmpfiles",
    "systemd-sysusers",
];

/// Commands that act on the running system (processes, the init, the
/// kernel): when an image is built nothing runs, and it boots fresh.
const RUNNING_SYSTEM: &[&str] = &[
    "telinit",
    "init",
    "nscd",
    "service",
    "start-stop-daemon",
    "kill",
    "killall",
    "pkill",
    "busctl",
    "udevadm",
    "systemd",
];

/// Removing what an earlier version left: an image starts without it.
const REMOVE: &[&str] = &["rm", "rmdir", "unlink"];

/// Files in /etc that Tandem writes itself, whatever a script writes to
/// them: the user database (from base-passwd's masters and the
/// definition's users) and the os-release link.
const TANDEM_OWNED: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/os-release",
];

/// Tools that edit the user database (see [`TANDEM_OWNED`]).
const USER_DATABASE_TOOLS: &[&str] = &["update-passwd", "shadowconfig", "pwconv", "grpconv"];

/// Paths Tandem's merged /usr provides by construction.
const MERGED_USR: &[&str] = &[
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/lib64",
];

fn judge(script: Script, c: &Command, ctx: &Context, ships_sysusers: bool) -> Option<Finding> {
    // Variables of known value expanded (`$idl stop` after
    // `idl="invoke-rc.d $service"` is invoke-rc.d); `chroot DIR cmd…` is cmd.
    let mut words: Vec<String> = c
        .words
        .iter()
        .flat_map(|w| {
            let e = ctx.expand(w);
            if e != *w && w.starts_with('$') && e.contains(' ') {
                e.split_whitespace().map(String::from).collect::<Vec<_>>()
            } else {
                vec![e]
            }
        })
        .collect();
    if words
        .first()
        .is_some_and(|w| w.rsplit('/').next() == Some("chroot"))
    {
        words.drain(..words.len().min(2));
    }
    let first = words.first().map_or("", String::as_str);
    let prog = first.rsplit('/').next().unwrap_or(first);
    if matches!(prog, "$@" | "$*") {
        return None;
    }
    // A program named by a variable: nothing to report if every program
    // the script assigns to it is nothing to report.
    if let Some(var) = first.strip_prefix('$') {
        let var = var.trim_start_matches('{').trim_end_matches('}');
        if let Some(progs) = ctx.programs.get(var) {
            let quiet = progs.iter().all(|p| {
                if p.starts_with('$') {
                    return false;
                }
                let bare = Command {
                    words: vec![p.clone()],
                    raw: vec![p.clone()],
                    ..Command::default()
                };
                judge(script, &bare, ctx, ships_sysusers).is_none()
            });
            if quiet {
                return None;
            }
        }
    }
    let args: Vec<String> = words.iter().skip(1).cloned().collect();
    let operands: Vec<String> = args
        .iter()
        .filter(|w| !w.starts_with('-'))
        .cloned()
        .collect();
    let command = c.text();
    let other = || {
        Some(Finding::Command {
            script,
            program: prog.to_string(),
            command: command.clone(),
            more: 0,
        })
    };
    if ctx.functions.contains(c.word(0)) || prog.starts_with("db_") {
        return None;
    }
    // dpkg's leftovers of an upgrade (`.dpkg-bak`, `.dpkg-old`, …).
    if operands.iter().any(|o| o.contains(".dpkg-")) {
        return None;
    }
    // Writes by redirection.
    for target in &c.writes {
        if target.starts_with('&') || target == "/dev/null" || ctx.is_scratch(target) {
            continue;
        }
        let path = root_path(&ctx.expand(target));
        if TANDEM_OWNED.contains(&path.as_str()) || path.contains(".dpkg-") || runtime(&path) {
            continue;
        }
        if path.starts_with("/etc/") {
            return Some(Finding::ConfigFile {
                script,
                target: path,
                template: None,
            });
        }
        return other();
    }
    if words.is_empty() {
        return None;
    }
    // Files in /run and /tmp are gone when the image boots.
    if !operands.is_empty() && operands.iter().all(|o| runtime(&root_path(o))) {
        return None;
    }
    if first.starts_with("/etc/init.d/") {
        return None; // starts or stops a service: a running system
    }
    if NO_EFFECT.contains(&prog)
        || GLUE.contains(&prog)
        || RUNNING_SYSTEM.contains(&prog)
        || REMOVE.contains(&prog)
        || USER_DATABASE_TOOLS.contains(&prog)
    {
        return None;
    }
    match prog {
        "dpkg" => {
            let query = args.iter().any(|a| {
                matches!(
                    a.as_str(),
                    "--compare-versions"
                        | "-s"
                        | "--status"
                        | "-l"
                        | "--list"
                        | "-L"
                        | "--listfiles"
                        | "-S"
                        | "--search"
                        | "--print-architecture"
                        | "--print-foreign-architectures"
                        | "--validate-version"
                ) || a.starts_with("--assert-")
            });
            if query { None } else { other() }
        }
        "dpkg-divert" | "dpkg-statoverride" => {
            // Listing, or removing what an earlier version set up.
            let nothing = args
                .iter()
                .any(|a| a == "--list" || a == "--truename" || a == "--remove");
            if nothing { None } else { other() }
        }
        "pam-auth-update" if args.iter().any(|a| a == "--remove") => None,
        // Moving an earlier version's configuration file.
        "mv" if operands
            .first()
            .is_some_and(|o| root_path(o).starts_with("/etc/")) =>
        {
            None
        }
        "adduser" | "addgroup" | "useradd" | "groupadd" => {
            if ships_sysusers {
                return None;
            }
            Some(Finding::User {
                script,
                name: account_name(prog, &args),
                command,
            })
        }
        "ucf" => {
            if args.iter().any(|a| a == "--purge") {
                return None;
            }
            let plain = operands_skipping(&args, &["--sum-file", "--src-dir", "--state-dir"]);
            let [.., src, dest] = plain.as_slice() else {
                return other();
            };
            let template = match ctx.scratch_var(src) {
                Some(var) => ctx
                    .copies
                    .iter()
                    .find(|(v, _)| *v == var)
                    .map(|(_, from)| from.clone()),
                None => Some(root_path(src)),
            };
            Some(Finding::ConfigFile {
                script,
                target: root_path(dest),
                template,
            })
        }
        "cp" => {
            let [src, dest] = operands.as_slice() else {
                return other();
            };
            if ctx.is_scratch(dest) {
                return None;
            }
            let dest = root_path(dest);
            if TANDEM_OWNED.contains(&dest.as_str()) {
                return None;
            }
            if dest.starts_with("/etc/") {
                return Some(Finding::ConfigFile {
                    script,
                    target: dest,
                    template: Some(root_path(src)),
                });
            }
            other()
        }
        "update-alternatives" => update_alternatives(&args).unwrap_or_else(other),
        "sed"
            if !args.iter().any(|a| {
                a == "-i"
                    || a.starts_with("--in-place")
                    || (a.starts_with("-i") && !a.starts_with("--"))
            }) =>
        {
            None
        }
        "find"
            if !args
                .iter()
                .any(|a| a == "-delete" || a.starts_with("-exec")) =>
        {
            None
        }
        "mkdir" if operands.iter().all(|o| root_path(o).starts_with("/etc/")) => None,
        "touch"
            if !operands.is_empty()
                && operands.iter().all(|o| root_path(o).starts_with("/etc/")) =>
        {
            Some(Finding::ConfigFile {
                script,
                target: root_path(&operands[0]),
                template: None,
            })
        }
        // `perl -e ""`: is perl usable?
        "perl" if args.len() == 2 && args[0] == "-e" && args[1].is_empty() => None,
        "ln" | "mkdir"
            if operands
                .last()
                .is_some_and(|t| MERGED_USR.contains(&root_path(t).as_str())) =>
        {
            None
        }
        "ln" if operands.len() == 2 && root_path(&operands[1]).starts_with("/etc/") => {
            let target = root_path(&operands[1]);
            if TANDEM_OWNED.contains(&target.as_str()) {
                return None;
            }
            Some(Finding::ConfigFile {
                script,
                target,
                template: Some(operands[0].clone()),
            })
        }
        _ if !operands.is_empty() && operands.iter().all(|o| ctx.is_scratch(o)) => None,
        _ if operands.iter().any(|o| ctx.is_scratch(o))
            && matches!(prog, "sed" | "chmod" | "chown" | "chgrp") =>
        {
            None
        }
        _ => other(),
    }
}

/// `update-alternatives --install <link> <name> <path> <priority> [--slave <link> <name> <path>]…`
/// with literal arguments; `--remove` and `--remove-all` clean up after an
/// earlier version and are nothing to do. `None`: not understood.
fn update_alternatives(args: &[String]) -> Option<Option<Finding>> {
    let literal = |w: &str| !w.contains(['$', '`']);
    let pos = args.iter().position(|a| a == "--install");
    let Some(pos) = pos else {
        return args
            .iter()
            .any(|a| a == "--remove" || a == "--remove-all")
            .then_some(None);
    };
    let rest = &args[pos + 1..];
    let [link, name, path, priority, tail @ ..] = rest else {
        return None;
    };
    if ![link, name, path, priority].iter().all(|w| literal(w)) {
        return None;
    }
    let priority: i64 = priority.parse().ok()?;
    let mut slaves = Vec::new();
    let mut t = tail;
    while let [flag, l, n, p, more @ ..] = t {
        if flag != "--slave" || ![l, n, p].iter().all(|w| literal(w)) {
            return None;
        }
        slaves.push((l.clone(), n.clone(), p.clone()));
        t = more;
    }
    if !t.is_empty() {
        return None;
    }
    Some(Some(Finding::Alternative(Alternative {
        name: name.clone(),
        link: link.clone(),
        path: path.clone(),
        priority,
        slaves,
    })))
}

/// The account a user or group command creates: its last operand, the
/// values of options that take one skipped.
fn account_name(prog: &str, args: &[String]) -> Option<String> {
    let with_value: &[&str] = match prog {
        "adduser" | "addgroup" => &[
            "--home",
            "--shell",
            "--uid",
            "--gid",
            "--ingroup",
            "--gecos",
            "--comment",
            "--firstuid",
            "--lastuid",
            "--firstgid",
            "--lastgid",
            "--conf",
            "--extrausers",
            "--add-extra-groups",
        ],
        _ => &[
            "-c",
            "--comment",
            "-d",
            "--home-dir",
            "-g",
            "--gid",
            "-G",
            "--groups",
            "-s",
            "--shell",
            "-u",
            "--uid",
            "-K",
            "--key",
            "-p",
            "--password",
            "-e",
            "--expiredate",
            "-f",
            "--inactive",
            "-k",
            "--skel",
            "-R",
            "--root",
            "-P",
            "--prefix",
            "-b",
            "--base-dir",
        ],
    };
    let ops = operands_skipping(args, with_value);
    // `adduser USER GROUP` adds a user to a group: the user is first.
    let name = if matches!(prog, "adduser") && ops.len() == 2 {
        ops.first()
    } else {
        ops.last()
    }?;
    (!name.contains(['$', '`'])).then(|| name.clone())
}

/// Operands (arguments that are not options), skipping the values of the
/// options in `with_value` (given as separate words).
fn operands_skipping(args: &[String], with_value: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if with_value.contains(&a.as_str()) {
            skip = true;
        } else if !a.starts_with('-') {
            out.push(a.clone());
        }
    }
    out
}

/// Whether a path is in a directory that starts empty at every boot.
fn runtime(path: &str) -> bool {
    path.starts_with("/run/") || path.starts_with("/tmp/")
}

/// A path as on the target system: `$DPKG_ROOT` (empty on a normal
/// install) removed.
fn root_path(word: &str) -> String {
    for prefix in ["${DPKG_ROOT:-}", "${DPKG_ROOT}", "$DPKG_ROOT"] {
        if let Some(rest) = word.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    word.to_string()
}

// ---- the lexer ----

/// A simple command: words (quotes removed, expansions kept as written),
/// the files its redirections write, and what it sets or defines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// Words after leading assignments and reserved words.
    pub words: Vec<String>,
    /// The words as written, for messages.
    pub raw: Vec<String>,
    /// Targets of `>` and `>>`.
    pub writes: Vec<String>,
    /// Leading `NAME=value` assignments (also after local/export), value as written.
    pub assignments: Vec<(String, String)>,
    /// The function this command defines (`name() {`).
    pub defines: Option<String>,
    /// Inside an `if` only an upgrade enters (see [`upgrade_only`]).
    pub upgrade_only: bool,
}

impl Command {
    fn word(&self, i: usize) -> &str {
        self.words.get(i).map_or("", String::as_str)
    }

    /// The program's base name.
    pub fn program(&self) -> &str {
        let w = self.word(0);
        w.rsplit('/').next().unwrap_or(w)
    }

    /// Arguments that are not options.
    fn operands(&self) -> Vec<String> {
        self.words
            .iter()
            .skip(1)
            .filter(|w| !w.starts_with('-'))
            .cloned()
            .collect()
    }

    /// The command as written, on one line, shortened.
    pub fn text(&self) -> String {
        let s = self.raw.join(" ");
        if s.chars().count() > 120 {
            let cut: String = s.chars().take(117).collect();
            format!("{cut}...")
        } else {
            s
        }
    }
}

const RESERVED: &[&str] = &[
    "if", "then", "elif", "else", "fi", "do", "done", "while", "until", "!", "{", "}", "esac",
    "time",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// (quotes removed, as written)
    Word(String, String),
    /// A separator: `;` `;;` `&&` `||` `|` `&` `(` `)` or a newline.
    Sep(&'static str),
    /// `>` or `>>` and its target.
    Write(String, String),
}

/// The simple commands of a script, debhelper's generated blocks left out
/// (except dh_installalternatives', whose alternatives are honoured).
pub fn commands(script: &str) -> Vec<Command> {
    let text = without_debhelper_blocks(script);
    let mut subs = Subs::default();
    let tokens = lex(&text, &mut subs);
    collect(&tokens, &mut subs.cmds);
    subs.cmds
}

/// Commands found in command substitutions, and how deep in them the
/// lexer is (bounded: a script is input, and the lexer recurses).
#[derive(Default)]
struct Subs {
    cmds: Vec<Command>,
    depth: usize,
}

/// Deeper command substitutions are not looked into.
const MAX_SUBSTITUTION_DEPTH: usize = 8;

fn substitution(inner: &str, subs: &mut Subs) {
    if subs.depth >= MAX_SUBSTITUTION_DEPTH {
        return;
    }
    let mut nested = Subs {
        cmds: Vec::new(),
        depth: subs.depth + 1,
    };
    let tokens = lex(inner, &mut nested);
    collect(&tokens, &mut nested.cmds);
    subs.cmds.extend(nested.cmds);
}

fn without_debhelper_blocks(script: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in script.lines() {
        let t = line.trim();
        if let Some(tool) = t.strip_prefix("# Automatically added by ") {
            skipping = !tool.starts_with("dh_installalternatives");
            continue;
        }
        if t.starts_with("# End automatically added section") {
            skipping = false;
            continue;
        }
        if !skipping && t != "#DEBHELPER#" {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Splits tokens into simple commands.
fn collect(tokens: &[Token], out: &mut Vec<Command>) {
    let mut cur: Vec<&Token> = Vec::new();
    let mut ifs = Ifs::default();
    // Inside `case … in`: the next words up to `)` are a pattern.
    let mut case_depth = 0usize;
    let mut expect_pattern = false;
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        i += 1;
        match t {
            Token::Sep(sep) => {
                if expect_pattern && *sep == ")" {
                    cur.clear();
                    expect_pattern = false;
                    continue;
                }
                if *sep == "(" && cur.len() == 1 && tokens.get(i) == Some(&Token::Sep(")")) {
                    // `name() {`: a function definition.
                    if let Some(Token::Word(name, _)) = cur.first() {
                        out.push(Command {
                            defines: Some(name.clone()),
                            ..Command::default()
                        });
                    }
                    cur.clear();
                    i += 1;
                    continue;
                }
                let first = cur.iter().find_map(|t| match t {
                    Token::Word(w, _) => Some(w.as_str()),
                    _ => None,
                });
                match first {
                    Some("case") => {
                        case_depth += 1;
                        // `case x in pattern)` on one line: the pattern ends here.
                        expect_pattern = *sep != ")";
                        cur.clear();
                        continue;
                    }
                    Some("esac") => {
                        case_depth = case_depth.saturating_sub(1);
                        expect_pattern = false;
                    }
                    _ => {}
                }
                if !expect_pattern {
                    let upgrade_only = ifs.track(&cur, sep);
                    if let Some(mut c) = simple(&cur) {
                        c.upgrade_only = upgrade_only;
                        ifs.note_assignments(&c);
                        out.push(c);
                    }
                }
                cur.clear();
                if *sep == ";;" && case_depth > 0 {
                    expect_pattern = true;
                }
            }
            _ => {
                if expect_pattern {
                    if let Token::Word(w, _) = t
                        && w == "esac"
                    {
                        case_depth = case_depth.saturating_sub(1);
                        expect_pattern = false;
                        continue;
                    }
                    // Pattern words (`configure|abort-remove`) are dropped at `)`.
                    if matches!(t, Token::Word(..)) {
                        cur.push(t);
                        continue;
                    }
                }
                cur.push(t);
            }
        }
    }
    let upgrade_only = ifs.track(&cur, "\n");
    if let Some(mut c) = simple(&cur) {
        c.upgrade_only = upgrade_only;
        out.push(c);
    }
}

/// The `if` statements around the current command, to tell the branches
/// that only an upgrade runs: an image is always a first installation.
#[derive(Default)]
struct Ifs {
    frames: Vec<IfFrame>,
    /// Variables holding `$1` (the action) and `$2` (the version upgraded from).
    action_vars: Vec<String>,
    version_vars: Vec<String>,
}

#[derive(Default)]
struct IfFrame {
    /// The condition's words so far (with `||` and `!` kept).
    cond: Vec<String>,
    in_cond: bool,
    /// The branch being read runs only on upgrades.
    upgrade: bool,
}

impl Ifs {
    /// Follows the reserved words of a command's tokens; returns whether
    /// the command is in a branch only an upgrade runs.
    fn track(&mut self, tokens: &[&Token], sep: &str) -> bool {
        let mut leading = true;
        for t in tokens {
            let Token::Word(w, _) = t else { continue };
            if leading {
                match w.as_str() {
                    "if" => {
                        self.frames.push(IfFrame {
                            in_cond: true,
                            ..IfFrame::default()
                        });
                        continue;
                    }
                    "elif" => {
                        if let Some(f) = self.frames.last_mut() {
                            f.cond.clear();
                            f.in_cond = true;
                            f.upgrade = false;
                        }
                        continue;
                    }
                    "then" => {
                        if let Some(f) = self.frames.last_mut() {
                            f.in_cond = false;
                            f.upgrade =
                                upgrade_only(&f.cond, &self.action_vars, &self.version_vars);
                        }
                        continue;
                    }
                    "else" => {
                        if let Some(f) = self.frames.last_mut() {
                            f.in_cond = false;
                            f.upgrade = false;
                        }
                        continue;
                    }
                    "fi" => {
                        self.frames.pop();
                        continue;
                    }
                    w if RESERVED.contains(&w) && w != "!" => continue,
                    _ => leading = false,
                }
            }
            if let Some(f) = self.frames.last_mut().filter(|f| f.in_cond) {
                f.cond.push(w.clone());
            }
        }
        if let Some(f) = self.frames.last_mut().filter(|f| f.in_cond)
            && sep == "||"
        {
            f.cond.push("||".into());
        }
        self.frames.iter().any(|f| f.upgrade)
    }

    fn note_assignments(&mut self, c: &Command) {
        for (name, value) in &c.assignments {
            let v = value.trim_matches('"');
            if v == "$1" || v == "${1}" {
                self.action_vars.push(name.clone());
            }
            if v == "$2" || v == "${2}" {
                self.version_vars.push(name.clone());
            }
        }
    }
}

/// Whether an `if` condition (its words, quotes removed) is false on a
/// first installation, where a maintainer script's `$2` (the version
/// upgraded from) is empty: a conjunction with one of `[ -n "$2" ]`,
/// `[ "$2" ]`, `[ "x$2" != "x" ]`, `dpkg --compare-versions "$2" lt-nl|le-nl|gt|ge|eq …`
/// (an empty version is earlier than any, or later with `-nl`), or
/// `[ "$1" = upgrade ]`. A condition with `||` or `!` is never judged so.
pub fn upgrade_only(cond: &[String], action_vars: &[String], version_vars: &[String]) -> bool {
    if cond.iter().any(|w| w == "||" || w == "!") {
        return false;
    }
    let var = |w: &str, n: &str, aliases: &[String]| {
        let name = w
            .strip_prefix('$')
            .map(|v| v.trim_start_matches('{').trim_end_matches('}'));
        name == Some(n) || name.is_some_and(|v| aliases.iter().any(|a| a == v))
    };
    let version = |w: &str| var(w, "2", version_vars);
    let action = |w: &str| var(w, "1", action_vars);
    let w: Vec<&str> = cond.iter().map(String::as_str).collect();
    w.windows(2).any(|p| matches!(p[0], "-n") && version(p[1]))
        || w.windows(3).any(|p| {
            (matches!(p[0], "[" | "test") && version(p[1]) && matches!(p[2], "]"))
                || (p[0].strip_prefix('x').is_some_and(version) && p[1] == "!=" && p[2] == "x")
                || (version(p[0]) && p[1] == "!=" && p[2].is_empty())
                || (action(p[0]) && p[1] == "=" && p[2] == "upgrade")
        })
        || w.windows(4).any(|p| {
            p[0] == "--compare-versions"
                && version(p[1])
                && matches!(p[2], "lt-nl" | "le-nl" | "gt" | "ge" | "eq")
        })
}

/// One simple command from its tokens: leading reserved words and
/// assignments peeled off; `for` loops and `function` keywords are not
/// commands.
fn simple(tokens: &[&Token]) -> Option<Command> {
    let mut c = Command::default();
    for t in tokens {
        match t {
            Token::Write(target, raw) => {
                c.writes.push(target.clone());
                c.raw.push(format!("> {raw}"));
            }
            Token::Word(w, raw) => {
                if c.words.is_empty() {
                    if RESERVED.contains(&w.as_str()) {
                        continue;
                    }
                    if let Some((name, value)) = assignment(raw) {
                        c.assignments.push((name, value));
                        continue;
                    }
                    if w == "for" || w == "case" || w == "function" || w == "in" {
                        return None;
                    }
                }
                if matches!(
                    c.words.first().map(String::as_str),
                    Some("local" | "export" | "readonly" | "declare" | "typeset")
                ) && let Some(a) = assignment(raw)
                {
                    c.assignments.push(a);
                }
                c.words.push(w.clone());
                c.raw.push(raw.clone());
            }
            Token::Sep(_) => {}
        }
    }
    (!c.words.is_empty() || !c.assignments.is_empty() || !c.writes.is_empty()).then_some(c)
}

fn assignment(raw: &str) -> Option<(String, String)> {
    let (name, value) = raw.split_once('=')?;
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| (name.to_string(), value.to_string()))
}

/// Tokenises shell text. Command substitutions are lexed too: their
/// commands are added to `subs` directly.
fn lex(text: &str, subs: &mut Subs) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '\\' if chars.get(i + 1) == Some(&'\n') => i += 2,
            '\n' => {
                tokens.push(Token::Sep("\n"));
                i += 1;
                // Here-document bodies follow the line that opened them.
                for (delim, _) in heredocs.drain(..) {
                    loop {
                        let end = chars[i..]
                            .iter()
                            .position(|&c| c == '\n')
                            .map_or(n, |p| i + p);
                        let line: String = chars[i..end].iter().collect();
                        i = (end + 1).min(n);
                        if line.trim() == delim || i >= n {
                            break;
                        }
                    }
                }
            }
            '#' => {
                while i < n && chars[i] != '\n' {
                    i += 1;
                }
            }
            ';' => {
                if chars.get(i + 1) == Some(&';') {
                    tokens.push(Token::Sep(";;"));
                    i += 2;
                } else {
                    tokens.push(Token::Sep(";"));
                    i += 1;
                }
            }
            '&' | '|' => {
                let double = chars.get(i + 1) == Some(&c);
                if c == '&' && chars.get(i + 1) == Some(&'>') {
                    // `&>file`: stdout and stderr to a file.
                    i += 2;
                    let (w, raw, next) = word(&chars, skip_blanks(&chars, i), subs);
                    i = next;
                    tokens.push(Token::Write(w, raw));
                    continue;
                }
                tokens.push(Token::Sep(match (c, double) {
                    ('&', true) => "&&",
                    ('&', false) => "&",
                    ('|', true) => "||",
                    _ => "|",
                }));
                i += if double { 2 } else { 1 };
            }
            '(' => {
                tokens.push(Token::Sep("("));
                i += 1;
            }
            ')' => {
                tokens.push(Token::Sep(")"));
                i += 1;
            }
            '>' | '<' => {
                let (op_len, kind) = redirection(&chars, i);
                i += op_len;
                match kind {
                    Redir::HereDoc(strip) => {
                        let (w, _, next) = word(&chars, skip_blanks(&chars, i), subs);
                        i = next;
                        heredocs.push((w, strip));
                    }
                    Redir::Write => {
                        let (w, raw, next) = word(&chars, skip_blanks(&chars, i), subs);
                        i = next;
                        tokens.push(Token::Write(w, raw));
                    }
                    Redir::Dup | Redir::Read => {
                        let (_, _, next) = word(&chars, skip_blanks(&chars, i), subs);
                        i = next;
                    }
                }
            }
            _ => {
                let (w, raw, next) = word(&chars, i, subs);
                i = next.max(i + 1);
                // `2>`: a file descriptor number glued to a redirection.
                let fd = !w.is_empty() && w.chars().all(|c| c.is_ascii_digit());
                if fd && matches!(chars.get(next), Some('>' | '<')) {
                    continue;
                }
                tokens.push(Token::Word(w, raw));
            }
        }
    }
    tokens
}

enum Redir {
    Write,
    Read,
    Dup,
    HereDoc(bool),
}

fn redirection(chars: &[char], i: usize) -> (usize, Redir) {
    let at = |k: usize| chars.get(i + k).copied();
    match (chars[i], at(1), at(2)) {
        ('<', Some('<'), Some('<')) => (3, Redir::Read),
        ('<', Some('<'), Some('-')) => (3, Redir::HereDoc(true)),
        ('<', Some('<'), _) => (2, Redir::HereDoc(false)),
        ('<', Some('&'), _) => (2, Redir::Dup),
        ('<', _, _) => (1, Redir::Read),
        ('>', Some('>'), _) => (2, Redir::Write),
        ('>', Some('&'), _) => (2, Redir::Dup),
        ('>', Some('|'), _) => (2, Redir::Write),
        _ => (1, Redir::Write),
    }
}

fn skip_blanks(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
        i += 1;
    }
    i
}

/// Reads one word from `i`: (quotes removed, as written, index after).
fn word(chars: &[char], mut i: usize, subs: &mut Subs) -> (String, String, usize) {
    let start = i;
    let mut w = String::new();
    let n = chars.len();
    while i < n {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
            '\\' => {
                if let Some(&next) = chars.get(i + 1)
                    && next != '\n'
                {
                    w.push(next);
                }
                i += 2;
            }
            '\'' => {
                i += 1;
                while i < n && chars[i] != '\'' {
                    w.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                i += 1;
                while i < n && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < n {
                        w.push(chars[i + 1]);
                        i += 2;
                    } else if chars[i] == '$' || chars[i] == '`' {
                        let end = expansion(chars, i, subs);
                        w.extend(&chars[i..end]);
                        i = end;
                    } else {
                        w.push(chars[i]);
                        i += 1;
                    }
                }
                i += 1;
            }
            '$' | '`' => {
                let end = expansion(chars, i, subs);
                w.extend(&chars[i..end]);
                i = end;
            }
            _ => {
                w.push(c);
                i += 1;
            }
        }
    }
    let end = i.min(n);
    let raw: String = chars[start..end].iter().collect();
    (w, raw, end)
}

/// The end of an expansion at `i` (`$x`, `${…}`, `$(…)`, `$((…))`, `` `…` ``);
/// the commands of a command substitution go to `subs`.
fn expansion(chars: &[char], i: usize, subs: &mut Subs) -> usize {
    let n = chars.len();
    if chars[i] == '`' {
        let end = chars[i + 1..]
            .iter()
            .position(|&c| c == '`')
            .map_or(n, |p| i + 1 + p);
        let inner: String = chars[i + 1..end].iter().collect();
        substitution(&inner, subs);
        return (end + 1).min(n);
    }
    match chars.get(i + 1) {
        Some('(') => {
            let arithmetic = chars.get(i + 2) == Some(&'(');
            let end = closing(chars, i + 1, '(', ')');
            if !arithmetic {
                let inner: String = chars[(i + 2).min(end)..end.min(n)].iter().collect();
                substitution(&inner, subs);
            }
            (end + 1).min(n)
        }
        Some('{') => (closing(chars, i + 1, '{', '}') + 1).min(n),
        Some(c) if c.is_ascii_alphanumeric() || "_@*#?$!-".contains(*c) => {
            let mut j = i + 1;
            if chars[j].is_ascii_alphabetic() || chars[j] == '_' {
                while j < n && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
            } else {
                j += 1;
            }
            j
        }
        _ => i + 1,
    }
}

/// The index of the bracket closing the one at `open_at`, quotes respected.
fn closing(chars: &[char], open_at: usize, open: char, close: char) -> usize {
    let mut depth = 0usize;
    let mut i = open_at;
    let n = chars.len();
    while i < n {
        match chars[i] {
            '\\' => i += 1,
            '\'' => {
                i += 1;
                while i < n && chars[i] != '\'' {
                    i += 1;
                }
            }
            '"' => {
                i += 1;
                while i < n && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests;
