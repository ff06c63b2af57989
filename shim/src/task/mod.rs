//! The Task API's domain side: one container (its init process and its exec processes),
//! their stdio and exit statuses, behind a [`Task`] that the gRPC adapter ([`service`])
//! calls with domain types. One file per operation family: [`create`], [`start`],
//! [`signal`] (kill, pause, resume), [`wait`] (wait and exit handling), [`delete`]
//! (delete, shutdown), [`query`] (state, pids, stats, info), [`io`] (stdio pipes and
//! terminals, close, attach, resize; [`tty`] the terminal's master), [`exec`] (exec
//! processes); [`reaper`] reaps children. Requests name a process by exec id, empty for
//! the init.
//!
//! Locking: `inner` guards the container's state; `reap_lock` is held whenever the runtime
//! core waits for its own children (creating and starting the init), so the reaper, which
//! reaps every child of this subreaper, cannot take a status the core is about to collect.
//! Nothing holds `reap_lock` and then waits for `inner`, so the two cannot deadlock.

pub mod convert;
pub mod create;
pub mod delete;
pub mod exec;
pub mod io;
pub mod netdev;
pub mod query;
pub mod reaper;
pub mod service;
pub mod signal;
pub mod start;
pub mod tty;
pub mod wait;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use crate::container::Container;
use crate::error::{Error, Result};
use crate::exec::ExecBase;
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
    /// What exec processes share with the init (seccomp), from the container's spec.
    exec_base: Option<Arc<ExecBase>>,
    /// Exec processes by id.
    execs: HashMap<String, exec::ExecProcess>,
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
                exec_base: None,
                execs: HashMap::new(),
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

    fn not_created(&self) -> Error {
        Error::NotFound(format!("container {} is not created", self.id))
    }

    /// The stdio of the init (`exec_id` empty) or of an exec process.
    fn process_io<'a>(&self, inner: &'a Inner, exec_id: &str) -> Result<Option<&'a io::Io>> {
        if exec_id.is_empty() {
            if matches!(inner.phase, Phase::Empty | Phase::Deleted) {
                return Err(self.not_created());
            }
            return Ok(inner.io.as_ref());
        }
        Ok(Some(&self.exec_entry(inner, exec_id)?.io))
    }

    /// Where the init (`exec_id` empty) or an exec process stands.
    fn process_status(&self, inner: &Inner, exec_id: &str) -> Result<Status> {
        if exec_id.is_empty() {
            return inner.status().ok_or_else(|| self.not_created());
        }
        Ok(self.exec_entry(inner, exec_id)?.status)
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
