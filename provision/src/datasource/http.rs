//! Plain HTTP for the network datasources, with timeouts (ureq has none by
//! default) and retries with backoff inside a bounded total: a metadata
//! service or a config server may answer only a moment after the address
//! came.

use std::io::Read;
use std::time::{Duration, Instant};

use super::fat::MAX_FILE;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the response, and then each read, may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (at most [`MAX_FILE`] bytes).
    pub body: Vec<u8>,
}

/// A client.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// A client with Tandem's timeouts.
    pub fn new() -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("tandem-provision/", env!("CARGO_PKG_VERSION")))
            // A proxy from the environment must not see metadata requests.
            .proxy(None)
            .build();
        Client {
            agent: config.into(),
        }
    }

    /// `GET url` with `headers`.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        let mut req = self.agent.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.call())
    }

    /// `PUT url` with `headers` and no body.
    pub fn put(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
        let mut req = self.agent.put(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        read(req.send_empty())
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Response, String> {
    let resp = resp.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_FILE + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_FILE {
        return Err(format!("the answer is larger than {MAX_FILE} bytes"));
    }
    Ok(Response { status, body })
}

/// Whether an attempt should be repeated.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Worth trying again (no connection, a 5xx).
    Again(E),
    /// Final.
    Fail(E),
}

/// Calls `f` until it succeeds, fails finally, or `budget` would be
/// exceeded by the next wait (0.25 s, doubling to 4 s). Returns the
/// result with the number of attempts.
pub fn retry<T, E>(
    budget: Duration,
    mut f: impl FnMut() -> Result<T, Attempt<E>>,
) -> (Result<T, E>, u32) {
    let start = Instant::now();
    let mut wait = Duration::from_millis(250);
    let mut tries = 0;
    loop {
        tries += 1;
        match f() {
            Ok(v) => return (Ok(v), tries),
            Err(Attempt::Fail(e)) => return (Err(e), tries),
            Err(Attempt::Again(e)) => {
                if start.elapsed() + wait > budget {
                    return (Err(e), tries);
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(4));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A request as the fake server saw it.
    #[derive(Clone, Debug)]
    pub(crate) struct Request {
        pub method: String,
        pub path: String,
        pub headers: Vec<(String, String)>,
    }

    impl Request {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A fake HTTP server on 127.0.0.1 answering with `answer`; returns its
    /// base URL. It serves until the test process ends.
    pub(crate) fn serve(answer: impl Fn(&Request) -> (u16, Vec<u8>) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_string();
                let path = parts.next().unwrap_or("").to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
                let (status, body) = answer(&Request {
                    method,
                    path,
                    headers,
                });
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        format!("http://{addr}")
    }

    #[test]
    fn get_and_put_with_headers() {
        let base = serve(|r| match (r.method.as_str(), r.path.as_str()) {
            ("PUT", "/t") => (200, r.header("x-a").unwrap_or("-").as_bytes().to_vec()),
            ("GET", "/g") => (200, b"body".to_vec()),
            _ => (404, Vec::new()),
        });
        let c = Client::new();
        let r = c.put(&format!("{base}/t"), &[("X-A", "v")]).expect("put");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"v"[..]));
        let r = c.get(&format!("{base}/g"), &[]).expect("get");
        assert_eq!(r.body, b"body");
        assert_eq!(
            c.get(&format!("{base}/none"), &[]).expect("get").status,
            404
        );
    }

    #[test]
    fn retry_stops_on_success_failure_or_budget() {
        let mut n = 0;
        let (r, tries) = retry(Duration::from_secs(5), || {
            n += 1;
            if n < 3 {
                Err(Attempt::Again("x"))
            } else {
                Ok(n)
            }
        });
        assert_eq!((r, tries), (Ok(3), 3));
        let (r, tries) = retry::<(), _>(Duration::from_secs(5), || Err(Attempt::Fail("no")));
        assert_eq!((r, tries), (Err("no"), 1));
        let (r, tries) = retry::<(), _>(Duration::from_millis(300), || Err(Attempt::Again("down")));
        assert_eq!(r, Err("down"));
        assert_eq!(tries, 2);
    }
}
