//! The shared samples validate as their README says (public API only).

use cloud_config::{Severity, validate};
use tandem_contract::service::{self, Restart};

fn sample(name: &str) -> String {
    let path = format!("{}/tests/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn messages(name: &str) -> Vec<String> {
    let v = validate(&sample(name));
    v.report
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{} {} {}",
                d.line,
                d.column,
                d.severity.as_str(),
                d.message
            )
        })
        .collect()
}

#[test]
fn worker_is_valid_and_translated() {
    let v = validate(&sample("worker.yml"));
    assert!(
        v.report.diagnostics.is_empty(),
        "{:?}",
        v.report.diagnostics
    );
    assert_eq!(v.report.exit_code(), 0);
    let c = &v.config;
    assert_eq!(c.hostname.as_deref(), Some("worker-07"));
    assert_eq!(c.ssh_authorized_keys.len(), 1);
    let update = c.coreos.update.as_ref().expect("update");
    assert_eq!(update.group.as_deref(), Some("stable"));
    let locksmith = c.coreos.locksmith.as_ref().expect("locksmith");
    assert_eq!(locksmith.endpoints, ["http://10.0.2.2:2379"]);
    assert_eq!(locksmith.window_start.as_deref(), Some("Thu 04:00"));
    assert_eq!(c.write_files[0].permissions, Some(0o644));
    assert_eq!(
        c.write_files[0].content,
        b"worker node, managed by cloud-config\n"
    );
    assert_eq!(v.services[0].name, "hello");
    let hello = v.services[0].check().expect("checks");
    assert_eq!(hello.exec[0], "/bin/sh");
    assert_eq!(hello.restart, Restart::Always);
    assert!(hello.after_network && hello.enabled);
    assert!(!hello.needs_launcher());
}

#[test]
fn etcd_member_is_valid_with_warnings_naming_what_tandem_does_not_do() {
    let v = validate(&sample("etcd-member.yml"));
    assert!(v.report.valid());
    assert_eq!(v.report.errors(), 0);
    let m = messages("etcd-member.yml");
    let expect = [
        ("5:3 warning etcd2 runs an etcd member only on an image that carries Debian's etcd-server"),
        ("13:3 warning fleet is not part of Tandem"),
        ("18:7 warning `etcd2.service`: etcd runs from `coreos.etcd2`"),
        ("20:7 warning `fleet.service`: fleet is not part of Tandem"),
        ("22:7 warning `docker-tcp.socket`: socket activation is not supported"),
    ];
    assert_eq!(m.len(), expect.len(), "{m:?}");
    for (got, want) in m.iter().zip(expect) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    let etcd = v.config.coreos.etcd2.expect("etcd2");
    assert_eq!(etcd.flags.len(), 7);
    assert_eq!(etcd.flags[1].0, "initial-cluster-token");
    assert!(
        cloud_config::substitute::used(&sample("etcd-member.yml"))
            .contains(&cloud_config::substitute::Variable::PrivateIpv4)
    );
}

#[test]
fn users_and_files_decode() {
    let v = validate(&sample("users-and-files.yml"));
    assert!(
        v.report.diagnostics.is_empty(),
        "{:?}",
        v.report.diagnostics
    );
    let u = &v.config.users[0];
    assert_eq!(u.name, "elroy");
    assert_eq!(u.groups, ["sudo", "docker"]);
    assert_eq!(u.ssh_authorized_keys.len(), 1);
    assert!(u.passwd.as_deref().is_some_and(|p| p.starts_with("$6$")));
    let f = &v.config.write_files;
    assert_eq!(
        f[0].owner.as_ref().map(|o| o.group.as_deref()),
        Some(Some("root"))
    );
    assert_eq!(f[1].permissions, Some(0o600));
    assert_eq!(f[1].content, b"secret-token-123\n");
    assert_eq!(f[2].content, b"hello world\n");
}

#[test]
fn misplaced_units_are_an_error_with_their_line() {
    let v = validate(&sample("invalid-misplaced.yml"));
    assert_eq!(v.report.exit_code(), 1);
    assert_eq!(
        messages("invalid-misplaced.yml"),
        ["4:1 error `units` belongs under `coreos:`, not at the top level"]
    );
}

#[test]
fn missing_header_is_refused_and_says_so() {
    let v = validate(&sample("invalid-header.yml"));
    assert!(!v.report.valid());
    let d = &v.report.diagnostics[0];
    assert_eq!((d.severity, d.line, d.column), (Severity::Error, 1, 1));
    assert!(d.message.contains("the first line must be `#cloud-config`"));
    let text = v.report.render_text("invalid-header.yml");
    assert!(
        text.starts_with("invalid-header.yml:1:1: error: the first line must be `#cloud-config`")
    );
    assert!(text.ends_with("invalid-header.yml: invalid: 1 error, 0 warnings\n"));
    assert_eq!(v.report.to_json()["valid"], false);
}

/// Every service of every sample renders and parses back through the
/// node's own `service::parse`.
#[test]
fn translated_services_render_and_parse_back() {
    for name in ["worker.yml", "etcd-member.yml", "users-and-files.yml"] {
        for s in validate(&sample(name)).services {
            let text = s.render().expect("renders");
            assert_eq!(service::parse(&text), s.check(), "{name}: {text}");
        }
    }
}

/// Every prefix of every sample (cut anywhere, as a truncated download
/// would be) is reported on, never a panic.
#[test]
fn truncated_samples_do_not_panic() {
    for name in [
        "worker.yml",
        "etcd-member.yml",
        "users-and-files.yml",
        "invalid-misplaced.yml",
        "invalid-header.yml",
    ] {
        let text = sample(name);
        for (i, _) in text.char_indices() {
            let v = validate(&text[..i]);
            assert!(
                v.report
                    .diagnostics
                    .iter()
                    .all(|d| d.line >= 1 && d.column >= 1)
            );
        }
    }
}
