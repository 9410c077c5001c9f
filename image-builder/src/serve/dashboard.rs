//! `tandem dashboard`: the fleet view ([`fleet_view`]) over HTTP, read-only.
//!
//! | path | what |
//! |---|---|
//! | `/` | the page (live: it refreshes `fragment` every 2 s) |
//! | `/fragment` | the page's content, for that refresh |
//! | `/api/fleet` | the view as JSON |
//! | `/metrics` | Prometheus text format |
//!
//! One snapshot of etcd and the repository serves every request for
//! [`DashboardOptions::refresh`], however many browsers and scrapers ask;
//! the first request after that reads again (and the others wait for it).
//! Nothing here writes: operator actions stay in the CLI.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_view::memory::Memory;
use fleet_view::source::Source;
use fleet_view::view::{self, FleetView};
use fleet_view::{metrics, page};

use super::request::{Request, decode_target};
use super::response::{head_text, simple};
use super::{Server, Site};
use crate::clock;
use crate::error::Result;

/// How the dashboard runs.
#[derive(Clone, Copy, Debug)]
pub struct DashboardOptions {
    /// How long one snapshot serves requests (0: every request reads).
    pub refresh: Duration,
}

/// The dashboard: its sources and the last snapshot.
#[derive(Debug)]
pub struct Dashboard {
    source: Source,
    options: DashboardOptions,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    memory: Memory,
    last: Option<(Instant, Arc<FleetView>)>,
}

impl Dashboard {
    /// A dashboard over `source`.
    pub fn new(source: Source, options: DashboardOptions) -> Dashboard {
        Dashboard {
            source,
            options,
            state: Mutex::new(State::default()),
        }
    }

    /// Binds `listen` for it.
    pub fn bind(self, listen: &str) -> Result<Server> {
        Server::bind_site(listen, Arc::new(self))
    }

    /// The current view: the last snapshot while it is fresh, else a new one.
    pub fn view(&self) -> Arc<FleetView> {
        let mut st = match self.state.lock() {
            Ok(st) => st,
            // A panic while reading: the state is a cache, start over.
            Err(poisoned) => {
                let mut st = poisoned.into_inner();
                *st = State::default();
                st
            }
        };
        if let Some((at, v)) = &st.last
            && at.elapsed() < self.options.refresh
        {
            return Arc::clone(v);
        }
        let snapshot = self.source.snapshot(&mut st.memory, clock::now());
        let v = Arc::new(view::build(&snapshot));
        st.last = Some((Instant::now(), Arc::clone(&v)));
        v
    }
}

impl Site for Dashboard {
    fn respond(&self, req: &Request, stream: &TcpStream) -> bool {
        let mut out = stream;
        let keep = req.keep_alive() && !req.has_body;
        let head_only = req.method == "HEAD";
        if req.has_body {
            simple(
                &mut out,
                400,
                "request bodies are not accepted",
                (false, head_only),
                &[],
            );
            return false;
        }
        if !head_only && req.method != "GET" {
            simple(
                &mut out,
                405,
                "the dashboard is read-only: operator actions are `tandem cluster …` and `tandem lock …`",
                (keep, false),
                &[("Allow", "GET, HEAD".into())],
            );
            return keep;
        }
        let path = match decode_target(&req.target) {
            Ok(s) => s.join("/"),
            Err(why) => {
                simple(&mut out, 400, why, (keep, head_only), &[]);
                return keep;
            }
        };
        let (body, content_type) = match path.as_str() {
            "" => (page::render(&self.view()), "text/html; charset=utf-8"),
            "fragment" => (page::fragment(&self.view()), "text/html; charset=utf-8"),
            "api/fleet" => (
                serde_json::to_string(&*self.view()).unwrap_or_default(),
                "application/json",
            ),
            "metrics" => (metrics::render(&self.view()), metrics::CONTENT_TYPE),
            _ => {
                simple(
                    &mut out,
                    404,
                    "not a dashboard page: /, /api/fleet and /metrics are",
                    (keep, head_only),
                    &[],
                );
                return keep;
            }
        };
        let headers = [
            ("Content-Type", content_type.to_string()),
            ("Cache-Control", "no-store".to_string()),
        ];
        let mut msg = head_text(200, keep, &headers, body.len() as u64).into_bytes();
        if !head_only {
            msg.extend_from_slice(body.as_bytes());
        }
        use std::io::Write as _;
        out.write_all(&msg).is_ok() && keep
    }
}
