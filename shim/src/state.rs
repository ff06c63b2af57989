//! The shim's files in a container's state directory (`<state>/containers/<id>/`), shared
//! by the shim that writes them and the engine that reads them (live restore):
//!
//! ```text
//! shim.sock   the Task API (mode 0600)
//! shim.pid    the shim's pid, under flock while the shim lives
//! shim.log    the shim's own stdout/stderr (its tracing output)
//! exit.json   the init's exit status, written (fsync) before anyone is told of it
//! container.log[.N]  the container's output when the engine names no other log path
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The Task API socket.
pub const SOCKET: &str = "shim.sock";
/// The shim's pid file.
pub const PID_FILE: &str = "shim.pid";
/// The shim's own log.
pub const SHIM_LOG: &str = "shim.log";
/// The init's exit status.
pub const EXIT_FILE: &str = "exit.json";
/// The container's log when the engine names none.
pub const CONTAINER_LOG: &str = "container.log";

/// A container id as the engine makes them: 64 lowercase hex characters. The shim takes
/// nothing else, so an id is always safe as a file and cgroup name.
pub fn validate_id(id: &str) -> Result<()> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "container id {id:?} is not 64 lowercase hex characters"
        )))
    }
}

/// How the container's init ended, as persisted in `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Host pid the init had.
    pub pid: u32,
    /// Exit code, or 128 + the signal number (Docker's convention).
    pub exit_status: u32,
    /// The signal that ended it, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
    /// When the shim reaped it, RFC 3339 with nanoseconds.
    #[serde(with = "rfc3339")]
    pub exited_at: SystemTime,
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_nanos(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Path of `name` in `state_dir`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(name)
}

/// Writes `exit.json` crash-safely: a temporary file, fsync, rename, fsync of the
/// directory. When this returns, an engine that restarts after a power cut still finds
/// the status (as long as the state dir survives: `/run` does not survive a reboot, and a
/// reboot ends the container anyway).
pub fn write_exit(state_dir: &Path, record: &ExitRecord) -> Result<()> {
    let target = path(state_dir, EXIT_FILE);
    let tmp = path(state_dir, ".exit.json.tmp");
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::io("encode exit.json", std::io::Error::other(e)))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(state_dir)?.sync_all()
    };
    write().map_err(|e| Error::io(format!("write {}", target.display()), e))
}

/// Reads `exit.json`; `None` when the container has not exited (or was never created).
pub fn read_exit(state_dir: &Path) -> Result<Option<ExitRecord>> {
    let p = path(state_dir, EXIT_FILE);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", p.display()), e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::io(
            format!("parse {}", p.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

/// Removes a stale `exit.json` (a new container is created in the same state dir).
pub fn remove_exit(state_dir: &Path) -> Result<()> {
    let p = path(state_dir, EXIT_FILE);
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", p.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_lowercase_hex() {
        validate_id(&"a1".repeat(32)).unwrap();
        for bad in ["", "abc", &"A1".repeat(32), &"../".repeat(22)[..64]] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exit_records_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(dir.path()).unwrap(), None);
        let r = ExitRecord {
            pid: 42,
            exit_status: 143,
            signal: Some(15),
            oom_killed: false,
            exited_at: SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123),
        };
        write_exit(dir.path(), &r).unwrap();
        assert_eq!(read_exit(dir.path()).unwrap(), Some(r));
        let text = std::fs::read_to_string(dir.path().join(EXIT_FILE)).unwrap();
        assert!(text.contains("\"exited_at\": \"2023-11-14T22:13:20.000000123Z\""));
        remove_exit(dir.path()).unwrap();
        assert_eq!(read_exit(dir.path()).unwrap(), None);
    }
}
