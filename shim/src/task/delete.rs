//! Delete, Shutdown, and the teardown both use.

use std::time::Duration;

use super::{blocking, Phase, Status, Task};
use crate::cgroups::CgroupManager;
use crate::error::{Error, Result};
use crate::state::ExitRecord;

/// How long teardown waits for a SIGKILLed container to be reaped. The core's own cleanup
/// gives a cgroup 10 s to empty; this is longer so that its answer is what we report.
const KILL_WAIT: Duration = Duration::from_secs(15);

impl Task {
    /// Deletes the exited container (`exec_id` empty): remaining processes killed, cgroup
    /// removed, the container and its exec processes forgotten. A created (never started)
    /// container is killed first; a running or paused one is refused. The root filesystem
    /// mounts live in the container's mount namespace and went away with its last
    /// process. With an exec id, removes that exec process.
    pub async fn delete(&self, exec_id: &str) -> Result<ExitRecord> {
        if !exec_id.is_empty() {
            return self.exec_delete(exec_id).await;
        }
        let mut inner = self.inner.lock().await;
        match inner.phase {
            Phase::Live(Status::Stopped) => {}
            Phase::Live(Status::Created) => {
                drop(inner);
                self.kill_and_wait().await?;
                inner = self.inner.lock().await;
                if inner.phase != Phase::Live(Status::Stopped) {
                    return Err(Error::FailedPrecondition(format!(
                        "container {} changed state while being deleted",
                        self.id
                    )));
                }
            }
            Phase::Live(Status::Running | Status::Paused) => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is running: stop it before deleting it",
                    self.id
                )))
            }
            Phase::Empty | Phase::Deleted => return Err(self.not_created()),
        }
        let exit = inner
            .exit
            .clone()
            .ok_or_else(|| Error::FailedPrecondition("the exit status is not known".into()))?;
        if let Some(container) = inner.container.take() {
            // Normally done at exit already; again in case that cleanup failed.
            blocking(move || {
                let cg = container.cgroup();
                let _ = cg.kill_all();
                let removed = cg.remove();
                drop(container);
                removed
            })
            .await??;
        }
        // Dropping the stdio closes the pipes and stops the copiers.
        inner.io = None;
        inner.execs.clear();
        inner.exec_base = None;
        inner.phase = Phase::Deleted;
        tracing::info!(container = %self.id, "deleted");
        Ok(exit)
    }

    /// Makes the shim exit once this call is answered; refused while the container exists
    /// unless `now`, which tears it down first.
    pub async fn shutdown(&self, now: bool) -> Result<()> {
        if now {
            self.teardown().await?;
        } else {
            let inner = self.inner.lock().await;
            if let Phase::Live(s) = inner.phase {
                return Err(Error::FailedPrecondition(format!(
                    "container {} exists ({s:?}): delete it first, or shut down with now",
                    self.id
                )));
            }
        }
        tracing::info!(container = %self.id, "shutting down");
        // The server drains: this call's answer is still sent.
        self.shutdown.cancel();
        Ok(())
    }

    /// Kills whatever runs and deletes the container: for Shutdown with `now`, and when
    /// the shim itself is told to stop (SIGTERM), so that no process, cgroup or mount of
    /// the container outlives its shim.
    pub async fn teardown(&self) -> Result<()> {
        let phase = self.inner.lock().await.phase;
        match phase {
            Phase::Empty | Phase::Deleted => return Ok(()),
            Phase::Live(Status::Stopped) => {}
            Phase::Live(_) => self.kill_and_wait().await?,
        }
        self.delete("").await.map(drop)
    }

    /// SIGKILLs every process of the container and waits until the init is reaped.
    async fn kill_and_wait(&self) -> Result<()> {
        {
            let mut inner = self.inner.lock().await;
            if let Phase::Live(Status::Created | Status::Running | Status::Paused) = inner.phase {
                let container = inner.container()?;
                container.kill_signo(libc::SIGKILL, false)?;
                container.kill_signo(libc::SIGKILL, true)?;
                if inner.phase == Phase::Live(Status::Paused) {
                    let cgroup = container.cgroup().clone();
                    blocking(move || cgroup.thaw()).await??;
                    inner.phase = Phase::Live(Status::Running);
                }
            }
        }
        tokio::time::timeout(KILL_WAIT, self.wait(""))
            .await
            .map_err(|_| {
                Error::FailedPrecondition(format!(
                    "container {} did not exit within {KILL_WAIT:?} of SIGKILL",
                    self.id
                ))
            })?
            .map(drop)
    }
}
