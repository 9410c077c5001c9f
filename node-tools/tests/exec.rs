//! The launcher (`tandem-exec`) run for real: the node binary started as
//! PID 1 starts it, with a plan made from a service file.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tandem_contract::service::{self, ExecPlan, PLAN_VAR};

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tandem-exec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the launcher for service `web` defined by `toml`, in `dir`, as
/// PID 1 would; returns its output and PID.
fn launch(toml: &str, dir: &Path) -> (Output, u32) {
    let spec = service::parse(toml).expect("valid service file");
    assert!(spec.needs_launcher(), "{toml}");
    let plan = ExecPlan::new(
        "web",
        &spec,
        BTreeMap::from([
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), "/root".into()),
            ("TANDEM_SERVICE".into(), "web".into()),
        ]),
    );
    launch_with(&plan.encode().expect("encode"), dir)
}

fn launch_with(plan: &str, dir: &Path) -> (Output, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_tandem-node"))
        .arg0(service::EXEC_LAUNCHER)
        .arg("web")
        .env_clear()
        .env(PLAN_VAR, plan)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the node binary");
    let pid = child.id();
    (child.wait_with_output().expect("wait"), pid)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn pre_commands_env_files_expansion_and_the_same_pid() {
    let s = Scratch::new("full");
    std::fs::write(
        s.path("environment"),
        "# written by provisioning\nCOREOS_PRIVATE_IPV4=10.0.0.5\nOPTS=\"-a  -b\"\nFROM_ENV=file\n",
    )
    .expect("write env file");
    let toml = format!(
        r#"
        exec = ["/bin/sh", "-c", "echo main ${{COREOS_PRIVATE_IPV4}}:80 $$1 $$2 $$FROM_ENV $$ONLY_ENV $$TANDEM_SERVICE $$$$ >> out", "sh", "$OPTS"]
        exec_start_pre = [
            {{ exec = ["/nonexistent/docker", "rm", "-f", "web"], ignore_failure = true }},
            {{ exec = ["/bin/sh", "-c", "exit 7"], ignore_failure = true }},
            ["/bin/sh", "-c", "echo pre one >> out"],
            ["/bin/sh", "-c", "echo pre two ${{COREOS_PRIVATE_IPV4}} >> out; echo to-stdout"],
        ]
        environment_files = ["{}", "-{}"]
        expand_env = true
        [env]
        FROM_ENV = "env"
        ONLY_ENV = "kept"
        "#,
        s.path("environment").display(),
        s.path("missing").display(),
    );
    let (out, pid) = launch(&toml, &s.0);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.read("out"),
        format!("pre one\npre two 10.0.0.5\nmain 10.0.0.5:80 -a -b file kept web {pid}\n"),
        "pre commands in order, files override [env], $OPTS split, the program is the launcher's process"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-stdout\n");
    let err = stderr(&out);
    assert!(
        err.contains(
            "tandem-exec: service web: exec_start_pre 1 (/nonexistent/docker): cannot run:"
        ) && err.contains("(ignored)"),
        "{err}"
    );
    assert!(
        err.contains("exec_start_pre 2 (/bin/sh): exited with status 7 (ignored)"),
        "{err}"
    );
}

#[test]
fn a_failing_pre_command_fails_the_start_with_its_status() {
    let s = Scratch::new("fail");
    let (out, _) = launch(
        r#"
        exec = ["/bin/sh", "-c", "echo main >> out"]
        exec_start_pre = [["/bin/sh", "-c", "echo pre >> out"], ["/bin/sh", "-c", "exit 3"], ["/bin/sh", "-c", "echo never >> out"]]
        "#,
        &s.0,
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        s.read("out"),
        "pre\n",
        "neither the rest nor the program ran"
    );
    assert_eq!(
        stderr(&out),
        "tandem-exec: service web: exec_start_pre 2 (/bin/sh): exited with status 3\n"
    );
    let (out, _) = launch(
        "exec = [\"/bin/true\"]\nexec_start_pre = [[\"/nonexistent/prog\"]]\n",
        &s.0,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "tandem-exec: service web: exec_start_pre 1 (/nonexistent/prog): cannot run: "
        ),
        "{}",
        stderr(&out)
    );
    let (out, _) = launch(
        "exec = [\"/bin/true\"]\nexec_start_pre = [[\"/bin/sh\", \"-c\", \"kill -TERM $$$$\"]]\nexpand_env = true\n",
        &s.0,
    );
    assert_eq!(out.status.code(), Some(128 + 15), "{}", stderr(&out));
}

#[test]
fn stop_runs_the_stop_commands_with_the_main_pid_and_stops_at_a_failure() {
    let s = Scratch::new("stop");
    let spec = service::parse(
        r#"
        exec = ["/bin/sh", "-c", "echo main >> out"]
        exec_stop = [
            ["/bin/sh", "-c", "echo stop $MAINPID $X >> out"],
            { exec = ["/bin/sh", "-c", "exit 4"], ignore_failure = true },
            ["/bin/sh", "-c", "exit 5"],
            ["/bin/sh", "-c", "echo never >> out"],
        ]
        [env]
        X = "x"
        "#,
    )
    .expect("valid service file");
    let plan = ExecPlan::stop("web", &spec, BTreeMap::new(), 4242);
    let (out, _) = launch_with(&plan.encode().expect("encode"), &s.0);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(
        s.read("out"),
        "stop 4242 x\n",
        "the program does not run; the rest is skipped after the failure"
    );
    assert_eq!(
        stderr(&out),
        "tandem-exec: service web: exec_stop 2 (/bin/sh): exited with status 4 (ignored)\n\
         tandem-exec: service web: exec_stop 3 (/bin/sh): exited with status 5\n"
    );
}

#[test]
fn missing_files_users_and_programs_are_one_line_each() {
    let s = Scratch::new("errors");
    let cases = [
        (
            format!(
                "exec = [\"/bin/true\"]\nenvironment_files = [\"{}\"]\n",
                s.path("absent").display()
            ),
            format!(
                "tandem-exec: service web: reading environment file {}: ",
                s.path("absent").display()
            ),
        ),
        (
            "exec = [\"/bin/true\"]\nuser = \"no-such-user-here\"\n".to_string(),
            "tandem-exec: service web: resolving user no-such-user-here: user \"no-such-user-here\" is not in /etc/passwd".to_string(),
        ),
        (
            "exec = [\"/bin/true\"]\ngroup = \"no-such-group\"\n".to_string(),
            "tandem-exec: service web: resolving group no-such-group: group \"no-such-group\" is not in /etc/group".to_string(),
        ),
        (
            "exec = [\"/nonexistent/prog\"]\nexpand_env = true\n".to_string(),
            "tandem-exec: service web: starting /nonexistent/prog: ".to_string(),
        ),
    ];
    for (toml, want) in cases {
        let (out, _) = launch(&toml, &s.0);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{toml}: {err}");
        assert!(err.starts_with(&want), "{toml}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (out, _) = launch_with("{not json", &s.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("tandem-exec: service web: reading the launch plan: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn skipped_env_file_lines_are_warnings() {
    let s = Scratch::new("warn");
    std::fs::write(s.path("env"), "GOOD=1\nBAD-NAME=2\n").expect("write");
    let (out, _) = launch(
        &format!(
            "exec = [\"/bin/sh\", \"-c\", \"echo $GOOD > out\"]\nenvironment_files = [\"{}\"]\n",
            s.path("env").display()
        ),
        &s.0,
    );
    assert!(out.status.success());
    assert_eq!(s.read("out"), "1\n");
    assert!(
        stderr(&out).contains("line 2: \"BAD-NAME\" is not a variable name"),
        "{}",
        stderr(&out)
    );
}

/// Switching users needs root; skipped otherwise.
#[test]
fn runs_as_the_user_named_with_its_groups_and_home() {
    // SAFETY: no arguments, no memory.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let Some(nobody) = passwd.lines().find(|l| l.starts_with("nobody:")) else {
        return;
    };
    let f: Vec<&str> = nobody.split(':').collect();
    let (uid, gid, home) = (f[2], f[3], f[5]);
    let s = Scratch::new("user");
    // The scratch directory must be writable by nobody.
    std::fs::set_permissions(&s.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let (out, _) = launch(
        "exec = [\"/bin/sh\", \"-c\", \"echo $(id -u) $(id -g) $HOME >> out\"]\n\
         exec_start_pre = [[\"/bin/sh\", \"-c\", \"id -u >> out\"]]\nuser = \"nobody\"\n",
        &s.0,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.read("out"),
        format!("{uid}\n{uid} {gid} {home}\n"),
        "the pre command runs as the user too"
    );
}
