//! The service file format's tests: reading, checking, writing.

use super::*;

#[test]
fn parses_a_full_file() {
    let spec = parse(
        r#"
        description = "update agent"
        exec = ["/usr/lib/tandem/tandem-agent", "--config", "/etc/tandem/agent.toml"]
        restart = "always"
        restart_delay_ms = 1000
        stop_timeout_secs = 30
        stdio = "console"
        after_network = true
        working_directory = "/var/lib/agent"
        user = 1000
        group = 1000
        [env]
        RUST_LOG = "debug"
        "#,
    )
    .expect("valid");
    assert_eq!(spec.exec.len(), 3);
    assert_eq!(spec.restart, Restart::Always);
    assert_eq!(spec.restart_delay_ms, 1000);
    assert_eq!(spec.stop_timeout_secs, 30);
    assert_eq!(spec.stdio, StdioMode::Console);
    assert_eq!(spec.env.get("RUST_LOG").map(String::as_str), Some("debug"));
    assert_eq!(spec.user, Some(NameOrId::Id(1000)));
    assert!(spec.enabled);
    assert!(spec.after_network);
}

#[test]
fn defaults() {
    let spec = parse("exec = [\"/usr/bin/sleep\", \"1\"]").expect("valid");
    assert_eq!(spec.restart, Restart::OnFailure);
    assert_eq!(spec.stdio, StdioMode::Log);
    assert_eq!(spec.restart_delay_ms, 500);
    assert_eq!(spec.stop_timeout_secs, 10);
    assert!(spec.enabled);
    assert!(!spec.after_network);
}

#[test]
fn refuses_bad_files() {
    assert_eq!(parse("exec = []"), Err(ServiceFileError::Exec));
    assert_eq!(parse("exec = [\"sleep\"]"), Err(ServiceFileError::Exec));
    assert!(matches!(
        parse("exec = [\"/a\"]\nrestrat = \"always\""),
        Err(ServiceFileError::Syntax(_))
    ));
    assert!(matches!(
        parse("exec = [\"/a\"]\nrestart = \"sometimes\""),
        Err(ServiceFileError::Syntax(_))
    ));
    assert!(matches!(
        parse("exec = \"/a\""),
        Err(ServiceFileError::Syntax(_))
    ));
    assert!(matches!(
        parse("description = \"no exec\""),
        Err(ServiceFileError::Syntax(_))
    ));
}

#[test]
fn oneshot_order_and_limits() {
    let spec = parse(
        r#"
        type = "oneshot"
        exec = ["/usr/bin/ssh-keygen", "-A"]
        after = ["network-setup", "getty@ttyS1", "network-setup"]
        memory_max = "512M"
        cpu_weight = 50
        tasks_max = 64
        "#,
    )
    .expect("valid");
    assert_eq!(spec.kind, ServiceType::Oneshot);
    assert_eq!(spec.restart, Restart::Never, "a oneshot is not restarted");
    assert_eq!(spec.after, ["network-setup", "getty@ttyS1"], "once each");
    assert_eq!(
        spec.limits,
        Limits {
            memory_max: Some(512 << 20),
            cpu_weight: Some(50),
            tasks_max: Some(64),
        }
    );
    assert_eq!(
        spec.limits.files(),
        [
            ("memory.max", 512 << 20),
            ("cpu.weight", 50),
            ("pids.max", 64)
        ]
    );
    let retried =
        parse("type = \"oneshot\"\nexec = [\"/a\"]\nrestart = \"on-failure\"").expect("valid");
    assert_eq!(retried.restart, Restart::OnFailure, "unless it says so");
    let simple = parse("exec = [\"/a\"]\nmemory_max = 1048576").expect("valid");
    assert_eq!(simple.kind, ServiceType::Simple);
    assert_eq!(simple.limits.memory_max, Some(1 << 20), "bytes as a number");
    assert!(simple.after.is_empty());
    assert_eq!(simple.limits.files(), [("memory.max", 1 << 20)]);
    assert!(Limits::default().files().is_empty());
}

#[test]
fn sizes() {
    for (text, bytes) in [
        ("1", Some(1)),
        ("4096", Some(4096)),
        ("64K", Some(64 << 10)),
        ("512M", Some(512 << 20)),
        ("2G", Some(2 << 30)),
        ("0", None),
        ("0M", None),
        ("", None),
        ("M", None),
        ("512m", None),
        ("1.5G", None),
        ("512 M", None),
        ("-1", None),
        ("+5", None),
        ("1T", None),
        ("99999999999G", None),
        ("18446744073709551616", None),
    ] {
        assert_eq!(parse_size(text), bytes, "{text:?}");
    }
}

#[test]
fn refuses_bad_limits_and_order() {
    let with = |line: &str| parse(&format!("exec = [\"/a\"]\n{line}"));
    assert_eq!(
        with("memory_max = \"lots\""),
        Err(ServiceFileError::MemoryMax("\"lots\"".into()))
    );
    assert_eq!(
        with("memory_max = 0"),
        Err(ServiceFileError::MemoryMax("0".into()))
    );
    assert_eq!(
        with("memory_max = -5"),
        Err(ServiceFileError::MemoryMax("-5".into()))
    );
    assert_eq!(
        with("memory_max = true"),
        Err(ServiceFileError::MemoryMax("true".into()))
    );
    assert_eq!(with("cpu_weight = 0"), Err(ServiceFileError::CpuWeight(0)));
    assert_eq!(
        with("cpu_weight = 10001"),
        Err(ServiceFileError::CpuWeight(10001))
    );
    assert!(with("cpu_weight = 1").is_ok() && with("cpu_weight = 10000").is_ok());
    assert_eq!(with("tasks_max = 0"), Err(ServiceFileError::TasksMax(0)));
    assert_eq!(
        with("after = [\"a/b\"]"),
        Err(ServiceFileError::After("a/b".into()))
    );
    assert!(matches!(
        with("type = \"forking\""),
        Err(ServiceFileError::Syntax(m)) if m.contains("simple, oneshot")
    ));
    assert!(matches!(
        with("cpu_weight = \"high\""),
        Err(ServiceFileError::Syntax(_))
    ));
    let text = with("memory_max = \"1.5G\"").expect_err("bad").to_string();
    assert!(
        text.contains("memory_max = \"1.5G\" is not a size"),
        "{text}"
    );
    assert!(text.contains("\"512M\""), "{text}");
}

#[test]
fn names() {
    for ok in ["sshd", "getty@ttyS1", "my_service-2.v1"] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in ["", ".hidden", "a b", "a/b", &"x".repeat(65)] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn new_keys() {
    let spec = parse(
        r#"
        exec = ["/usr/bin/docker", "run", "--name", "web", "-p", "${COREOS_PRIVATE_IPV4}:80:80", "nginx"]
        exec_start_pre = [
            { exec = ["/usr/bin/docker", "rm", "-f", "web"], ignore_failure = true },
            ["/usr/bin/docker", "pull", "nginx"],
        ]
        environment_files = ["/etc/environment", "-/etc/default/web"]
        expand_env = true
        user = "core"
        group = "docker"
        "#,
    )
    .expect("valid");
    assert_eq!(
        spec.exec_start_pre,
        [
            ExtraCommand {
                exec: vec![
                    "/usr/bin/docker".into(),
                    "rm".into(),
                    "-f".into(),
                    "web".into()
                ],
                ignore_failure: true
            },
            ExtraCommand {
                exec: vec!["/usr/bin/docker".into(), "pull".into(), "nginx".into()],
                ignore_failure: false
            },
        ]
    );
    assert_eq!(
        spec.environment_files,
        [
            EnvironmentFile {
                path: "/etc/environment".into(),
                optional: false
            },
            EnvironmentFile {
                path: "/etc/default/web".into(),
                optional: true
            },
        ]
    );
    assert!(spec.expand_env);
    assert_eq!(spec.user, Some(NameOrId::Name("core".into())));
    assert_eq!(spec.group, Some(NameOrId::Name("docker".into())));
    assert!(spec.needs_launcher());
}

#[test]
fn which_services_need_the_launcher() {
    let needs = |extra: &str| {
        parse(&format!("exec = [\"/a\"]\n{extra}"))
            .expect("valid")
            .needs_launcher()
    };
    assert!(!needs(""));
    assert!(!needs("user = 1000\ngroup = 1000"), "numeric: PID 1");
    assert!(!needs("user = \"1000\"\ngroup = \"0\""), "digits are ids");
    assert!(!needs("expand_env = false\n[env]\nA = \"$B\""));
    assert!(needs("user = \"core\""));
    assert!(needs("group = \"docker\""));
    assert!(needs("expand_env = true"));
    assert!(needs("environment_files = [\"-/etc/environment\"]"));
    assert!(needs("exec_start_pre = [[\"/b\"]]"));
    assert!(
        !needs("exec_stop = [[\"/b\"]]"),
        "stop commands are launched on their own"
    );
}

#[test]
fn refuses_bad_new_keys() {
    let with = |line: &str| parse(&format!("exec = [\"/a\"]\n{line}"));
    assert_eq!(
        with("exec_start_pre = [[\"/b\"], []]"),
        Err(ServiceFileError::ExecStartPre(2))
    );
    assert_eq!(
        with("exec_start_pre = [{ exec = [\"b\"] }]"),
        Err(ServiceFileError::ExecStartPre(1))
    );
    assert_eq!(
        with("exec_stop = [[\"/b\"], [\"c\"]]"),
        Err(ServiceFileError::ExecStop(2))
    );
    let spec = with("exec_stop = [[\"/b\", \"x\"], { exec = [\"/c\"], ignore_failure = true }]")
        .expect("valid");
    assert_eq!(spec.exec_stop.len(), 2);
    assert!(spec.exec_stop[1].ignore_failure);
    assert_eq!(parse(&spec.render().expect("render")), Ok(spec));
    for bad in [
        "exec_start_pre = [\"/b\"]",
        "exec_start_pre = [{ exec = [\"/b\"], ignore = true }]",
        "exec_start_pre = [{ ignore_failure = true }]",
        "exec_start_pre = [{ exec = [\"/b\"], ignore_failure = \"yes\" }]",
        "exec_start_pre = [[1]]",
        "exec_start_pre = [\"/b\", \"c\"]",
        "user = -1",
        "user = 4294967295",
        "user = \"99999999999\"",
        "user = \"Bad Name\"",
        "user = \"\"",
        "group = true",
        "group = \"a:b\"",
        "expand_env = \"yes\"",
        "environment_files = \"/etc/environment\"",
    ] {
        assert!(
            matches!(with(bad), Err(ServiceFileError::Syntax(_))),
            "{bad}: {:?}",
            with(bad)
        );
    }
    let text = with("user = \"Bad Name\"").expect_err("bad").to_string();
    assert!(
        text.contains("\"Bad Name\" is not a user or group name"),
        "{text}"
    );
    let text = with("exec_start_pre = [\"/b\"]")
        .expect_err("bad")
        .to_string();
    assert!(text.contains("a command: an array"), "{text}");
    for bad in ["etc/environment", "-etc/environment", "", "-", "--/x"] {
        assert_eq!(
            with(&format!("environment_files = [\"{bad}\"]")),
            Err(ServiceFileError::EnvironmentFile(bad.into())),
            "{bad}"
        );
    }
    assert_eq!(
        with("[env]\n\"A-B\" = \"1\""),
        Err(ServiceFileError::EnvName("A-B".into()))
    );
    assert_eq!(
        with("[env]\n1A = \"1\""),
        Err(ServiceFileError::EnvName("1A".into()))
    );
}

fn round_trip(text: &str) {
    let spec = parse(text).expect("valid");
    let written = spec.render().expect("render");
    assert_eq!(parse(&written), Ok(spec.clone()), "{text}\n---\n{written}");
    let file = ServiceFile::from_toml(&written).expect("read back");
    assert_eq!(file, spec.to_file(), "{written}");
    assert_eq!(file.render().as_deref(), Ok(written.as_str()), "stable");
}

#[test]
fn writes_what_it_reads() {
    round_trip("exec = [\"/a\"]");
    round_trip(
        r#"
        description = "everything \"quoted\" and unicode é"
        type = "oneshot"
        exec = ["/usr/bin/docker", "run", "${X}", "$$", "a b"]
        exec_start_pre = [["/b", "1"], { exec = ["/c"], ignore_failure = true }, ["/d"]]
        restart = "always"
        restart_delay_ms = 1000
        stop_timeout_secs = 0
        enabled = false
        stdio = "tty"
        after_network = true
        after = ["x", "y@z"]
        memory_max = 1000
        cpu_weight = 10000
        tasks_max = 1
        environment_files = ["/etc/environment", "-/etc/x y"]
        expand_env = true
        working_directory = "/var/lib/web"
        user = "core"
        group = 233
        [env]
        A = "1"
        B = "line\nbreak"
        "#,
    );
    round_trip("type = \"oneshot\"\nexec = [\"/a\"]\nrestart = \"on-failure\"");
    round_trip("exec = [\"/a\"]\nrestart = \"never\"\nuser = 0\ngroup = \"wheel\"");
    for size in [
        "1",
        "1023",
        "1024",
        "1025",
        "512M",
        "3G",
        "18446744073709551615",
    ] {
        round_trip(&format!("exec = [\"/a\"]\nmemory_max = \"{size}\""));
    }
}

#[test]
fn sizes_are_written_in_the_largest_unit() {
    for (bytes, text) in [
        (1u64, "1"),
        (1024, "\"1K\""),
        (3 << 20, "\"3M\""),
        (2 << 30, "\"2G\""),
        (1536 << 20, "\"1536M\""),
        (u64::MAX, "\"18446744073709551615\""),
    ] {
        assert_eq!(render_size(bytes).to_string(), text);
        assert_eq!(
            parse(&format!("exec = [\"/a\"]\nmemory_max = {text}"))
                .expect("valid")
                .limits
                .memory_max,
            Some(bytes)
        );
    }
}

#[test]
fn writers_cannot_write_invalid_files() {
    let file = ServiceFile {
        exec: vec!["relative".into()],
        ..ServiceFile::default()
    };
    assert_eq!(file.render(), Err(ServiceFileError::Exec));
    let file = ServiceFile {
        exec: vec!["/a".into()],
        cpu_weight: Some(0),
        ..ServiceFile::default()
    };
    assert_eq!(file.render(), Err(ServiceFileError::CpuWeight(0)));
}

#[test]
fn image_service_text() {
    let file = ServiceFile {
        exec: vec!["/usr/lib/tandem/tandem-agent".into()],
        restart: Some(Restart::Always),
        stdio: Some(StdioMode::Log),
        after_network: Some(true),
        ..ServiceFile::default()
    };
    assert_eq!(
        file.render().expect("valid"),
        "exec = [\"/usr/lib/tandem/tandem-agent\"]\nrestart = \"always\"\nstdio = \"log\"\nafter_network = true\n"
    );
}
