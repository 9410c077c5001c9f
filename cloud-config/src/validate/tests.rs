use super::*;

fn check(text: &str) -> Validation {
    let v = validate(&format!("#cloud-config\n{text}"));
    // Every service read renders and parses back through the node's own
    // `service::parse`.
    for s in &v.services {
        let text = s.render().expect("renders");
        assert_eq!(tandem_contract::service::parse(&text), s.check(), "{text}");
    }
    v
}

/// The `n`th service as the node runs it.
fn spec(v: &Validation, n: usize) -> tandem_contract::service::ServiceSpec {
    v.services[n].check().expect("checks")
}

/// `line:col severity path: message` for each diagnostic.
fn diags(v: &Validation) -> Vec<String> {
    v.report
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{}:{} {} {}: {}",
                d.line,
                d.column,
                d.severity.as_str(),
                d.path,
                d.message
            )
        })
        .collect()
}

fn only_error(text: &str) -> String {
    let v = check(text);
    let errors: Vec<_> = v
        .report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{:?}", diags(&v));
    format!(
        "{}:{} {}: {}",
        errors[0].line, errors[0].column, errors[0].path, errors[0].message
    )
}

#[test]
fn header_missing_script_ignition_empty() {
    let v = validate("hostname: a\n");
    assert_eq!(v.report.diagnostics.len(), 1);
    assert!(
        v.report.diagnostics[0]
            .message
            .starts_with("the first line must be `#cloud-config`")
    );
    assert_eq!(
        v.config.hostname.as_deref(),
        Some("a"),
        "the rest is still read and checked"
    );
    let v = validate("#!/bin/bash\necho hi\n");
    assert!(
        v.report.diagnostics[0]
            .message
            .contains("Tandem does not run user-data scripts")
    );
    let v = validate("{\"ignition\": {\"version\": \"3.0.0\"}}");
    assert!(v.report.diagnostics[0].message.contains("Ignition"));
    assert!(!validate("").report.valid());
    assert!(!validate("#cloud-config-archive\n").report.valid());
    assert!(validate("#cloud-config\r\nhostname: a\r\n").report.valid());
    assert!(
        validate("\u{feff}#cloud-config\nhostname: a\n")
            .report
            .valid()
    );
    let v = validate("#cloud-config\n");
    assert!(v.report.valid());
    assert_eq!(v.report.warnings(), 1, "empty config");
}

#[test]
fn bad_yaml_has_a_position() {
    let v = check("hostname: a\nusers: [ {name: x\n");
    assert_eq!(v.report.errors(), 1);
    let d = &v.report.diagnostics[0];
    assert!(d.message.starts_with("not valid YAML"), "{}", d.message);
    assert!(d.line >= 3);
    let v = check("a: 1\n\tb: 2\n");
    assert!(!v.report.valid());
}

#[test]
fn dashes_and_underscores_are_one_key() {
    let v = check(
        "ssh-authorized-keys:\n  - ssh-ed25519 AAAAC3Nz x\ncoreos:\n  update:\n    reboot_strategy: off\n  locksmith:\n    window_start: 04:00\n    window-length: 30m\n",
    );
    assert!(v.report.valid(), "{:?}", diags(&v));
    assert_eq!(v.config.ssh_authorized_keys.len(), 1);
    assert_eq!(
        v.config.coreos.update.and_then(|u| u.reboot_strategy),
        Some(CoreosStrategy::Off)
    );
    let l = v.config.coreos.locksmith.expect("read");
    assert_eq!(l.window_length, Some(std::time::Duration::from_secs(1800)));
    assert_eq!(
        only_error("coreos:\n  update:\n    reboot-strategy: off\n    reboot_strategy: reboot\n"),
        "5:5 coreos.update.reboot_strategy: `reboot_strategy` is given twice (first on line 4); dashes and underscores are the same"
    );
}

#[test]
fn misplaced_and_unknown_keys() {
    assert_eq!(
        only_error("update:\n  reboot-strategy: off\n"),
        "2:1 update: `update` belongs under `coreos:`, not at the top level"
    );
    assert_eq!(
        only_error("coreos:\n  hostname: a\n"),
        "3:3 coreos.hostname: `hostname` belongs at the top level, not under `coreos:`"
    );
    assert_eq!(
        only_error("coreos:\n  update:\n    window-start: 04:00\n"),
        "4:5 coreos.update.window-start: `window-start` belongs under `coreos.locksmith`, not under `coreos.update`"
    );
    assert_eq!(
        only_error("write_files:\n  - path: /etc/x\n    mode: '0644'\n"),
        "4:5 write_files[0].mode: unknown key `mode` in a `write_files` entry; known keys: path, content, owner, permissions, encoding, append"
    );
    assert_eq!(
        only_error("hostnam: a\n"),
        "2:1 hostnam: unknown key `hostnam` at the top level: did you mean `hostname`?"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        only_error("hostname: [a]\n"),
        "2:11 hostname: must be a string, found a list"
    );
    assert_eq!(
        only_error("coreos:\n  units:\n    name: a.service\n"),
        "4:5 coreos.units: must be a list, found a mapping"
    );
    assert_eq!(
        only_error("write_files:\n  - path: /etc/x\n    append: yes\n"),
        "4:13 write_files[0].append: `yes` is a string in YAML 1.2, not a boolean: write true or false"
    );
    assert_eq!(
        only_error("- a\n"),
        "2:1 : a cloud-config must be a mapping of keys, found a list"
    );
    assert_eq!(
        only_error("manage_etc_hosts: yes\n"),
        "2:19 manage_etc_hosts: must be \"localhost\" (or true, or false), found a string"
    );
    assert!(check("manage_etc_hosts: localhost\n").report.valid());
    assert!(check("manage_etc_hosts: true\n").report.valid());
}

#[test]
fn hostnames_and_keys() {
    assert!(check("hostname: worker-07.example.com\n").report.valid());
    assert!(only_error("hostname: -bad\n").contains("is not a host name"));
    assert!(only_error("hostname: under_score\n").contains("is not a host name"));
    assert!(only_error("ssh_authorized_keys:\n  - not a key\n").contains("OpenSSH public key"));
    assert!(
        check("ssh_authorized_keys:\n  - command=\"x\" ssh-rsa AAAAB3Nza me\n")
            .report
            .valid()
    );
}

#[test]
fn users() {
    let v = check(
        "users:\n  - name: elroy\n    passwd: '$6$abc$def'\n    groups: [sudo, docker]\n    shell: /bin/bash\n    system: true\n    lock-passwd: false\n",
    );
    assert!(v.report.valid(), "{:?}", diags(&v));
    let u = &v.config.users[0];
    assert_eq!(
        (u.name.as_str(), u.groups.len(), u.system),
        ("elroy", 2, true)
    );
    assert_eq!(u.lock_passwd, Some(false));
    assert!(
        only_error("users:\n  - name: a\n    passwd: hunter2\n")
            .contains("password hash, not a password")
    );
    assert!(only_error("users:\n  - gecos: x\n").contains("needs a `name`"));
    assert!(only_error("users:\n  - name: Bad\n").contains("is not a user name"));
    assert!(only_error("users:\n  - name: a\n  - name: a\n").contains("given twice"));
    assert!(
        only_error("users:\n  - name: a\n    homedir: home/a\n").contains("not an absolute path")
    );
}

#[test]
fn permissions_owner_encoding() {
    let v = check(
        "write_files:\n  - path: /etc/a\n    permissions: 0644\n  - path: /etc/b\n    permissions: '0600'\n    owner: core:core\n  - path: /etc/c\n    permissions: 0o755\n",
    );
    assert!(v.report.valid(), "{:?}", diags(&v));
    let modes: Vec<_> = v.config.write_files.iter().map(|f| f.permissions).collect();
    assert_eq!(modes, [Some(0o644), Some(0o600), Some(0o755)]);
    assert!(
        only_error("write_files:\n  - path: /etc/a\n    permissions: 0849\n")
            .contains("not an octal mode")
    );
    assert!(
        only_error("write_files:\n  - path: /etc/a\n    permissions: '17777'\n")
            .contains("larger than 07777")
    );
    assert!(
        only_error("write_files:\n  - path: /etc/a\n    permissions: true\n")
            .contains("octal mode")
    );
    assert!(
        only_error("write_files:\n  - path: /etc/a\n    owner: 'root:'\n")
            .contains("is not `user` or `user:group`")
    );
    assert_eq!(
        only_error("write_files:\n  - path: /etc/a\n    encoding: hex\n    content: 00\n"),
        "4:15 write_files[0].encoding: unknown encoding \"hex\": use b64 (base64), gz (gzip) or gz+b64 (gzip+base64), or leave it out for plain text"
    );
    assert_eq!(
        only_error(
            "write_files:\n  - path: /etc/a\n    encoding: b64\n    content: '!!notbase64'\n"
        ),
        "5:14 write_files[0].content: content does not decode as b64: Invalid symbol 33, offset 0."
    );
}

#[test]
fn file_paths() {
    assert_eq!(
        only_error("write_files:\n  - path: /usr/bin/x\n"),
        "3:11 write_files[0].path: cannot write /usr/bin/x: /usr is the read-only, verified image (dm-verity); ship such files in the image"
    );
    assert!(only_error("write_files:\n  - path: etc/x\n").contains("not absolute"));
    assert!(only_error("write_files:\n  - path: /proc/x\n").contains("/proc"));
    assert!(only_error("write_files:\n  - path: /sys/x\n").contains("/sys"));
    assert!(only_error("write_files:\n  - path: /dev/x\n").contains("/dev"));
    assert!(only_error("write_files:\n  - content: x\n").contains("needs a `path`"));
    let v = check("write_files:\n  - path: /etc/a\n  - path: /etc/a\n");
    assert_eq!((v.report.errors(), v.report.warnings()), (0, 1));
}

#[test]
fn update_and_locksmith() {
    assert!(
        only_error("coreos:\n  update:\n    reboot-strategy: sometimes\n")
            .contains("unknown reboot strategy")
    );
    assert!(only_error("coreos:\n  update:\n    reboot-strategy: false\n").contains("write `off`"));
    for s in ["reboot", "etcd-lock", "etcd_lock", "best-effort", "off"] {
        assert!(
            check(&format!("coreos:\n  update:\n    reboot-strategy: {s}\n"))
                .report
                .valid(),
            "{s}"
        );
    }
    let v = check("coreos:\n  update:\n    server: https://public.update.core-os.net/v1/update/\n");
    assert_eq!((v.report.errors(), v.report.warnings()), (0, 1));
    assert!(only_error("coreos:\n  update:\n    server: ftp://x\n").contains("not an http"));
    assert!(
        only_error(
            "coreos:\n  locksmith:\n    window-start: Thursday 4am\n    window-length: 1h\n"
        )
        .contains("is not `HH:MM` or `Day HH:MM`")
    );
    assert!(
        only_error("coreos:\n  locksmith:\n    window-start: Thu 24:00\n    window-length: 1h\n")
            .contains("window_start")
    );
    assert!(
        only_error(
            "coreos:\n  locksmith:\n    window-start: Thu 04:00\n    window-length: an hour\n"
        )
        .contains("not a duration")
    );
    assert!(
        only_error("coreos:\n  locksmith:\n    window-start: 04:00\n    window-length: 25h\n")
            .contains("always be open")
    );
    assert!(
        only_error("coreos:\n  locksmith:\n    window-start: Thu 04:00\n")
            .contains("needs window_length")
    );
    assert!(
        only_error("coreos:\n  locksmith:\n    endpoint: 10.0.0.1:2379\n").contains("not an http")
    );
    let v = check(
        "coreos:\n  locksmith:\n    endpoint: http://a:2379,https://b:2379\n    etcd_cafile: /etc/ssl/ca.pem\n",
    );
    assert_eq!(v.config.coreos.locksmith.expect("read").endpoints.len(), 2);
}

#[test]
fn no_tandem_meaning_warns_with_advice() {
    let v = check(
        "coreos:\n  fleet:\n    metadata: a=b\n  flannel:\n    interface: eth0\n  oem:\n    id: x\n  etcd:\n    addr: x\n",
    );
    assert!(v.report.valid());
    let m = diags(&v);
    assert!(
        m[0].starts_with("3:3 warning coreos.fleet: fleet is not part of Tandem"),
        "{m:?}"
    );
    assert!(m[1].contains("flannel is not part of Tandem"), "{m:?}");
    assert!(m[2].contains("coreos.oem"), "{m:?}");
    assert!(m[3].contains("use `etcd2`"), "{m:?}");
    let v = check(
        "coreos:\n  units:\n    - name: fleet.service\n      command: start\n    - name: flanneld.service\n      command: start\n    - name: etcd2.service\n      command: start\n    - name: update-engine.service\n      command: stop\n",
    );
    assert_eq!(
        (v.report.errors(), v.report.warnings()),
        (0, 4),
        "{:?}",
        diags(&v)
    );
}

#[test]
fn etcd2_flags() {
    let v = check(
        "coreos:\n  etcd2:\n    name: a\n    initial_cluster: a=http://$private_ipv4:2380\n    listen-client-urls: http://0.0.0.0:2379\n    proxy: off\n",
    );
    assert_eq!(
        (v.report.errors(), v.report.warnings()),
        (0, 1),
        "{:?}",
        diags(&v)
    );
    let flags = v.config.coreos.etcd2.expect("read").flags;
    assert_eq!(
        flags[1],
        (
            "initial-cluster".into(),
            "a=http://$private_ipv4:2380".into()
        )
    );
    assert_eq!(flags[3], ("proxy".into(), "off".into()));
    assert!(
        only_error("coreos:\n  etcd2:\n    listen-client-urls: 0.0.0.0:2379\n")
            .contains("not an http")
    );
    assert!(
        only_error("coreos:\n  etcd2:\n    initial-cluster-state: maybe\n")
            .contains("new or existing")
    );
    assert!(
        only_error("coreos:\n  etcd2:\n    listen-everything: yes\n").contains("not an etcd flag")
    );
}

#[test]
fn unit_names_and_kinds() {
    assert!(only_error("coreos:\n  units:\n    - name: hello\n").contains("needs a type suffix"));
    assert!(only_error("coreos:\n  units:\n    - name: hello.exe\n").contains("not a unit type"));
    assert!(only_error("coreos:\n  units:\n    - name: he llo.service\n").contains("only letters"));
    assert!(
        only_error("coreos:\n  units:\n    - name: a.service\n      command: begin\n")
            .contains("unknown command")
    );
    for (kind, advice) in [
        ("timer", "timers are not supported"),
        ("path", "path units"),
        ("mount", "mount units"),
        ("target", "targets are not needed"),
    ] {
        let v = check(&format!(
            "coreos:\n  units:\n    - name: x.{kind}\n      content: |\n        [Unit]\n"
        ));
        assert_eq!(v.report.errors(), 0);
        assert!(v.report.diagnostics[0].message.contains(advice), "{kind}");
    }
}

#[test]
fn unit_translation_findings_point_into_the_content() {
    let v = check(
        "coreos:\n  units:\n    - name: web.service\n      command: start\n      content: |\n        [Service]\n        ExecStart=/usr/bin/web\n        LimitNOFILE=1000\n      drop-ins:\n        - name: 10-env.conf\n          content: |\n            [Service]\n            Environment=A=1\n            Nice=5\n",
    );
    let m = diags(&v);
    assert_eq!(
        m,
        [
            "9:9 warning coreos.units[0].content: `LimitNOFILE=1000` is not honoured: Tandem's services have no such setting",
            "15:13 warning coreos.units[0].drop-ins[0].content: `Nice=5` is not honoured: Tandem's services have no such setting",
        ]
    );
    assert_eq!(v.services.len(), 1);
    assert_eq!(spec(&v, 0).env.get("A").map(String::as_str), Some("1"));
    let v = check(
        "coreos:\n  units:\n    - name: web.service\n      content: |\n        [Service]\n        ExecStart=web\n        oops\n",
    );
    assert_eq!(
        diags(&v),
        [
            "8:9 error coreos.units[0].content: unit file line 3: \"oops\" is neither `[Section]` nor `Key=Value`"
        ]
    );
    let v = check(
        "coreos:\n  units:\n    - name: web.service\n      content: |\n        [Service]\n        ExecStart=web\n",
    );
    assert!(diags(&v)[0].starts_with("7:9 error coreos.units[0].content: `ExecStart=`: the program \"web\" must be an absolute path"), "{:?}", diags(&v));
    let v = check(
        "coreos:\n  units:\n    - name: web.service\n      content: |\n        [Unit]\n        Description=x\n",
    );
    assert!(
        diags(&v)[0].starts_with("4:7 error coreos.units[0]: `web.service` has no `ExecStart=`"),
        "{:?}",
        diags(&v)
    );
}

#[test]
fn drop_ins_for_image_units_and_names() {
    let v = check(
        "coreos:\n  units:\n    - name: docker.service\n      drop-ins:\n        - name: 50-opts.conf\n          content: |\n            [Service]\n            Environment=X=1\n",
    );
    assert_eq!((v.report.errors(), v.report.warnings()), (0, 1));
    assert!(v.report.diagnostics[0].message.contains("cannot apply"));
    assert!(only_error("coreos:\n  units:\n    - name: docker.service\n      drop-ins:\n        - name: opts\n          content: x\n").contains("not a drop-in name"));
}

#[test]
fn units_order_after_each_other() {
    let v = check(
        "coreos:\n  units:\n    - name: db.service\n      command: start\n      content: |\n        [Service]\n        ExecStart=/usr/bin/db\n    - name: app.service\n      command: start\n      content: |\n        [Unit]\n        After=db.service\n        Requires=db.service\n        [Service]\n        ExecStart=/usr/bin/app\n",
    );
    let app = v
        .services
        .iter()
        .find(|s| s.name == "app")
        .expect("translated");
    assert_eq!(app.file.after, ["db"]);
}

#[test]
fn tandem_services_section() {
    let v = check(
        "tandem:\n  services:\n    web:\n      exec: [/usr/bin/docker, run, nginx]\n      restart: always\n      after_network: true\n      memory_max: 256M\n      env:\n        A: '1'\n    setup:\n      type: oneshot\n      exec: [/usr/bin/true]\n",
    );
    assert!(v.report.valid(), "{:?}", diags(&v));
    assert_eq!(v.services.len(), 2);
    assert_eq!(spec(&v, 0).restart, Restart::Always);
    assert_eq!(spec(&v, 0).limits.memory_max, Some(256 << 20));
    assert_eq!(spec(&v, 1).restart, Restart::Never, "a oneshot's default");
    assert!(
        only_error("tandem:\n  services:\n    web:\n      exec: [docker]\n").contains("absolute")
    );
    assert!(
        only_error("tandem:\n  services:\n    web:\n      exce: [/bin/x]\n      exec: [/bin/x]\n")
            .contains("did you mean `exec`")
    );
    assert!(
        only_error("tandem:\n  services:\n    web:\n      restart: never\n")
            .contains("needs `exec`")
    );
    assert!(
        only_error("tandem:\n  services:\n    web:\n      exec: [/bin/x]\n      cpu_weight: 0\n")
            .contains("from 1 to 10000")
    );
}

#[test]
fn tandem_service_clashing_with_a_unit() {
    assert_eq!(
        only_error(
            "coreos:\n  units:\n    - name: web.service\n      content: |\n        [Service]\n        ExecStart=/bin/web\ntandem:\n  services:\n    web:\n      exec: [/bin/web]\n"
        ),
        "10:5 tandem.services.web: the service `web` is also a unit in coreos.units"
    );
}

const NETWORK: &str = "tandem:\n  network:\n    interfaces:\n";

#[test]
fn tandem_network_section() {
    let v = check(&format!(
        "{NETWORK}      - name: eth1\n        addresses: [10.99.0.11/24, 10.98.0.11/16]\n        gateway: 10.99.0.1\n        routes:\n          - to: 10.100.0.0/16\n            via: 10.98.0.1\n        dns: [10.99.0.1]\n      - mac: \"52:54:00:AB:34:57\"\n        addresses: [192.168.5.2/24]\n"
    ));
    assert!(v.report.valid(), "{:?}", diags(&v));
    let n = &v.config.tandem.network;
    assert_eq!(n.interfaces.len(), 2);
    let eth1 = &n.interfaces[0];
    assert_eq!(eth1.pos, Pos::new(5, 9));
    assert_eq!(eth1.name.as_deref(), Some("eth1"));
    assert_eq!(eth1.addresses[1].to_string(), "10.98.0.11/16");
    assert_eq!(eth1.gateway, Some("10.99.0.1".parse().expect("ip")));
    assert_eq!(eth1.routes[0].to.to_string(), "10.100.0.0/16");
    assert_eq!(
        eth1.dns,
        vec!["10.99.0.1".parse::<std::net::Ipv4Addr>().expect("ip")]
    );
    assert_eq!(n.interfaces[1].mac.as_deref(), Some("52:54:00:ab:34:57"));
    assert_eq!(n.first_address(), Some("10.99.0.11".parse().expect("ip")));
}

#[test]
fn tandem_network_errors_have_positions() {
    let one = |entry: &str| only_error(&format!("{NETWORK}{entry}"));
    assert_eq!(
        one(
            "      - name: eth1\n        adresses: [10.0.0.2/24]\n        addresses: [10.0.0.2/24]\n"
        ),
        "6:9 tandem.network.interfaces[0].adresses: unknown key `adresses` in a `tandem.network.interfaces` entry: did you mean `addresses`?"
    );
    assert_eq!(
        one("      - name: eth1\n        addresses: [10.0.0.2]\n"),
        "6:21 tandem.network.interfaces[0].addresses[0]: \"10.0.0.2\" has no prefix length: write it as address/prefix (10.0.0.5/24)"
    );
    assert_eq!(
        one("      - name: eth1\n        addresses: [10.0.0.2/24, 'fd00::2/64']\n"),
        "6:34 tandem.network.interfaces[0].addresses[1]: \"fd00::2/64\": IPv6 static addresses are not supported yet"
    );
    assert_eq!(
        one("      - name: eth1\n        addresses: [10.0.0.300/24]\n"),
        "6:21 tandem.network.interfaces[0].addresses[0]: \"10.0.0.300/24\" is not an IPv4 address with a prefix length (10.0.0.5/24)"
    );
    assert_eq!(
        one("      - mac: 52:54:00:12:34\n        addresses: [10.0.0.2/24]\n"),
        "5:14 tandem.network.interfaces[0].mac: \"52:54:00:12:34\" is not a MAC address (six hexadecimal pairs separated by colons: \"52:54:00:12:34:57\")"
    );
    assert_eq!(
        one(
            "      - name: eth1\n        mac: \"52:54:00:12:34:57\"\n        addresses: [10.0.0.2/24]\n"
        ),
        "5:9 tandem.network.interfaces[0]: give either `name` or `mac`, not both: one says which interface"
    );
    assert_eq!(
        one("      - addresses: [10.0.0.2/24]\n"),
        "5:9 tandem.network.interfaces[0]: an interface needs `name` (eth1) or `mac` (\"52:54:00:12:34:57\")"
    );
    assert!(one("      - name: eth1\n").contains("needs `addresses`"));
    assert!(one("      - name: eth1\n        addresses: []\n").contains("at least one address"));
    assert_eq!(
        one("      - name: eth1\n        addresses: [10.0.0.2/24]\n        gateway: 10.0.1.1\n"),
        "7:18 tandem.network.interfaces[0].gateway: the gateway 10.0.1.1 is not in the interface's subnets (10.0.0.0/24): the node could not reach it"
    );
    assert_eq!(
        one(
            "      - name: eth1\n        addresses: [10.0.0.2/24]\n        gateway: 10.0.0.1\n      - name: eth2\n        addresses: [10.1.0.2/24]\n        gateway: 10.1.0.1\n"
        ),
        "8:9 tandem.network.interfaces[1].gateway: only one interface may have a gateway (the default route): `eth1` (10.0.0.1) has one (line 5); give this one's networks as `routes`"
    );
    assert_eq!(
        one(
            "      - name: eth1\n        addresses: [10.0.0.2/24]\n      - name: eth1\n        addresses: [10.1.0.2/24]\n"
        ),
        "7:9 tandem.network.interfaces[1]: the interface `eth1` is given twice (first on line 5)"
    );
    assert_eq!(
        one(
            "      - mac: 52:54:00:12:34:57\n        addresses: [10.0.0.2/24]\n      - mac: 52:54:00:12:34:57\n        addresses: [10.1.0.2/24]\n"
        ),
        "7:9 tandem.network.interfaces[1]: the interface with mac 52:54:00:12:34:57 is given twice (first on line 5)"
    );
    assert_eq!(
        one(
            "      - name: eth1\n        addresses: [10.0.0.2/24]\n      - name: eth2\n        addresses: [10.0.0.2/24]\n"
        ),
        "7:9 tandem.network.interfaces[1]: the address 10.0.0.2 is also on `eth1`"
    );
    assert_eq!(
        one(
            "      - name: eth1\n        addresses: [10.0.0.2/24]\n        routes:\n          - to: 10.100.0.0/16\n            via: 10.9.0.1\n"
        ),
        "8:13 tandem.network.interfaces[0]: the route to 10.100.0.0/16: via 10.9.0.1 is not in the interface's subnets (10.0.0.0/24): the node could not reach it"
    );
    assert_eq!(
        one(
            "      - name: eth1\n        addresses: [10.0.0.2/24]\n        routes:\n          - to: 10.100.0.5/16\n            via: 10.0.0.1\n"
        ),
        "8:17 tandem.network.interfaces[0].routes[0].to: 10.100.0.5/16 is not a network (its host bits are set): did you mean 10.100.0.0/16?"
    );
    assert!(
        one("      - name: eth1\n        addresses: [10.0.0.2/24]\n        routes:\n          - to: 0.0.0.0/0\n            via: 10.0.0.1\n")
            .contains("give it as the interface's `gateway`")
    );
    assert!(
        one("      - name: eth1\n        addresses: [10.0.0.2/24]\n        routes:\n          - to: 10.100.0.0/16\n")
            .contains("a route needs `to`")
    );
    assert!(
        one("      - name: eth1\n        addresses: [10.0.0.2/24]\n        routes:\n          - to: 10.100.0.0/16\n            via: 10.0.0.1\n            metric: 5\n")
            .contains("unknown key `metric` in an interface's `routes` entry")
    );
    assert_eq!(
        one(
            "      - name: eth1\n        addresses: [10.0.0.2/24]\n        dns: [10.0.0.1, 'fd00::1']\n"
        ),
        "7:25 tandem.network.interfaces[0].dns[1]: \"fd00::1\": IPv6 static addresses are not supported yet"
    );
    assert!(
        one("      - name: eth0:1\n        addresses: [10.0.0.2/24]\n")
            .contains("is not an interface name")
    );
    assert_eq!(
        only_error("tandem:\n  network:\n    eth1: {}\n"),
        "4:5 tandem.network.eth1: unknown key `eth1` under `tandem.network`; known keys: interfaces"
    );
    // An invalid interface is left out of the model.
    let v = check(&format!(
        "{NETWORK}      - name: eth1\n        addresses: [10.0.0.2]\n"
    ));
    assert!(v.config.tandem.network.interfaces.is_empty());
}
