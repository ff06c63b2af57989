//! The Task API's domain side: one container (its init process), its stdio and its exit
//! status, behind a [`Task`] that the gRPC adapter ([`service`]) calls with domain types.
//! One file per operation family: [`create`], [`start`], [`signal`] (kill, pause, resume),
//! [`wait`] (wait and exit handling), [`delete`] (delete, shutdown), [`query`] (state, pids,
//! stats, info), [`io`] (stdio pipes, close, attach); [`reaper`] reaps children.
//!
//! Locking: `inner` guards the container's state; `reap_lock` is held whenever the runtime
//! core waits for its own children (creating and starting the init), so the reaper, which
//! reaps every child of this subreaper, cannot take a status the core is about to collect.
//! Nothing holds `reap_lock` and then waits for `inner`, so the two cannot deadlock.

pub mod convert;
pub mod create;
pub mod delete;
pub mod io;
pub mod query;
pub mod reaper;
pub mod service;
pub mod signal;
pub mod start;
pub mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::container::Container;
use crate::error::{Error, Result};
use crate::state::ExitRecord;

pub use service::TaskService;

/// Where the container stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Frozen by Pause.
    Paused,
    /// Exited; the exit status is known.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No container (before Create, after a failed Create).
    Empty,
    Live(Status),
    /// Deleted; a new Create may follow.
    Deleted,
}

struct Inner {
    phase: Phase,
    bundle: PathBuf,
    container: Option<Container>,
    pid: u32,
    started_at: Option<SystemTime>,
    exit: Option<ExitRecord>,
    /// Publishes the exit once it is on disk; replaced at each Create.
    exit_tx: watch::Sender<Option<ExitRecord>>,
    io: Option<io::Io>,
}

impl Inner {
    fn status(&self) -> Option<Status> {
        match self.phase {
            Phase::Live(s) => Some(s),
            _ => None,
        }
    }

    fn container(&self) -> Result<&Container> {
        self.container
            .as_ref()
            .ok_or_else(|| Error::NotFound("the container is gone".into()))
    }
}

/// The shim's one container.
pub struct Task {
    id: String,
    state_dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    reap_lock: Arc<Mutex<()>>,
    shutdown: CancellationToken,
}

impl Task {
    /// A task for container `id` whose files live in `state_dir` (absolute); `shutdown`
    /// is cancelled when the shim should stop serving.
    pub fn new(id: String, state_dir: PathBuf, shutdown: CancellationToken) -> Arc<Task> {
        Arc::new(Task {
            id,
            state_dir,
            inner: Arc::new(Mutex::new(Inner {
                phase: Phase::Empty,
                bundle: PathBuf::new(),
                container: None,
                pid: 0,
                started_at: None,
                exit: None,
                exit_tx: watch::Sender::new(None),
                io: None,
            })),
            reap_lock: Arc::new(Mutex::new(())),
            shutdown,
        })
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Refuses exec ids: exec is not implemented yet, so no exec process exists.
    pub fn check_exec_id(exec_id: &str) -> Result<()> {
        if exec_id.is_empty() {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no exec process {exec_id:?} (exec is not implemented yet)"
            )))
        }
    }

    fn not_created(&self) -> Error {
        Error::NotFound(format!("container {} is not created", self.id))
    }
}

/// Runs blocking work (the runtime core, file syncs) off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::io(
            "blocking task",
            std::io::Error::other(format!("it did not finish: {e}")),
        )
    })
}
