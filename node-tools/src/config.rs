//! `tandemctl config validate FILE [--json]`: the node's own check of a
//! cloud-config, with the same parser and words as `tandem config validate`
//! on the build host. `tandemctl config show [--json]`: what this boot's
//! provisioning step did, and the user-data it applied.

use std::path::Path;

use tandem_contract::provision::{Outcome, RESULT_FILE, USER_DATA_COPY};

/// Usage of `tandemctl config`.
pub const USAGE: &str = "usage: tandemctl config validate <file|-> [--json]
       tandemctl config show [--json]
exit status: validate: 0 valid (warnings allowed), 1 invalid, 2 the file cannot be read or usage error;
             show: 0 applied or no user-data, 1 failed or partly applied, 2 no outcome on record";

/// Runs `tandemctl config …`; returns the exit status. Usage errors and an
/// unreadable file are exit status 2 (reported here, not as an error).
pub fn run(args: &[&str]) -> u8 {
    let (file, json) = match args {
        ["show"] => return show(Path::new(RESULT_FILE), Path::new(USER_DATA_COPY), false),
        ["show", "--json"] => return show(Path::new(RESULT_FILE), Path::new(USER_DATA_COPY), true),
        ["validate", "--json", file] | ["validate", file, "--json"] => (*file, true),
        ["validate", file] if *file != "--json" => (*file, false),
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    cloud_config::command::validate_file("tandemctl", file, json)
}

/// Prints the outcome at `result` and the user-data copy at `copy`.
fn show(result: &Path, copy: &Path, json: bool) -> u8 {
    let outcome: Outcome = match std::fs::read(result)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "tandemctl: {}: {e}: no provisioning outcome on record for this boot (an image without tandem-provision, or before it ran)",
                result.display()
            );
            return 2;
        }
    };
    let user_data = std::fs::read_to_string(copy).ok();
    print!("{}", render_show(&outcome, user_data.as_deref(), json));
    match outcome.state {
        tandem_contract::provision::ProvisionState::None
        | tandem_contract::provision::ProvisionState::Applied => 0,
        _ => 1,
    }
}

fn render_show(o: &Outcome, user_data: Option<&str>, json: bool) -> String {
    if json {
        let mut v = serde_json::to_value(o).unwrap_or_default();
        v["user_data"] = user_data.map_or(serde_json::Value::Null, |t| t.into());
        return format!("{v}\n");
    }
    let mut out = format!("config:     {}\n", o.summary());
    if let Some(sha) = &o.sha256 {
        out.push_str(&format!("sha256:     {sha}\n"));
    }
    out.push_str(&format!(
        "took:       {:.3} s\n",
        o.finished_us.saturating_sub(o.started_us) as f64 / 1e6
    ));
    for t in &o.tried {
        out.push_str(&format!("tried:      {t}\n"));
    }
    for a in &o.applied {
        out.push_str(&format!("applied:    {a}\n"));
    }
    for p in &o.problems {
        out.push_str(&format!(
            "{:<11} {}: {}\n",
            format!("{}:", p.severity),
            p.at,
            p.message
        ));
    }
    if let Some(text) = user_data {
        out.push_str("user-data (as applied):\n");
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_renders_the_outcome() {
        use tandem_contract::provision::{Problem, ProvisionState};
        let o = Outcome {
            state: ProvisionState::Partial,
            datasource: Some("fw_cfg".into()),
            tried: vec!["fw_cfg: found".into()],
            applied: vec!["user core added".into()],
            problems: vec![Problem {
                severity: tandem_contract::provision::Severity::Error,
                at: "user-data:4:5".into(),
                message: "owner nobody2: no such user".into(),
            }],
            started_us: 1_000_000,
            finished_us: 1_250_000,
            ..Outcome::default()
        };
        let text = render_show(&o, Some("#cloud-config\n"), false);
        assert!(
            text.starts_with("config:     partly applied from fw_cfg: 1 errors\n"),
            "{text}"
        );
        assert!(text.contains("took:       0.250 s\n"), "{text}");
        assert!(
            text.contains("error:      user-data:4:5: owner nobody2: no such user\n"),
            "{text}"
        );
        assert!(
            text.ends_with("user-data (as applied):\n#cloud-config\n"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render_show(&o, None, true)).expect("json");
        assert_eq!(json["state"], "partial");
        assert!(json["user_data"].is_null());
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(show(&dir.path().join("none.json"), dir.path(), false), 2);
    }

    #[test]
    fn usage_and_unreadable_are_2() {
        assert_eq!(run(&[]), 2);
        assert_eq!(run(&["validate"]), 2);
        assert_eq!(run(&["validate", "--json"]), 2);
        assert_eq!(run(&["check", "x"]), 2);
        assert_eq!(run(&["validate", "/nonexistent/user-data"]), 2);
    }

    #[test]
    fn samples_give_0_and_1() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../cloud-config/tests/samples");
        assert_eq!(run(&["validate", &format!("{dir}/worker.yml")]), 0);
        assert_eq!(
            run(&["validate", &format!("{dir}/etcd-member.yml"), "--json"]),
            0
        );
        assert_eq!(
            run(&["validate", &format!("{dir}/invalid-misplaced.yml")]),
            1
        );
        assert_eq!(
            run(&["validate", "--json", &format!("{dir}/invalid-header.yml")]),
            1
        );
    }
}
