//! The provisioning step from start to end: find the user-data, replace
//! `$private_ipv4` and the like, check it, apply it, and say what happened
//! ([`Outcome`]). A config with any validation error is not applied at all:
//! half of an invalid config is not what its author meant.

use std::path::Path;
use std::time::Duration;

use cloud_config::Diagnostic;
use cloud_config::substitute::{self, Variable};
use sha2::{Digest, Sha256};
use tandem_contract::provision::{
    FORMAT, Outcome, Problem, ProvisionState, Severity, USER_DATA_COPY,
};

use crate::apply;
use crate::datasource::{self, Env, Found};

/// How long `$private_ipv4` waits for the address DHCP gives when the
/// metadata has none.
const DHCP_ADDRESS_WAIT: Duration = Duration::from_secs(20);

/// Runs the step on the node rooted at `root` (`/`), with the datasources
/// `env` describes. `now_us` gives the clock for the outcome's times.
pub fn run(env: &Env, root: &Path, now_us: impl Fn() -> u64) -> Outcome {
    let mut out = Outcome {
        format: FORMAT,
        started_us: now_us(),
        ..Outcome::default()
    };
    match datasource::find(env, &mut out.tried) {
        Ok(None) => out.state = ProvisionState::None,
        Ok(Some(found)) => provision(found, root, &mut out),
        Err(e) => {
            out.state = ProvisionState::Failed;
            out.problems.push(error("datasource", e.to_string()));
        }
    }
    out.finished_us = now_us();
    out
}

fn error(at: &str, message: String) -> Problem {
    Problem {
        severity: Severity::Error,
        at: at.into(),
        message,
    }
}

fn problem(file: &str, d: &Diagnostic) -> Problem {
    let path = if d.path.is_empty() {
        String::new()
    } else {
        format!("{}: ", d.path)
    };
    Problem {
        severity: match d.severity {
            cloud_config::Severity::Error => Severity::Error,
            cloud_config::Severity::Warning => Severity::Warning,
        },
        at: format!("{file}:{}:{}", d.line, d.column),
        message: format!("{path}{}", d.message),
    }
}

fn provision(found: Found, root: &Path, out: &mut Outcome) {
    out.datasource = Some(found.source.clone());
    out.sha256 = Some(hex::encode(Sha256::digest(&found.user_data)));
    let file = found.file_name.as_str();
    let Ok(text) = String::from_utf8(found.user_data) else {
        out.state = ProvisionState::Failed;
        out.problems.push(error(
            file,
            "the user-data is not UTF-8 text: a cloud-config is YAML text starting with `#cloud-config`".into(),
        ));
        return;
    };
    let mut values = found.metadata.addresses.clone();
    if values.private_ipv4.is_none() && substitute::used(&text).contains(&Variable::PrivateIpv4) {
        values.private_ipv4 = static_address(&text).or_else(dhcp_address);
    }
    let substituted = substitute::substitute(&text, &values);
    if !substituted.unknown.is_empty() {
        let names: Vec<&str> = substituted.unknown.iter().map(|v| v.as_str()).collect();
        out.state = ProvisionState::Failed;
        out.problems.push(error(
            file,
            format!(
                "{} not known on this machine ({}): the config is not applied rather than run with an empty value; give the address in the config itself, or use a datasource that knows it (EC2 metadata)",
                names.join(", "),
                found.source
            ),
        ));
        return;
    }
    let v = cloud_config::validate(&substituted.text);
    out.problems
        .extend(v.report.diagnostics.iter().map(|d| problem(file, d)));
    if !v.report.valid() {
        out.state = ProvisionState::Failed;
        return;
    }
    let applied = apply::apply(root, file, &v, &found.metadata);
    out.applied = applied.applied;
    let failed = applied
        .problems
        .iter()
        .any(|p| p.severity == Severity::Error);
    out.problems.extend(applied.problems);
    out.state = if failed {
        ProvisionState::Partial
    } else {
        ProvisionState::Applied
    };
    // After apply, which empties the provisioned directory. 0600: user-data
    // may hold password hashes and etcd credentials.
    let copy = apply::write::under(root, USER_DATA_COPY);
    let perm = apply::write::Perm::root(0o600);
    if let Err(e) = apply::write::write_atomic(&copy, substituted.text.as_bytes(), perm) {
        out.problems.push(Problem {
            severity: Severity::Warning,
            at: USER_DATA_COPY.into(),
            message: format!("keeping a copy for `tandemctl config show` failed: {e}"),
        });
    }
}

/// The config's first static address (`tandem.network`), read from the
/// text before substitution: the address the node is given on purpose
/// comes before whatever DHCP hands out. Only the network part needs to be
/// valid here; the whole config is checked after substitution.
fn static_address(text: &str) -> Option<String> {
    cloud_config::validate(text)
        .config
        .tandem
        .network
        .first_address()
        .map(|a| a.to_string())
}

/// The address DHCP gave (it runs beside this step), waited for a while.
fn dhcp_address() -> Option<String> {
    datasource::network::wait_ipv4(DHCP_ADDRESS_WAIT);
    datasource::network::first_ipv4().map(|a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path, cmdline: &str) -> Env {
        Env {
            cmdline: cmdline.into(),
            sys: dir.join("sys"),
            dev: dir.join("dev"),
            boot_disk: None,
            live: false,
            modules: None,
            network_wait: Duration::ZERO,
        }
    }

    #[test]
    fn nothing_to_find_is_not_a_failure() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = run(&env(dir.path(), "tandem.datasource=none"), dir.path(), || 7);
        assert_eq!(out.state, ProvisionState::None);
        assert_eq!((out.started_us, out.finished_us), (7, 7));
        assert_eq!(out.summary(), "no user-data found");
    }

    #[test]
    fn an_unknown_datasource_name_fails_with_the_reason() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = run(
            &env(dir.path(), "tandem.datasource=floppy"),
            dir.path(),
            || 0,
        );
        assert_eq!(out.state, ProvisionState::Failed);
        assert_eq!(out.problems[0].at, "datasource");
        assert!(out.problems[0].message.contains("floppy"), "{out:?}");
    }

    fn found(text: &str) -> Found {
        Found {
            source: "test".into(),
            file_name: "user-data".into(),
            user_data: text.as_bytes().to_vec(),
            metadata: crate::Metadata::default(),
        }
    }

    #[test]
    fn an_invalid_config_is_not_applied_and_its_errors_have_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        provision(
            found("#cloud-config\nhostname: web-1\nunits: []\n"),
            dir.path(),
            &mut out,
        );
        assert_eq!(out.state, ProvisionState::Failed);
        assert_eq!(out.problems[0].at, "user-data:3:1");
        assert!(out.problems[0].message.starts_with("units: "), "{out:?}");
        assert!(!dir.path().join("run").exists(), "nothing written");
    }

    #[test]
    fn bad_yaml_is_not_applied_and_says_where() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        provision(
            found("#cloud-config\nhostname: web-1\nusers: [\n"),
            dir.path(),
            &mut out,
        );
        assert_eq!(out.state, ProvisionState::Failed);
        assert!(out.problems[0].at.starts_with("user-data:"), "{out:?}");
        assert!(
            out.problems[0].message.starts_with("not valid YAML"),
            "{out:?}"
        );
        assert!(!dir.path().join("run").exists(), "nothing written");
    }

    #[test]
    fn a_valid_config_is_applied_and_kept_for_config_show() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        let text = "#cloud-config\nhostname: web-1\n";
        provision(found(text), dir.path(), &mut out);
        assert_eq!(out.state, ProvisionState::Applied, "{out:?}");
        let copy = dir.path().join(USER_DATA_COPY.trim_start_matches('/'));
        assert_eq!(std::fs::read_to_string(copy).expect("copy"), text);
        assert_eq!(
            out.sha256.as_deref(),
            Some(hex::encode(Sha256::digest(text)).as_str())
        );
    }

    #[test]
    fn an_unknown_public_address_refuses_the_config() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        provision(
            found("#cloud-config\nwrite_files:\n  - path: /etc/ip\n    content: $public_ipv4\n"),
            dir.path(),
            &mut out,
        );
        assert_eq!(out.state, ProvisionState::Failed);
        assert!(
            out.problems[0]
                .message
                .starts_with("$public_ipv4 not known"),
            "{out:?}"
        );
    }

    const STATIC: &str = "#cloud-config\ntandem:\n  network:\n    interfaces:\n      - name: eth1\n        addresses: [10.99.0.11/24, 10.99.1.11/24]\n";

    #[test]
    fn private_ipv4_is_the_first_static_address() {
        assert_eq!(static_address(STATIC).as_deref(), Some("10.99.0.11"));
        assert_eq!(static_address("#cloud-config\nhostname: a\n"), None);
        // Another part's error does not hide the network's address.
        let broken = format!("{STATIC}units: []\n");
        assert_eq!(static_address(&broken).as_deref(), Some("10.99.0.11"));
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        let text =
            format!("{STATIC}write_files:\n  - path: /etc/ip\n    content: \"$private_ipv4\"\n");
        provision(found(&text), dir.path(), &mut out);
        assert_eq!(out.state, ProvisionState::Applied, "{out:?}");
        let ip = std::fs::read_to_string(dir.path().join("etc/ip")).expect("written");
        assert_eq!(ip, "10.99.0.11");
    }

    #[test]
    fn metadata_private_ipv4_wins_over_the_static_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        let text =
            format!("{STATIC}write_files:\n  - path: /etc/ip\n    content: \"$private_ipv4\"\n");
        let mut f = found(&text);
        f.metadata.addresses.private_ipv4 = Some("172.31.0.5".into());
        provision(f, dir.path(), &mut out);
        let ip = std::fs::read_to_string(dir.path().join("etc/ip")).expect("written");
        assert_eq!(ip, "172.31.0.5");
    }

    #[test]
    fn not_utf8_fails() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut out = Outcome::default();
        let mut f = found("");
        f.user_data = vec![0xff, 0xfe];
        provision(f, dir.path(), &mut out);
        assert_eq!(out.state, ProvisionState::Failed);
    }
}
