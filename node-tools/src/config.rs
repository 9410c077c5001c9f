//! `tandemctl config validate FILE [--json]`: the node's own check of a
//! cloud-config, with the same parser and words as `tandem config validate`
//! on the build host.

/// Usage of `tandemctl config`.
pub const USAGE: &str = "usage: tandemctl config validate <file|-> [--json]
exit status: 0 valid (warnings allowed), 1 invalid, 2 the file cannot be read or usage error";

/// Runs `tandemctl config …`; returns the exit status. Usage errors and an
/// unreadable file are exit status 2 (reported here, not as an error).
pub fn run(args: &[&str]) -> u8 {
    let (file, json) = match args {
        ["validate", "--json", file] | ["validate", file, "--json"] => (*file, true),
        ["validate", file] if *file != "--json" => (*file, false),
        _ => {
            eprintln!("{USAGE}");
            return 2;
        }
    };
    cloud_config::command::validate_file("tandemctl", file, json)
}

#[cfg(test)]
mod tests {
    use super::*;

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
