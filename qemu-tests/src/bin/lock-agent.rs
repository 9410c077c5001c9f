//! A stand-in agent process for the reboot-lock tests (`tests/lock.rs`):
//! one semaphore operation through `agent::lock`, as a process the test can
//! SIGKILL and watch from outside.
//!
//! ```text
//! lock-agent <endpoints,comma-separated> <key> <holder> <action> [first-ms cap-ms]
//! ```
//!
//! Actions: `lock` (one try), `unlock`, `wait` (`lock_wait` with backoff
//! `first-ms` … `cap-ms`, default 200 … 3000, then exit), `hold` (as `wait`,
//! then stay until killed). Prints one line per event, flushed:
//! `started`, then `acquired`, `already-held`, `full`, `released` or
//! `not-held`; errors go to stderr with exit status 1.

use std::io::Write;
use std::time::Duration;

use agent::etcd::{Auth, Etcd, Tls};
use agent::lock::{Lock, Locked, Unlocked, Waits};

fn main() {
    if let Err(e) = run() {
        eprintln!("lock-agent: {e}");
        std::process::exit(1);
    }
}

fn say(what: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{what}");
    let _ = out.flush();
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoints, key, holder, action, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: lock-agent <endpoints,comma-separated> <key> <holder> lock|unlock|wait|hold [first-ms cap-ms]"
                .into(),
        );
    };
    let ms = |i: usize, default: u64| -> Result<Duration, String> {
        rest.get(i)
            .map_or(Ok(default), |s| {
                s.parse().map_err(|e| format!("{s:?}: {e}"))
            })
            .map(Duration::from_millis)
    };
    let waits = Waits {
        first: ms(0, 200)?,
        cap: ms(1, 3000)?,
        watch: Duration::from_secs(30),
    };
    let endpoints: Vec<&str> = endpoints.split(',').collect();
    let etcd = Etcd::new(&endpoints, Auth::None, &Tls::default()).map_err(|e| e.to_string())?;
    let lock = Lock::at_key(&etcd, key);
    say("started");
    let locked = |l: &Locked| match l {
        Locked::Acquired { .. } => "acquired",
        Locked::AlreadyHeld { .. } => "already-held",
        Locked::Full { .. } => "full",
    };
    match action.as_str() {
        "lock" => say(locked(&lock.lock(holder).map_err(|e| e.to_string())?)),
        "unlock" => match lock.unlock(holder).map_err(|e| e.to_string())? {
            Unlocked::Released { .. } => say("released"),
            Unlocked::NotHeld { .. } => say("not-held"),
        },
        "wait" | "hold" => {
            let l = lock
                .lock_wait(holder, &waits, &|| false)
                .map_err(|e| e.to_string())?;
            say(locked(&l));
            if action == "hold" {
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
        other => {
            return Err(format!(
                "unknown action {other:?}: lock, unlock, wait or hold"
            ));
        }
    }
    Ok(())
}
