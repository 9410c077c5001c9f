//! `tandem config validate`: exit codes and both renderings, on the shared samples.

use std::process::{Command, Stdio};

fn sample(name: &str) -> String {
    format!(
        "{}/../cloud-config/tests/samples/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn tandem(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runs tandem");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn valid_invalid_unreadable() {
    let (code, out) = tandem(&["config", "validate", &sample("worker.yml")]);
    assert_eq!(code, Some(0));
    assert!(
        out.ends_with("worker.yml: valid: 0 errors, 0 warnings\n"),
        "{out}"
    );
    let (code, out) = tandem(&["config", "validate", &sample("invalid-misplaced.yml")]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("invalid-misplaced.yml:4:1: error: units: `units` belongs under `coreos:`"),
        "{out}"
    );
    let (code, _) = tandem(&["config", "validate", "/nonexistent/user-data"]);
    assert_eq!(code, Some(2));
    let (code, _) = tandem(&["config", "validate"]);
    assert_eq!(code, Some(2));
}

#[test]
fn json() {
    let (code, out) = tandem(&["config", "validate", "--json", &sample("etcd-member.yml")]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["valid"], true);
    assert_eq!(v["errors"], 0);
    assert_eq!(v["warnings"], 5);
    assert_eq!(v["diagnostics"][0]["path"], "coreos.etcd2");
    assert_eq!(v["diagnostics"][0]["line"], 5);
}
