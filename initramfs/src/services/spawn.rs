//! Starting a service's process: environment, working directory, standard
//! input and output, credentials; or, for a service that needs more, the
//! launcher ([`EXEC_LAUNCHER`]) with the service's plan.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_contract::service::{EXEC_LAUNCHER, ExecPlan, NameOrId, PLAN_VAR};

use super::{DEFAULT_PATH, LOG_DIR, ServiceDef, StdioMode};
use crate::error::Error;
use crate::sys::{ChildIo, SpawnRequest};

/// A log file is moved to `<name>.log.1` when a service starts and it is larger.
const LOG_ROTATE_BYTES: u64 = 1 << 20;

/// The console's terminal device: the last entry of
/// /sys/class/tty/console/active (the one /dev/console writes to), so that
/// job control and Ctrl-C work; /dev/console if that cannot be found.
pub fn console_tty() -> PathBuf {
    std::fs::read_to_string("/sys/class/tty/console/active")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .last()
                .map(|t| PathBuf::from("/dev").join(t))
        })
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/dev/console"))
}

fn open_log(name: &str) -> std::io::Result<File> {
    std::fs::create_dir_all(LOG_DIR)?;
    let path = Path::new(LOG_DIR).join(format!("{name}.log"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(&path, path.with_extension("log.1"));
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// What to exec for a service: a program, its arguments and environment,
/// and the numeric credentials PID 1 sets itself.
struct Launch {
    program: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    user: Option<u32>,
    group: Option<u32>,
}

impl Launch {
    /// The launcher ([`EXEC_LAUNCHER`]) with `plan`: it reads files,
    /// resolves names and takes the credentials in the service's process.
    fn launcher(name: &str, plan: &ExecPlan) -> Result<Launch, Error> {
        let plan = plan.encode().map_err(|err| Error::LaunchPlan {
            name: name.to_string(),
            err,
        })?;
        Ok(Launch {
            program: EXEC_LAUNCHER.to_string(),
            argv: vec![EXEC_LAUNCHER.to_string(), name.to_string()],
            env: vec![(PLAN_VAR.to_string(), plan)],
            user: None,
            group: None,
        })
    }
}

/// PID 1's environment for service `def`, which its `[env]` overrides.
fn default_env(def: &ServiceDef) -> BTreeMap<String, String> {
    let mut defaults = BTreeMap::from([
        ("PATH".to_string(), DEFAULT_PATH.to_string()),
        ("HOME".to_string(), "/root".to_string()),
        ("TANDEM_SERVICE".to_string(), def.name.clone()),
    ]);
    if def.spec.stdio == StdioMode::Tty {
        defaults.insert("TERM".into(), "vt100".into());
    }
    defaults
}

/// Starts `def`'s program in a session of its own (the console terminal is
/// `console` for `stdio = "tty"`) and, with `cgroup`, in that cgroup, which
/// it joins before exec so that nothing it starts escapes; returns its PID.
/// The child is reaped by PID 1's `waitpid(-1)` loop.
pub fn spawn(def: &ServiceDef, console: &Path, cgroup: Option<&Path>) -> Result<i32, Error> {
    let spec = &def.spec;
    // A service that needs more than a program started (commands before
    // it, environment files, expansion, names to resolve) is started
    // through the launcher, which does that in the service's process and
    // then execs the program: PID 1 neither reads those files nor waits.
    let launch = if spec.needs_launcher() {
        Launch::launcher(&def.name, &ExecPlan::new(&def.name, spec, default_env(def)))?
    } else {
        let mut env = default_env(def);
        env.extend(spec.env.clone());
        Launch {
            program: spec.exec.first().cloned().unwrap_or_default(),
            argv: spec.exec.clone(),
            env: env.into_iter().collect(),
            // Without the launcher they are numeric (`needs_launcher`).
            user: spec.user.as_ref().and_then(NameOrId::id),
            group: spec.group.as_ref().and_then(NameOrId::id),
        }
    };
    start(def, &launch, spec.stdio, console, cgroup)
}

/// Starts the launcher that runs `def`'s `exec_stop` commands for its main
/// process `main_pid`, as [`spawn`] starts the service (its own session, in
/// `cgroup`); returns its PID. A `tty` service's stop commands write to
/// the console: the terminal is the service's.
pub fn spawn_stop(
    def: &ServiceDef,
    main_pid: i32,
    console: &Path,
    cgroup: Option<&Path>,
) -> Result<i32, Error> {
    let plan = ExecPlan::stop(&def.name, &def.spec, default_env(def), main_pid);
    let stdio = match def.spec.stdio {
        StdioMode::Tty => StdioMode::Console,
        other => other,
    };
    start(
        def,
        &Launch::launcher(&def.name, &plan)?,
        stdio,
        console,
        cgroup,
    )
}

/// Starts `launch` for service `def` with standard input and output
/// `stdio`.
fn start(
    def: &ServiceDef,
    launch: &Launch,
    stdio: StdioMode,
    console: &Path,
    cgroup: Option<&Path>,
) -> Result<i32, Error> {
    let spec = &def.spec;
    let tty = stdio == StdioMode::Tty;
    let Launch {
        program,
        argv,
        env,
        user,
        group,
    } = launch;
    let (user, group) = (*user, *group);
    let fail = |err| Error::Spawn {
        name: def.name.clone(),
        program: program.clone(),
        err,
    };
    let cwd = spec
        .working_directory
        .as_deref()
        .filter(|d| d.is_dir())
        .unwrap_or(Path::new("/"));
    let open = |path: &Path, write: bool| {
        OpenOptions::new()
            .read(!write)
            .write(write)
            .open(path)
            .map_err(fail)
    };
    let null = Path::new("/dev/null");
    let files: Option<[File; 3]> = match stdio {
        StdioMode::Log => {
            let log = open_log(&def.name).map_err(fail)?;
            Some([open(null, false)?, log.try_clone().map_err(fail)?, log])
        }
        StdioMode::Console => {
            let out = open(Path::new("/dev/console"), true)?;
            Some([open(null, false)?, out.try_clone().map_err(fail)?, out])
        }
        StdioMode::Null => Some([open(null, false)?, open(null, true)?, open(null, true)?]),
        StdioMode::Tty => None,
    };
    // Joining the cgroup is a write(2) in the child before exec: opened
    // here (close-on-exec), written there.
    let procs = cgroup
        .map(|dir| {
            crate::cgroup::open_procs(dir).map_err(|err| Error::Cgroup {
                what: "joining",
                path: dir.join(crate::cgroup::file::PROCS),
                err,
            })
        })
        .transpose()?;
    let procs_fd = procs.as_ref().map(|f| f.as_raw_fd());
    if user.is_none() && group.is_none() && procs_fd.is_none() {
        let stdio = match &files {
            Some(f) => ChildIo::Fds(f.each_ref().map(|f| f.as_raw_fd())),
            None => ChildIo::Terminal(console),
        };
        let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return crate::sys::spawn(&SpawnRequest {
            program,
            argv,
            env: &env,
            cwd,
            stdio,
        })
        .map_err(fail);
    }
    // Other credentials and joining a cgroup need code between fork and
    // exec, which posix_spawn cannot run.
    let [stdin, stdout, stderr] = match files {
        Some(f) => f,
        None => {
            let t = OpenOptions::new()
                .read(true)
                .write(true)
                .open(console)
                .map_err(fail)?;
            [
                t.try_clone().map_err(fail)?,
                t.try_clone().map_err(fail)?,
                t,
            ]
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(argv.get(1..).unwrap_or_default())
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir(cwd)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    if let Some(g) = group {
        cmd.gid(g);
    }
    if let Some(u) = user {
        cmd.uid(u);
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // First, so that whatever the rest does is the service's.
            if let Some(fd) = procs_fd
                && libc::write(fd, b"0".as_ptr().cast(), 1) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // PID 1 blocks the signals it reads through signalfd; children
            // must start with a clean mask.
            crate::sys::unblock_all_signals()?;
            // Own session and process group, so stop can signal the group.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if tty && libc::ioctl(0, libc::TIOCSCTTY as _, 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The child is reaped by the init's waitpid(-1) loop, never via Child.
    let child = cmd.spawn().map_err(fail)?;
    drop(procs);
    Ok(child.id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::parse;

    #[test]
    fn spawned_service_gets_its_environment_and_directory() {
        let dir = std::env::temp_dir().join(format!("tandem-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let def = ServiceDef {
            name: "probe".into(),
            source: "test".into(),
            spec: parse(&format!(
                "exec = [\"/bin/sh\", \"-c\", \"echo $PATH $TANDEM_SERVICE $X $(pwd) > out\"]\n\
                 stdio = \"null\"\nworking_directory = \"{}\"\n\
                 [env]\nPATH = \"/bin:/usr/bin\"\nX = \"y\"\n",
                dir.display()
            ))
            .expect("valid"),
        };
        let pid = spawn(&def, Path::new("/dev/null"), None).expect("spawn");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let out = std::fs::read_to_string(dir.join("out")).expect("output");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            out.trim(),
            format!("/bin:/usr/bin probe y {}", dir.display())
        );
    }

    #[test]
    fn services_that_need_more_start_the_launcher() {
        if Path::new(EXEC_LAUNCHER).exists() {
            return;
        }
        let def = ServiceDef {
            name: "web".into(),
            source: "test".into(),
            spec: parse(
                "exec = [\"/bin/true\"]\nexec_start_pre = [[\"/bin/true\"]]\nstdio = \"null\"\n",
            )
            .expect("valid"),
        };
        match spawn(&def, Path::new("/dev/null"), None) {
            Err(Error::Spawn { name, program, .. }) => {
                assert_eq!((name.as_str(), program.as_str()), ("web", EXEC_LAUNCHER));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_service_joins_its_cgroup_before_exec() {
        let Some(cg) = crate::cgroup::tests::scratch_cgroup("spawn") else {
            return;
        };
        let out = std::env::temp_dir().join(format!("tandem-cg-spawn-{}", std::process::id()));
        // The program and the child it starts both report their cgroup.
        let def = ServiceDef {
            name: "probe".into(),
            source: "test".into(),
            spec: parse(&format!(
                "exec = [\"/bin/sh\", \"-c\", \"cat /proc/self/cgroup > {0}; sh -c 'cat /proc/self/cgroup' >> {0}\"]\n\
                 stdio = \"null\"\n",
                out.display()
            ))
            .expect("valid"),
        };
        let pid = spawn(&def, Path::new("/dev/null"), Some(&cg)).expect("spawn");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        let missing = spawn(&def, Path::new("/dev/null"), Some(&cg.join("gone")))
            .expect_err("no such cgroup");
        crate::cgroup::tests::wait_until("the cgroup empties", || {
            !crate::cgroup::populated(&cg).unwrap_or(true)
        });
        crate::cgroup::remove(&cg).expect("removed");
        let name = cg.file_name().and_then(|n| n.to_str()).expect("name");
        let v2: Vec<&str> = text.lines().filter(|l| l.starts_with("0::")).collect();
        assert_eq!(v2.len(), 2, "{text}");
        assert!(v2.iter().all(|l| l.ends_with(name)), "{text}");
        assert!(
            missing.to_string().starts_with("cgroup: joining "),
            "{missing}"
        );
    }
}
