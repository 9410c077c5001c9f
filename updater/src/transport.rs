//! How the node's requests reach an update server: the CA roots that
//! `https://` servers are checked against, and the proxy. Integrity never
//! depends on either (every byte is checked against the signed pointer);
//! they decide only whether the bytes can be reached.
//!
//! - **Roots**: the image's own (Debian's `ca-certificates`:
//!   `/etc/ssl/certs/ca-certificates.crt` when an image generated it,
//!   else every `.crt` under `/usr/share/ca-certificates`), plus
//!   `ca-file` from update.toml. An image with neither uses the Mozilla
//!   roots built into the binary.
//! - **Proxy**: `proxy = "http://[user:password@]host:port"` in update.toml;
//!   `proxy = "none"` ignores the environment; unset, the usual variables
//!   (`https_proxy`, `http_proxy`, `all_proxy`, `no_proxy`, and their
//!   upper-case forms) decide.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::Error;

/// The system's CA bundle, when the image has one.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where Debian's `ca-certificates` keeps the certificates themselves.
pub const SYSTEM_CERTS_DIR: &str = "/usr/share/ca-certificates";

/// The proxy setting of update.toml.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProxySetting {
    /// The environment's variables decide (unset in update.toml).
    #[default]
    Environment,
    /// No proxy, whatever the environment says (`proxy = "none"`).
    Off,
    /// This proxy (`http://[user:password@]host:port`).
    Url(String),
}

impl ProxySetting {
    /// Reads update.toml's value: `none`, or a proxy URL.
    pub fn parse(text: &str) -> Result<ProxySetting, String> {
        let t = text.trim();
        if t == "none" {
            return Ok(ProxySetting::Off);
        }
        if !(t.starts_with("http://") || t.starts_with("https://")) {
            return Err(format!(
                "proxy {:?} must be \"none\" or a URL http://[user:password@]host:port",
                redact(t)
            ));
        }
        ureq::Proxy::new(t).map_err(|e| format!("proxy {}: {e}", redact(t)))?;
        Ok(ProxySetting::Url(t.to_string()))
    }

    /// The proxy for ureq (`None`: go direct).
    fn proxy(&self) -> Option<ureq::Proxy> {
        match self {
            ProxySetting::Environment => ureq::Proxy::try_from_env(),
            ProxySetting::Off => None,
            // Checked by `parse`.
            ProxySetting::Url(u) => ureq::Proxy::new(u).ok(),
        }
    }
}

pub use tandem_contract::log::redact;

/// Roots and proxy, ready for clients.
#[derive(Clone, Debug)]
pub struct Transport {
    roots: RootCerts,
    proxy: Option<ureq::Proxy>,
    /// Where the roots came from, for messages (`146 system certificates,
    /// 1 from /etc/tandem/ca.pem`).
    pub roots_from: String,
    /// The proxy in use, password hidden (`None`: direct).
    pub proxy_shown: Option<String>,
}

impl Transport {
    /// The machine's own roots and the environment's proxy: host tools
    /// (`tandem release mirror`, `tandem dashboard`). Without a `ca-file`
    /// nothing can fail; if it did, the built-in roots, direct.
    pub fn host() -> Transport {
        Transport::new(None, &ProxySetting::Environment).unwrap_or_else(|_| Transport::direct())
    }

    /// The built-in roots and no proxy, whatever the environment says
    /// (tests and benchmarks against a server on loopback).
    pub fn direct() -> Transport {
        Transport {
            roots: RootCerts::WebPki,
            proxy: None,
            roots_from: "the Mozilla roots built in".into(),
            proxy_shown: None,
        }
    }

    /// Reads the system's roots and `ca_file`, and resolves the proxy.
    pub fn new(ca_file: Option<&Path>, proxy: &ProxySetting) -> Result<Transport, Error> {
        let mut certs = Vec::new();
        let mut from = Vec::new();
        let system = system_certs();
        if !system.is_empty() {
            from.push(format!("{} system certificates", system.len()));
            certs.extend(system);
        }
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| Error::CaFile {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
            let found = pem_certs(&pem);
            if found.is_empty() {
                return Err(Error::CaFile {
                    path: path.to_path_buf(),
                    msg: "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
                });
            }
            from.push(format!("{} from {}", found.len(), path.display()));
            certs.extend(found);
        }
        let proxy = proxy.proxy();
        Ok(Transport {
            roots_from: if from.is_empty() {
                "the Mozilla roots built in".into()
            } else {
                from.join(", ")
            },
            roots: if certs.is_empty() {
                RootCerts::WebPki
            } else {
                RootCerts::Specific(Arc::new(certs))
            },
            proxy_shown: proxy.as_ref().map(|p| redact(&p.uri().to_string())),
            proxy,
        })
    }

    /// The TLS settings for ureq.
    pub fn tls(&self) -> TlsConfig {
        TlsConfig::builder().root_certs(self.roots.clone()).build()
    }

    /// The proxy for ureq.
    pub fn proxy(&self) -> Option<ureq::Proxy> {
        self.proxy.clone()
    }
}

/// The certificates in PEM text (other items ignored).
fn pem_certs(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The image's CA certificates: the bundle if there is one, else every
/// `.crt` under Debian's certificate directory.
fn system_certs() -> Vec<Certificate<'static>> {
    if let Ok(pem) = std::fs::read(SYSTEM_BUNDLE) {
        let certs = pem_certs(&pem);
        if !certs.is_empty() {
            return certs;
        }
    }
    let mut files = Vec::new();
    collect_crt(Path::new(SYSTEM_CERTS_DIR), &mut files, 0);
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .flat_map(|pem| pem_certs(&pem))
        .collect()
}

fn collect_crt(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && depth < 4 {
            collect_crt(&p, out, depth + 1);
        } else if p.extension().is_some_and(|x| x == "crt") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_settings_parse_and_hide_passwords() {
        assert_eq!(ProxySetting::parse("none"), Ok(ProxySetting::Off));
        assert_eq!(
            ProxySetting::parse("http://p:3128"),
            Ok(ProxySetting::Url("http://p:3128".into()))
        );
        assert!(ProxySetting::parse("p:3128").is_err());
        let e = ProxySetting::parse("socks9://u:secret@p:1").expect_err("bad scheme");
        assert!(!e.contains("secret"), "{e}");
        assert_eq!(redact("http://u:secret@p:3128"), "http://u:***@p:3128");
        assert_eq!(redact("http://p:3128"), "http://p:3128");
        assert_eq!(
            redact("proxy http://u:p@w@p:3128/x"),
            "proxy http://u:***@p:3128/x"
        );
        assert_eq!(redact("server http://a/b@c"), "server http://a/b@c");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate").expect("write");
        let e = Transport::new(Some(&f), &ProxySetting::Off).expect_err("no certs");
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        let e = Transport::new(Some(&dir.path().join("missing.pem")), &ProxySetting::Off)
            .expect_err("missing");
        assert!(e.to_string().contains("missing.pem"), "{e}");
    }
}
