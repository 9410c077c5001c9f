//! TLS: the CA and client certificate files, read and checked before the
//! first request, and why a handshake failed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::client::Etcd;
use super::{CONNECT_TIMEOUT, Error, TlsFileProblem, TlsSetting};

/// TLS files, all PEM. Only used for `https://` endpoints; none set means
/// the server is checked against the Mozilla roots built in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tls {
    /// CA certificate(s) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (chain) for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl Tls {
    /// Whether any TLS file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

impl Etcd {
    /// The error to report when `e` is a failed TLS handshake (rustls's
    /// error, or an alert from etcd), with what to check; `None` for any
    /// other failure.
    pub(super) fn tls_failure(
        &self,
        op: &'static str,
        key: &str,
        endpoint: &str,
        e: &ureq::Error,
    ) -> Option<Error> {
        let msg = match e {
            ureq::Error::Rustls(e) => e.to_string(),
            ureq::Error::Tls(m) => (*m).to_string(),
            ureq::Error::Io(io) => {
                match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(e) => e.to_string(),
                    // Dropped right after the handshake: perhaps etcd's alert
                    // lost the race against the request.
                    None if matches!(
                        io.kind(),
                        std::io::ErrorKind::BrokenPipe
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::UnexpectedEof
                    ) =>
                    {
                        self.probe_tls(endpoint)?
                    }
                    None => return None,
                }
            }
            _ => return None,
        };
        let hint = if msg.contains("invalid peer certificate") {
            "etcd's server certificate is not trusted: [etcd] ca-file must hold the CA that signed it, and the certificate must name the endpoint's host (subjectAltName)"
        } else if msg.contains("alert") && !self.client_cert {
            "etcd refused the connection: it asks for a client certificate (--client-cert-auth): set [etcd] cert-file and key-file"
        } else if msg.contains("alert") {
            "etcd refused the client certificate: cert-file must be signed by a CA in etcd's --trusted-ca-file, be valid now and allow client authentication (extendedKeyUsage clientAuth)"
        } else {
            "check [etcd] ca-file, cert-file and key-file"
        };
        Some(Error::TlsSession {
            endpoint: endpoint.to_string(),
            op,
            key: key.to_string(),
            msg,
            hint,
        })
    }

    /// Why etcd dropped a TLS connection, if it refused the handshake. In
    /// TLS 1.3 the client's part of the handshake ends before the server
    /// has checked the client certificate, so the request is already on
    /// its way when etcd's alert (certificate missing or refused) comes,
    /// and the client mostly sees only "broken pipe". This connects again,
    /// completes the handshake, sends nothing and waits up to 2 s for
    /// etcd's alert: rustls's error, or `None` (etcd kept the connection,
    /// or it could not be made).
    pub(super) fn probe_tls(&self, endpoint: &str) -> Option<String> {
        use std::net::{TcpStream, ToSocketAddrs};
        let config = self.probe.clone()?;
        let authority = endpoint.strip_prefix("https://")?;
        let (host, addr) = match authority.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => (h, authority.to_string()),
            _ => (authority, format!("{authority}:443")),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).ok()?;
        let addr = addr.to_socket_addrs().ok()?.next()?;
        let mut sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        sock.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut conn = rustls::ClientConnection::new(config, name).ok()?;
        let mut stream = rustls::Stream::new(&mut conn, &mut sock);
        let mut byte = [0u8; 1];
        // Whatever comes (a byte, the end, a timeout) but an alert: no TLS
        // refusal.
        stream
            .read_exact(&mut byte)
            .err()?
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map(ToString::to_string)
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::TlsFile {
        what,
        path: path.to_path_buf(),
        problem: Box::new(TlsFileProblem::Read(e)),
    })
}

/// The TLS settings for ureq, every file read and checked; and the same
/// for rustls when a ca-file is set (for [`Etcd::probe_tls`]).
#[allow(clippy::type_complexity)]
pub(super) fn tls_config(
    tls: &Tls,
) -> Result<
    (
        ureq::tls::TlsConfig,
        Option<std::sync::Arc<rustls::ClientConfig>>,
    ),
    Error,
> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let certs = |what: &'static str, path: &Path| -> Result<Vec<Certificate<'static>>, Error> {
        let pem = read_file(what, path)?;
        let mut out = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => out.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::TlsFile {
                        what,
                        path: path.to_path_buf(),
                        problem: Box::new(TlsFileProblem::Pem(e)),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(Error::TlsFile {
                what,
                path: path.to_path_buf(),
                problem: Box::new(TlsFileProblem::NoCertificate),
            });
        }
        Ok(out)
    };
    let mut builder = TlsConfig::builder();
    let mut probe_roots = None;
    let mut probe_client = None;
    if let Some(path) = &tls.ca_file {
        let roots = certs("ca-file", path)?;
        let mut store = rustls::RootCertStore::empty();
        for c in &roots {
            store
                .add(rustls::pki_types::CertificateDer::from(c.der()))
                .map_err(|e| Error::TlsFile {
                    what: "ca-file",
                    path: path.clone(),
                    problem: Box::new(TlsFileProblem::Ca(e)),
                })?;
        }
        builder = builder.root_certs(RootCerts::new_with_certs(&roots));
        probe_roots = Some(store);
    }
    match (&tls.cert_file, &tls.key_file) {
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Tls(TlsSetting::CertWithoutKey));
        }
        (Some(cert_path), Some(key_path)) => {
            let chain = certs("cert-file", cert_path)?;
            let pem = read_file("key-file", key_path)?;
            let key = PrivateKey::from_pem(&pem).map_err(|e| Error::TlsFile {
                what: "key-file",
                path: key_path.clone(),
                problem: Box::new(TlsFileProblem::NoKey(e)),
            })?;
            check_key(&chain, &key, cert_path).map_err(|problem| Error::TlsFile {
                what: "key-file",
                path: key_path.clone(),
                problem: Box::new(problem),
            })?;
            if let Ok(key_der) = rustls::pki_types::PrivateKeyDer::try_from(key.der().to_vec()) {
                let chain_der: Vec<_> = chain
                    .iter()
                    .map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec()))
                    .collect();
                probe_client = Some((chain_der, key_der));
            }
            builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
    }
    // The probe is only for diagnosis: settings rustls refuses here just
    // mean no probe.
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let probe = probe_roots.and_then(|roots| {
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
        let config = match probe_client {
            Some((chain, key)) => b.with_client_auth_cert(chain, key).ok()?,
            None => b.with_no_client_auth(),
        };
        Some(std::sync::Arc::new(config))
    });
    Ok((builder.build(), probe))
}

/// Whether rustls accepts the key and it belongs to the first certificate
/// (ureq would panic on either, when the first request is made).
fn check_key(
    chain: &[ureq::tls::Certificate<'static>],
    key: &ureq::tls::PrivateKey<'static>,
    cert_path: &Path,
) -> Result<(), TlsFileProblem> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let der = key.der().to_vec();
    let key_der = PrivateKeyDer::try_from(der).map_err(|why| TlsFileProblem::UnsupportedKey {
        cert: cert_path.to_path_buf(),
        why,
    })?;
    let certs = chain
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(certs, key_der, &provider)
        .map(|_| ())
        .map_err(|source| TlsFileProblem::KeyMismatch {
            cert: cert_path.to_path_buf(),
            source,
        })
}
