//! Fetching from the update repository over HTTP or HTTPS (integrity comes
//! from the signed pointer and the hashes it covers, not from the
//! transport). [`Fetch`] is what the engine needs; [`Http`] implements it
//! with `ureq` for one server, with connect, response and per-read timeouts
//! (ureq has none by default), the roots and proxy of a
//! [`Transport`](crate::transport::Transport), and redirects followed (each
//! file fetched through one is checked exactly as any other);
//! [`Servers`] tries several servers in order (a site mirror first, the
//! origin last).

use std::io::Read;
use std::time::Duration;

use crate::error::Error;
use crate::transport::Transport;

/// What the engine fetches from a repository. Paths are relative to the
/// repository root.
pub trait Fetch {
    /// The URL of `path`, for messages.
    fn url(&self, path: &str) -> String;

    /// The whole file at `path`; more than `max` bytes is an error.
    fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, Error>;

    /// A reader over bytes `start..end` of the file at `path`.
    fn range(&mut self, path: &str, start: u64, end: u64) -> Result<Box<dyn Read + Send>, Error>;
}

/// A repository over HTTP.
#[derive(Debug)]
pub struct Http {
    agent: ureq::Agent,
    base: String,
    /// The proxy, password hidden, for messages.
    proxy: Option<String>,
    /// Where the CA roots came from, for messages.
    roots: String,
}

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the response headers, and then each read, may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Redirects followed per request (CDNs and object stores send a few).
pub const MAX_REDIRECTS: u32 = 5;

impl Http {
    /// A client for the repository at `base` (`http://host:port/path` or
    /// `https://…`), direct or through the proxy of `transport`.
    pub fn new(base: &str, transport: &Transport) -> Http {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .max_redirects(MAX_REDIRECTS)
            .tls_config(transport.tls())
            .proxy(transport.proxy())
            .user_agent(concat!("tandem-updated/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
            proxy: transport.proxy_shown.clone(),
            roots: transport.roots_from.clone(),
        }
    }

    fn call(
        &self,
        url: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ureq::http::Response<ureq::Body>, Error> {
        let mut req = self.agent.get(url);
        if let Some((start, end)) = range {
            req = req.header("Range", format!("bytes={start}-{}", end - 1));
        }
        req.call().map_err(|e| Error::Http {
            url: url.to_string(),
            msg: explain(&e, self.proxy.as_deref(), &self.roots),
        })
    }
}

/// What failed, and whose fault it is: the proxy's, the server's
/// certificate's, or the server's.
fn explain(e: &ureq::Error, proxy: Option<&str>, roots: &str) -> String {
    let tls = match e {
        ureq::Error::Rustls(e) => Some(e.to_string()),
        ureq::Error::Tls(m) => Some((*m).to_string()),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    };
    if let Some(t) = tls {
        return format!(
            "TLS with the server failed: {t} (its certificate must chain to a trusted CA, here {roots}: add the server's CA with `ca-file` in update.toml; and it must name the server's host)"
        );
    }
    match (e, proxy) {
        (ureq::Error::ConnectProxyFailed(m), Some(p)) => {
            // 407 is the standard answer; some proxies (tinyproxy) send 401.
            let hint = if m.contains("407") || m.contains("401") {
                "the proxy wants a user and password, or refused these: proxy = \"http://user:password@host:port\" in update.toml"
            } else {
                "the proxy could not reach the server, or refused to"
            };
            format!("the proxy {p} failed: {m} ({hint})")
        }
        (ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::HostNotFound, Some(p)) => {
            format!(
                "cannot reach the proxy {p}: {e} (is `proxy` in update.toml, or https_proxy/http_proxy, right?)"
            )
        }
        _ => format!("{e} (is `server` in update.toml right, and the server reachable?)"),
    }
}

fn status_error(url: &str, status: u16) -> Error {
    let msg = match status {
        404 => "404 not found: is this channel (or version) published on the server?".to_string(),
        416 => "416 range not satisfiable (the file is shorter than the manifest says)".to_string(),
        s => format!("HTTP status {s}"),
    };
    Error::Http {
        url: url.to_string(),
        msg,
    }
}

impl Fetch for Http {
    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, Error> {
        let url = self.url(path);
        let resp = self.call(&url, None)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(status_error(&url, status));
        }
        let mut out = Vec::new();
        resp.into_body()
            .into_reader()
            .take(max + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Http {
                url: url.clone(),
                msg: e.to_string(),
            })?;
        if out.len() as u64 > max {
            return Err(Error::Http {
                url,
                msg: format!("more than {max} bytes: not what the repository should serve"),
            });
        }
        Ok(out)
    }

    fn range(&mut self, path: &str, start: u64, end: u64) -> Result<Box<dyn Read + Send>, Error> {
        let url = self.url(path);
        let resp = self.call(&url, Some((start, end)))?;
        let status = resp.status().as_u16();
        let skip = match status {
            206 => {
                let cr = resp
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if content_range_start(cr) != Some(start) {
                    return Err(Error::Http {
                        url,
                        msg: format!("asked for bytes from {start}, got Content-Range {cr:?}"),
                    });
                }
                0
            }
            // A server without Range support sends the whole file: skip to `start`.
            200 => start,
            s => return Err(status_error(&url, s)),
        };
        let mut body = resp.into_body().into_reader();
        if skip > 0 {
            let skipped = std::io::copy(&mut (&mut body).take(skip), &mut std::io::sink())
                .map_err(|e| Error::Http {
                    url: url.clone(),
                    msg: e.to_string(),
                })?;
            if skipped != skip {
                return Err(Error::Http {
                    url,
                    msg: format!("file ends at {skipped}, before byte {start}"),
                });
            }
        }
        Ok(Box::new(body.take(end - start)))
    }
}

/// Several servers of one repository, tried in order for every request:
/// the first that answers serves it. A file missing on a mirror (404),
/// or a mirror that cannot be reached, sends the request to the next.
#[derive(Debug)]
pub struct Servers {
    servers: Vec<Http>,
}

impl Servers {
    /// Clients for `bases`, in order (at least one).
    pub fn new(bases: &[String], transport: &Transport) -> Result<Servers, Error> {
        if bases.is_empty() {
            return Err(Error::NoServer);
        }
        Ok(Servers {
            servers: bases.iter().map(|b| Http::new(b, transport)).collect(),
        })
    }

    /// The first answer of `f` over the servers; the last error (naming
    /// every server's) when none answers.
    fn first<T>(&mut self, mut f: impl FnMut(&mut Http) -> Result<T, Error>) -> Result<T, Error> {
        let mut failures = Vec::new();
        for s in &mut self.servers {
            match f(s) {
                Ok(t) => return Ok(t),
                Err(e) => failures.push(e),
            }
        }
        Err(match failures.len() {
            1 => failures.remove(0),
            _ => Error::Http {
                url: "every server".into(),
                msg: failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
    }
}

impl Fetch for Servers {
    fn url(&self, path: &str) -> String {
        self.servers
            .first()
            .map_or_else(|| path.to_string(), |s| s.url(path))
    }

    fn get(&mut self, path: &str, max: u64) -> Result<Vec<u8>, Error> {
        self.first(|s| s.get(path, max))
    }

    fn range(&mut self, path: &str, start: u64, end: u64) -> Result<Box<dyn Read + Send>, Error> {
        self.first(|s| s.range(path, start, end))
    }
}

/// The first byte of a `Content-Range: bytes a-b/n` header.
pub fn content_range_start(header: &str) -> Option<u64> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/1000"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/1"), Some(0));
        assert_eq!(content_range_start("bytes */1000"), None);
        assert_eq!(content_range_start(""), None);
    }

    #[test]
    fn urls_join() {
        let h = Http::new("http://10.0.2.2:8080/repo/", &Transport::direct());
        assert_eq!(
            h.url("img/channels/stable.json"),
            "http://10.0.2.2:8080/repo/img/channels/stable.json"
        );
    }
}
