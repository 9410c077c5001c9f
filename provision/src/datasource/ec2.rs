//! The EC2 instance metadata service, IMDSv2: a session token from
//! `PUT /latest/api/token`, then every request carries it. Asked only on
//! EC2 (DMI) or when `tandem.datasource=` names `ec2`, so other machines do
//! not wait for a link-local address that nobody answers.

use std::time::{Duration, Instant};

use cloud_config::substitute::Values;

use super::dmi::Dmi;
use super::error::Error;
use super::http::{self, Attempt, Client, Response};
use super::{Env, Found, network};
use crate::Metadata;

/// Where the service answers.
pub const BASE: &str = "http://169.254.169.254";
/// How long the first contact (the token) may keep retrying: the service
/// can lag the address by a few seconds.
pub const FIRST_BUDGET: Duration = Duration::from_secs(30);
/// How long each later request may keep retrying.
const REQUEST_BUDGET: Duration = Duration::from_secs(5);
/// The token's lifetime asked for, in seconds (6 h, as cloud-init).
const TOKEN_TTL: &str = "21600";

/// The metadata service at one base URL.
#[derive(Debug)]
pub struct Imds {
    client: Client,
    base: String,
}

/// A failure: the URL and what happened.
type Failure = (String, String);

fn classify(r: Result<Response, String>) -> Result<Response, Attempt<String>> {
    match r {
        Ok(r) if r.status >= 500 => Err(Attempt::Again(format!("HTTP status {}", r.status))),
        Ok(r) => Ok(r),
        Err(e) => Err(Attempt::Again(e)),
    }
}

impl Imds {
    /// The service at `base` (`http://169.254.169.254`; a test server).
    pub fn new(base: &str) -> Imds {
        Imds {
            client: Client::new(),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// A session token.
    pub fn token(&self, budget: Duration) -> Result<String, Failure> {
        let url = format!("{}/latest/api/token", self.base);
        let headers = [("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL)];
        let (r, _) = http::retry(budget, || classify(self.client.put(&url, &headers)));
        let r = r.map_err(|e| (url.clone(), e))?;
        if r.status != 200 {
            return Err((
                url,
                format!("HTTP status {} for the IMDSv2 token", r.status),
            ));
        }
        let token = String::from_utf8_lossy(&r.body).trim().to_string();
        if token.is_empty() {
            return Err((url, "an empty token".to_string()));
        }
        Ok(token)
    }

    /// `/latest/<path>` with the token; `None` on 404 (not set for this
    /// instance).
    pub fn get(&self, token: &str, path: &str) -> Result<Option<Vec<u8>>, Failure> {
        let url = format!("{}/latest/{path}", self.base);
        let headers = [("X-aws-ec2-metadata-token", token)];
        let (r, _) = http::retry(REQUEST_BUDGET, || classify(self.client.get(&url, &headers)));
        let r = r.map_err(|e| (url.clone(), e))?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            s => Err((url, format!("HTTP status {s}"))),
        }
    }

    fn text(&self, token: &str, path: &str) -> Result<Option<String>, Failure> {
        Ok(self
            .get(token, path)?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    /// The user-data (`None` when the instance has none) and the metadata.
    pub fn fetch(&self, first_budget: Duration) -> Result<Option<(Vec<u8>, Metadata)>, Failure> {
        let token = self.token(first_budget)?;
        let Some(user_data) = self.get(&token, "user-data")? else {
            return Ok(None);
        };
        let first_line = |s: String| s.lines().next().map(str::to_string);
        let meta = |p: &str| self.text(&token, &format!("meta-data/{p}"));
        let ipv6 = meta("ipv6")?.and_then(first_line);
        let mut ssh_keys = Vec::new();
        if let Some(list) = meta("public-keys/")? {
            for index in parse_key_list(&list) {
                if let Some(key) = meta(&format!("public-keys/{index}/openssh-key"))? {
                    ssh_keys.push(key);
                }
            }
        }
        let metadata = Metadata {
            hostname: meta("local-hostname")?.and_then(first_line),
            ssh_keys,
            addresses: Values {
                private_ipv4: meta("local-ipv4")?.and_then(first_line),
                public_ipv4: meta("public-ipv4")?.and_then(first_line),
                // EC2's IPv6 addresses are global: the same for both.
                private_ipv6: ipv6.clone(),
                public_ipv6: ipv6,
            },
            instance_id: meta("instance-id")?.and_then(first_line),
        };
        Ok(Some((user_data, metadata)))
    }
}

/// The indexes in `public-keys/` (lines `0=my-key`).
pub fn parse_key_list(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.split_once('=').map_or(l, |(i, _)| i).trim().parse().ok())
        .collect()
}

/// The EC2 source; `named` when `tandem.datasource=` asked for it.
pub fn find(env: &Env, named: bool, tried: &mut Vec<String>) -> Result<Option<Found>, Error> {
    if !named && !Dmi::read(&env.sys).is_ec2() {
        tried.push("EC2: not an EC2 machine (DMI)".to_string());
        return Ok(None);
    }
    let start = Instant::now();
    let network = network::wait_ipv4(env.network_wait);
    let imds = Imds::new(BASE);
    let found = imds.fetch(FIRST_BUDGET).map_err(|(url, msg)| Error::Imds {
        url,
        msg: if network {
            msg
        } else {
            format!("{msg} (no IPv4 address after {:?})", start.elapsed())
        },
    })?;
    let Some((user_data, metadata)) = found else {
        tried.push("EC2: no user-data".to_string());
        return Ok(None);
    };
    tried.push("EC2: user-data".to_string());
    Ok(Some(Found {
        source: format!("EC2 instance metadata {BASE}"),
        file_name: "user-data".to_string(),
        user_data,
        metadata,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasource::http::tests::serve;

    const TOKEN: &str = "AQAEAtoken==";

    /// A fake IMDSv2: every GET without the token is refused (401), as the
    /// real service does when IMDSv1 is disabled.
    fn imds(user_data: Option<&'static [u8]>) -> String {
        serve(move |r| {
            if r.method == "PUT" {
                return match (
                    r.path.as_str(),
                    r.header("x-aws-ec2-metadata-token-ttl-seconds"),
                ) {
                    ("/latest/api/token", Some("21600")) => (200, TOKEN.as_bytes().to_vec()),
                    _ => (400, Vec::new()),
                };
            }
            if r.header("x-aws-ec2-metadata-token") != Some(TOKEN) {
                return (401, Vec::new());
            }
            let body: Option<&[u8]> = match r.path.as_str() {
                "/latest/user-data" => user_data,
                "/latest/meta-data/local-ipv4" => Some(b"10.0.1.5"),
                "/latest/meta-data/public-ipv4" => Some(b"54.1.2.3"),
                "/latest/meta-data/local-hostname" => Some(b"ip-10-0-1-5.ec2.internal"),
                "/latest/meta-data/instance-id" => Some(b"i-0abc"),
                "/latest/meta-data/public-keys/" => Some(b"0=main\n1=other"),
                "/latest/meta-data/public-keys/0/openssh-key" => Some(b"ssh-ed25519 AAAA main\n"),
                "/latest/meta-data/public-keys/1/openssh-key" => Some(b"ssh-rsa BBBB other"),
                _ => None,
            };
            match body {
                Some(b) => (200, b.to_vec()),
                None => (404, Vec::new()),
            }
        })
    }

    #[test]
    fn key_list() {
        assert_eq!(parse_key_list("0=main\n1=other\n"), [0, 1]);
        assert_eq!(parse_key_list("2\n\nx=y\n"), [2]);
        assert!(parse_key_list("").is_empty());
    }

    #[test]
    fn fetches_user_data_and_metadata_with_the_token() {
        let base = imds(Some(b"#cloud-config\n"));
        let (user_data, m) = Imds::new(&base)
            .fetch(Duration::from_secs(5))
            .expect("fetch")
            .expect("user-data");
        assert_eq!(user_data, b"#cloud-config\n");
        assert_eq!(m.hostname.as_deref(), Some("ip-10-0-1-5.ec2.internal"));
        assert_eq!(m.instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(m.addresses.private_ipv4.as_deref(), Some("10.0.1.5"));
        assert_eq!(m.addresses.public_ipv4.as_deref(), Some("54.1.2.3"));
        assert_eq!(m.addresses.private_ipv6, None);
        assert_eq!(m.ssh_keys, ["ssh-ed25519 AAAA main", "ssh-rsa BBBB other"]);
    }

    #[test]
    fn the_token_header_is_required() {
        let base = imds(Some(b"x"));
        let imds = Imds::new(&base);
        let (url, msg) = imds.get("wrong", "user-data").expect_err("401");
        assert!(url.ends_with("/latest/user-data"), "{url}");
        assert!(msg.contains("401"), "{msg}");
        let token = imds.token(Duration::from_secs(5)).expect("token");
        assert_eq!(token, TOKEN);
        assert_eq!(
            imds.get(&token, "user-data").expect("get").as_deref(),
            Some(&b"x"[..])
        );
    }

    #[test]
    fn no_user_data_is_none() {
        let base = imds(None);
        assert!(
            Imds::new(&base)
                .fetch(Duration::from_secs(5))
                .expect("fetch")
                .is_none()
        );
    }

    #[test]
    fn other_machines_are_skipped_without_the_network() {
        let tmp = tempfile::tempdir().expect("tmp");
        let env = crate::datasource::volume::tests::env(tmp.path());
        let mut tried = Vec::new();
        assert!(find(&env, false, &mut tried).expect("find").is_none());
        assert_eq!(tried, ["EC2: not an EC2 machine (DMI)"]);
    }
}
