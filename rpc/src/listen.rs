//! Listening sockets: a unix socket that refuses to steal a live one, and TCP.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Group};
use tokio::net::UnixListener;

use crate::error::{Error, IoContext, Result};
use crate::pidlock::PidLock;

/// Mode of every berth socket: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Creates `dir` and its missing parents. The directory itself gets `mode`; parents
/// created on the way get 0711 so sockets below stay reachable but unlistable.
pub fn create_dir(dir: &Path, mode: u32) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .context(|| format!("create directory {}", parent.display()))?;
        }
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io(format!("create directory {}", dir.display()), e)),
    }
    // The umask may have narrowed the mode we asked for.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .context(|| format!("chmod {}", dir.display()))
}

/// A bound unix socket, owned through its pid lock; the socket file is removed on drop.
#[derive(Debug)]
pub struct UnixSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
    _lock: Option<PidLock>,
}

impl UnixSocket {
    /// Binds `path` (mode 0660, group `group` when given). The lock file beside it
    /// (`name.pid` for `name.sock`) proves ownership: a live owner makes this fail with
    /// [`Error::AlreadyRunning`]; a socket left by a dead owner is replaced.
    pub fn bind(path: &Path, group: Option<&str>) -> Result<Self> {
        create_parent(path)?;
        let lock = PidLock::acquire(&path.with_extension("pid"))?;
        let mut sock = Self::bind_under(path, group)?;
        sock._lock = Some(lock);
        Ok(sock)
    }

    /// Binds `path` for a caller that already holds a [`PidLock`] proving it owns the
    /// socket's directory (the engine locks its whole state dir). A socket that still
    /// answers is not replaced.
    pub fn bind_under(path: &Path, group: Option<&str>) -> Result<Self> {
        create_parent(path)?;
        remove_stale(path)?;
        let listener = UnixListener::bind(path).context(|| format!("bind {}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .context(|| format!("chmod {}", path.display()))?;
        if let Some(name) = group {
            let gid = lookup_group(name)?;
            nix::unistd::chown(path, None, Some(gid))
                .map_err(|e| Error::io(format!("chown {}", path.display()), e.into()))?;
        }
        Ok(UnixSocket {
            path: path.to_path_buf(),
            listener: Some(listener),
            _lock: None,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands out the listener; the socket file stays owned by `self`.
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn create_parent(path: &Path) -> Result<()> {
    let parent = path.parent().ok_or_else(|| Error::InvalidAddress {
        addr: path.display().to_string(),
        reason: "a socket path needs a directory".into(),
    })?;
    create_dir(parent, 0o711)
}

fn lookup_group(name: &str) -> Result<Gid> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Gid::from_raw(gid));
    }
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(Error::Config {
            path: PathBuf::from("/etc/group"),
            message: format!("socket group {name:?} does not exist"),
        }),
        Err(e) => Err(Error::io(format!("look up group {name}"), e.into())),
    }
}

/// Removes a socket nobody answers on. A socket that accepts a connection belongs to a
/// live process that did not take our lock; we refuse rather than steal it.
fn remove_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket(path.to_path_buf()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Error::AlreadyRunning {
            what: path.display().to_string(),
            pid: None,
        }),
        Err(_) => {
            tracing::info!(socket = %path.display(), "removing stale socket");
            std::fs::remove_file(path).context(|| format!("remove stale {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn binds_with_mode_and_replaces_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/svc.sock");
        // A stale socket: bound, then its listener dropped without unlinking.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let sock = UnixSocket::bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert!(matches!(
            UnixSocket::bind(&path, None),
            Err(Error::AlreadyRunning { .. })
        ));
        drop(sock);
        assert!(!path.exists());
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.sock");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            UnixSocket::bind(&path, None),
            Err(Error::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }
}
