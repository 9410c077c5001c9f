//! NoCloud: a volume labelled `cidata` with `user-data` and `meta-data`
//! (cloud-init's NoCloud datasource). `meta-data` is YAML; the few keys
//! used here are read with a line parser (`key: value`, `- item` lists, or
//! the whole file as JSON, which YAML includes).

use super::error::Error;
use super::volume;
use super::{Env, Found};
use crate::Metadata;

/// The volume label.
pub const LABEL: &str = "cidata";

/// `meta-data` read as far as Tandem uses it.
pub fn parse_meta_data(text: &str) -> Metadata {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<serde_json::Value>(text)
            .map(|v| from_json(&v))
            .unwrap_or_default();
    }
    let mut meta = Metadata::default();
    let mut hostname = None;
    let mut local_hostname = None;
    let mut in_keys = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(item) = trimmed
            .strip_prefix("- ")
            .or_else(|| (trimmed == "-").then_some(""))
        {
            if in_keys && !item.trim().is_empty() {
                meta.ssh_keys.push(unquote(item).to_string());
            }
            continue;
        }
        // Only top-level keys count; a nested map is not something used.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        in_keys = false;
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = unquote(value);
        match key.trim() {
            "instance-id" if !value.is_empty() => meta.instance_id = Some(value.to_string()),
            "local-hostname" if !value.is_empty() => local_hostname = Some(value.to_string()),
            "hostname" if !value.is_empty() => hostname = Some(value.to_string()),
            "public-keys" | "public_keys" => {
                if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                    meta.ssh_keys.extend(
                        list.split(',')
                            .map(unquote)
                            .filter(|k| !k.is_empty())
                            .map(str::to_string),
                    );
                } else if value.is_empty() {
                    in_keys = true;
                } else {
                    meta.ssh_keys.push(value.to_string());
                }
            }
            _ => {}
        }
    }
    meta.hostname = local_hostname.or(hostname);
    meta
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

fn from_json(v: &serde_json::Value) -> Metadata {
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let keys = v.get("public-keys").or_else(|| v.get("public_keys"));
    let ssh_keys = match keys {
        Some(serde_json::Value::String(k)) => vec![k.clone()],
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Metadata {
        hostname: text("local-hostname").or_else(|| text("hostname")),
        ssh_keys,
        instance_id: text("instance-id"),
        ..Metadata::default()
    }
}

/// Looks for a `cidata` volume with `user-data`.
pub fn find(env: &Env, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    let seed = volume::Seed {
        name: "NoCloud",
        kind: "NoCloud volume",
        label: LABEL,
        user_data: "user-data",
        meta_data: "meta-data",
    };
    // meta-data is read as far as it can be: a line it cannot read is skipped.
    let parse = |bytes: &[u8]| Ok(parse_meta_data(&String::from_utf8_lossy(bytes)));
    volume::find_seed(env, seed, parse, tried)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::iso9660::tests::{Style, image};
    use crate::datasource::volume::tests::{add_device, env};

    #[test]
    fn meta_data_keys_and_lists() {
        let m = parse_meta_data(
            "# seed\ninstance-id: iid-local01\nhostname: other\nlocal-hostname: 'node-1'\n\
             public-keys:\n  - ssh-ed25519 AAAA one\n  - \"ssh-rsa BBBB two\"\n\
             network-interfaces: |\n  iface eth0 inet dhcp\n",
        );
        assert_eq!(m.instance_id.as_deref(), Some("iid-local01"));
        assert_eq!(m.hostname.as_deref(), Some("node-1"));
        assert_eq!(m.ssh_keys, ["ssh-ed25519 AAAA one", "ssh-rsa BBBB two"]);
    }

    #[test]
    fn meta_data_other_shapes() {
        let m = parse_meta_data("hostname: h\npublic_keys: ssh-ed25519 AAAA\n");
        assert_eq!(m.hostname.as_deref(), Some("h"));
        assert_eq!(m.ssh_keys, ["ssh-ed25519 AAAA"]);
        let m = parse_meta_data("public-keys: [\"a b\", c]\nother:\n  - not-a-key\n");
        assert_eq!(m.ssh_keys, ["a b", "c"]);
        let m =
            parse_meta_data(r#"{"instance-id": "i", "local-hostname": "j", "public-keys": ["k"]}"#);
        assert_eq!(m.instance_id.as_deref(), Some("i"));
        assert_eq!(m.hostname.as_deref(), Some("j"));
        assert_eq!(m.ssh_keys, ["k"]);
        assert_eq!(parse_meta_data("{ not json"), Metadata::default());
        assert_eq!(parse_meta_data(""), Metadata::default());
    }

    #[test]
    fn finds_an_iso_seed_and_skips_one_without_user_data() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let empty = image(
            "cidata",
            &[("meta-data", b"instance-id: x\n")],
            Style::Joliet,
        );
        add_device(&env, "sr0", None, &empty);
        let seed = image(
            "cidata",
            &[
                ("user-data", b"#cloud-config\n"),
                ("meta-data", b"local-hostname: n1\n"),
            ],
            Style::RockRidge,
        );
        add_device(&env, "sr1", None, &seed);
        let mut tried = Vec::new();
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert_eq!(found.user_data, b"#cloud-config\n");
        assert_eq!(found.metadata.hostname.as_deref(), Some("n1"));
        assert_eq!(found.file_name, "user-data");
        assert!(
            found.source.contains("sr1 (label cidata)"),
            "{}",
            found.source
        );
        assert!(
            tried[0].ends_with("sr0 (cidata): no user-data"),
            "{tried:?}"
        );
    }

    #[test]
    fn finds_a_fat_seed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let img = tmp.path().join("fat.img");
        crate::datasource::fat::tests::image(&img, "CIDATA", &[("user-data", b"#cloud-config\n")]);
        add_device(&env, "vdb", None, &std::fs::read(&img).expect("img"));
        let mut tried = Vec::new();
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert_eq!(found.user_data, b"#cloud-config\n");
        assert_eq!(found.metadata, Metadata::default());
    }

    #[test]
    fn no_volume_is_a_line_not_an_error() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut tried = Vec::new();
        assert!(find(&env(tmp.path()), &mut tried).expect("find").is_none());
        assert_eq!(tried, ["NoCloud: no volume labelled cidata"]);
    }
}
