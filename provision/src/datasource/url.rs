//! `tandem.config.url=http://…` on the kernel command line, with an
//! optional `tandem.config.sha256=`. A configured URL is a promise: if it
//! cannot be fetched the search fails rather than falling through to a
//! datasource the administrator did not mean.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tandem_contract::provision::{CMDLINE_SHA256, CMDLINE_URL};

use super::error::Error;
use super::http::{self, Attempt, Client};
use super::order::cmdline_value;
use super::{Env, Found, network};

/// How long fetching may keep retrying, after the network wait.
pub const FETCH_BUDGET: Duration = Duration::from_secs(30);

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The `http://` URL.
    pub url: String,
    /// The expected sha256, lower-case hex.
    pub sha256: Option<String>,
}

/// The request on `cmdline`, `None` if it names no URL.
pub fn parse(cmdline: &str) -> Result<Option<Request>, Error> {
    let Some(url) = cmdline_value(cmdline, CMDLINE_URL).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let bad = |why: &str| Error::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(bad(
            "https is not supported in this build: serve the user-data over http:// and pin it with tandem.config.sha256=",
        ));
    }
    let Some(rest) = lower.strip_prefix("http://") else {
        return Err(bad("only http:// URLs are supported"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("the URL names no host"));
    }
    let sha256 = match cmdline_value(cmdline, CMDLINE_SHA256) {
        None => None,
        Some(v) => {
            if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::BadSha256 {
                    value: v.to_string(),
                });
            }
            Some(v.to_ascii_lowercase())
        }
    };
    Ok(Some(Request {
        url: url.to_string(),
        sha256,
    }))
}

/// Fetches the user-data, retrying within `budget`, and checks its hash.
pub fn fetch(client: &Client, req: &Request, budget: Duration) -> Result<Vec<u8>, (String, u32)> {
    let (result, tries) = http::retry(budget, || match client.get(&req.url, &[]) {
        Ok(r) if r.status == 200 => Ok(r.body),
        Ok(r) => Err(Attempt::Again(format!("HTTP status {}", r.status))),
        Err(e) => Err(Attempt::Again(e)),
    });
    result.map_err(|e| (e, tries))
}

/// Checks `bytes` against the request's sha256.
pub fn check(req: &Request, bytes: &[u8]) -> Result<(), Error> {
    let Some(expected) = &req.sha256 else {
        return Ok(());
    };
    let actual = hex::encode(Sha256::digest(bytes));
    if &actual != expected {
        return Err(Error::Sha256Mismatch {
            url: req.url.clone(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}

/// The URL source: nothing to do when the command line names none.
pub fn find(env: &Env, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    let Some(req) = parse(&env.cmdline)? else {
        tried.push(format!("url: no {CMDLINE_URL}= on the kernel command line"));
        return Ok(None);
    };
    let start = Instant::now();
    let network = if network::wait_ipv4(env.network_wait) {
        String::new()
    } else {
        format!(" (no IPv4 address after {:?})", env.network_wait)
    };
    let user_data =
        fetch(&Client::new(), &req, FETCH_BUDGET).map_err(|(msg, tries)| Error::Fetch {
            url: req.url.clone(),
            tries,
            waited: start.elapsed(),
            msg,
            network,
        })?;
    check(&req, &user_data)?;
    tried.push(format!("url: {}", req.url));
    Ok(Some(Found {
        source: format!("{CMDLINE_URL}={}", req.url),
        file_name: req.url.clone(),
        user_data,
        metadata: crate::Metadata::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::http::tests::serve;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_the_command_line() {
        assert_eq!(parse("quiet").expect("none"), None);
        let r = parse(&format!(
            "tandem.config.url=http://10.0.0.1:8080/u tandem.config.sha256={}",
            HASH.to_uppercase()
        ))
        .expect("ok")
        .expect("some");
        assert_eq!(r.url, "http://10.0.0.1:8080/u");
        assert_eq!(r.sha256.as_deref(), Some(HASH));
    }

    #[test]
    fn refuses_https_other_schemes_and_bad_hashes() {
        let e = parse("tandem.config.url=https://h/u")
            .expect_err("https")
            .to_string();
        assert!(e.contains("https is not supported in this build"), "{e}");
        assert!(parse("tandem.config.url=ftp://h/u").is_err());
        assert!(parse("tandem.config.url=http:///u").is_err());
        let e = parse("tandem.config.url=http://h/u tandem.config.sha256=abc").expect_err("hash");
        assert!(matches!(e, Error::BadSha256 { .. }), "{e}");
    }

    #[test]
    fn a_hash_mismatch_names_both() {
        let req = Request {
            url: "http://h/u".into(),
            sha256: Some(HASH.into()),
        };
        assert!(check(&req, b"").is_ok());
        let e = check(&req, b"x").expect_err("mismatch").to_string();
        assert!(e.contains(HASH), "{e}");
        assert!(e.contains(&hex::encode(Sha256::digest(b"x"))), "{e}");
    }

    #[test]
    fn fetches_after_the_server_comes_up() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let base = serve(move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                (503, Vec::new())
            } else {
                (200, b"#cloud-config\n".to_vec())
            }
        });
        let req = Request {
            url: format!("{base}/user-data"),
            sha256: None,
        };
        let got = fetch(&Client::new(), &req, Duration::from_secs(5)).expect("fetch");
        assert_eq!(got, b"#cloud-config\n");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_missing_file_fails_after_the_budget() {
        let base = serve(|_| (404, Vec::new()));
        let req = Request {
            url: format!("{base}/none"),
            sha256: None,
        };
        let (msg, tries) =
            fetch(&Client::new(), &req, Duration::from_millis(100)).expect_err("404");
        assert_eq!(msg, "HTTP status 404");
        assert_eq!(tries, 1);
    }
}
