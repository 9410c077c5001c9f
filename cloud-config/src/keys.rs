//! The keys of each part of a cloud-config, in coreos-cloudinit's spelling
//! with underscores (a key is read with its dashes turned into
//! underscores, so `reboot-strategy` and `reboot_strategy` are one key), and
//! where a key that is in the wrong place belongs.

/// A part of the config that has keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The top level.
    Top,
    /// `coreos:`.
    Coreos,
    /// `coreos.update`.
    Update,
    /// `coreos.locksmith`.
    Locksmith,
    /// An entry of `coreos.units`.
    Unit,
    /// An entry of a unit's `drop_ins`.
    DropIn,
    /// An entry of `users`.
    User,
    /// An entry of `write_files`.
    File,
    /// `tandem:`.
    Tandem,
    /// A service under `tandem.services`.
    TandemService,
    /// `tandem.network`.
    Network,
    /// An entry of `tandem.network.interfaces`.
    Interface,
    /// An entry of an interface's `routes`.
    Route,
}

impl Part {
    /// The keys of this part.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Part::Top => &[
                "hostname",
                "ssh_authorized_keys",
                "users",
                "write_files",
                "manage_etc_hosts",
                "coreos",
                "tandem",
            ],
            Part::Coreos => &[
                "update",
                "locksmith",
                "units",
                "etcd2",
                "etcd",
                "fleet",
                "flannel",
                "oem",
            ],
            Part::Update => &["reboot_strategy", "group", "server", "proxy"],
            Part::Locksmith => &[
                "endpoint",
                "etcd_cafile",
                "etcd_certfile",
                "etcd_keyfile",
                "etcd_username",
                "etcd_password",
                "group",
                "window_start",
                "window_length",
            ],
            Part::Unit => &[
                "name", "runtime", "enable", "content", "command", "mask", "drop_ins",
            ],
            Part::DropIn => &["name", "content"],
            Part::User => &[
                "name",
                "gecos",
                "passwd",
                "homedir",
                "no_create_home",
                "primary_group",
                "groups",
                "no_user_group",
                "ssh_authorized_keys",
                "system",
                "no_log_init",
                "shell",
                "lock_passwd",
            ],
            Part::File => &[
                "path",
                "content",
                "owner",
                "permissions",
                "encoding",
                "append",
            ],
            Part::Tandem => &["services", "network"],
            Part::Network => &["interfaces"],
            Part::Interface => &["name", "mac", "addresses", "gateway", "routes", "dns"],
            Part::Route => &["to", "via"],
            Part::TandemService => &[
                "description",
                "type",
                "exec",
                "restart",
                "restart_delay_ms",
                "stop_timeout_secs",
                "enabled",
                "stdio",
                "after_network",
                "after",
                "memory_max",
                "cpu_weight",
                "tasks_max",
                "working_directory",
                "user",
                "group",
                "env",
            ],
        }
    }

    /// Where this part is, for messages.
    pub fn place(self) -> &'static str {
        match self {
            Part::Top => "at the top level",
            Part::Coreos => "under `coreos:`",
            Part::Update => "under `coreos.update`",
            Part::Locksmith => "under `coreos.locksmith`",
            Part::Unit => "in a `coreos.units` entry",
            Part::DropIn => "in a unit's `drop_ins` entry",
            Part::User => "in a `users` entry",
            Part::File => "in a `write_files` entry",
            Part::Tandem => "under `tandem:`",
            Part::TandemService => "in a `tandem.services` service",
            Part::Network => "under `tandem.network`",
            Part::Interface => "in a `tandem.network.interfaces` entry",
            Part::Route => "in an interface's `routes` entry",
        }
    }
}

/// Where to look for a misplaced key, most telling first.
const SEARCH: &[Part] = &[
    Part::Top,
    Part::Coreos,
    Part::Update,
    Part::Locksmith,
    Part::Unit,
    Part::File,
    Part::User,
    Part::Tandem,
    Part::Network,
    Part::Interface,
];

/// A key as the reader compares it: dashes are underscores.
pub fn canonical(key: &str) -> String {
    key.replace('-', "_")
}

/// The message for a key that `part` does not have: where it belongs, or
/// the nearest known key.
pub fn unknown_key(part: Part, written: &str) -> String {
    let key = canonical(written);
    if let Some(home) = SEARCH
        .iter()
        .find(|p| **p != part && p.keys().contains(&key.as_str()))
    {
        return format!("`{written}` belongs {}, not {}", home.place(), part.place());
    }
    let near = part
        .keys()
        .iter()
        .filter(|k| distance(k, &key) <= 2)
        .min_by_key(|k| distance(k, &key));
    match near {
        Some(k) => format!(
            "unknown key `{written}` {}: did you mean `{k}`?",
            part.place()
        ),
        None => format!(
            "unknown key `{written}` {}; known keys: {}",
            part.place(),
            part.keys().join(", ")
        ),
    }
}

/// Levenshtein distance (short keys only).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_are_underscores() {
        assert_eq!(canonical("reboot-strategy"), "reboot_strategy");
        assert_eq!(canonical("ssh_authorized_keys"), "ssh_authorized_keys");
        assert_eq!(canonical("window-start"), "window_start");
    }

    #[test]
    fn misplaced_keys_say_where() {
        assert_eq!(
            unknown_key(Part::Top, "units"),
            "`units` belongs under `coreos:`, not at the top level"
        );
        assert_eq!(
            unknown_key(Part::Top, "etcd2"),
            "`etcd2` belongs under `coreos:`, not at the top level"
        );
        assert_eq!(
            unknown_key(Part::Top, "reboot-strategy"),
            "`reboot-strategy` belongs under `coreos.update`, not at the top level"
        );
        assert_eq!(
            unknown_key(Part::Coreos, "write_files"),
            "`write_files` belongs at the top level, not under `coreos:`"
        );
        assert_eq!(
            unknown_key(Part::Tandem, "interfaces"),
            "`interfaces` belongs under `tandem.network`, not under `tandem:`"
        );
        assert_eq!(
            unknown_key(Part::Network, "gateway"),
            "`gateway` belongs in a `tandem.network.interfaces` entry, not under `tandem.network`"
        );
        assert_eq!(
            unknown_key(Part::Update, "window-start"),
            "`window-start` belongs under `coreos.locksmith`, not under `coreos.update`"
        );
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(
            unknown_key(Part::Top, "hostnme"),
            "unknown key `hostnme` at the top level: did you mean `hostname`?"
        );
        assert!(
            unknown_key(Part::Update, "zzz")
                .contains("known keys: reboot_strategy, group, server, proxy")
        );
    }
}
