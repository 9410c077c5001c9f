//! An OpenStack config drive: a volume labelled `config-2` with
//! `openstack/latest/user_data` and `openstack/latest/meta_data.json`.

use super::error::Error;
use super::volume;
use super::{Env, Found};
use crate::Metadata;

/// The volume label.
pub const LABEL: &str = "config-2";
/// The user-data's path on the drive.
pub const USER_DATA: &str = "openstack/latest/user_data";
/// The metadata's path on the drive.
pub const META_DATA: &str = "openstack/latest/meta_data.json";

/// `meta_data.json` as far as Tandem uses it: `hostname`, `uuid` and the
/// `public_keys` map (key name → key; in name order).
pub fn parse_meta_data(bytes: &[u8]) -> Result<Metadata, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    if !v.is_object() {
        return Err("not a JSON object".to_string());
    }
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let mut keys: Vec<(String, String)> = match v.get("public_keys") {
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .filter_map(|(name, key)| key.as_str().map(|k| (name.clone(), k.trim().to_string())))
            .collect(),
        Some(serde_json::Value::Null) | None => Vec::new(),
        Some(_) => return Err("public_keys is not a map of name to key".to_string()),
    };
    keys.sort();
    Ok(Metadata {
        hostname: text("hostname"),
        ssh_keys: keys.into_iter().map(|(_, k)| k).collect(),
        instance_id: text("uuid"),
        ..Metadata::default()
    })
}

/// Looks for a `config-2` volume with user-data.
pub fn find(env: &Env, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    let seed = volume::Seed {
        name: "config-2",
        kind: "config drive",
        label: LABEL,
        user_data: USER_DATA,
        meta_data: META_DATA,
    };
    volume::find_seed(env, seed, parse_meta_data, tried)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::iso9660::tests::{Style, image};
    use crate::datasource::volume::tests::{add_device, env};

    const META: &[u8] = br#"{"uuid": "83679162-1378-4288-a2d4-70e13ec132aa",
        "hostname": "test.novalocal", "name": "test",
        "public_keys": {"mykey": "ssh-rsa AAAA m\n", "a": "ssh-ed25519 BBBB a"},
        "launch_index": 0}"#;

    #[test]
    fn meta_data_json() {
        let m = parse_meta_data(META).expect("parse");
        assert_eq!(m.hostname.as_deref(), Some("test.novalocal"));
        assert_eq!(
            m.instance_id.as_deref(),
            Some("83679162-1378-4288-a2d4-70e13ec132aa")
        );
        assert_eq!(m.ssh_keys, ["ssh-ed25519 BBBB a", "ssh-rsa AAAA m"]);
        assert_eq!(parse_meta_data(b"{}").expect("empty"), Metadata::default());
        assert!(parse_meta_data(b"[1]").is_err());
        assert!(parse_meta_data(b"{\"public_keys\": [\"x\"]}").is_err());
        assert!(parse_meta_data(b"{").expect_err("bad").contains("JSON"));
    }

    #[test]
    fn finds_a_config_drive() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let iso = image(
            "config-2",
            &[(USER_DATA, b"#cloud-config\n"), (META_DATA, META)],
            Style::Joliet,
        );
        add_device(&env, "sr0", None, &iso);
        let mut tried = Vec::new();
        let found = find(&env, &mut tried).expect("find").expect("found");
        assert_eq!(found.file_name, USER_DATA);
        assert_eq!(found.metadata.hostname.as_deref(), Some("test.novalocal"));
    }

    #[test]
    fn bad_meta_data_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = env(tmp.path());
        let img = tmp.path().join("fat.img");
        crate::datasource::fat::tests::image(
            &img,
            "config-2",
            &[(USER_DATA, b"#cloud-config\n"), (META_DATA, b"{oops")],
        );
        add_device(&env, "vdc", None, &std::fs::read(&img).expect("img"));
        let err = find(&env, &mut Vec::new()).expect_err("bad json");
        assert!(
            err.to_string()
                .contains("vdc: openstack/latest/meta_data.json"),
            "{err}"
        );
    }
}
