use std::os::unix::fs::{MetadataExt, PermissionsExt};

use tandem_contract::provision::{
    AGENT_CONFIG, AUTHORIZED_KEYS_DIR, HOSTNAME_FILE, NETWORK_FILE, SERVICES_DIR, UPDATE_CONFIG,
};

use super::*;

const KEY_A: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a@x";
const KEY_B: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB b@x";

/// A node's `/` with base-passwd's few accounts and bash.
fn node() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(
        etc.join("group"),
        "root:x:0:\nsudo:x:27:\nshadow:x:42:\nusers:x:100:\n",
    )
    .unwrap();
    std::fs::write(etc.join("shadow"), "root:*:::::::\n").unwrap();
    std::fs::create_dir_all(tmp.path().join("usr/bin")).unwrap();
    std::fs::write(tmp.path().join("usr/bin/bash"), "").unwrap();
    tmp
}

fn config(text: &str) -> cloud_config::Validation {
    let v = cloud_config::validate(text);
    let errors: Vec<_> = v
        .report
        .diagnostics
        .iter()
        .filter(|d| d.severity == cloud_config::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    v
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(write::under(root, path)).unwrap_or_default()
}

fn meta() -> Metadata {
    Metadata {
        hostname: Some("ip-10-0-0-5.ec2.internal".into()),
        ssh_keys: vec![KEY_B.into(), KEY_A.into()],
        ..Metadata::default()
    }
}

const FULL: &str = r#"#cloud-config
hostname: web-1.example.com
manage_etc_hosts: localhost
ssh_authorized_keys:
  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA a@x
users:
  - name: elroy
    gecos: Elroy Jetson
    passwd: $6$salt$hash
    groups: [sudo, docker]
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB b@x
  - name: backup
    system: true
    no_user_group: true
write_files:
  - path: /etc/motd
    owner: elroy
    permissions: '0600'
    content: hello
  - path: /etc/profile.d/extra.sh
    append: true
    content: "export A=1\n"
coreos:
  update:
    reboot-strategy: best-effort
    group: beta
    server: http://updates.example.com/repo
    proxy: http://ops:pw@proxy.example:3128
  locksmith:
    group: web
    window_start: Thu 04:00
    window_length: 1h30m
    etcd_username: agent
    etcd_password: s3cret
  etcd2:
    initial-cluster-state: new
    listen-client-urls: http://0.0.0.0:2379
  units:
    - name: hello.service
      command: start
      content: |
        [Service]
        ExecStart=/usr/bin/sleep infinity
    - name: docker.service
      command: start
tandem:
  services:
    web:
      exec: [/usr/bin/true]
"#;

#[test]
fn a_whole_config_then_the_next_boot() {
    let tmp = node();
    let root = tmp.path();
    std::fs::write(root.join("usr/bin/etcd"), "").unwrap();
    std::fs::create_dir_all(root.join("etc/profile.d")).unwrap();
    std::fs::write(root.join("etc/profile.d/extra.sh"), "# before\n").unwrap();
    // Last boot's output goes.
    std::fs::create_dir_all(write::under(root, AUTHORIZED_KEYS_DIR)).unwrap();
    std::fs::write(write::under(root, AUTHORIZED_KEYS_DIR).join("old"), KEY_A).unwrap();
    let v = config(FULL);
    let a = apply(root, "user-data", &v, &meta());

    // One warning: docker.service names an image service.
    assert_eq!(a.problems.len(), 1, "{:?}", a.problems);
    let p = &a.problems[0];
    assert_eq!(
        (p.severity.as_str(), p.at.as_str()),
        ("warning", "user-data:45:7"),
        "{p:?}"
    );
    assert!(
        p.message.starts_with("not applied: `docker.service`"),
        "{}",
        p.message
    );

    // Users.
    let passwd = read(root, "/etc/passwd");
    let elroy = passwd.lines().find(|l| l.starts_with("elroy:")).unwrap();
    assert!(
        elroy.contains(":Elroy Jetson:/home/elroy:/bin/sh"),
        "{elroy}"
    );
    let core = passwd.lines().find(|l| l.starts_with("core:")).unwrap();
    assert!(core.ends_with(":/home/core:/bin/bash"), "{core}");
    let backup = passwd.lines().find(|l| l.starts_with("backup:")).unwrap();
    let fields: Vec<&str> = backup.split(':').collect();
    assert!(tandem_contract::sysusers::SYSTEM_IDS.contains(&fields[2].parse().unwrap()));
    assert_eq!(fields[3], "100", "no_user_group: the group users");
    let shadow = read(root, "/etc/shadow");
    assert!(shadow.contains("elroy:$6$salt$hash:"), "{shadow}");
    assert!(shadow.contains("core:*:"), "{shadow}");
    assert!(shadow.contains("backup:!*:"), "{shadow}");
    let group = read(root, "/etc/group");
    assert!(group.contains("sudo:x:27:elroy\n"), "{group}");
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("docker:x:") && l.ends_with(":elroy")),
        "{group}"
    );
    let home = std::fs::metadata(root.join("home/elroy")).unwrap();
    assert_eq!(home.mode() & 0o7777, 0o700);
    assert_eq!(home.uid().to_string(), elroy.split(':').nth(2).unwrap());
    assert!(!root.join("home/backup").exists());
    assert!(
        a.applied.iter().any(|l| l.starts_with("user core added")),
        "{:?}",
        a.applied
    );

    // Keys.
    let keys = write::under(root, AUTHORIZED_KEYS_DIR);
    assert_eq!(
        std::fs::read_to_string(keys.join("core")).unwrap(),
        format!("{KEY_A}\n{KEY_B}\n")
    );
    assert_eq!(
        std::fs::read_to_string(keys.join("elroy")).unwrap(),
        format!("{KEY_B}\n")
    );
    assert!(!keys.join("old").exists());
    let m = std::fs::metadata(keys.join("core")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o644, 0));
    assert!(
        a.applied.contains(&"keys for core: 2".to_string()),
        "{:?}",
        a.applied
    );

    // Files.
    let motd = std::fs::metadata(root.join("etc/motd")).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        "hello"
    );
    assert_eq!(motd.mode() & 0o7777, 0o600);
    assert_eq!(motd.uid().to_string(), elroy.split(':').nth(2).unwrap());
    assert_eq!(motd.gid().to_string(), elroy.split(':').nth(3).unwrap());
    assert!(
        a.applied
            .contains(&"wrote /etc/motd (0600 elroy)".to_string()),
        "{:?}",
        a.applied
    );
    assert_eq!(
        read(root, "/etc/profile.d/extra.sh"),
        "# before\nexport A=1\n"
    );

    // Host.
    assert_eq!(read(root, HOSTNAME_FILE), "web-1.example.com\n");
    assert!(
        read(root, "/etc/hosts")
            .contains("\n127.0.1.1 web-1.example.com web-1\n127.0.0.1 localhost\n")
    );

    // Services.
    let services = write::under(root, SERVICES_DIR);
    let hello = std::fs::read_to_string(services.join("hello.toml")).unwrap();
    tandem_contract::service::parse(&hello).unwrap();
    let web = std::fs::read_to_string(services.join("web.toml")).unwrap();
    tandem_contract::service::parse(&web).unwrap();
    let etcd = std::fs::read_to_string(services.join("etcd.toml")).unwrap();
    let spec = tandem_contract::service::parse(&etcd).unwrap();
    assert_eq!(
        spec.exec,
        [
            "/usr/bin/etcd",
            "--name=web-1.example.com",
            "--initial-cluster-state=new",
            "--listen-client-urls=http://0.0.0.0:2379",
            "--data-dir=/var/lib/etcd"
        ]
    );

    // Settings: best-effort with a local etcd is etcd-lock.
    let update = read(root, UPDATE_CONFIG);
    assert!(
        update.contains("reboot-strategy = \"etcd-lock\""),
        "{update}"
    );
    assert!(a.applied.iter().any(|l| l == "update.toml: channel beta, proxy http://ops:***@proxy.example:3128, reboot-strategy etcd-lock, server http://updates.example.com/repo"), "{:?}", a.applied);
    let agent = read(root, AGENT_CONFIG);
    assert!(
        agent.contains("endpoints = [\"http://127.0.0.1:2379\"]"),
        "{agent}"
    );
    assert_eq!(read(root, settings::ETCD_PASSWORD), "s3cret\n");
    assert!(
        a.applied.iter().any(|l| l
            == "agent.toml (etcd password in etcd-password): group web, etcd.endpoints [http://127.0.0.1:2379], etcd.password-file /run/tandem/provisioned/etcd-password, etcd.username agent, window.length 1h30m, window.start Thu 04:00"),
        "{:?}",
        a.applied
    );
    let pw = std::fs::metadata(write::under(root, settings::ETCD_PASSWORD)).unwrap();
    assert_eq!(pw.permissions().mode() & 0o7777, 0o600);

    // The next boot: no account file or /etc file written again, nothing
    // appended twice, the same output under /run.
    let stamp = |p: &str| {
        std::fs::metadata(write::under(root, p))
            .unwrap()
            .modified()
            .unwrap()
    };
    let written = [
        "/etc/passwd",
        "/etc/group",
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/motd",
        "/etc/hosts",
        "/etc/profile.d/extra.sh",
    ];
    let before: Vec<_> = written.iter().map(|p| stamp(p)).collect();
    let again = apply(root, "user-data", &v, &meta());
    assert_eq!(again.problems, a.problems);
    let after: Vec<_> = written.iter().map(|p| stamp(p)).collect();
    assert_eq!(before, after);
    assert!(
        !again.applied.iter().any(|l| l.contains("added")
            || l.starts_with("wrote /etc")
            || l.starts_with("appended")),
        "{:?}",
        again.applied
    );
    assert_eq!(
        read(root, "/etc/profile.d/extra.sh"),
        "# before\nexport A=1\n"
    );
    assert_eq!(
        read(root, "/etc/passwd")
            .lines()
            .filter(|l| l.starts_with("elroy:"))
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(keys.join("core")).unwrap(),
        format!("{KEY_A}\n{KEY_B}\n")
    );
}

#[test]
fn rendered_settings_parse_with_the_updater_and_the_agent() {
    let v = config(FULL);
    let update = settings::update_toml(&v.config, true).unwrap();
    let cfg = updater::config::merge(&[updater::config::Source {
        origin: "update.toml".into(),
        text: update,
    }])
    .unwrap();
    assert_eq!(
        cfg.reboot_strategy,
        tandem_contract::strategy::RebootStrategy::EtcdLock
    );
    assert_eq!(cfg.channel.as_deref(), Some("beta"));
    assert_eq!(cfg.servers, ["http://updates.example.com/repo"]);
    assert_eq!(
        cfg.proxy,
        updater::transport::ProxySetting::Url("http://ops:pw@proxy.example:3128".into())
    );

    let text = settings::agent_toml(&v.config, true).unwrap();
    let cfg = agent::config::merge(&[updater::config::Source {
        origin: "agent.toml".into(),
        text,
    }])
    .unwrap();
    assert_eq!(cfg.group, "web");
    let etcd = cfg.etcd.unwrap();
    assert_eq!(etcd.endpoints, [settings::LOCAL_ETCD]);
    assert_eq!(etcd.username.as_deref(), Some("agent"));
    assert_eq!(
        etcd.password_file.as_deref(),
        Some(Path::new(settings::ETCD_PASSWORD))
    );
    let w = cfg.window.unwrap();
    assert_eq!(w.length(), std::time::Duration::from_secs(5400));

    // TLS files and endpoints from locksmith; without etcd best-effort reboots.
    let v = config(
        "#cloud-config\ncoreos:\n  update:\n    reboot-strategy: best-effort\n  locksmith:\n    endpoint: https://a:2379,https://b:2379\n    etcd_cafile: /etc/ssl/ca.pem\n    etcd_certfile: /etc/ssl/c.pem\n    etcd_keyfile: /etc/ssl/k.pem\n",
    );
    let text = settings::agent_toml(&v.config, false).unwrap();
    let cfg = agent::config::merge(&[updater::config::Source {
        origin: "agent.toml".into(),
        text,
    }])
    .unwrap();
    let etcd = cfg.etcd.unwrap();
    assert_eq!(etcd.endpoints, ["https://a:2379", "https://b:2379"]);
    assert_eq!(etcd.key_file.as_deref(), Some(Path::new("/etc/ssl/k.pem")));
    assert_eq!(
        settings::update_toml(&v.config, false)
            .unwrap()
            .lines()
            .last(),
        Some("reboot-strategy = \"reboot\"")
    );
    let none = config("#cloud-config\nhostname: a\n");
    assert_eq!(settings::update_toml(&none.config, false), None);
    assert_eq!(settings::agent_toml(&none.config, false), None);
}

#[test]
fn a_failing_part_leaves_the_rest_applied() {
    let tmp = node();
    let root = tmp.path();
    // No etcd in the image; an unknown owner; a file where a directory must be.
    std::fs::write(root.join("srv"), "").unwrap();
    let v = config(
        "#cloud-config\nwrite_files:\n  - path: /etc/a\n    owner: nobody2\n    content: a\n  - path: /srv/x\n    content: x\n  - path: /etc/b\n    content: b\ncoreos:\n  etcd2:\n    name: n1\n",
    );
    let a = apply(root, "cidata:user-data", &v, &Metadata::default());
    let shown: Vec<_> = a
        .problems
        .iter()
        .map(|p| format!("{} {}", p.severity, p.at))
        .collect();
    assert_eq!(
        shown,
        [
            "error cidata:user-data:3:5",
            "error cidata:user-data:6:5",
            "error coreos.etcd2"
        ],
        "{:?}",
        a.problems
    );
    assert!(
        a.problems[0].message.contains("no user nobody2"),
        "{}",
        a.problems[0].message
    );
    assert!(
        a.problems[2].message.contains("add it to [usr] packages"),
        "{}",
        a.problems[2].message
    );
    assert!(!root.join("etc/a").exists());
    assert_eq!(read(root, "/etc/b"), "b");
    assert_eq!(a.applied, ["wrote /etc/b (0644 root:root)"]);
}

#[test]
fn existing_users_are_kept() {
    let tmp = node();
    let root = tmp.path();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ncore:x:500:500::/var/core:/bin/zsh\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/shadow"),
        "root:*:::::::\ncore:$6$old:::::::\n",
    )
    .unwrap();
    let v = config(
        "#cloud-config\nusers:\n  - name: core\n    passwd: $6$new\n    shell: /bin/sh\n    groups: [sudo]\n",
    );
    let a = apply(root, "user-data", &v, &meta());
    assert_eq!(a.problems.len(), 1, "{:?}", a.problems);
    assert!(
        a.problems[0].message.contains("user core exists"),
        "{}",
        a.problems[0].message
    );
    assert!(read(root, "/etc/passwd").contains("core:x:500:500::/var/core:/bin/zsh"));
    assert!(read(root, "/etc/shadow").contains("core:$6$old:"));
    assert!(read(root, "/etc/group").contains("sudo:x:27:\n"));
    // The platform's keys are still core's.
    assert_eq!(
        read(root, &format!("{AUTHORIZED_KEYS_DIR}/core")),
        format!("{KEY_B}\n{KEY_A}\n")
    );
}

#[test]
fn plans() {
    let v = config(
        "#cloud-config\nusers:\n  - name: a\n    primary_group: staff\n    homedir: /srv/a\n    no_create_home: true\n  - name: b\n    lock_passwd: true\n    passwd: $6$x\n  - name: c\n    system: true\n    homedir: /var/lib/c\n",
    );
    let acc = tandem_contract::accounts::Accounts::default();
    let p = users::plan(&v.config, &Metadata::default(), &acc, false);
    let names: Vec<_> = p
        .users
        .iter()
        .map(|u| (u.name.as_str(), u.hash.as_deref(), u.home.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("a", None, None),
            ("b", Some("!$6$x"), Some("/home/b")),
            ("c", None, None)
        ]
    );
    // core only for keys, with sh when the image has no bash.
    let p = users::plan(&v.config, &meta(), &acc, false);
    let core = p.entries.iter().find_map(|e| match e {
        tandem_contract::sysusers::Entry::User(u) if u.name == "core" => Some(u.clone()),
        _ => None,
    });
    assert_eq!(core.and_then(|u| u.shell).as_deref(), Some("/bin/sh"));
}

#[test]
fn keys_and_hosts_and_appends() {
    let v = config(&format!(
        "#cloud-config\nssh_authorized_keys:\n  - {KEY_A}\n  - {KEY_A}\nusers:\n  - name: core\n    ssh_authorized_keys: [\"{KEY_B}\"]\n"
    ));
    let lists = keys::key_lists(
        &v.config,
        &Metadata {
            ssh_keys: vec![KEY_A.into()],
            ..Metadata::default()
        },
    );
    assert_eq!(
        lists,
        [(
            "core".to_string(),
            vec![KEY_A.to_string(), KEY_B.to_string()]
        )]
    );

    assert!(host::hosts("box").contains("\n127.0.1.1 box\n"));
    assert!(
        host::valid("a-1.b") && !host::valid("-a") && !host::valid("a..b") && !host::valid("a_b")
    );
    let long = format!("{}.example.com", "a".repeat(60));
    let v = config("#cloud-config\n");
    let m = Metadata {
        hostname: Some(long),
        ..Metadata::default()
    };
    assert_eq!(host::choose(&v.config, &m), Ok(Some("a".repeat(60))));

    let f = cloud_config::model::WriteFile {
        pos: Default::default(),
        path: "/x".into(),
        content: b"line\n".to_vec(),
        owner: None,
        permissions: None,
        encoding: None,
        append: true,
    };
    assert_eq!(files::content(&f, Some(b"a\nline\n")), None);
    assert_eq!(
        files::content(&f, Some(b"a\n")),
        Some(b"a\nline\n".to_vec())
    );
    assert_eq!(files::content(&f, None), Some(b"line\n".to_vec()));
}

#[test]
fn static_network_is_written_for_pid_1_only_when_given() {
    let root = node();
    let v = config(
        "#cloud-config\ntandem:\n  network:\n    interfaces:\n      - mac: 52:54:00:00:01:01\n        addresses: [10.99.0.11/24]\n        gateway: 10.99.0.1\n        routes:\n          - to: 10.100.0.0/16\n            via: 10.99.0.254\n        dns: [10.99.0.1]\n",
    );
    let out = apply(root.path(), "user-data", &v, &Metadata::default());
    assert!(out.problems.is_empty(), "{out:?}");
    assert!(
        out.applied
            .contains(&"static network for mac 52:54:00:00:01:01".to_string()),
        "{out:?}"
    );
    let text = read(root.path(), NETWORK_FILE);
    let back: tandem_contract::provision::NetworkConfig =
        serde_json::from_str(&text).expect("PID 1 reads it");
    assert_eq!(back, network::config(&v.config.tandem.network));
    assert_eq!(back.interfaces[0].routes[0].via.to_string(), "10.99.0.254");
    assert!(text.contains("\"10.99.0.11/24\""), "{text}");
    // The next boot's config without it: no file.
    apply(
        root.path(),
        "user-data",
        &config("#cloud-config\nhostname: a\n"),
        &Metadata::default(),
    );
    assert!(!write::under(root.path(), NETWORK_FILE).exists());
}
