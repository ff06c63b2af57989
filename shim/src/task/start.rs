//! Start: the init execs the container's program (exec processes: [`super::exec`]).

use std::time::SystemTime;

use super::{blocking, Phase, Status, Task};
use crate::error::{Error, Result};

impl Task {
    /// Starts the init (`exec_id` empty) or an exec process; returns its host pid once
    /// it has exec'd its program. An exec failure comes back as the process's own
    /// message, and the process is then stopped with status 127 (126 for "permission
    /// denied"), as Docker reports it.
    pub async fn start(&self, exec_id: &str) -> Result<u32> {
        if !exec_id.is_empty() {
            return self.exec_start(exec_id).await;
        }
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
