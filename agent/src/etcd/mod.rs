//! An etcd v3 client over etcd's JSON gateway (`/v3/...`, plain HTTP+JSON
//! through `ureq`), enough for the reboot semaphore and the fleet records:
//! linearizable reads, compare-and-swap transactions, leases, a key's
//! history and a one-shot watch.
//!
//! The gateway's conventions, handled here so callers never see them: keys
//! and values are base64; 64-bit numbers (revisions, lease IDs) are JSON
//! strings; false, zero and empty fields are left out (a missing key has no
//! `kvs`, a failed transaction no `succeeded`, an expired lease no `TTL`).
//!
//! - Reads are linearizable (etcd's default; never `serializable`): a
//!   read sees every write acknowledged before it (locksmith read stale
//!   state, coreos/bugs#852).
//! - Every change is a transaction guarded by a compare ([`Etcd::cas`],
//!   [`Etcd::delete`]): [`Expect::Absent`] (create revision 0) or
//!   [`Expect::ModRevision`]. [`Etcd::put`] is the one unconditional write,
//!   for records only their owner writes.
//! - Endpoints fail over: a request that cannot reach an endpoint, or that
//!   the endpoint answers with "unavailable" (no leader, leader changed,
//!   request timed out), goes to the next; the client remembers which one
//!   answered. When none answers the error is [`Error::Unavailable`]; the
//!   caller backs off ([`Error::is_transient`]).
//! - Authentication (`Auth::Password`): the token from
//!   `/v3/auth/authenticate` goes in the `Authorization` header and is
//!   renewed when etcd says it is invalid. TLS: a CA to check the server
//!   and a client certificate ([`Tls`]), for `https://` endpoints. A failed
//!   handshake (server certificate not trusted, client certificate missing
//!   or refused) is [`Error::TlsSession`], saying which setting to check,
//!   not "unreachable": it is a setting to fix, not an outage.
//!
//! Every request has a deadline ([`REQUEST_TIMEOUT`], or
//! [`Etcd::with_timeout`]); nothing blocks forever. A write whose answer
//! was lost (timeout, endpoint died) may or may not have happened: retrying
//! the same compare-and-swap is safe (it fails if the first one landed),
//! and callers re-read.
//!
//! ```no_run
//! use agent::etcd::{Auth, Etcd, Expect, Tls};
//!
//! let etcd = Etcd::new(&["http://127.0.0.1:2379"], Auth::None, &Tls::default())?;
//! match etcd.range("demo/key")? {
//!     None => {
//!         etcd.cas("demo/key", Expect::Absent, b"1", None)?;
//!     }
//!     Some(kv) => {
//!         // Only if nobody changed it since it was read.
//!         let done = etcd.cas("demo/key", Expect::ModRevision(kv.mod_revision), b"2", None)?;
//!         println!("{}", if done.is_some() { "swapped" } else { "someone was first" });
//!     }
//! }
//! # Ok::<(), agent::etcd::Error>(())
//! ```

use std::time::Duration;

mod client;
mod error;
mod failover;
mod tls;
mod wire;

pub use client::{Etcd, Expect, Kv};
pub use error::{Error, Miss, TlsFileProblem, TlsSetting, WireError, code};
pub use failover::Auth;
pub use tls::Tls;
pub use wire::prefix_end;

/// How long connecting to an endpoint may take before the next is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a whole request may take (etcd itself gives up on a write
/// after about 7 s without a leader, and says so).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
