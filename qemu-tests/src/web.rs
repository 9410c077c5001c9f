//! Where fleets fetch from, on the host: Debian's nginx serving a
//! repository over HTTPS (with a redirect, as CDNs and object stores
//! send), and Debian's tinyproxy as the only way out (with basic
//! authentication). Both run in the foreground with their files in a
//! private directory, on free loopback ports, and stop when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::vm::free_port;

/// Debian's nginx (`nginx-light`).
pub const NGINX: &str = "nginx";
/// Debian's tinyproxy.
pub const TINYPROXY: &str = "tinyproxy";

/// A process stopped when dropped.
#[derive(Debug)]
struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Daemon {
    fn spawn(cmd: &mut Command, name: &'static str, log: PathBuf, port: u16) -> Result<Daemon> {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {name} (`cargo xtask setup` installs it)"))?;
        let mut d = Daemon { child, name, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = d.child.try_wait()? {
                bail!("{name} ended at start ({st}): {}", d.log_tail());
            }
            if Instant::now() > deadline {
                bail!("{name} does not listen on {port}: {}", d.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "{} log {}:\n{}",
            self.name,
            self.log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx serving a directory over HTTPS.
#[derive(Debug)]
pub struct HttpsServer {
    daemon: Daemon,
    /// Its port on the host's loopback.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl HttpsServer {
    /// Serves `root` on `https://127.0.0.1:<port>/` with `cert` and `key`
    /// (PEM). `/old/<path>` answers 302 to `/<path>`.
    pub fn start(root: &Path, cert: &Path, key: &Path) -> Result<HttpsServer> {
        let dir = tempfile::Builder::new().prefix("nginx-").tempdir()?;
        let port = free_port()?;
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port} ssl;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 root {root};\n    absolute_redirect off;\n\
                 location /old/ {{ rewrite ^/old/(.*)$ /$1 redirect; }}\n  }}\n}}\n",
            cert = cert.display(),
            key = key.display(),
            root = root.display(),
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf)?;
        let daemon = Daemon::spawn(
            Command::new(NGINX)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&path)
                .args(["-e", &format!("{d}/error.log")]),
            "nginx",
            dir.path().join("error.log"),
            port,
        )?;
        Ok(HttpsServer {
            daemon,
            port,
            _dir: dir,
        })
    }

    /// Requests nginx answered, from its access log (`"GET /… HTTP/1.1" 200`).
    pub fn requests(&self) -> Vec<String> {
        let log = self.daemon.log.with_file_name("access.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }
}

/// tinyproxy with basic authentication.
#[derive(Debug)]
pub struct Proxy {
    daemon: Daemon,
    /// Its port on the host's loopback.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// A proxy on `127.0.0.1:<port>` that wants `user`/`password` and may
    /// tunnel (CONNECT) to `connect_ports`.
    pub fn start(user: &str, password: &str, connect_ports: &[u16]) -> Result<Proxy> {
        let dir = tempfile::Builder::new().prefix("tinyproxy-").tempdir()?;
        let port = free_port()?;
        let d = dir.path().display();
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{d}/tinyproxy.log\"\nLogLevel Info\n\
             PidFile \"{d}/tinyproxy.pid\"\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth {user} {password}\n"
        );
        for p in connect_ports {
            conf.push_str(&format!("ConnectPort {p}\n"));
        }
        let path = dir.path().join("tinyproxy.conf");
        std::fs::write(&path, conf)?;
        let daemon = Daemon::spawn(
            Command::new(TINYPROXY).arg("-d").arg("-c").arg(&path),
            "tinyproxy",
            dir.path().join("tinyproxy.log"),
            port,
        )?;
        Ok(Proxy {
            daemon,
            port,
            _dir: dir,
        })
    }

    /// The proxy's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.daemon.log).unwrap_or_default()
    }
}
