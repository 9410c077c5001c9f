//! One release command at a time per repository.

#[allow(unused_imports)]
use super::*;

/// Holds the repository's lock file until dropped.
#[derive(Debug)]
pub struct RepoLock {
    _file: std::fs::File,
}

impl RepoLock {
    /// Takes the lock of `repo` (created if needed), or fails at once if
    /// another release command holds it.
    pub fn acquire(repo: &Path) -> Result<RepoLock> {
        std::fs::create_dir_all(repo).io("create repository", repo)?;
        let path = repo.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .io("open lock file", &path)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Busy { path }
            } else {
                Error::Io {
                    action: "lock",
                    path,
                    cause: e,
                }
            });
        }
        Ok(RepoLock { _file: file })
    }
}
