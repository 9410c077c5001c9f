//! Provisioning from each datasource (issue 13): one image (the SSH server
//! example, with no key of its own), configured only by cloud-config from
//! a NoCloud volume (ISO 9660, made with xorriso), an OpenStack config drive
//! (FAT, label `config-2`), the OEM partition, a URL on the kernel command
//! line (over HTTP from the host, with its sha256), QEMU's fw_cfg, and
//! EC2-style metadata (IMDSv2, served by the test and reached by the guest
//! at 169.254.169.254 through QEMU's user network). On each node the
//! host's OpenSSH client logs in as `core` with the provisioned key and
//! finds the host name, a written file with its mode and owner,
//! `$private_ipv4` replaced, a unit running as a service, and the update
//! strategy and etcd endpoint in force. A second boot with a changed config
//! applies the change without duplicates; a broken config leaves a node
//! whose status names the problem with its line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use qemu_tests::fixtures::Fixtures;
use qemu_tests::seed::Seed;
use qemu_tests::ssh::{KeyPair, login};
use qemu_tests::vm::free_port;
use qemu_tests::{Disk, Env, Vm, VmConfig, examples};
use sha2::{Digest, Sha256};

const BOOT: Duration = Duration::from_secs(240);
const CMD: Duration = Duration::from_secs(60);

fn key() -> Result<KeyPair> {
    KeyPair::new("provisioned")
}

/// The SSH server example's definition with Debian's etcd-server added
/// (for `coreos.etcd2`), as `version`, with `extra` appended.
fn etcd_definition(version: &str, extra: &str) -> Result<String> {
    let definition =
        std::fs::read_to_string(examples::examples_dir().join("ssh-server/image.toml"))?;
    let with_etcd = definition
        .replace(
            "packages = [\"busybox-static\", \"openssh-server\"]",
            "packages = [\"busybox-static\", \"openssh-server\", \"etcd-server\"]",
        )
        .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
    ensure!(
        with_etcd.contains("etcd-server") && with_etcd.contains(version),
        "the ssh-server example's packages or version line changed"
    );
    Ok(with_etcd + extra)
}

/// No key in the image: every key comes from provisioning.
const NO_KEYS: (&str, &[u8]) = (
    "files/authorized_keys",
    b"# keys come from the node's cloud-config\n",
);

/// The SSH server example without a key of its own, with etcd-server.
fn image(env: &Env) -> Result<PathBuf> {
    let definition = etcd_definition("1.0.0", "")?;
    Ok(examples::build(
        env,
        "ssh-server",
        "provision",
        &[("image.toml", definition.as_bytes()), NO_KEYS],
    )?
    .join("disk.raw"))
}

/// The etcd the agent's endpoint names: on the host (not running: only the
/// setting is checked) or a member on the node from `coreos.etcd2`.
const HOST_ETCD: &str = "http://10.0.2.2:23790";
/// The endpoint the agent gets from `coreos.etcd2` without a locksmith
/// endpoint.
const NODE_ETCD: &str = "http://127.0.0.1:2379";

/// A config that touches every part the test checks; `keys` empty leaves
/// core's keys to the metadata (EC2).
fn config(tag: &str, keys: &[&str]) -> String {
    with_etcd(tag, keys, false)
}

/// [`config`], with an etcd member on the node (`coreos.etcd2`) instead of
/// a locksmith endpoint when `member`.
fn with_etcd(tag: &str, keys: &[&str], member: bool) -> String {
    let mut text = format!("#cloud-config\nhostname: node-{tag}\n");
    if !keys.is_empty() {
        text.push_str("ssh_authorized_keys:\n");
        for k in keys {
            text.push_str(&format!("  - {k}\n"));
        }
    }
    text.push_str(&format!(
        r#"users:
  - name: ops
    gecos: Operations
    groups: [adm]
write_files:
  - path: /etc/tandem-test/hello
    permissions: '0640'
    owner: core:core
    content: |
      hello from {tag} at $private_ipv4
coreos:
  update:
    reboot-strategy: etcd-lock
    group: beta
  locksmith:
{locksmith}    group: web
{etcd2}  units:
    - name: hello.service
      command: start
      content: |
        [Unit]
        Description=says hello
        [Service]
        ExecStart=/bin/sh -c 'echo {tag} > /run/hello; exec sleep 100000'
        ExecStop=/bin/sh -c 'echo stopping $MAINPID >> /var/lib/hello-stops'
"#,
        locksmith = if member {
            String::new()
        } else {
            format!("    endpoint: {HOST_ETCD}\n")
        },
        etcd2 = if member {
            format!(
                "  etcd2:
    name: node-{tag}
    advertise-client-urls: http://$private_ipv4:2379
    listen-client-urls: http://0.0.0.0:2379
    initial-advertise-peer-urls: http://$private_ipv4:2380
    listen-peer-urls: http://$private_ipv4:2380
    initial-cluster: node-{tag}=http://$private_ipv4:2380
    initial-cluster-state: new
"
            )
        } else {
            String::new()
        },
    ));
    text
}

/// Boots `disk` with `cfg` plus an SSH forward; waits for `system ready`.
fn boot(mut cfg: VmConfig, disk: &Disk) -> Result<(Vm, u16)> {
    let port = free_port()?;
    cfg.forwards.push((port, 22));
    let mut vm = Vm::start(&cfg, disk)?;
    vm.wait_for("tandem: system ready", BOOT)?;
    Ok((vm, port))
}

/// Everything a provisioned node must show; `private` is what
/// `$private_ipv4` must have become.
fn check_node(
    vm: &mut Vm,
    port: u16,
    key: &KeyPair,
    tag: &str,
    private: &str,
    source: &str,
) -> Result<()> {
    check_with_etcd(vm, port, key, (tag, private, source), HOST_ETCD)
}

/// [`check_node`] with the agent's expected etcd endpoint.
fn check_with_etcd(
    vm: &mut Vm,
    port: u16,
    key: &KeyPair,
    (tag, private, source): (&str, &str, &str),
    etcd: &str,
) -> Result<()> {
    let out = login(
        &key.private,
        port,
        "id -un; hostname; stat -c '%a %U:%G' /etc/tandem-test/hello; cat /etc/tandem-test/hello; cat /run/hello",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "core",
            &format!("node-{tag}"),
            "640 core:core",
            &format!("hello from {tag} at {private}"),
            tag
        ],
        "{out}"
    );
    let status: serde_json::Value = serde_json::from_str(&vm.run("tandemctl status --json", CMD)?)?;
    let p = &status["provisioning"];
    assert_eq!(p["state"], "applied", "{p}");
    assert!(
        p["datasource"]
            .as_str()
            .unwrap_or_default()
            .contains(source),
        "datasource {} is not {source}",
        p["datasource"]
    );
    let hello = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "hello"))
        .with_context(|| format!("no service hello: {status}"))?;
    assert_eq!(hello["state"], "running", "{hello}");
    let passwd = vm.run("grep -c '^ops:' /etc/passwd; id -Gn ops", CMD)?;
    assert!(passwd.starts_with("1\n"), "{passwd}");
    assert!(passwd.contains("adm"), "{passwd}");
    let update: serde_json::Value =
        serde_json::from_str(&vm.run("tandemctl update status --json", CMD)?)?;
    assert_eq!(update["reboot_strategy"], "etcd-lock", "{update}");
    assert_eq!(update["channel"], "beta", "{update}");
    // The agent logs its configuration once it has tried etcd (none runs
    // at that address: only the setting is checked here).
    let agent = vm.run(
        "for i in $(seq 60); do grep -q 'configuration:' /run/tandem/log/agent.log && break; sleep 1; done; cat /run/tandem/log/agent.log",
        Duration::from_secs(90),
    )?;
    let line = agent
        .lines()
        .rfind(|l| l.contains("configuration:"))
        .unwrap_or_default();
    assert!(
        line.contains("group web") && line.contains(&format!("etcd {etcd}")),
        "{agent}"
    );
    Ok(())
}

#[test]
fn provisioned_from_a_nocloud_volume_then_a_changed_config() -> Result<()> {
    let env = Env::get()?;
    let key = key()?;
    let other = qemu_tests_key_line()?;
    let disk = Disk::overlay(&image(&env)?)?;
    let seed = Seed::iso(
        "cidata",
        &[
            ("user-data", &config("nocloud", &[&key.public, &other])),
            ("meta-data", "instance-id: i-1\nlocal-hostname: ignored\n"),
        ],
    )?;
    let mut cfg = VmConfig::new("provision-nocloud");
    cfg.extra = seed.qemu_args();
    let (mut vm, port) = boot(cfg, &disk)?;
    check_node(&mut vm, port, &key, "nocloud", "10.0.2.15", "NoCloud")?;
    let keys = vm.run(
        "grep -c '^ssh-' /run/tandem/provisioned/authorized_keys.d/core",
        CMD,
    )?;
    assert_eq!(keys.trim(), "2", "{keys}");
    let shown = vm.run("tandemctl config show", CMD)?;
    assert!(shown.contains("hello from nocloud at 10.0.2.15"), "{shown}");
    vm.send("poweroff\n")?;
    vm.wait_exit(BOOT)?;

    // The same disk, a changed config: a new host name and file content,
    // one key fewer. Applied, and nothing twice.
    let changed = config("changed", &[&key.public]);
    let seed = Seed::iso(
        "cidata",
        &[("user-data", &changed), ("meta-data", "instance-id: i-1\n")],
    )?;
    let mut cfg = VmConfig::new("provision-nocloud-changed");
    cfg.extra = seed.qemu_args();
    let (mut vm, port) = boot(cfg, &disk)?;
    check_node(&mut vm, port, &key, "changed", "10.0.2.15", "NoCloud")?;
    let counts = vm.run(
        "grep -c '^ops:' /etc/passwd; grep -c '^ops:' /etc/shadow; grep -c '^ops:' /etc/group; wc -l < /run/tandem/provisioned/authorized_keys.d/core; ls /run/tandem/provisioned/services",
        CMD,
    )?;
    assert_eq!(
        counts.split_whitespace().collect::<Vec<_>>(),
        ["1", "1", "1", "1", "hello.toml"],
        "{counts}"
    );
    // The unit's `ExecStop=` ran at the first boot's poweroff, and runs at
    // a stop, before SIGTERM, with the main PID.
    let status: serde_json::Value = serde_json::from_str(&vm.run("tandemctl status --json", CMD)?)?;
    let pid = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "hello"))
        .and_then(|s| s["pid"].as_i64())
        .with_context(|| format!("no running service hello: {status}"))?;
    let stops = vm.run(
        "tandemctl stop hello >/dev/null; cat /var/lib/hello-stops",
        CMD,
    )?;
    // The console interleaves PID 1's lines.
    let lines: Vec<&str> = stops
        .lines()
        .filter(|l| l.starts_with("stopping"))
        .collect();
    assert_eq!(lines.len(), 2, "{stops}");
    let first = lines[0].strip_prefix("stopping ").unwrap_or_default();
    assert!(first.parse::<u32>().is_ok(), "{stops}");
    assert_eq!(lines[1], format!("stopping {pid}"), "{stops}");
    let line = format!("hello: stop commands done; sending SIGTERM to hello (pid {pid})");
    assert!(stops.contains(&line), "{stops}");
    Ok(())
}

/// A second public key (not used to log in), for the key count.
fn qemu_tests_key_line() -> Result<String> {
    Ok(key()?.public)
}

#[test]
fn provisioned_from_a_config_drive_and_the_oem_partition() -> Result<()> {
    let env = Env::get()?;
    let key = key()?;
    let image = image(&env)?;

    // An OpenStack config drive (FAT, as Nova makes with
    // config_drive_format=vfat); its meta_data.json has the key.
    let disk = Disk::overlay(&image)?;
    let meta = format!(
        "{{\"uuid\": \"83679162-1378-4288-a2d4-70e13ec132aa\", \"hostname\": \"ignored\", \"public_keys\": {{\"mykey\": \"{}\"}}}}",
        key.public
    );
    let drive = Seed::fat(
        "config-2",
        &[
            (
                "openstack/latest/user_data",
                &with_etcd("configdrive", &[], true),
            ),
            ("openstack/latest/meta_data.json", &meta),
        ],
    )?;
    let mut cfg = VmConfig::new("provision-config-drive");
    cfg.extra = drive.qemu_args();
    let (mut vm, port) = boot(cfg, &disk)?;
    check_with_etcd(
        &mut vm,
        port,
        &key,
        ("configdrive", "10.0.2.15", "config drive"),
        NODE_ETCD,
    )?;
    // `coreos.etcd2` runs a member on the node, and the agent keeps its
    // fleet record there.
    let fleet = vm.run(
        "for i in $(seq 60); do tandemctl cluster status 2>&1 | grep -q '^node-configdrive ' && break; sleep 1; done; tandemctl cluster status 2>&1",
        Duration::from_secs(90),
    )?;
    assert!(
        fleet.lines().any(|l| l.starts_with("node-configdrive ")),
        "{fleet}"
    );
    vm.send("poweroff\n")?;
    vm.wait_exit(BOOT)?;

    // user-data on the OEM partition.
    let disk = Disk::copy(&image)?;
    disk.put_oem_file("user-data", config("oem", &[&key.public]).as_bytes())?;
    let (mut vm, port) = boot(VmConfig::new("provision-oem"), &disk)?;
    check_node(&mut vm, port, &key, "oem", "10.0.2.15", "OEM")?;
    Ok(())
}

#[test]
fn provisioned_from_a_kernel_command_line_url_and_fw_cfg() -> Result<()> {
    let env = Env::get()?;
    let key = key()?;
    let image = image(&env)?;
    // The two nodes run side by side, joined by a second network card (a
    // QEMU socket link) with static addresses from their configs, which
    // `$private_ipv4` then names.
    let link = free_port()?;

    // The URL on the kernel command line (the OEM partition's cmdline
    // file), served by the host with its sha256.
    let served = tempfile::tempdir()?;
    let text = config("url", &[&key.public]) + &static_nic(1);
    std::fs::write(served.path().join("user-data"), &text)?;
    let server = qemu_tests::server::Server::start(
        &env.tandem,
        served.path(),
        &qemu_tests::vm::log_dir().join("provision-url.requests.jsonl"),
    )?;
    let url_disk = Disk::copy(&image)?;
    let sha = hex(&Sha256::digest(text.as_bytes()));
    url_disk.put_oem_file(
        "cmdline",
        format!(
            "tandem.config.url={}user-data tandem.config.sha256={sha}\n",
            server.guest_url()
        )
        .as_bytes(),
    )?;
    let mut cfg = VmConfig::new("provision-url");
    cfg.extra = second_nic(&format!("listen=127.0.0.1:{link}"), 1);

    // QEMU's fw_cfg.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("user-data");
    std::fs::write(&file, config("fwcfg", &[&key.public]) + &static_nic(2))?;
    let fw_disk = Disk::overlay(&image)?;
    let mut fw_cfg = VmConfig::new("provision-fw-cfg");
    fw_cfg.extra = vec![
        "-fw_cfg".into(),
        format!("name=opt/org.tandem/user-data,file={}", file.display()),
    ];
    fw_cfg
        .extra
        .extend(second_nic(&format!("connect=127.0.0.1:{link}"), 2));

    // The listening side first, so that the other finds it.
    let (mut url, url_port) = boot(cfg, &url_disk)?;
    let (mut fw, fw_port) = boot(fw_cfg, &fw_disk)?;
    check_node(&mut url, url_port, &key, "url", "10.99.0.21", "http://")?;
    check_node(&mut fw, fw_port, &key, "fwcfg", "10.99.0.22", "fw_cfg")?;
    // Each reaches the other over the static link; DHCP still runs on the
    // first card.
    let ping = url.run("ping -c 2 -W 5 10.99.0.22 && ip -4 addr show", CMD)?;
    assert!(ping.contains("2 packets received"), "{ping}");
    assert!(ping.contains("10.0.2.15/24"), "{ping}");
    let back = fw.run("ping -c 2 -W 5 10.99.0.21", CMD)?;
    assert!(back.contains("2 packets received"), "{back}");
    Ok(())
}

/// The MAC of node `n`'s second card.
fn mac(n: u8) -> String {
    format!("52:54:00:00:01:{n:02x}")
}

/// QEMU arguments for node `n`'s second card on a socket link (`listen=…`
/// or `connect=…`).
fn second_nic(socket: &str, n: u8) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("socket,id=link,{socket}"),
        "-device".into(),
        format!("virtio-net-pci,netdev=link,mac={}", mac(n)),
    ]
}

/// The config's `tandem.network`: node `n`'s second card at 10.99.0.2n/24.
fn static_nic(n: u8) -> String {
    format!(
        "tandem:\n  network:\n    interfaces:\n      - mac: \"{}\"\n        addresses: [10.99.0.2{n}/24]\n",
        mac(n)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn provisioned_from_ec2_metadata_and_a_broken_config() -> Result<()> {
    let env = Env::get()?;
    let key = key()?;
    let image = image(&env)?;

    // IMDSv2 on the host, at 169.254.169.254 for the guest: the user
    // network moved to 169.254.169.0/24 so that the address is in it.
    let imds = Imds::start(&config("ec2", &[]), &key.public)?;
    let disk = Disk::overlay(&image)?;
    let mut cfg = VmConfig::new("provision-ec2");
    cfg.net_options = vec![
        "net=169.254.169.0/24".into(),
        "host=169.254.169.2".into(),
        "dhcpstart=169.254.169.15".into(),
        format!(
            "guestfwd=tcp:169.254.169.254:80-tcp:127.0.0.1:{}",
            imds.port
        ),
    ];
    cfg.extra = vec![
        "-smbios".into(),
        "type=1,manufacturer=Amazon EC2,product=t3.small".into(),
    ];
    let (mut vm, port) = boot(cfg, &disk)?;
    // $private_ipv4 from the metadata's local-ipv4, not DHCP's address;
    // core's key from the metadata's key pair.
    let ec2 = check_node(&mut vm, port, &key, "ec2", "172.31.7.9", "EC2");
    let requests = imds.requests();
    ec2.with_context(|| format!("IMDS requests: {requests:?}"))?;
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("PUT /latest/api/token")),
        "{requests:?}"
    );
    vm.send("poweroff\n")?;
    vm.wait_exit(BOOT)?;

    // A broken config (fw_cfg): an unknown key, a bad mode, a path under
    // /usr. The node boots, reachable on its console, and says what and
    // where.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("user-data");
    std::fs::write(
        &file,
        "#cloud-config\nhostname: broken\nunits: []\nwrite_files:\n  - path: /usr/bin/evil\n    permissions: '0999'\n",
    )?;
    // The node's agent reaches an etcd on the host (the OEM partition's
    // agent.toml, since the broken config gives none): its fleet record
    // carries the errors.
    let etcd = qemu_tests::etcd::EtcdCluster::start(1)?;
    let etcd_port = etcd.client_port()?;
    let disk = Disk::copy(&image)?;
    disk.put_oem_file(
        "agent.toml",
        format!("[etcd]\nendpoints = [\"http://10.0.2.2:{etcd_port}\"]\n").as_bytes(),
    )?;
    let mut cfg = VmConfig::new("provision-broken");
    cfg.extra = vec![
        "-fw_cfg".into(),
        format!("name=opt/org.tandem/user-data,file={}", file.display()),
    ];
    let mut vm = Vm::start(&cfg, &disk)?;
    vm.wait_for("tandem: provisioning: failed (QEMU fw_cfg", BOOT)?;
    vm.wait_for("tandem: system ready", BOOT)?;
    let status = vm.run("tandemctl status", CMD)?;
    assert!(
        status.contains("config:     failed (QEMU fw_cfg"),
        "{status}"
    );
    for needle in [
        "user-data:3:1: units: `units` belongs under `coreos:`",
        "user-data:5:11",
        "user-data:6:18",
    ] {
        assert!(status.contains(needle), "{needle} not in:\n{status}");
    }
    let host = vm.run("hostname", CMD)?;
    assert_ne!(host.trim(), "broken", "a failed config must not be applied");
    let client = etcd.client()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let record = loop {
        let (nodes, _) = agent::fleet::nodes(&client)?;
        if let Some(n) = nodes.into_iter().find(|n| !n.config_errors.is_empty()) {
            break n;
        }
        if Instant::now() > deadline {
            bail!("no fleet record with the config's errors in etcd");
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(
        record.config,
        Some(tandem_contract::provision::ProvisionState::Failed),
        "{record:?}"
    );
    assert!(
        record.config_errors[0].starts_with("user-data:3:1: units: "),
        "{record:?}"
    );
    assert_eq!(record.config_errors.len(), 3, "{record:?}");
    Ok(())
}

/// An IMDSv2 service: a token by PUT, then user-data and meta-data for
/// requests that carry it (401 without).
struct Imds {
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Imds {
    fn start(user_data: &str, key: &str) -> Result<Imds> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let (user_data, key, seen) = (user_data.to_string(), key.to_string(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (user_data, key, seen) = (user_data.clone(), key.clone(), seen.clone());
                std::thread::spawn(move || {
                    let _ = Imds::serve(stream, &user_data, &key, &seen);
                });
            }
        });
        Ok(Imds { port, log })
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Answers the requests of one connection (kept alive, as EC2's).
    fn serve(
        stream: std::net::TcpStream,
        user_data: &str,
        key: &str,
        seen: &std::sync::Mutex<Vec<String>>,
    ) -> Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut stream = stream;
        loop {
            let mut request = String::new();
            if reader.read_line(&mut request)? == 0 {
                return Ok(());
            }
            let mut token = None;
            let mut length = 0usize;
            let mut chunked = false;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line)?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("x-aws-ec2-metadata-token:") {
                    token = Some(v.trim().to_string());
                }
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
            }
            if chunked {
                // Chunks until the empty one (the token request has none).
                loop {
                    let mut size = String::new();
                    reader.read_line(&mut size)?;
                    let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                    let mut chunk = vec![0; n + 2];
                    reader.read_exact(&mut chunk)?;
                    if n == 0 {
                        break;
                    }
                }
            } else {
                let mut body = vec![0; length];
                reader.read_exact(&mut body)?;
            }
            if let Ok(mut l) = seen.lock() {
                l.push(request.trim().to_string());
            }
            let (code, text) = Imds::answer(&request, token.as_deref(), user_data, key);
            write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )?;
        }
    }

    fn answer(request: &str, token: Option<&str>, user_data: &str, key: &str) -> (u16, String) {
        const TOKEN: &str = "test-token-1";
        let mut parts = request.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method == "PUT" && path == "/latest/api/token" {
            (200, TOKEN.to_string())
        } else if token != Some(TOKEN) {
            (401, String::new())
        } else {
            match path {
                "/latest/user-data" => (200, user_data.to_string()),
                "/latest/meta-data/local-ipv4" => (200, "172.31.7.9".into()),
                "/latest/meta-data/public-ipv4" => (200, "203.0.113.9".into()),
                "/latest/meta-data/local-hostname" => (200, "ip-172-31-7-9.ec2.internal".into()),
                "/latest/meta-data/instance-id" => (200, "i-0123456789abcdef0".into()),
                "/latest/meta-data/public-keys/" => (200, "0=test-key".into()),
                "/latest/meta-data/public-keys/0/openssh-key" => (200, key.to_string()),
                _ => (404, String::new()),
            }
        }
    }
}

/// Three nodes of `version` that trust the test's release key; the build
/// directory.
fn cluster_image(env: &Env, fixtures: &Fixtures, version: &str) -> Result<PathBuf> {
    let key = std::fs::read(fixtures.key.with_extension("pub"))?;
    let definition = etcd_definition(
        version,
        "\n[update]\ntrusted-keys = [\"keys/test-release.pub\"]\n",
    )?;
    examples::build(
        env,
        "ssh-server",
        &format!("etcd-{version}"),
        &[
            ("image.toml", definition.as_bytes()),
            NO_KEYS,
            ("keys/test-release.pub", &key),
        ],
    )
}

/// Node `i`'s whole configuration: an etcd member of the three on the
/// shared segment (`$private_ipv4` is its static address there), the
/// update server and the etcd-lock strategy.
fn cluster_config(i: u8, server: &str) -> String {
    format!(
        r#"#cloud-config
hostname: etcd-{i}
coreos:
  update:
    reboot-strategy: etcd-lock
    server: {server}
  etcd2:
    name: etcd-{i}
    initial-cluster: etcd-1=http://10.99.1.1:2380,etcd-2=http://10.99.1.2:2380,etcd-3=http://10.99.1.3:2380
    initial-cluster-token: tandem-test
    initial-cluster-state: new
    initial-advertise-peer-urls: http://$private_ipv4:2380
    listen-peer-urls: http://$private_ipv4:2380
    listen-client-urls: http://$private_ipv4:2379,http://127.0.0.1:2379
    advertise-client-urls: http://$private_ipv4:2379
tandem:
  network:
    interfaces:
      - mac: "52:54:00:00:02:{i:02x}"
        addresses: [10.99.1.{i}/24]
"#
    )
}

#[test]
fn provisioned_etcd2_cluster_coordinates_an_update() -> Result<()> {
    let env = Env::get()?;
    let fixtures = Fixtures::get(&env)?;
    let v1 = cluster_image(&env, fixtures, "1.0.0")?;
    let v2 = cluster_image(&env, fixtures, "1.1.0")?;
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo)?;
    let server = qemu_tests::server::Server::start(
        &env.tandem,
        &repo,
        &qemu_tests::vm::log_dir().join("etcd2-cluster.requests.jsonl"),
    )?;

    // Three nodes whose only configuration is their cloud-config (and the
    // platform's check interval on the OEM partition, as in every update
    // lab), on a segment of their own: a second card on a QEMU multicast
    // socket. The host runs no etcd.
    let segment = free_port()?;
    let mut nodes = Vec::new();
    for i in 1..=3u8 {
        let seed = Seed::iso(
            "cidata",
            &[
                ("user-data", &cluster_config(i, &server.guest_url())),
                ("meta-data", &format!("instance-id: etcd-{i}\n")),
            ],
        )?;
        let disk = Disk::copy(&v1.join("disk.raw"))?;
        disk.put_oem_file("update.toml", b"check-interval = \"5s\"\n")?;
        let mut cfg = VmConfig::new(&format!("etcd2-cluster-{i}"));
        cfg.extra = seed.qemu_args();
        cfg.extra.extend([
            "-netdev".into(),
            format!("socket,id=link,mcast=230.0.0.1:{segment},localaddr=127.0.0.1"),
            "-device".into(),
            format!("virtio-net-pci,netdev=link,mac=52:54:00:00:02:{i:02x}"),
        ]);
        let vm = Vm::start(&cfg, &disk)?;
        nodes.push((vm, disk, seed));
    }
    for (vm, _, _) in &mut nodes {
        vm.wait_for("tandem: provisioning: applied", BOOT)?;
        vm.wait_for("tandem: system ready", BOOT)?;
    }

    // The members found each other, and every node's agent keeps its
    // record in the cluster they formed.
    let fleet = nodes[0].0.run(
        "for i in $(seq 150); do [ \"$(tandemctl cluster status 2>/dev/null | grep -c '^etcd-[123] ')\" = 3 ] && break; sleep 1; done; tandemctl cluster status 2>&1",
        Duration::from_secs(200),
    )?;
    for i in 1..=3 {
        ensure!(
            fleet.lines().any(|l| l.starts_with(&format!("etcd-{i} "))),
            "etcd-{i} is not in the nodes' own cluster:\n{fleet}"
        );
    }

    // 1.1.0 is published: each node installs it into slot B and reboots
    // when it holds the cluster's reboot lock, one at a time.
    qemu_tests::disk::run(
        std::process::Command::new(&env.tandem)
            .args(["release", "publish", "--quiet", "--repo"])
            .arg(&repo)
            .args(["--channel", "stable", "--key"])
            .arg(&fixtures.key)
            .arg(&v2),
    )?;
    for (vm, _, _) in &mut nodes {
        vm.wait_for(
            "tandem: system ready (slot B, version 1.1.0)",
            Duration::from_secs(1200),
        )?;
    }
    let mut windows = nodes
        .iter()
        .map(|(vm, _, _)| vm.reboot_window("1.1.0"))
        .collect::<Result<Vec<_>>>()?;
    windows.sort();
    for pair in windows.windows(2) {
        ensure!(
            pair[0].1 <= pair[1].0,
            "two nodes were down at once: {windows:?}"
        );
    }
    Ok(())
}
