//! A pid file held under an exclusive `flock`: the one proof that a process owns a socket or
//! a state directory. The kernel drops the lock when the process dies, even by SIGKILL, so a
//! stale file never blocks a restart.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, IoContext, Result};

/// A held pid lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub struct PidLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl PidLock {
    /// Takes the lock at `path` and writes this process's pid into it, or fails with
    /// [`Error::AlreadyRunning`] naming the holder.
    pub fn acquire(path: &Path) -> Result<Self> {
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .context(|| format!("open lock file {}", path.display()))?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut s = String::new();
                    let _ = file.read_to_string(&mut s);
                    return Err(Error::AlreadyRunning {
                        what: path.display().to_string(),
                        pid: s.trim().parse().ok(),
                    });
                }
                Err((_, errno)) => {
                    return Err(Error::io(
                        format!("lock {}", path.display()),
                        std::io::Error::from(errno),
                    ))
                }
            };
            // The previous holder may have unlinked the file between our open and our lock;
            // then we locked an orphan inode and must start over on the new file.
            let same = match (lock.metadata(), std::fs::metadata(path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            lock.set_len(0)
                .and_then(|_| lock.rewind())
                .and_then(|_| writeln!(lock, "{}", std::process::id()))
                .context(|| format!("write pid to {}", path.display()))?;
            return Ok(PidLock {
                path: path.to_path_buf(),
                _lock: lock,
            });
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock, so no newcomer can take the old inode.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.pid");
        let first = PidLock::acquire(&path).unwrap();
        match PidLock::acquire(&path) {
            Err(Error::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id() as i32))
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(first);
        assert!(!path.exists());
        let _again = PidLock::acquire(&path).unwrap();
    }
}
