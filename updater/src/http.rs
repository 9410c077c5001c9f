//! Fetching from the update repository over plain HTTP (integrity comes from
//! the signed pointer and the hashes it covers, not from the transport).
//! [`Fetch`] is what the engine needs; [`Http`] implements it with `ureq`,
//! with connect, response and per-read timeouts (ureq has none by default).

use std::io::Read;
use std::time::Duration;

use crate::error::Error;

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
}

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the response headers, and then each read, may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Http {
    /// A client for the repository at `base` (`http://host:port/path`).
    pub fn new(base: &str) -> Http {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("tandem-updated/", env!("CARGO_PKG_VERSION")))
            .build();
        Http {
            agent: config.into(),
            base: base.trim_end_matches('/').to_string(),
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
            msg: format!("{e} (is `server` in update.toml right, and the server reachable?)"),
        })
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
        let h = Http::new("http://10.0.2.2:8080/repo/");
        assert_eq!(
            h.url("img/channels/stable.json"),
            "http://10.0.2.2:8080/repo/img/channels/stable.json"
        );
    }
}
