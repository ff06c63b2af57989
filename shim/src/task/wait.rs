//! Wait, and what happens when the init exits: the status is written to `exit.json`
//! (fsync) before anyone is told, so an engine that was down collects it later.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::wait::WaitStatus;

use super::{blocking, Inner, Phase, Status, Task};
use crate::container::ExitStatus;
use crate::error::{Error, Result};
use crate::state::{self, ExitRecord};

/// How long the exit report waits for the container's output to be logged.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

impl Task {
    /// Blocks until the init (`exec_id` empty) or an exec process exits (returns at once
    /// if it has).
    pub async fn wait(&self, exec_id: &str) -> Result<ExitRecord> {
        if !exec_id.is_empty() {
            return self.exec_wait(exec_id).await;
        }
        let mut rx = {
            let inner = self.inner.lock().await;
            if inner.phase == Phase::Empty {
                return Err(self.not_created());
            }
            if let Some(e) = &inner.exit {
                return Ok(e.clone());
            }
            inner.exit_tx.subscribe()
        };
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::NotFound(format!("container {} was deleted", self.id)))?;
        (*exit)
            .clone()
            .ok_or_else(|| Error::NotFound(format!("container {} has no exit status", self.id)))
    }

    /// Called by the reaper for every reaped child; acts on the end of the init or of an
    /// exec process.
    pub(super) async fn on_exit(self: Arc<Self>, status: WaitStatus, at: SystemTime) {
        let Some(pid) = status.pid() else { return };
        let mut inner = self.inner.lock().await;
        let ours = inner.pid == pid.as_raw() as u32
            && inner.exit.is_none()
            && matches!(inner.phase, Phase::Live(_));
        if !ours {
            if !self.exec_exited(inner, status, at).await {
                tracing::debug!(pid = pid.as_raw(), ?status, "reaped a child");
            }
            return;
        }
        let Some(mut container) = inner.container.take() else {
            return;
        };
        // Reading OOM kills, killing leftovers and removing the cgroup block.
        let done = blocking(move || {
            let exit = container.exited(status);
            (container, exit)
        })
        .await;
        match done {
            Ok((container, exit)) => {
                inner.container = Some(container);
                if let Some(exit) = exit {
                    self.record_exit(&mut inner, exit, at).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "recording the init's exit"),
        }
    }

    /// Persists the exit, then publishes it.
    pub(super) async fn record_exit(&self, inner: &mut Inner, exit: ExitStatus, at: SystemTime) {
        if let Some(io) = inner.io.as_mut() {
            io.drain(OUTPUT_DRAIN, &self.id).await;
        }
        let record = ExitRecord {
            pid: inner.pid,
            exit_status: exit.code.max(0) as u32,
            signal: exit.signal,
            oom_killed: exit.oom_killed,
            exited_at: at,
        };
        let dir = self.state_dir.clone();
        let to_write = record.clone();
        let written = blocking(move || state::write_exit(&dir, &to_write)).await;
        if let Err(e) = written.and_then(|r| r) {
            // Waiters must still learn of the exit: an unwritable state dir must not hang
            // the engine. It loses only the restart-safety of this one status.
            tracing::error!(error = %e, "could not persist the exit status; reporting it anyway");
        }
        tracing::info!(
            exit_status = record.exit_status,
            oom_killed = record.oom_killed,
            "exited"
        );
        inner.phase = Phase::Live(Status::Stopped);
        inner.exit = Some(record.clone());
        inner.exit_tx.send_replace(Some(record));
    }
}
