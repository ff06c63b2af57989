//! The client half: how the engine (and later the builder) starts a shim for a container
//! and reaches it again after a restart.
//!
//! ```no_run
//! # async fn demo() -> berth_shim::Result<()> {
//! use berth_shim::client::{self, SpawnOptions};
//! let opts = SpawnOptions {
//!     id: "ab".repeat(32),
//!     state_dir: "/run/berth/containers/abab…".into(),
//!     shim_bin: "/usr/bin/berth-shim".into(),
//!     log_format_json: false,
//! };
//! let mut shim = client::spawn(&opts).await?;
//! let info = shim.task.info(berth_proto::shim::v1::InfoRequest {}).await;
//! # Ok(()) }
//! ```

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::shim::v1::task_client::TaskClient;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::error::{Error, Result};
use crate::state;

pub use crate::state::{read_exit, ExitRecord};

/// The Task service's name, as health reports it.
pub const TASK_SERVICE: &str = "berth.shim.v1.Task";

/// How long a shim may take to start serving.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting and the health check may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest path `sockaddr_un` holds (108 bytes with the NUL).
const SUN_PATH_MAX: usize = 107;

/// How to start a shim.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    /// Container id: 64 lowercase hex characters.
    pub id: String,
    /// `<state>/containers/<id>`, created by the caller; the shim's socket, pid file, own
    /// log and the exit status go there.
    pub state_dir: PathBuf,
    /// The `berth-shim` binary.
    pub shim_bin: PathBuf,
    /// The shim logs JSON lines instead of text.
    pub log_format_json: bool,
}

/// A connected shim.
#[derive(Debug, Clone)]
pub struct ShimClient {
    /// The Task API.
    pub task: TaskClient<Channel>,
    /// The shim's pid (from `<state_dir>/shim.pid`).
    pub pid: u32,
}

/// Starts `berth-shim --id ID --state-dir DIR`, which detaches (new session, double fork:
/// it is reparented away from the caller and has no parent-death signal; its stdio goes
/// to `<state_dir>/shim.log`), waits until its socket answers health SERVING, and returns
/// a connected client. The process this starts is reaped before this returns; the shim
/// itself is no child of the caller.
pub async fn spawn(opts: &SpawnOptions) -> Result<ShimClient> {
    state::validate_id(&opts.id)?;
    if !opts.state_dir.is_dir() {
        return Err(Error::Spawn(format!(
            "state directory {} does not exist",
            opts.state_dir.display()
        )));
    }
    let mut cmd = tokio::process::Command::new(&opts.shim_bin);
    cmd.arg("--id")
        .arg(&opts.id)
        .arg("--state-dir")
        .arg(&opts.state_dir)
        .arg("--log-format")
        .arg(if opts.log_format_json { "json" } else { "text" })
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        // Only the launcher, if we give up on it; the detached shim is out of reach.
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| Error::Spawn(format!("run {}: {e}", opts.shim_bin.display())))?;
    let out = tokio::time::timeout(SPAWN_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::Spawn(format!(
                "the shim did not get ready within {SPAWN_TIMEOUT:?}; see {}",
                opts.state_dir.join(state::SHIM_LOG).display()
            ))
        })?
        .map_err(|e| Error::Spawn(format!("wait for {}: {e}", opts.shim_bin.display())))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        return Err(Error::Spawn(if stderr.is_empty() {
            format!("{} exited with {}", opts.shim_bin.display(), out.status)
        } else {
            stderr.to_string()
        }));
    }
    connect(&opts.state_dir).await
}

/// Connects to the shim serving `state_dir` (after an engine restart: live restore). A
/// missing socket, a refused connection or a shim that no longer serves is
/// [`Error::ShimNotFound`] (see [`Error::is_not_found`]): the shim is dead.
pub async fn connect(state_dir: &Path) -> Result<ShimClient> {
    let gone = |reason: String| Error::ShimNotFound {
        state_dir: state_dir.to_path_buf(),
        reason,
    };
    // A probe first, so that "nobody is there" is told apart from transport trouble.
    match dial(state_dir).await {
        Ok(probe) => drop(probe),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(gone(format!("{}: {e}", state::SOCKET)))
        }
        Err(e) => {
            return Err(Error::io(
                format!("connect to {}", state_dir.join(state::SOCKET).display()),
                e,
            ))
        }
    }
    let dir = state_dir.to_path_buf();
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let dir = dir.clone();
            async move { dial(&dir).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|e| Error::Transport {
            context: format!("connect to the shim in {}", state_dir.display()),
            source: e,
        })?;
    let mut health_client = HealthClient::new(channel.clone());
    let health = health_client.check(HealthCheckRequest {
        service: TASK_SERVICE.into(),
    });
    let status = tokio::time::timeout(CONNECT_TIMEOUT, health)
        .await
        .map_err(|_| Error::Rpc {
            context: format!("health check of the shim in {}", state_dir.display()),
            source: tonic::Status::deadline_exceeded("no answer"),
        })?
        .map_err(|e| Error::Rpc {
            context: format!("health check of the shim in {}", state_dir.display()),
            source: e,
        })?
        .into_inner()
        .status();
    if status != ServingStatus::Serving {
        return Err(gone(format!("the shim reports {}", status.as_str_name())));
    }
    let pid_file = state_dir.join(state::PID_FILE);
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| gone(format!("{} is missing or unreadable", state::PID_FILE)))?;
    Ok(ShimClient {
        task: TaskClient::new(channel),
        pid,
    })
}

/// Connects to `<state_dir>/shim.sock`; a path too long for `sockaddr_un` is reached
/// through the open directory's `/proc/self/fd` entry.
async fn dial(state_dir: &Path) -> std::io::Result<UnixStream> {
    let sock = state_dir.join(state::SOCKET);
    if sock.as_os_str().len() <= SUN_PATH_MAX {
        return UnixStream::connect(&sock).await;
    }
    let dir = std::fs::File::open(state_dir)?;
    let short = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), state::SOCKET);
    let stream = UnixStream::connect(short).await;
    drop(dir);
    stream
}
