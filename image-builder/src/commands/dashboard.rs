//! `tandem dashboard`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use agent::etcd::{Auth, Etcd, Tls};
use anyhow::Context;
use fleet_view::source::{Repo, Source};
use image_builder::serve::{Dashboard, DashboardOptions};

/// Arguments of `tandem dashboard`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Pages: / (the dashboard, live), /api/fleet (JSON), /metrics (Prometheus).
Read-only: forgetting a failed version, the lock's max and the rest stay with
`tandem cluster …` and `tandem lock …`. Listens on loopback by default; to
show it to others, put it behind a proxy that authenticates, or pass
--listen 0.0.0.0:8080 on a trusted network."
)]
pub struct Args {
    /// The cluster's etcd (repeat for each member), e.g. http://10.0.0.5:2379.
    #[arg(long, required = true)]
    etcd: Vec<String>,
    /// CA certificate of etcd's TLS server certificate.
    #[arg(long, value_name = "FILE")]
    etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd's --client-cert-auth (with --etcd-key).
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// The client certificate's private key.
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// etcd user (with --etcd-password-file): read access to tandem/fleet/ and coreos.com/updateengine/ is enough.
    #[arg(long, requires = "etcd_password_file")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, value_name = "FILE", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
    /// The update repository: a directory (every channel in it) or a URL (the channels the nodes follow).
    #[arg(long)]
    repo: Option<String>,
    /// Check the channel pointers' signatures against this public key (repeatable).
    #[arg(long, value_name = "KEY.pub")]
    trust: Vec<PathBuf>,
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// How long one read of etcd and the repository serves requests ("0s": every request reads).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    refresh: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    tandem_contract::time::parse_duration(s)
}

/// Serves until the process is interrupted (Ctrl-C, SIGTERM).
pub fn run(args: Args) -> anyhow::Result<u8> {
    let auth = match (&args.etcd_user, &args.etcd_password_file) {
        (Some(user), Some(file)) => Auth::Password {
            user: user.clone(),
            password: std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the etcd password from {}", file.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        },
        _ => Auth::None,
    };
    let tls = Tls {
        ca_file: args.etcd_ca,
        cert_file: args.etcd_cert,
        key_file: args.etcd_key,
    };
    let etcd = Etcd::new(&args.etcd, auth, &tls)?;
    let source = Source {
        etcd,
        repo: args.repo.as_deref().map(Repo::parse),
        trusted: image_builder::release::keys::load_public_keys(&args.trust)?,
    };
    let server = Dashboard::new(
        source,
        DashboardOptions {
            refresh: args.refresh,
        },
    )
    .bind(&args.listen)?;
    let addr = server.local_addr()?;
    // Tests wait for this line: print it once listening, and flush it.
    println!(
        "tandem dashboard: fleet of {} on http://{addr}/ (metrics on /metrics)",
        args.etcd.join(", ")
    );
    std::io::stdout().flush()?;
    image_builder::serve::exit_on_signals();
    server.run()?;
    Ok(0)
}
