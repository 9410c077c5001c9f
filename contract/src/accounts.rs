//! `/etc/passwd`, `/etc/group`, `/etc/shadow` and `/etc/gshadow` as tables
//! of lines, and the one rule by which Tandem changes them: **add what is
//! missing, never change or remove what is there** ([`Accounts::apply`]).
//!
//! A table keeps every line's text: a line it does not understand
//! (a comment, a NIS `+` line, a malformed entry) is written back as it was,
//! and so is every entry, except that a group entry gains the members that
//! an `m` line adds. Rendering an unchanged table gives back the text it was
//! parsed from, byte for byte (plus a final newline if it lacked one).
//!
//! The image builder uses the same code to resolve an image's users with
//! stable ids (starting from base-passwd's master files), the system init
//! to apply them to a node's `/etc` at boot.
//!
//! What the system init does at boot is defined here too, apart from its
//! I/O: [`Accounts::add_at_boot`] (the image's batch, then the
//! administrator's, and the login users' homes) and [`Accounts::files`]
//! (each file's text, mode and group). The image builder carries out the
//! same on the ROOT it makes, so that a node's first boot finds its
//! accounts complete.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::sysusers::{self, Entry, GroupRef, User};

/// User accounts.
pub const PASSWD: &str = "/etc/passwd";
/// Groups.
pub const GROUP: &str = "/etc/group";
/// Password hashes and ageing.
pub const SHADOW: &str = "/etc/shadow";
/// Group passwords and administrators.
pub const GSHADOW: &str = "/etc/gshadow";
/// The group that may read [`SHADOW`] and [`GSHADOW`] (base-passwd's gid
/// 42), if the node has it.
pub const SHADOW_GROUP: &str = "shadow";
/// The shadow password of a system account: locked, no password
/// (see [`sysusers::may_log_in`]).
pub const LOCKED: &str = "!*";
/// The shadow password of a login account: no password, but not locked;
/// OpenSSH without PAM refuses even key logins to accounts whose hash
/// starts with `!`.
pub const NO_PASSWORD: &str = "*";

/// One entry of a colon-separated account file.
pub trait Record: Sized {
    /// Parses a line; `None` when it is not a valid entry.
    fn parse(line: &str) -> Option<Self>;
    /// The line (without newline).
    fn render(&self) -> String;
    /// The entry's name.
    fn name(&self) -> &str;
}

/// An `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passwd {
    /// Login name.
    pub name: String,
    /// `x` (the hash is in shadow).
    pub password: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS.
    pub gecos: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// An `/etc/group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// `x` (see gshadow).
    pub password: String,
    /// Group id.
    pub gid: u32,
    /// Members (besides users whose primary group it is).
    pub members: Vec<String>,
}

/// An `/etc/shadow` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadow {
    /// Login name.
    pub name: String,
    /// Password hash, [`LOCKED`] or [`NO_PASSWORD`].
    pub hash: String,
    /// The ageing fields (last change … reserved), as written.
    pub ageing: [String; 7],
}

/// An `/etc/gshadow` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gshadow {
    /// Group name.
    pub name: String,
    /// Group password hash.
    pub password: String,
    /// Administrators, as written.
    pub admins: String,
    /// Members.
    pub members: Vec<String>,
}

fn fields<const N: usize>(line: &str) -> Option<[&str; N]> {
    let v: Vec<&str> = line.split(':').collect();
    let arr: [&str; N] = v.try_into().ok()?;
    sysusers::valid_name(arr[0]).then_some(arr)
}

fn members(text: &str) -> Option<Vec<String>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    let m: Vec<String> = text.split(',').map(String::from).collect();
    // "a,,b" or a trailing comma would not render back the same.
    m.iter().all(|n| !n.is_empty()).then_some(m)
}

impl Record for Passwd {
    fn parse(line: &str) -> Option<Self> {
        let [name, password, uid, gid, gecos, home, shell] = fields::<7>(line)?;
        Some(Passwd {
            name: name.into(),
            password: password.into(),
            uid: canonical_id(uid)?,
            gid: canonical_id(gid)?,
            gecos: gecos.into(),
            home: home.into(),
            shell: shell.into(),
        })
    }
    fn render(&self) -> String {
        let Passwd {
            name,
            password,
            uid,
            gid,
            gecos,
            home,
            shell,
        } = self;
        format!("{name}:{password}:{uid}:{gid}:{gecos}:{home}:{shell}")
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl Record for Group {
    fn parse(line: &str) -> Option<Self> {
        let [name, password, gid, list] = fields::<4>(line)?;
        Some(Group {
            name: name.into(),
            password: password.into(),
            gid: canonical_id(gid)?,
            members: members(list)?,
        })
    }
    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.password,
            self.gid,
            self.members.join(",")
        )
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl Record for Shadow {
    fn parse(line: &str) -> Option<Self> {
        let [name, hash, a, b, c, d, e, f, g] = fields::<9>(line)?;
        Some(Shadow {
            name: name.into(),
            hash: hash.into(),
            ageing: [a, b, c, d, e, f, g].map(String::from),
        })
    }
    fn render(&self) -> String {
        format!("{}:{}:{}", self.name, self.hash, self.ageing.join(":"))
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl Record for Gshadow {
    fn parse(line: &str) -> Option<Self> {
        let [name, password, admins, list] = fields::<4>(line)?;
        Some(Gshadow {
            name: name.into(),
            password: password.into(),
            admins: admins.into(),
            members: members(list)?,
        })
    }
    fn render(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.password,
            self.admins,
            self.members.join(",")
        )
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// An id written the way it renders back (`007` would not).
fn canonical_id(text: &str) -> Option<u32> {
    let n: u32 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Row<R> {
    text: String,
    /// The first field, for lines that are not valid entries: a name an
    /// administrator wrote, even on a malformed line, is never added again.
    name: String,
    /// The third field as a number, for the same reason (ids in use).
    id: Option<u32>,
    record: Option<R>,
    edited: bool,
}

/// The lines of one account file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table<R> {
    rows: Vec<Row<R>>,
    changed: bool,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table {
            rows: Vec::new(),
            changed: false,
        }
    }
}

impl<R: Record> Table<R> {
    /// Reads a file's text.
    pub fn parse(text: &str) -> Table<R> {
        let rows = text
            .lines()
            .map(|line| {
                let mut f = line.split(':');
                let name = f.next().unwrap_or_default().to_string();
                let id = f.nth(1).and_then(|n| n.parse().ok());
                Row {
                    text: line.to_string(),
                    name,
                    id,
                    record: R::parse(line),
                    edited: false,
                }
            })
            .collect();
        Table {
            rows,
            changed: false,
        }
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            match (&row.record, row.edited) {
                (Some(r), true) => out.push_str(&r.render()),
                _ => out.push_str(&row.text),
            }
            out.push('\n');
        }
        out
    }

    /// Whether anything was added since parsing.
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// Whether a line names `name` (valid entry or not).
    pub fn contains(&self, name: &str) -> bool {
        self.rows.iter().any(|r| r.name == name)
    }

    /// The valid entry named `name`.
    pub fn get(&self, name: &str) -> Option<&R> {
        self.rows
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.record.as_ref())
    }

    /// Whether a line has `id` in its third field.
    pub fn id_used(&self, id: u32) -> bool {
        self.rows.iter().any(|r| r.id == Some(id))
    }

    /// The valid entries, in file order.
    pub fn records(&self) -> impl Iterator<Item = &R> {
        self.rows.iter().filter_map(|r| r.record.as_ref())
    }

    /// Appends an entry.
    pub fn push(&mut self, record: R) {
        let text = record.render();
        let mut f = text.split(':');
        let name = f.next().unwrap_or_default().to_string();
        let id = f.nth(1).and_then(|n| n.parse().ok());
        self.rows.push(Row {
            text,
            name,
            id,
            record: Some(record),
            edited: false,
        });
        self.changed = true;
    }

    /// Changes the valid entry named `name` with `edit`, which says whether
    /// it changed anything.
    fn edit(&mut self, name: &str, edit: impl FnOnce(&mut R) -> bool) -> bool {
        let Some(row) = self.rows.iter_mut().find(|r| r.name == name) else {
            return false;
        };
        let Some(record) = row.record.as_mut() else {
            return false;
        };
        let changed = edit(record);
        row.edited |= changed;
        self.changed |= changed;
        changed
    }
}

/// What [`Accounts::apply`] did for one entry (`entry`: its index in the
/// slice given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Index of the entry in the slice given to `apply`.
    pub entry: usize,
    /// What happened.
    pub change: Change,
}

/// One thing [`Accounts::apply`] did or could not do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A user was added (with its shadow entry, if missing).
    AddedUser {
        /// Name.
        name: String,
        /// Its uid.
        uid: u32,
    },
    /// A group was added (with its gshadow entry, if missing).
    AddedGroup {
        /// Name.
        name: String,
        /// Its gid.
        gid: u32,
    },
    /// A user became a member of a group.
    AddedMember {
        /// The user.
        user: String,
        /// The group.
        group: String,
    },
    /// The id asked for was taken by another name; another was allocated.
    Moved {
        /// `user` or `group`.
        kind: &'static str,
        /// The new entry.
        name: String,
        /// The id asked for.
        wanted: u32,
        /// Who has it.
        holder: String,
        /// The id given.
        got: u32,
    },
    /// Nothing could be done.
    Failed {
        /// The name concerned.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The four account files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    /// `/etc/passwd`.
    pub passwd: Table<Passwd>,
    /// `/etc/group`.
    pub group: Table<Group>,
    /// `/etc/shadow`.
    pub shadow: Table<Shadow>,
    /// `/etc/gshadow`.
    pub gshadow: Table<Gshadow>,
}

impl Accounts {
    /// Reads the four files' texts (empty for a missing file).
    pub fn parse(passwd: &str, group: &str, shadow: &str, gshadow: &str) -> Accounts {
        Accounts {
            passwd: Table::parse(passwd),
            group: Table::parse(group),
            shadow: Table::parse(shadow),
            gshadow: Table::parse(gshadow),
        }
    }

    /// The uid of `name`.
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.passwd.get(name).map(|p| p.uid)
    }

    /// The gid of `name`.
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.group.get(name).map(|g| g.gid)
    }

    /// Adds what `entries` declare and the accounts lack; changes nothing
    /// that is there, except that groups gain the members of `m` lines.
    ///
    /// The order is fixed, so that the result depends on what is declared
    /// and not on where: groups with ids (in order), groups with `-`
    /// (by name), users with ids (in order), users with `-` (by name),
    /// then memberships. The first entry for a name counts. An id taken by
    /// another name is replaced by an allocated one ([`Change::Moved`]).
    /// A `-` user gets the id of its group of the same name when free as a
    /// uid, else an id free as both uid and gid; a group it implies gets
    /// the user's id when free. `-` ids avoid every id the entries ask for.
    ///
    /// A numeric primary gid (`uid:gid`) that one of the entries' `g` lines
    /// declares is resolved through that group's name: if the group exists
    /// under another gid, the user gets that one. This is what makes the
    /// image's resolved file ([`sysusers::RESOLVED`]) safe to apply to a
    /// node whose ids were allocated by an older image.
    pub fn apply(&mut self, entries: &[Entry]) -> Vec<Outcome> {
        let mut out = Vec::new();
        let ranges: Vec<RangeInclusive<u32>> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Range(lo, hi) => Some(*lo..=*hi),
                _ => None,
            })
            .collect();
        let system = if ranges.is_empty() {
            vec![sysusers::SYSTEM_IDS]
        } else {
            ranges
        };
        let mut groups: Vec<(usize, sysusers::Group)> = Vec::new();
        let mut users: Vec<(usize, User)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e {
                Entry::Group(g) if !groups.iter().any(|(_, x)| x.name == g.name) => {
                    groups.push((i, g.clone()));
                }
                Entry::User(u) if !users.iter().any(|(_, x)| x.name == u.name) => {
                    users.push((i, u.clone()));
                }
                _ => {}
            }
        }
        // `m` creates what it names.
        for (i, e) in entries.iter().enumerate() {
            if let Entry::Member { user, group } = e {
                if !groups.iter().any(|(_, g)| &g.name == group) && !self.group.contains(group) {
                    groups.push((
                        i,
                        sysusers::Group {
                            name: group.clone(),
                            gid: None,
                        },
                    ));
                }
                if !users.iter().any(|(_, u)| &u.name == user) && !self.passwd.contains(user) {
                    users.push((i, User::new(user)));
                }
            }
        }
        let reserved: HashSet<u32> = groups
            .iter()
            .filter_map(|(_, g)| g.gid)
            .chain(users.iter().filter_map(|(_, u)| u.uid))
            .chain(users.iter().filter_map(|(_, u)| match u.group {
                Some(GroupRef::Gid(g)) => Some(g),
                _ => None,
            }))
            .collect();
        let declared_gids: Vec<(u32, String)> = groups
            .iter()
            .filter_map(|(_, g)| g.gid.map(|id| (id, g.name.clone())))
            .collect();
        let mut ctx = Ctx {
            out: &mut out,
            reserved: &reserved,
            system: &system,
        };

        let (fixed, mut auto): (Vec<_>, Vec<_>) =
            groups.into_iter().partition(|(_, g)| g.gid.is_some());
        auto.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        for (i, g) in fixed.into_iter().chain(auto) {
            self.add_group(&mut ctx, i, &g.name, g.gid, false);
        }
        let (fixed, mut auto): (Vec<_>, Vec<_>) =
            users.into_iter().partition(|(_, u)| u.uid.is_some());
        auto.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        for (i, u) in fixed.into_iter().chain(auto) {
            self.add_user(&mut ctx, i, &u, &declared_gids);
        }
        for (i, e) in entries.iter().enumerate() {
            if let Entry::Member { user, group } = e {
                self.add_member(&mut ctx, i, user, group);
            }
        }
        out
    }

    fn add_group(
        &mut self,
        ctx: &mut Ctx<'_>,
        entry: usize,
        name: &str,
        wanted: Option<u32>,
        login: bool,
    ) -> Option<u32> {
        if self.group.contains(name) {
            return self.gid(name);
        }
        let gid = match wanted {
            Some(id) if !self.group.id_used(id) => id,
            _ => {
                let ranges = if login || wanted.is_some_and(sysusers::is_login_id) {
                    vec![sysusers::LOGIN_IDS]
                } else {
                    ctx.system.to_vec()
                };
                let Some(id) = sysusers::allocate(name, &ranges, |id| {
                    !self.group.id_used(id) && !ctx.reserved.contains(&id)
                }) else {
                    ctx.push(
                        entry,
                        Change::Failed {
                            name: name.into(),
                            reason: "no free group id left in the range".into(),
                        },
                    );
                    return None;
                };
                if let Some(w) = wanted {
                    ctx.push(
                        entry,
                        Change::Moved {
                            kind: "group",
                            name: name.into(),
                            wanted: w,
                            holder: self
                                .group
                                .records()
                                .find(|g| g.gid == w)
                                .map_or_else(|| "a line of /etc/group".into(), |g| g.name.clone()),
                            got: id,
                        },
                    );
                }
                id
            }
        };
        self.group.push(Group {
            name: name.into(),
            password: "x".into(),
            gid,
            members: Vec::new(),
        });
        if !self.gshadow.contains(name) {
            self.gshadow.push(Gshadow {
                name: name.into(),
                password: LOCKED.into(),
                admins: String::new(),
                members: Vec::new(),
            });
        }
        ctx.push(
            entry,
            Change::AddedGroup {
                name: name.into(),
                gid,
            },
        );
        Some(gid)
    }

    fn add_user(
        &mut self,
        ctx: &mut Ctx<'_>,
        entry: usize,
        u: &User,
        declared_gids: &[(u32, String)],
    ) {
        if self.passwd.contains(&u.name) {
            return;
        }
        let login = u.login || u.uid.is_some_and(sysusers::is_login_id);
        let ranges = if login {
            vec![sysusers::LOGIN_IDS]
        } else {
            ctx.system.to_vec()
        };
        // The primary group, if it is not to be created with the user.
        let group = match &u.group {
            Some(GroupRef::Gid(g)) => Some(
                declared_gids
                    .iter()
                    .find(|(id, _)| id == g)
                    .and_then(|(_, name)| self.gid(name))
                    .unwrap_or(*g),
            ),
            Some(GroupRef::Name(n)) => match self.gid(n) {
                Some(gid) => Some(gid),
                None => match self.add_group(ctx, entry, n, None, login) {
                    Some(gid) => Some(gid),
                    None => return,
                },
            },
            None => self.gid(&u.name),
        };
        let creates_group = group.is_none();
        let free =
            |s: &Self, id: u32| !s.passwd.id_used(id) && (!creates_group || !s.group.id_used(id));
        let uid = match u.uid {
            Some(id) if !self.passwd.id_used(id) => id,
            wanted => {
                // A `-` user takes its existing group's id when it can.
                let same = match (wanted, &u.group, group) {
                    (None, None, Some(gid)) if !self.passwd.id_used(gid) => Some(gid),
                    _ => None,
                };
                let found = same.or_else(|| {
                    sysusers::allocate(&u.name, &ranges, |id| {
                        free(self, id) && !ctx.reserved.contains(&id)
                    })
                });
                let Some(id) = found else {
                    ctx.push(
                        entry,
                        Change::Failed {
                            name: u.name.clone(),
                            reason: "no free user id left in the range".into(),
                        },
                    );
                    return;
                };
                if let Some(w) = wanted {
                    ctx.push(
                        entry,
                        Change::Moved {
                            kind: "user",
                            name: u.name.clone(),
                            wanted: w,
                            holder: self
                                .passwd
                                .records()
                                .find(|p| p.uid == w)
                                .map_or_else(|| "a line of /etc/passwd".into(), |p| p.name.clone()),
                            got: id,
                        },
                    );
                }
                id
            }
        };
        let gid = match group {
            Some(gid) => gid,
            None => match self.add_group(ctx, entry, &u.name, Some(uid), login) {
                Some(gid) => gid,
                None => return,
            },
        };
        let login = login || sysusers::is_login_id(uid);
        if !self.shadow.contains(&u.name) {
            let unlocked = login || sysusers::may_log_in(uid);
            self.shadow.push(Shadow {
                name: u.name.clone(),
                hash: if unlocked { NO_PASSWORD } else { LOCKED }.into(),
                ageing: Default::default(),
            });
        }
        self.passwd.push(Passwd {
            name: u.name.clone(),
            password: "x".into(),
            uid,
            gid,
            gecos: u.gecos.clone(),
            home: User { login, ..u.clone() }.home_or_default(),
            shell: u.shell_or_default(uid),
        });
        ctx.push(
            entry,
            Change::AddedUser {
                name: u.name.clone(),
                uid,
            },
        );
    }

    fn add_member(&mut self, ctx: &mut Ctx<'_>, entry: usize, user: &str, group: &str) {
        if !self.passwd.contains(user) || self.group.get(group).is_none() {
            ctx.push(
                entry,
                Change::Failed {
                    name: format!("{user} in {group}"),
                    reason: "the user or the group could not be created".into(),
                },
            );
            return;
        }
        let add = |members: &mut Vec<String>| {
            let missing = !members.iter().any(|m| m == user);
            if missing {
                members.push(user.to_string());
            }
            missing
        };
        if self.group.edit(group, |g| add(&mut g.members)) {
            self.gshadow.edit(group, |g| add(&mut g.members));
            ctx.push(
                entry,
                Change::AddedMember {
                    user: user.into(),
                    group: group.into(),
                },
            );
        }
    }

    /// The accounts as `sysusers.d` lines with numeric ids: every group,
    /// every user (`uid:gid`, home and shell spelled out), every
    /// membership. What the image builder writes to [`sysusers::RESOLVED`].
    pub fn to_entries(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .group
            .records()
            .map(|g| {
                Entry::Group(sysusers::Group {
                    name: g.name.clone(),
                    gid: Some(g.gid),
                })
            })
            .collect();
        entries.extend(self.passwd.records().map(|p| {
            Entry::User(User {
                name: p.name.clone(),
                uid: Some(p.uid),
                group: Some(GroupRef::Gid(p.gid)),
                gecos: p.gecos.clone(),
                home: Some(p.home.clone()),
                shell: Some(p.shell.clone()),
                login: false,
            })
        }));
        for g in self.group.records() {
            entries.extend(g.members.iter().map(|m| Entry::Member {
                user: m.clone(),
                group: g.name.clone(),
            }));
        }
        entries
    }
}

/// The mode of [`PASSWD`] and [`GROUP`].
pub const PUBLIC_MODE: u32 = 0o644;
/// The mode of [`SHADOW`] and [`GSHADOW`], group [`SHADOW_GROUP`].
pub const SECRET_MODE: u32 = 0o640;
/// The mode of [`SHADOW`] and [`GSHADOW`] when there is no
/// [`SHADOW_GROUP`].
pub const SECRET_MODE_ROOT_ONLY: u32 = 0o600;
/// A login user's home directory, owned by the user: Debian's adduser has
/// made homes 0700 since bookworm (`DIR_MODE`), since a home holds keys
/// and histories that nobody else should read.
pub const HOME_MODE: u32 = 0o700;

/// One account file as a node holds it: owner root, group `group`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFile {
    /// Its path ([`PASSWD`], …).
    pub path: &'static str,
    /// Its text.
    pub text: String,
    /// Permission bits.
    pub mode: u32,
    /// Its group: the [`SHADOW_GROUP`]'s gid for [`SHADOW`] and
    /// [`GSHADOW`] when there is one; `None` is root's.
    pub group: Option<u32>,
    /// Whether anything was added since the tables were parsed (only
    /// changed files are written).
    pub changed: bool,
}

/// `sysusers.d` lines applied together at boot ([`Accounts::add_at_boot`]),
/// each with the file and line it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    entries: Vec<Entry>,
    origin: Vec<(PathBuf, usize)>,
}

impl Batch {
    /// Adds the lines of `text`, the file shown as `shown`; returns the
    /// lines that could not be read (they are skipped).
    pub fn add(&mut self, shown: &Path, text: &str) -> Vec<sysusers::LineError> {
        let (entries, errors) = sysusers::parse(text);
        for (line, entry) in entries {
            self.entries.push(entry);
            self.origin.push((shown.to_path_buf(), line));
        }
        errors
    }

    /// The entries, in the order added.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// A change of [`Accounts::add_at_boot`] worth telling, with the line
/// that asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noted {
    /// The file, as given to [`Batch::add`].
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// [`Change::Moved`] or [`Change::Failed`].
    pub change: Change,
}

/// A login user's home directory: [`HOME_MODE`], owned by the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    /// Absolute path on the node.
    pub path: String,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What [`Accounts::add_at_boot`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootMerge {
    /// Users added.
    pub users: usize,
    /// Groups added.
    pub groups: usize,
    /// Memberships added.
    pub members: usize,
    /// Entries whose id was taken by another name and that got another
    /// ([`Change::Moved`]).
    pub moved: Vec<Noted>,
    /// Entries that could not be added ([`Change::Failed`]).
    pub failed: Vec<Noted>,
    /// The homes the login users of both batches must have (made where
    /// nothing is at the path), each once.
    pub homes: Vec<Home>,
}

impl Accounts {
    /// What a node's boot adds: the image's resolved users
    /// ([`sysusers::RESOLVED`]) as one batch, then the administrator's
    /// `/etc/sysusers.d` files as another, each by [`Accounts::apply`];
    /// then the homes of the login users either declares: users whose
    /// entry has a login uid ([`sysusers::is_login_id`]) and an absolute
    /// home other than `/`.
    pub fn add_at_boot(&mut self, image: &Batch, admin: &Batch) -> BootMerge {
        let mut merge = BootMerge::default();
        for batch in [image, admin] {
            for o in self.apply(&batch.entries) {
                let (file, line) = &batch.origin[o.entry];
                let noted = |change| Noted {
                    file: file.clone(),
                    line: *line,
                    change,
                };
                match o.change {
                    Change::AddedUser { .. } => merge.users += 1,
                    Change::AddedGroup { .. } => merge.groups += 1,
                    Change::AddedMember { .. } => merge.members += 1,
                    c @ Change::Moved { .. } => merge.moved.push(noted(c)),
                    c @ Change::Failed { .. } => merge.failed.push(noted(c)),
                }
            }
        }
        for e in image.entries.iter().chain(&admin.entries) {
            let Entry::User(u) = e else { continue };
            let Some(p) = self.passwd.get(&u.name) else {
                continue;
            };
            if !sysusers::is_login_id(p.uid) || !p.home.starts_with('/') || p.home == "/" {
                continue;
            }
            if !merge.homes.iter().any(|h| h.path == p.home) {
                merge.homes.push(Home {
                    path: p.home.clone(),
                    uid: p.uid,
                    gid: p.gid,
                });
            }
        }
        merge
    }

    /// The four files, in the order they are written: groups before
    /// users, shadow entries before the accounts they belong to, so that a
    /// crash in between leaves nothing dangling. `passwd` and `group`
    /// [`PUBLIC_MODE`]; `shadow` and `gshadow` [`SECRET_MODE`] with the
    /// [`SHADOW_GROUP`], [`SECRET_MODE_ROOT_ONLY`] without one.
    pub fn files(&self) -> Vec<AccountFile> {
        self.files_if(true)
    }

    /// The files [`Accounts::files`] lists that changed, in the same
    /// order: what a writer writes. The others are not even rendered, so
    /// that a boot with nothing to add does no more than parse.
    pub fn changed_files(&self) -> Vec<AccountFile> {
        self.files_if(false)
    }

    fn files_if(&self, all: bool) -> Vec<AccountFile> {
        let shadow_gid = self.gid(SHADOW_GROUP);
        let secret = if shadow_gid.is_some() {
            SECRET_MODE
        } else {
            SECRET_MODE_ROOT_ONLY
        };
        let mut out = Vec::new();
        let mut add = |path, changed, render: &dyn Fn() -> String, mode, group| {
            if all || changed {
                out.push(AccountFile {
                    path,
                    text: render(),
                    mode,
                    group,
                    changed,
                });
            }
        };
        add(
            GSHADOW,
            self.gshadow.changed(),
            &|| self.gshadow.render(),
            secret,
            shadow_gid,
        );
        add(
            GROUP,
            self.group.changed(),
            &|| self.group.render(),
            PUBLIC_MODE,
            None,
        );
        add(
            SHADOW,
            self.shadow.changed(),
            &|| self.shadow.render(),
            secret,
            shadow_gid,
        );
        add(
            PASSWD,
            self.passwd.changed(),
            &|| self.passwd.render(),
            PUBLIC_MODE,
            None,
        );
        out
    }
}

struct Ctx<'a> {
    out: &'a mut Vec<Outcome>,
    reserved: &'a HashSet<u32>,
    system: &'a [RangeInclusive<u32>],
}

impl Ctx<'_> {
    fn push(&mut self, entry: usize, change: Change) {
        self.out.push(Outcome { entry, change });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str) -> Vec<Entry> {
        let (e, errors) = sysusers::parse(text);
        assert_eq!(errors, vec![], "{text}");
        e.into_iter().map(|(_, e)| e).collect()
    }

    const PASSWD_MASTER: &str = "root:*:0:0:root:/root:/bin/bash\ndaemon:*:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsync:*:4:65534:sync:/bin:/bin/sync\n_apt:*:42:65534::/nonexistent:/usr/sbin/nologin\nnobody:*:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const GROUP_MASTER: &str =
        "root:*:0:\ndaemon:*:1:\nadm:*:4:\nshadow:*:42:\nusers:*:100:\nnogroup:*:65534:\n";

    #[test]
    fn unchanged_tables_render_their_text() {
        let text = "root:x:0:0:root:/root:/bin/sh\n# comment\n+::::::\nbroken line\nbad:x:007:0:::\n\nlast:x:5:5::/:/bin/sh";
        let t: Table<Passwd> = Table::parse(text);
        assert_eq!(t.render(), format!("{text}\n"));
        assert!(!t.changed());
        assert_eq!(t.records().count(), 2);
        assert!(t.contains("bad"), "a malformed line still holds its name");
        assert!(t.id_used(7), "and its id");
        assert!(t.get("bad").is_none());
        let g: Table<Group> = Table::parse("a:x:1:u,,v\nb:x:2:u,v\n");
        assert_eq!(g.render(), "a:x:1:u,,v\nb:x:2:u,v\n");
        assert_eq!(g.get("b").map(|g| g.members.len()), Some(2));
        assert!(g.get("a").is_none(), "a,,b would not render back");
        let s: Table<Shadow> = Table::parse("root:$6$x:19000:0:99999:7:::\n");
        assert_eq!(s.get("root").map(|s| s.hash.as_str()), Some("$6$x"));
        assert_eq!(s.render(), "root:$6$x:19000:0:99999:7:::\n");
        let gs: Table<Gshadow> = Table::parse("adm:*::syslog,alice\n");
        assert_eq!(
            gs.get("adm").map(|g| g.members.clone()),
            Some(vec!["syslog".to_string(), "alice".to_string()])
        );
    }

    #[test]
    fn an_empty_node_gets_everything() {
        let mut a = Accounts::default();
        let out = a.apply(&entries(
            "g adm 4\ng shadow 42\nu root 0:0 \"root\" /root /bin/sh\ng root 0\nu alice 1000 \"Alice\" /home/alice\nm alice adm\n",
        ));
        assert_eq!(
            a.group.render(),
            "adm:x:4:alice\nshadow:x:42:\nroot:x:0:\nalice:x:1000:\n"
        );
        assert_eq!(
            a.gshadow.render(),
            "adm:!*::alice\nshadow:!*::\nroot:!*::\nalice:!*::\n"
        );
        assert_eq!(
            a.passwd.render(),
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
        );
        assert_eq!(a.shadow.render(), "root:*:::::::\nalice:*:::::::\n");
        assert!(
            out.iter()
                .all(|o| !matches!(o.change, Change::Failed { .. } | Change::Moved { .. }))
        );
        assert!(out.contains(&Outcome {
            entry: 5,
            change: Change::AddedMember {
                user: "alice".into(),
                group: "adm".into()
            }
        }));
    }

    #[test]
    fn existing_entries_are_never_changed() {
        let passwd = "root:x:0:0:The Admin:/root:/bin/zsh\nbob:x:1000:1000::/home/bob:/bin/bash\n";
        let group = "root:x:0:\nadm:x:4:bob\nbob:x:1000:\n";
        let shadow = "root:$6$secret:19000:0:99999:7:::\n";
        let mut a = Accounts::parse(passwd, group, shadow, "");
        let out = a.apply(&entries(
            "g root 0\ng adm 99\nu root 0:0 root /root /bin/sh\nu bob 2000\nm bob adm\n",
        ));
        assert_eq!(out, vec![]);
        assert!(!a.passwd.changed() && !a.group.changed() && !a.shadow.changed());
        assert!(
            !a.gshadow.changed(),
            "no gshadow line for groups that exist"
        );
        assert_eq!(a.passwd.render(), passwd);
        assert_eq!(a.shadow.render(), shadow);
    }

    #[test]
    fn members_are_added_to_existing_groups_once() {
        let mut a = Accounts::parse(
            "alice:x:1000:1000::/home/alice:/bin/sh\n",
            "# groups\nadm:x:4:syslog\nalice:x:1000:\n",
            "",
            "adm:*::syslog\n",
        );
        let m = entries("m alice adm\nm alice adm\n");
        let out = a.apply(&m);
        assert_eq!(out.len(), 1);
        assert_eq!(
            a.group.render(),
            "# groups\nadm:x:4:syslog,alice\nalice:x:1000:\n"
        );
        assert_eq!(a.gshadow.render(), "adm:*::syslog,alice\n");
        assert!(!a.passwd.changed());
        let again = a.apply(&m);
        assert_eq!(again, vec![]);
    }

    #[test]
    fn taken_ids_move() {
        let mut a = Accounts::parse("mine:x:150:150::/:/bin/sh\n", "mine:x:150:\n", "", "");
        let out = a.apply(&entries("u theirs 150\n"));
        let moved = out
            .iter()
            .find_map(|o| match &o.change {
                Change::Moved {
                    kind: "user",
                    wanted,
                    holder,
                    got,
                    ..
                } => Some((*wanted, holder.clone(), *got)),
                _ => None,
            })
            .expect("moved");
        assert_eq!((moved.0, moved.1.as_str()), (150, "mine"));
        assert_ne!(moved.2, 150);
        assert_eq!(a.uid("theirs"), Some(moved.2));
        assert_eq!(a.gid("theirs"), Some(moved.2), "its group follows");
    }

    #[test]
    fn auto_ids_are_stable_and_match() {
        let decl = entries(
            "u messagebus - \"System Message Bus\"\nu systemd-network -\ng systemd-journal -\n",
        );
        let mut a = Accounts::default();
        a.apply(&decl);
        let mut b = Accounts::default();
        let mut reversed = decl.clone();
        reversed.reverse();
        b.apply(&reversed);
        for name in ["messagebus", "systemd-network"] {
            let uid = a.uid(name).expect("uid");
            assert_eq!(a.gid(name), Some(uid), "{name}: uid = gid");
            assert_eq!(b.uid(name), Some(uid), "{name}: order does not matter");
            assert!(sysusers::SYSTEM_IDS.contains(&uid));
            assert_eq!(
                a.passwd.get(name).map(|p| p.shell.as_str()),
                Some(sysusers::NOLOGIN_SHELL)
            );
        }
        assert_eq!(
            a.gid("systemd-journal"),
            sysusers::allocate("systemd-journal", &[sysusers::SYSTEM_IDS], |_| true)
        );
        assert_eq!(
            a.shadow.get("messagebus").map(|s| s.hash.as_str()),
            Some(LOCKED)
        );
    }

    #[test]
    fn a_user_takes_its_existing_groups_id() {
        let mut a = Accounts::parse("", "svc:x:333:\n", "", "");
        a.apply(&entries("u svc -\n"));
        assert_eq!(a.uid("svc"), Some(333));
        assert_eq!(a.passwd.get("svc").map(|p| p.gid), Some(333));
    }

    #[test]
    fn auto_ids_avoid_ids_the_entries_ask_for() {
        let hashed = sysusers::allocate("zz", &[sysusers::SYSTEM_IDS], |_| true).expect("id");
        let mut a = Accounts::default();
        a.apply(&entries(&format!("g zz -\nu fixed {hashed}\n")));
        assert_eq!(a.uid("fixed"), Some(hashed));
        assert_eq!(a.gid("fixed"), Some(hashed));
        assert_ne!(a.gid("zz"), Some(hashed));
    }

    #[test]
    fn ranges_limit_system_ids() {
        let mut a = Accounts::default();
        a.apply(&entries("r - 500-502\nu a -\nu b -\nu c -\nu d -\n"));
        let mut ids: Vec<u32> = ["a", "b", "c"].iter().filter_map(|n| a.uid(n)).collect();
        ids.sort_unstable();
        assert_eq!(ids, [500, 501, 502]);
        assert_eq!(a.uid("d"), None);
        assert!(
            a.apply(&entries("r - 500-502\nu e -\n"))
                .iter()
                .any(|o| matches!(&o.change, Change::Failed { name, .. } if name == "e"))
        );
    }

    #[test]
    fn members_create_what_they_name() {
        let mut a = Accounts::default();
        let out = a.apply(&entries("m svc extra\n"));
        assert!(a.uid("svc").is_some());
        assert!(a.gid("extra").is_some());
        assert_eq!(
            a.group.get("extra").map(|g| g.members.clone()),
            Some(vec!["svc".to_string()])
        );
        assert_eq!(out.iter().filter(|o| o.entry == 0).count(), 4, "{out:?}");
    }

    #[test]
    fn uid_gid_forms() {
        let mut a = Accounts::parse("", GROUP_MASTER, "", "");
        a.apply(&entries(
            "u sync 4:65534 - /bin /bin/sync\nu svc -:adm\nu other 300:newgroup\n",
        ));
        assert_eq!(a.passwd.get("sync").map(|p| p.gid), Some(65534));
        assert!(
            a.group.get("sync").is_none(),
            "uid:gid creates no group of the user's name"
        );
        assert_eq!(a.passwd.get("svc").map(|p| p.gid), Some(4));
        assert!(a.gid("newgroup").is_some(), "a named group is created");
        assert_eq!(a.passwd.get("other").map(|p| p.gid), a.gid("newgroup"));
    }

    #[test]
    fn numeric_primary_groups_follow_the_declared_name() {
        // The image resolved "svc" to 200:200, but this node's older image
        // gave group svc the gid 201.
        let mut a = Accounts::parse("", "svc:x:201:\nother:x:200:\n", "", "");
        a.apply(&entries("g svc 200\nu svc 200:200\n"));
        assert_eq!(a.uid("svc"), Some(200));
        assert_eq!(a.passwd.get("svc").map(|p| p.gid), Some(201));
    }

    #[test]
    fn the_builder_round_trip() {
        // base-passwd, then packages, then the definition; rendered as the
        // resolved file, applied on an empty node: the same accounts.
        let mut image = Accounts::parse(PASSWD_MASTER, GROUP_MASTER, "", "");
        image.apply(&entries(
            "u messagebus - \"System Message Bus\"\ng systemd-journal -\n",
        ));
        image.apply(&[
            Entry::User(User {
                login: true,
                gecos: "Alice".into(),
                ..User::new("alice")
            }),
            Entry::Member {
                user: "alice".into(),
                group: "adm".into(),
            },
        ]);
        assert_eq!(image.uid("alice").map(sysusers::is_login_id), Some(true));
        let resolved = sysusers::render(&image.to_entries());
        for line in resolved.lines() {
            let id = line.split(' ').nth(2).unwrap_or_default();
            let numeric = |s: &str| s.parse::<u32>().is_ok();
            match &line[..1] {
                "g" => assert!(numeric(id), "{line}"),
                "u" => assert!(
                    id.split_once(':')
                        .is_some_and(|(u, g)| numeric(u) && numeric(g)),
                    "{line}"
                ),
                _ => assert!(line.starts_with("m "), "{line}"),
            }
        }
        let (parsed, errors) = sysusers::parse(&resolved);
        assert_eq!(errors, vec![]);
        let parsed: Vec<Entry> = parsed.into_iter().map(|(_, e)| e).collect();
        let mut node = Accounts::default();
        node.apply(&parsed);
        for name in ["root", "sync", "nobody", "messagebus", "alice"] {
            let img = image.passwd.get(name).expect("image");
            let got = node.passwd.get(name).expect("node");
            assert_eq!(
                (got.uid, got.gid, &got.home, &got.shell),
                (img.uid, img.gid, &img.home, &img.shell),
                "{name}"
            );
        }
        for name in ["root", "adm", "nogroup", "systemd-journal", "alice"] {
            assert_eq!(node.gid(name), image.gid(name), "{name}");
        }
        assert_eq!(
            node.group.get("adm").map(|g| g.members.clone()),
            Some(vec!["alice".to_string()])
        );
        assert_eq!(
            node.shadow.get("alice").map(|s| s.hash.as_str()),
            Some(NO_PASSWORD)
        );
        assert_eq!(
            node.shadow.get("root").map(|s| s.hash.as_str()),
            Some(NO_PASSWORD),
            "root may log in with a key"
        );
        assert_eq!(
            node.shadow.get("nobody").map(|s| s.hash.as_str()),
            Some(LOCKED)
        );
        assert_eq!(
            node.passwd.get("alice").map(|p| p.home.as_str()),
            Some("/home/alice")
        );
        // And again: nothing to do.
        let before = node.clone();
        assert_eq!(node.apply(&parsed), vec![]);
        assert_eq!(node, before);
    }

    const RESOLVED: &str = "g root 0\ng adm 4\ng shadow 42\ng core 1234\n\
        u root 0:0 root /root /bin/sh\nu messagebus 321:321 - / /usr/sbin/nologin\n\
        u core 1234:1234 \"Core user\" /home/core /bin/sh\nm core adm\n";

    #[test]
    fn the_boot_adds_both_batches_and_lists_login_homes() {
        let mut image = Batch::default();
        assert_eq!(image.add(Path::new(sysusers::RESOLVED), RESOLVED), vec![]);
        let mut admin = Batch::default();
        let errors = admin.add(
            Path::new("/etc/sysusers.d/ops.conf"),
            "u ops 2000 - /home/ops\nu core 1300 - /elsewhere\nbogus\nu app - - /var/lib/app\nu taken 1234\n",
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 3);
        assert_eq!(admin.entries().len(), 4);
        let mut acc = Accounts::parse("", "", "", "");
        let merge = acc.add_at_boot(&image, &admin);
        assert_eq!((merge.users, merge.groups, merge.members), (6, 7, 1));
        assert_eq!(merge.failed, vec![]);
        assert_eq!(merge.moved.len(), 1, "{:?}", merge.moved);
        assert_eq!(merge.moved[0].file, Path::new("/etc/sysusers.d/ops.conf"));
        assert_eq!(merge.moved[0].line, 5);
        assert!(
            matches!(&merge.moved[0].change, Change::Moved { name, wanted: 1234, .. } if name == "taken")
        );
        // core once (the image's home: the first entry counts), ops and
        // taken (moved to a login id); not root, messagebus, app (system
        // ids).
        let taken = acc.uid("taken").expect("taken");
        assert!(sysusers::is_login_id(taken));
        assert_eq!(
            merge.homes,
            [
                Home {
                    path: "/home/core".into(),
                    uid: 1234,
                    gid: 1234
                },
                Home {
                    path: "/home/ops".into(),
                    uid: 2000,
                    gid: acc.gid("ops").expect("ops")
                },
                Home {
                    path: "/home/taken".into(),
                    uid: taken,
                    gid: taken
                },
            ]
        );
        // A second boot adds nothing and lists the same homes.
        let files = acc.files();
        let mut again = Accounts::parse(
            &files[3].text,
            &files[1].text,
            &files[2].text,
            &files[0].text,
        );
        let second = again.add_at_boot(&image, &admin);
        assert_eq!((second.users, second.groups, second.members), (0, 0, 0));
        assert!(again.files().iter().all(|f| !f.changed));
        assert!(again.changed_files().is_empty());
        assert_eq!(acc.changed_files(), acc.files(), "all four changed");
        assert_eq!(second.homes, merge.homes);
    }

    #[test]
    fn files_in_write_order_with_modes_and_groups() {
        let mut image = Batch::default();
        image.add(Path::new(sysusers::RESOLVED), RESOLVED);
        let mut acc = Accounts::default();
        acc.add_at_boot(&image, &Batch::default());
        let files = acc.files();
        let shape: Vec<_> = files
            .iter()
            .map(|f| (f.path, f.mode, f.group, f.changed))
            .collect();
        assert_eq!(
            shape,
            [
                (GSHADOW, 0o640, Some(42), true),
                (GROUP, 0o644, None, true),
                (SHADOW, 0o640, Some(42), true),
                (PASSWD, 0o644, None, true),
            ]
        );
        assert!(
            files[2].text.contains("core:*:::::::\n"),
            "{}",
            files[2].text
        );
        assert!(files[3].text.starts_with("root:x:0:0:root:/root:/bin/sh\n"));
        let mut bare = Accounts::default();
        bare.apply(&entries("g root 0\nu root 0:0 root /root /bin/sh\n"));
        let files = bare.files();
        assert_eq!((files[0].mode, files[0].group), (0o600, None));
        assert!(
            Accounts::default()
                .files()
                .iter()
                .all(|f| !f.changed && f.text.is_empty())
        );
    }
}
