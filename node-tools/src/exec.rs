//! `tandem-exec <service>`: the launcher PID 1 starts as a service's process
//! when the service needs more than a program started
//! ([`ServiceSpec::needs_launcher`](tandem_contract::service::ServiceSpec::needs_launcher)).
//! PID 1 has already put it in the service's cgroup, session, working
//! directory and standard input and output; the plan is in
//! [`PLAN_VAR`] ([`ExecPlan`]).
//!
//! In that process, at every start:
//!
//! 1. read the environment files (as root: they may be private);
//! 2. resolve the user and group from `/etc/passwd` and `/etc/group`;
//! 3. build the environment and expand the commands;
//! 4. drop to the user and group (`setgroups`, `setgid`, `setuid`), so
//!    that the commands before the program run as the service does, as
//!    systemd runs `ExecStartPre=` as `User=`;
//! 5. run each `exec_start_pre` command as a child and wait for it;
//! 6. exec the program: the service's main PID stays this process.
//!
//! A failure is one line on standard error (the service's log) naming the
//! service, the step and the cause; the exit status is 1, or the status of
//! the `exec_start_pre` command that failed (128 + the signal if a signal
//! ended it), so the service's restart policy applies.
//!
//! To stop a service ([`Action::Stop`]), PID 1 starts the launcher in the
//! service's cgroup with the same plan: steps 1 to 4, then each `exec_stop`
//! command in turn; the first failure not ignored skips the rest and is
//! the exit status, which PID 1 logs before it sends SIGTERM.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode};

use tandem_contract::accounts::{GROUP, PASSWD, Table};
use tandem_contract::service::env_file::{self, EnvFile};
use tandem_contract::service::{Action, Credentials, ExecPlan, ExtraCommand, PLAN_VAR};

/// A step that failed, with the exit status to end with.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {cause}")]
struct Failure {
    step: String,
    cause: String,
    status: u8,
}

impl Failure {
    fn new(step: impl Into<String>, cause: impl ToString) -> Failure {
        Failure {
            step: step.into(),
            cause: cause.to_string(),
            status: 1,
        }
    }
}

/// Runs the launcher with `args` (`argv[1..]`: the service's name, for
/// messages when the plan cannot be read); returns only on failure.
pub fn run(args: &[OsString]) -> ExitCode {
    let fallback = args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "?".into());
    let plan = match std::env::var(PLAN_VAR)
        .map_err(|e| Failure::new(format!("reading the launch plan ({PLAN_VAR})"), e))
        .and_then(|text| {
            ExecPlan::decode(&text).map_err(|e| Failure {
                step: "reading the launch plan".into(),
                cause: match e {
                    tandem_contract::service::plan::PlanError::Decode(m) => m,
                    other => other.to_string(),
                },
                status: 1,
            })
        }) {
        Ok(p) => p,
        Err(f) => return fail(&fallback, &f),
    };
    let result = match plan.action {
        Action::Start => launch(&plan).map(|never| match never {}),
        Action::Stop => stop(&plan),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => fail(&plan.service, &f),
    }
}

fn fail(service: &str, f: &Failure) -> ExitCode {
    eprintln!("tandem-exec: service {service}: {f}");
    ExitCode::from(f.status)
}

/// Steps 1 to 4: the service's environment, and its credentials taken.
fn become_service(plan: &ExecPlan) -> Result<BTreeMap<String, String>, Failure> {
    let files = read_env_files(plan)?;
    let creds = resolve(plan)?;
    let env = plan.environment(creds.as_ref().and_then(|c| c.home.as_deref()), &files);
    if let Some(c) = &creds {
        drop_to(c).map_err(|e| {
            Failure::new(
                format!("switching to uid {} gid {} ({:?})", c.uid, c.gid, c.groups),
                e,
            )
        })?;
    }
    Ok(env)
}

fn launch(plan: &ExecPlan) -> Result<Infallible, Failure> {
    let env = become_service(plan)?;
    let (pre, exec) = plan.commands(&env);
    for (i, cmd) in pre.iter().enumerate() {
        run_extra(&plan.service, "exec_start_pre", i + 1, cmd, &env)?;
    }
    let program = exec.first().cloned().unwrap_or_default();
    // Command's exec resets SIGPIPE (ignored by Rust's runtime) and the
    // signal mask before execve, as for the children above.
    let err = Command::new(&program)
        .args(exec.get(1..).unwrap_or_default())
        .env_clear()
        .envs(&env)
        .exec();
    Err(Failure::new(format!("starting {program}"), err))
}

/// The environment files, read in order; missing optional ones are empty.
/// Skipped lines are reported as warnings (systemd skips them too).
fn read_env_files(plan: &ExecPlan) -> Result<Vec<EnvFile>, Failure> {
    let mut out = Vec::new();
    for f in &plan.environment_files {
        let text = match std::fs::read_to_string(&f.path) {
            Ok(t) => t,
            Err(e) if f.optional && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Failure::new(
                    format!("reading environment file {}", f.path.display()),
                    e,
                ));
            }
        };
        let parsed = env_file::parse(&text);
        for (line, why) in &parsed.skipped {
            eprintln!(
                "tandem-exec: service {}: environment file {} line {line}: {why}; skipped",
                plan.service,
                f.path.display()
            );
        }
        out.push(parsed);
    }
    Ok(out)
}

/// The credentials to run as, from the node's account files.
fn resolve(plan: &ExecPlan) -> Result<Option<Credentials>, Failure> {
    if plan.user.is_none() && plan.group.is_none() {
        return Ok(None);
    }
    let read = |path: &str| match std::fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Failure::new(format!("reading {path}"), e)),
    };
    let passwd = Table::parse(&read(PASSWD)?);
    let group = Table::parse(&read(GROUP)?);
    let what = match (&plan.user, &plan.group) {
        (Some(u), Some(g)) => format!("resolving user {u} and group {g}"),
        (Some(u), None) => format!("resolving user {u}"),
        (None, Some(g)) => format!("resolving group {g}"),
        (None, None) => String::new(),
    };
    Credentials::resolve(plan.user.as_ref(), plan.group.as_ref(), &passwd, &group)
        .map_err(|e| Failure::new(what, e))
}

/// Drops to `c`: supplementary groups, group, then user (after `setuid`
/// the others are no longer allowed).
fn drop_to(c: &Credentials) -> std::io::Result<()> {
    let groups: Vec<libc::gid_t> = c.groups.clone();
    // SAFETY: plain system calls on valid pointers and lengths.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(c.gid) != 0
            || libc::setuid(c.uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs the `exec_stop` commands in order.
fn stop(plan: &ExecPlan) -> Result<(), Failure> {
    let env = become_service(plan)?;
    for (i, cmd) in plan.stop_commands(&env).iter().enumerate() {
        run_extra(&plan.service, "exec_stop", i + 1, cmd, &env)?;
    }
    Ok(())
}

/// Runs command number `n` of the list `key` and waits for it; its output
/// goes where the service's does.
fn run_extra(
    service: &str,
    key: &str,
    n: usize,
    cmd: &ExtraCommand,
    env: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    let program = cmd.exec.first().cloned().unwrap_or_default();
    let step = format!("{key} {n} ({program})");
    let status = Command::new(&program)
        .args(cmd.exec.get(1..).unwrap_or_default())
        .env_clear()
        .envs(env)
        .status();
    let failure = match status {
        Ok(s) if s.success() => return Ok(()),
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Failure {
                step,
                cause: format!("exited with status {code}"),
                status: u8::try_from(code).unwrap_or(1),
            },
            (None, Some(sig)) => Failure {
                step,
                cause: format!("killed by signal {sig}"),
                status: u8::try_from(128 + sig).unwrap_or(1),
            },
            (None, None) => Failure::new(step, "ended without a status"),
        },
        Err(e) => Failure::new(step, format!("cannot run: {e}")),
    };
    if cmd.ignore_failure {
        eprintln!("tandem-exec: service {service}: {failure} (ignored)");
        return Ok(());
    }
    Err(failure)
}
