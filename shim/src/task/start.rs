//! Start: the init execs the container's program.

use std::time::SystemTime;

use super::{blocking, Phase, Status, Task};
use crate::error::{Error, Result};

impl Task {
    /// Starts the init; returns its host pid. An exec failure comes back as the init's
    /// message, and the container is then stopped with status 127 (as Docker reports it).
    pub async fn start(&self) -> Result<u32> {
        let mut inner = self.inner.lock().await;
        match inner.phase {
            Phase::Live(Status::Created) => {}
            Phase::Live(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is already started",
                    self.id
                )))
            }
            Phase::Empty | Phase::Deleted => return Err(self.not_created()),
        }
        let Some(mut container) = inner.container.take() else {
            return Err(self.not_created());
        };
        let reap_guard = self.reap_lock.clone().lock_owned().await;
        let (container, started) = blocking(move || {
            // On an exec failure the core reaps the init itself.
            let _reap_guard = reap_guard;
            let r = container.start();
            (container, r)
        })
        .await?;
        let pid = container.pid().as_raw() as u32;
        let failed_exit = container.exit_status();
        inner.container = Some(container);
        match started {
            Ok(()) => {
                inner.phase = Phase::Live(Status::Running);
                inner.started_at = Some(SystemTime::now());
                tracing::info!(container = %self.id, pid, "started");
                Ok(pid)
            }
            Err(e) => {
                if let Some(status) = failed_exit {
                    self.record_exit(&mut inner, status, SystemTime::now())
                        .await;
                }
                Err(e)
            }
        }
    }
}
