//! What PID 1 hands the launcher ([`EXEC_LAUNCHER`](super::EXEC_LAUNCHER))
//! for a service that needs it: the [`ExecPlan`], as JSON in the
//! environment variable [`PLAN_VAR`]; and the pure steps
//! of the launch: the final environment ([`ExecPlan::environment`]), the
//! commands expanded ([`ExecPlan::commands`]) and the credentials
//! ([`Credentials::resolve`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::env_file::EnvFile;
use super::{EnvironmentFile, ExtraCommand, NameOrId, PLAN_VAR, ServiceSpec, expand};
use crate::accounts::{Group, Passwd, Table};

/// The most bytes of one `NAME=value` environment string Linux execs
/// (`MAX_ARG_STRLEN`, 32 pages), its terminating NUL included.
pub const MAX_ENV_STRING: usize = 32 * 4096;

/// How to start a service: what the launcher does between PID 1's fork and
/// the service's program; or how to stop it ([`Action::Stop`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecPlan {
    /// The service's name (for messages).
    pub service: String,
    /// Start the service, or run its stop commands.
    #[serde(default)]
    pub action: Action,
    /// Program and arguments.
    pub exec: Vec<String>,
    /// Commands run before it, in order.
    #[serde(default)]
    pub exec_start_pre: Vec<ExtraCommand>,
    /// Commands run to stop it, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec_stop: Vec<ExtraCommand>,
    /// PID 1's defaults (`PATH`, `HOME`, `TANDEM_SERVICE`, `TERM` on a
    /// terminal), which everything else overrides.
    pub defaults: BTreeMap<String, String>,
    /// The service's `[env]`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment files, read in order at each start.
    #[serde(default)]
    pub environment_files: Vec<EnvironmentFile>,
    /// Whether commands are expanded.
    #[serde(default)]
    pub expand_env: bool,
    /// User to run as.
    #[serde(default)]
    pub user: Option<NameOrId>,
    /// Group to run as.
    #[serde(default)]
    pub group: Option<NameOrId>,
}

/// What the launcher is started for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Run the `exec_start_pre` commands, then exec the program.
    #[default]
    Start,
    /// Run the `exec_stop` commands and exit: the first failure not
    /// ignored skips the rest and is the exit status.
    Stop,
}

/// The environment variable that holds a stopping service's main PID in
/// its `exec_stop` commands (as systemd's `$MAINPID`).
pub const MAINPID_VAR: &str = "MAINPID";

/// The plan cannot be handed over or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Writing the JSON failed.
    #[error("writing the launch plan failed: {0}")]
    Encode(String),
    /// The plan would not fit in one environment string.
    #[error(
        "the launch plan is {0} bytes, more than one environment variable holds ({MAX_ENV_STRING}): shorten [env] or the commands"
    )]
    TooLong(usize),
    /// The variable holds no valid plan.
    #[error("reading the launch plan ({PLAN_VAR}) failed: {0}")]
    Decode(String),
}

impl ExecPlan {
    /// The plan for service `name` defined by `spec`, with PID 1's
    /// default environment `defaults`.
    pub fn new(name: &str, spec: &ServiceSpec, defaults: BTreeMap<String, String>) -> ExecPlan {
        ExecPlan {
            service: name.to_string(),
            action: Action::Start,
            exec: spec.exec.clone(),
            exec_start_pre: spec.exec_start_pre.clone(),
            exec_stop: spec.exec_stop.clone(),
            defaults,
            env: spec.env.clone(),
            environment_files: spec.environment_files.clone(),
            expand_env: spec.expand_env,
            user: spec.user.clone(),
            group: spec.group.clone(),
        }
    }

    /// The plan that runs the `exec_stop` commands of service `name`
    /// whose main process is `main_pid` ([`MAINPID_VAR`]).
    pub fn stop(
        name: &str,
        spec: &ServiceSpec,
        mut defaults: BTreeMap<String, String>,
        main_pid: i32,
    ) -> ExecPlan {
        defaults.insert(MAINPID_VAR.into(), main_pid.to_string());
        ExecPlan {
            action: Action::Stop,
            ..ExecPlan::new(name, spec, defaults)
        }
    }

    /// The value of [`PLAN_VAR`]: JSON that fits one environment string.
    pub fn encode(&self) -> Result<String, PlanError> {
        let json = serde_json::to_string(self).map_err(|e| PlanError::Encode(e.to_string()))?;
        let size = PLAN_VAR.len() + 1 + json.len() + 1;
        if size > MAX_ENV_STRING {
            return Err(PlanError::TooLong(size));
        }
        Ok(json)
    }

    /// Reads [`PLAN_VAR`]'s value.
    pub fn decode(text: &str) -> Result<ExecPlan, PlanError> {
        serde_json::from_str(text).map_err(|e| PlanError::Decode(e.to_string()))
    }

    /// The service's environment: PID 1's defaults, then `HOME` from the
    /// user's entry (`home`), then `[env]`, then the environment files in
    /// order (as systemd, where `EnvironmentFile=` overrides
    /// `Environment=`); a later assignment of a name wins.
    pub fn environment(&self, home: Option<&str>, files: &[EnvFile]) -> BTreeMap<String, String> {
        let mut env = self.defaults.clone();
        if let Some(home) = home {
            env.insert("HOME".into(), home.into());
        }
        env.extend(self.env.clone());
        for file in files {
            env.extend(file.vars.iter().cloned());
        }
        env
    }

    /// The commands to run, expanded with `env` when `expand_env` is on:
    /// the `exec_start_pre` commands, then the program.
    pub fn commands(&self, env: &BTreeMap<String, String>) -> (Vec<ExtraCommand>, Vec<String>) {
        (
            self.expand_all(&self.exec_start_pre, env),
            self.expand(&self.exec, env),
        )
    }

    /// The `exec_stop` commands, expanded as [`ExecPlan::commands`].
    pub fn stop_commands(&self, env: &BTreeMap<String, String>) -> Vec<ExtraCommand> {
        self.expand_all(&self.exec_stop, env)
    }

    fn expand(&self, words: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
        if self.expand_env {
            expand::command(words, env)
        } else {
            words.to_vec()
        }
    }

    fn expand_all(
        &self,
        commands: &[ExtraCommand],
        env: &BTreeMap<String, String>,
    ) -> Vec<ExtraCommand> {
        commands
            .iter()
            .map(|c| ExtraCommand {
                exec: self.expand(&c.exec, env),
                ignore_failure: c.ignore_failure,
            })
            .collect()
    }
}

/// Who a service runs as, resolved from the node's account files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups (`setgroups`): the group, then every group of
    /// `/etc/group` that lists the user as a member, as `initgroups` does.
    pub groups: Vec<u32>,
    /// The user's home directory, when it has an entry.
    pub home: Option<String>,
}

/// A user or group named by a service is not on the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// No such user.
    #[error("user {0:?} is not in /etc/passwd")]
    UnknownUser(String),
    /// No such group.
    #[error("group {0:?} is not in /etc/group")]
    UnknownGroup(String),
}

impl Credentials {
    /// Resolves `user` and `group` from `/etc/passwd` and `/etc/group`;
    /// `None` when neither is given (the credentials stay root's).
    ///
    /// - A user by name must exist; a numeric user may lack an entry.
    /// - Without a group, the group is the user's primary group (its
    ///   entry's), or 0 for a numeric user without an entry (as PID 1
    ///   starts a numeric user without the launcher).
    /// - Supplementary groups: the group, then the groups that list the
    ///   user's name as a member; none for a group without a user.
    /// - Without a user the uid is 0.
    pub fn resolve(
        user: Option<&NameOrId>,
        group: Option<&NameOrId>,
        passwd: &Table<Passwd>,
        groups: &Table<Group>,
    ) -> Result<Option<Credentials>, CredentialsError> {
        if user.is_none() && group.is_none() {
            return Ok(None);
        }
        let entry = match user {
            None => None,
            Some(NameOrId::Name(name)) => Some(
                passwd
                    .get(name)
                    .ok_or_else(|| CredentialsError::UnknownUser(name.clone()))?,
            ),
            Some(NameOrId::Id(uid)) => passwd.records().find(|p| p.uid == *uid),
        };
        let uid = match (user, entry) {
            (_, Some(p)) => p.uid,
            (Some(NameOrId::Id(uid)), None) => *uid,
            _ => 0,
        };
        let gid = match group {
            Some(NameOrId::Id(gid)) => *gid,
            Some(NameOrId::Name(name)) => {
                groups
                    .get(name)
                    .ok_or_else(|| CredentialsError::UnknownGroup(name.clone()))?
                    .gid
            }
            None => entry.map_or(0, |p| p.gid),
        };
        let mut list = Vec::new();
        if user.is_some() {
            list.push(gid);
        }
        if let Some(p) = entry {
            for g in groups.records() {
                if g.members.contains(&p.name) && !list.contains(&g.gid) {
                    list.push(g.gid);
                }
            }
        }
        Ok(Some(Credentials {
            uid,
            gid,
            groups: list,
            home: entry.map(|p| p.home.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{env_file, parse};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        core:x:500:500:CoreOS Admin:/home/core:/bin/bash\n\
        www:x:33:33:www:/var/www:/usr/sbin/nologin\n\
        # a comment line\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,core\n\
        www:x:33:\n\
        docker:x:233:core,www\n\
        core:x:500:\n\
        sudo:x:27:core\n";

    fn creds(
        user: Option<NameOrId>,
        group: Option<NameOrId>,
    ) -> Result<Option<Credentials>, CredentialsError> {
        Credentials::resolve(
            user.as_ref(),
            group.as_ref(),
            &Table::parse(PASSWD),
            &Table::parse(GROUP),
        )
    }

    fn name(s: &str) -> Option<NameOrId> {
        Some(NameOrId::Name(s.into()))
    }

    #[test]
    fn a_user_by_name_gets_its_groups_and_home() {
        assert_eq!(
            creds(name("core"), None),
            Ok(Some(Credentials {
                uid: 500,
                gid: 500,
                groups: vec![500, 10, 233, 27],
                home: Some("/home/core".into()),
            }))
        );
        assert_eq!(
            creds(name("core"), name("docker")),
            Ok(Some(Credentials {
                uid: 500,
                gid: 233,
                groups: vec![233, 10, 27],
                home: Some("/home/core".into()),
            }))
        );
        assert_eq!(
            creds(name("www"), Some(NameOrId::Id(7))),
            Ok(Some(Credentials {
                uid: 33,
                gid: 7,
                groups: vec![7, 233],
                home: Some("/var/www".into()),
            }))
        );
    }

    #[test]
    fn numeric_users_with_and_without_entries() {
        assert_eq!(
            creds(Some(NameOrId::Id(500)), None),
            Ok(Some(Credentials {
                uid: 500,
                gid: 500,
                groups: vec![500, 10, 233, 27],
                home: Some("/home/core".into()),
            }))
        );
        assert_eq!(
            creds(Some(NameOrId::Id(4242)), None),
            Ok(Some(Credentials {
                uid: 4242,
                gid: 0,
                groups: vec![0],
                home: None,
            }))
        );
        assert_eq!(
            creds(Some(NameOrId::Id(4242)), Some(NameOrId::Id(4242))),
            Ok(Some(Credentials {
                uid: 4242,
                gid: 4242,
                groups: vec![4242],
                home: None,
            }))
        );
    }

    #[test]
    fn a_group_alone_keeps_root() {
        assert_eq!(
            creds(None, name("docker")),
            Ok(Some(Credentials {
                uid: 0,
                gid: 233,
                groups: vec![],
                home: None,
            }))
        );
        assert_eq!(creds(None, None), Ok(None));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            creds(name("nobody"), None),
            Err(CredentialsError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            creds(name("core"), name("nogroup")),
            Err(CredentialsError::UnknownGroup("nogroup".into()))
        );
        assert_eq!(
            creds(name("broken"), None),
            Err(CredentialsError::UnknownUser("broken".into())),
            "a malformed line is no entry"
        );
        assert_eq!(
            Credentials::resolve(
                name("core").as_ref(),
                None,
                &Table::parse(""),
                &Table::parse("")
            ),
            Err(CredentialsError::UnknownUser("core".into())),
            "no /etc/passwd"
        );
        assert_eq!(
            CredentialsError::UnknownUser("core".into()).to_string(),
            "user \"core\" is not in /etc/passwd"
        );
    }

    fn plan(text: &str) -> ExecPlan {
        let spec = parse(text).expect("valid");
        ExecPlan::new(
            "web",
            &spec,
            BTreeMap::from([
                ("PATH".into(), "/usr/bin".into()),
                ("HOME".into(), "/root".into()),
                ("TANDEM_SERVICE".into(), "web".into()),
            ]),
        )
    }

    #[test]
    fn environment_order() {
        let p = plan(
            "exec = [\"/a\"]\nenvironment_files = [\"/etc/environment\", \"-/etc/web\"]\n\
             [env]\nA = \"env\"\nB = \"env\"\nHOME = \"/srv\"\nPATH = \"/bin\"\n",
        );
        let files = [
            env_file::parse("B=file1\nC=file1\nD=file1\n"),
            env_file::parse("C=file2\nC=file2-again\n"),
        ];
        let env = p.environment(Some("/home/core"), &files);
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("A"), Some("env"));
        assert_eq!(get("B"), Some("file1"), "files override [env]");
        assert_eq!(get("C"), Some("file2-again"), "later assignments win");
        assert_eq!(get("D"), Some("file1"));
        assert_eq!(get("HOME"), Some("/srv"), "[env] overrides the user's home");
        assert_eq!(get("PATH"), Some("/bin"));
        assert_eq!(get("TANDEM_SERVICE"), Some("web"));
        let plain = plan("exec = [\"/a\"]\nuser = \"core\"\n");
        assert_eq!(
            plain.environment(Some("/home/core"), &[]).get("HOME"),
            Some(&"/home/core".to_string()),
            "the user's home replaces /root"
        );
        assert_eq!(
            plain.environment(None, &[]).get("HOME"),
            Some(&"/root".to_string())
        );
    }

    #[test]
    fn commands_expand_only_when_asked() {
        let text = "exec = [\"/usr/bin/docker\", \"run\", \"-p\", \"${IP}:80:80\", \"$OPTS\"]\n\
             exec_start_pre = [{ exec = [\"/usr/bin/docker\", \"rm\", \"-f\", \"${NAME}\"], ignore_failure = true }, [\"/bin/echo\", \"$$\"]]\n";
        let env = BTreeMap::from([
            ("IP".into(), "10.0.0.5".into()),
            ("OPTS".into(), "-d --rm".into()),
            ("NAME".into(), "web".into()),
        ]);
        let (pre, main) = plan(&format!("{text}expand_env = true\n")).commands(&env);
        assert_eq!(
            main,
            [
                "/usr/bin/docker",
                "run",
                "-p",
                "10.0.0.5:80:80",
                "-d",
                "--rm"
            ]
        );
        assert_eq!(pre[0].exec, ["/usr/bin/docker", "rm", "-f", "web"]);
        assert!(pre[0].ignore_failure);
        assert_eq!(pre[1].exec, ["/bin/echo", "$"]);
        assert!(!pre[1].ignore_failure);
        let (pre, main) = plan(text).commands(&env);
        assert_eq!(main[3], "${IP}:80:80", "literal without expand_env");
        assert_eq!(pre[1].exec[1], "$$");
    }

    #[test]
    fn a_stop_plan_runs_the_stop_commands_with_the_main_pid() {
        let text = "exec = [\"/usr/bin/docker\", \"run\", \"web\"]\n\
             exec_stop = [[\"/usr/bin/docker\", \"stop\", \"web\"], { exec = [\"/bin/kill\", \"-TERM\", \"${MAINPID}\"], ignore_failure = true }]\n\
             expand_env = true\n";
        let spec = crate::service::parse(text).expect("valid");
        let start = ExecPlan::new("web", &spec, BTreeMap::new());
        assert_eq!(start.action, Action::Start);
        let stop = ExecPlan::stop("web", &spec, BTreeMap::new(), 321);
        assert_eq!(stop.action, Action::Stop);
        let env = stop.environment(None, &[]);
        assert_eq!(env.get(MAINPID_VAR).map(String::as_str), Some("321"));
        let cmds = stop.stop_commands(&env);
        assert_eq!(cmds[0].exec, ["/usr/bin/docker", "stop", "web"]);
        assert_eq!(cmds[1].exec, ["/bin/kill", "-TERM", "321"]);
        assert!(cmds[1].ignore_failure);
        assert_eq!(
            ExecPlan::decode(&stop.encode().expect("encode")),
            Ok(stop.clone())
        );
        // A plan from before stop commands existed reads as a start.
        let old = start
            .encode()
            .expect("encode")
            .replace("\"action\":\"start\",", "");
        assert_eq!(ExecPlan::decode(&old).map(|p| p.action), Ok(Action::Start));
    }

    #[test]
    fn encode_and_decode() {
        let p = plan(
            "exec = [\"/a\", \"x y\", \"é\\\"\"]\nexec_start_pre = [[\"/b\"], { exec = [\"/c\"], ignore_failure = true }]\n\
             environment_files = [\"-/etc/environment\"]\nexpand_env = true\nuser = \"core\"\ngroup = 10\n\
             [env]\nK = \"v=1\\n2\"\n",
        );
        let text = p.encode().expect("encode");
        assert!(!text.contains('\n'), "one line");
        assert_eq!(ExecPlan::decode(&text), Ok(p.clone()));
        assert!(matches!(
            ExecPlan::decode("{\"service\":\"web\"}"),
            Err(PlanError::Decode(_))
        ));
        assert!(matches!(ExecPlan::decode(""), Err(PlanError::Decode(_))));
        assert!(matches!(
            ExecPlan::decode(&text.replace("\"service\"", "\"servise\"")),
            Err(PlanError::Decode(_))
        ));
        let mut big = p;
        big.env.insert("BIG".into(), "x".repeat(MAX_ENV_STRING));
        assert!(matches!(big.encode(), Err(PlanError::TooLong(n)) if n > MAX_ENV_STRING));
    }
}
