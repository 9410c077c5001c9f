//! The reboot semaphore on etcd: lock, unlock, status and set-max, each a
//! read-modify-compare-and-swap loop over [`crate::semaphore`]'s pure
//! transformations.
//!
//! - Every read is linearizable and every write a compare-and-swap on the
//!   key's mod revision (or "absent", creating it with max 1): two nodes
//!   can never both take the last slot. When the compare fails, someone
//!   else changed the value: read again and recompute (at most
//!   [`MAX_CONFLICTS`] times, with a little random delay, then
//!   [`Error::Contended`]).
//! - Idempotent: locking what one holds, or unlocking what one does not
//!   hold, succeeds without writing. So a write whose answer was lost is
//!   simply done again, and a node that restarts while holding the lock
//!   finds it still holds it.
//! - [`Lock::lock_wait`] waits for a slot: a watch on the key while the
//!   semaphore is full (no polling), bounded exponential backoff with
//!   jitter while etcd is unreachable or read-only (no busy loop).
//!
//! ```no_run
//! use agent::etcd::{Auth, Etcd, Tls};
//! use agent::lock::{Lock, Locked};
//!
//! let etcd = Etcd::new(&["http://10.0.2.2:2379"], Auth::None, &Tls::default())?;
//! let lock = Lock::new(&etcd, "default");
//! match lock.lock("69d27b356a94476da859461d3a3bc6fd")? {
//!     Locked::Acquired { .. } | Locked::AlreadyHeld { .. } => println!("may reboot"),
//!     Locked::Full { state } => println!("full: {}", state.semaphore.holders.join(", ")),
//! }
//! # Ok::<(), agent::lock::Error>(())
//! ```

use std::time::Duration;

use updater::backoff::random_unit;

use crate::etcd::{self, Etcd, Expect};
use crate::semaphore::{self, Outcome, Semaphore};

/// Compare failures in a row before [`Error::Contended`].
pub const MAX_CONFLICTS: u32 = 32;

/// What the lock operations can fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// etcd failed (unreachable, refused, ...).
    #[error(transparent)]
    Etcd(#[from] etcd::Error),
    /// The stored value is not a semaphore.
    #[error(
        "the reboot semaphore at {key} is not valid: {err}; look at it with `etcdctl get {key}`; `tandemctl lock set-max <n>` replaces it with an empty one"
    )]
    Value {
        /// The key.
        key: String,
        /// What is wrong.
        err: semaphore::Error,
    },
    /// A holder id or max that cannot be.
    #[error("{0}")]
    Argument(semaphore::Error),
    /// Others kept changing the semaphore between our read and our write.
    #[error(
        "the reboot semaphore at {key} changed under us {attempts} times in a row (many nodes at once?): retrying later"
    )]
    Contended {
        /// The key.
        key: String,
        /// Compare failures in a row.
        attempts: u32,
    },
    /// [`Lock::lock_wait`] was told to stop.
    #[error("stopped while waiting for the reboot lock at {key}")]
    Stopped {
        /// The key.
        key: String,
    },
}

impl Error {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Etcd(e) => e.is_transient(),
            Error::Contended { .. } => true,
            Error::Value { .. } | Error::Argument(_) | Error::Stopped { .. } => false,
        }
    }
}

/// The semaphore as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The key.
    pub key: String,
    /// The value, in order (see [`Semaphore::parse`]); locksmith's
    /// default (max 1, nobody) when the key does not exist yet.
    pub semaphore: Semaphore,
    /// The key's mod revision; `None` when it does not exist yet (the
    /// first lock creates it).
    pub mod_revision: Option<u64>,
    /// Whether the stored value followed the rules (sorted unique
    /// holders, semaphore = max - holders); the next change fixes it.
    pub consistent: bool,
}

/// The result of [`Lock::lock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Locked {
    /// This call took a slot.
    Acquired {
        /// The semaphore after it.
        state: State,
    },
    /// The holder held a slot already (idempotent success).
    AlreadyHeld {
        /// The semaphore.
        state: State,
    },
    /// No free slot.
    Full {
        /// The semaphore (its holders).
        state: State,
    },
}

impl Locked {
    /// Whether the holder now holds a slot.
    pub fn is_held(&self) -> bool {
        !matches!(self, Locked::Full { .. })
    }

    /// The semaphore.
    pub fn state(&self) -> &State {
        match self {
            Locked::Acquired { state } | Locked::AlreadyHeld { state } | Locked::Full { state } => {
                state
            }
        }
    }
}

/// The result of [`Lock::unlock`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unlocked {
    /// This call gave the slot back.
    Released {
        /// The semaphore after it.
        state: State,
    },
    /// The holder held nothing (idempotent success).
    NotHeld {
        /// The semaphore.
        state: State,
    },
}

impl Unlocked {
    /// The semaphore.
    pub fn state(&self) -> &State {
        match self {
            Unlocked::Released { state } | Unlocked::NotHeld { state } => state,
        }
    }
}

/// Waits of [`Lock::lock_wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waits {
    /// First wait after an etcd failure; doubled per failure in a row.
    pub first: Duration,
    /// Longest wait after failures.
    pub cap: Duration,
    /// How long one watch on a full semaphore lasts before it is read again.
    pub watch: Duration,
}

impl Default for Waits {
    /// 1 s … 60 s backoff (the contract), a watch renewed every 60 s.
    fn default() -> Self {
        Waits {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            watch: Duration::from_secs(60),
        }
    }
}

impl Waits {
    /// Sleeps after `failures` transient failures in a row.
    fn sleep_after(&self, failures: u32) {
        std::thread::sleep(crate::decide::backoff(
            failures,
            self.first,
            self.cap,
            random_unit(),
        ));
    }
}

/// A group's semaphore on an etcd cluster.
#[derive(Debug)]
pub struct Lock<'a> {
    etcd: &'a Etcd,
    key: String,
}

impl<'a> Lock<'a> {
    /// The semaphore of `group` (`"default"` or `""`: locksmith's default
    /// key; see [`semaphore::key`]).
    pub fn new(etcd: &'a Etcd, group: &str) -> Lock<'a> {
        Lock {
            etcd,
            key: semaphore::key(group),
        }
    }

    /// The semaphore at another key (tests, benchmarks).
    pub fn at_key(etcd: &'a Etcd, key: &str) -> Lock<'a> {
        Lock {
            etcd,
            key: key.to_string(),
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The etcd client.
    pub fn etcd(&self) -> &Etcd {
        self.etcd
    }

    /// Reads the semaphore (linearizable: what every write acknowledged so
    /// far left). Writes nothing.
    pub fn status(&self) -> Result<State, Error> {
        self.read().and_then(|r| match r {
            Read::Good(s) => Ok(s),
            Read::Bad { err, .. } => Err(Error::Value {
                key: self.key.clone(),
                err,
            }),
        })
    }

    /// Takes a slot for `holder` if one is free; success too if `holder`
    /// holds one already. Creates the semaphore (max 1) if absent.
    pub fn lock(&self, holder: &str) -> Result<Locked, Error> {
        check_holder(holder)?;
        let (out, state) = self.update(|s| s.lock(holder))?;
        Ok(match out {
            Outcome::Changed(_) => Locked::Acquired { state },
            Outcome::Unchanged => Locked::AlreadyHeld { state },
            Outcome::Full => Locked::Full { state },
        })
    }

    /// Gives `holder`'s slot back; success too if it holds none.
    pub fn unlock(&self, holder: &str) -> Result<Unlocked, Error> {
        check_holder(holder)?;
        let (out, state) = self.update(|s| s.unlock(holder))?;
        Ok(match out {
            Outcome::Changed(_) => Unlocked::Released { state },
            Outcome::Unchanged | Outcome::Full => Unlocked::NotHeld { state },
        })
    }

    /// Sets how many may hold the lock at once; the semaphore before and
    /// after. Creates the semaphore if absent; replaces a value that is not
    /// a semaphore with an empty one (the operator was told, by
    /// [`Lock::status`], what it held).
    pub fn set_max(&self, max: i64) -> Result<(Option<Semaphore>, State), Error> {
        if max < 0 {
            return Err(Error::Argument(semaphore::Error::NegativeMax(max)));
        }
        let mut attempts = 0;
        loop {
            let (before, expect, next) = match self.read()? {
                Read::Good(s) => {
                    let expect = s.mod_revision.map_or(Expect::Absent, Expect::ModRevision);
                    let next = match s.semaphore.set_max(max).map_err(Error::Argument)? {
                        Outcome::Changed(n) => Some(n),
                        // The same max: write only to put a stored value in order.
                        _ if !s.consistent => Some(s.semaphore.clone()),
                        _ => None,
                    };
                    (Some(s.semaphore), expect, next)
                }
                Read::Bad { mod_revision, .. } => (
                    None,
                    Expect::ModRevision(mod_revision),
                    Some(Semaphore::new(max)),
                ),
            };
            let Some(next) = next else {
                let state = self.status()?;
                return Ok((before, state));
            };
            match self.swap(expect, next)? {
                Some(state) => return Ok((before, state)),
                None => {
                    attempts += 1;
                    self.conflict(attempts)?;
                }
            }
        }
    }

    /// Waits until `holder` holds a slot: takes it when free, watches the
    /// key while the semaphore is full, backs off (`waits`) while etcd
    /// fails transiently. `stop` is asked between waits; when it says yes,
    /// [`Error::Stopped`]. Errors that waiting cannot mend (a bad value, a
    /// wrong setting) are returned.
    pub fn lock_wait(
        &self,
        holder: &str,
        waits: &Waits,
        stop: &dyn Fn() -> bool,
    ) -> Result<Locked, Error> {
        let mut failures = 0u32;
        loop {
            if stop() {
                return Err(Error::Stopped {
                    key: self.key.clone(),
                });
            }
            let result = self.lock(holder).and_then(|l| match l {
                Locked::Full { state } => {
                    // Wait for a change of the value we saw (an unlock).
                    let after = state.mod_revision.unwrap_or(0);
                    self.etcd
                        .watch_once(&self.key, after, waits.watch)
                        .map(|_| None)
                        .map_err(Error::from)
                }
                held => Ok(Some(held)),
            });
            match result {
                Ok(Some(held)) => return Ok(held),
                Ok(None) => failures = 0,
                Err(e) if e.is_transient() => {
                    failures = failures.saturating_add(1);
                    waits.sleep_after(failures);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `f` until it succeeds or fails for good, backing off (`waits`)
    /// after transient failures; `stop` is asked between tries.
    pub fn retry<T>(
        &self,
        waits: &Waits,
        stop: &dyn Fn() -> bool,
        mut f: impl FnMut(&Lock<'a>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut failures = 0u32;
        loop {
            match f(self) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => {
                    if stop() {
                        return Err(e);
                    }
                    failures = failures.saturating_add(1);
                    waits.sleep_after(failures);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn read(&self) -> Result<Read, Error> {
        Ok(match self.etcd.range(&self.key)? {
            None => Read::Good(State {
                key: self.key.clone(),
                semaphore: Semaphore::new(1),
                mod_revision: None,
                consistent: true,
            }),
            Some(kv) => match Semaphore::parse_raw(&kv.value) {
                Ok(raw) => Read::Good(State {
                    key: self.key.clone(),
                    consistent: raw.is_consistent(),
                    semaphore: raw.normalized(),
                    mod_revision: Some(kv.mod_revision),
                }),
                Err(err) => Read::Bad {
                    err,
                    mod_revision: kv.mod_revision,
                },
            },
        })
    }

    /// Read, transform, compare-and-swap; again on a compare failure.
    fn update(
        &self,
        f: impl Fn(&Semaphore) -> Result<Outcome, semaphore::Error>,
    ) -> Result<(Outcome, State), Error> {
        let mut attempts = 0;
        loop {
            let state = match self.read()? {
                Read::Good(s) => s,
                Read::Bad { err, .. } => {
                    return Err(Error::Value {
                        key: self.key.clone(),
                        err,
                    });
                }
            };
            let out = f(&state.semaphore).map_err(Error::Argument)?;
            let Outcome::Changed(next) = &out else {
                return Ok((out, state));
            };
            let expect = state
                .mod_revision
                .map_or(Expect::Absent, Expect::ModRevision);
            match self.swap(expect, next.clone())? {
                Some(state) => return Ok((out, state)),
                None => {
                    attempts += 1;
                    self.conflict(attempts)?;
                }
            }
        }
    }

    /// Writes `next` if the key is still as `expect`; the state written,
    /// or `None` when someone changed it first.
    fn swap(&self, expect: Expect, next: Semaphore) -> Result<Option<State>, Error> {
        let written = self
            .etcd
            .cas(&self.key, expect, next.to_json().as_bytes(), None)?;
        Ok(written.map(|rev| State {
            key: self.key.clone(),
            semaphore: next,
            mod_revision: Some(rev),
            consistent: true,
        }))
    }

    /// After a compare failure: a short random pause, growing with the
    /// failures in a row; [`Error::Contended`] after [`MAX_CONFLICTS`].
    fn conflict(&self, attempts: u32) -> Result<(), Error> {
        if attempts >= MAX_CONFLICTS {
            return Err(Error::Contended {
                key: self.key.clone(),
                attempts,
            });
        }
        let cap_ms = (attempts as u64 * 2).min(50);
        let ms = ((random_unit() + 1.0) / 2.0 * cap_ms as f64) as u64;
        std::thread::sleep(Duration::from_millis(ms));
        Ok(())
    }
}

fn check_holder(holder: &str) -> Result<(), Error> {
    if semaphore::valid_holder(holder) {
        Ok(())
    } else {
        Err(Error::Argument(semaphore::Error::Holder(
            holder.to_string(),
        )))
    }
}

enum Read {
    Good(State),
    Bad {
        err: semaphore::Error,
        mod_revision: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do() {
        let e = Error::Value {
            key: semaphore::DEFAULT_KEY.into(),
            err: Semaphore::parse(b"").expect_err("not JSON"),
        };
        let t = e.to_string();
        assert!(t.contains("etcdctl get coreos.com/updateengine/rebootlock/semaphore"));
        assert!(t.contains("set-max"));
        assert!(!e.is_transient());
        assert!(
            Error::Contended {
                key: "k".into(),
                attempts: 32
            }
            .is_transient()
        );
    }

    #[test]
    fn nothing_listening_is_transient() {
        let etcd = Etcd::new(
            &["http://127.0.0.1:1"],
            etcd::Auth::None,
            &etcd::Tls::default(),
        )
        .expect("valid");
        let lock = Lock::new(&etcd, "default");
        let e = lock.lock("m").unwrap_err();
        assert!(e.is_transient(), "{e}");
        // A bad holder id is refused before anything is sent, for good.
        let e = lock.lock("two words").unwrap_err();
        assert!(matches!(e, Error::Argument(_)) && !e.is_transient(), "{e}");
    }
}
