//! Kill, Pause, Resume.

use crate::cgroups::CgroupManager;
use crate::error::{Error, Result};

use super::{blocking, Phase, Status, Task};

/// Highest signal number on Linux (`SIGRTMAX`).
const SIGRTMAX: u32 = 64;

impl Task {
    /// Sends `signal` to the init (`exec_id` empty), or with `all` to every process of
    /// the container; or to an exec process.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        if signal == 0 || signal > SIGRTMAX {
            return Err(Error::InvalidArgument(format!(
                "signal {signal} is not a signal number (1 to {SIGRTMAX})"
            )));
        }
        if !exec_id.is_empty() {
            return self.exec_kill(exec_id, signal, all).await;
        }
        let mut inner = self.inner.lock().await;
        match inner.phase {
            Phase::Live(Status::Created | Status::Running | Status::Paused) => {}
            Phase::Live(Status::Stopped) => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running",
                    self.id
                )))
            }
            Phase::Empty | Phase::Deleted => return Err(self.not_created()),
        }
        let container = inner.container()?;
        container.kill_signo(signal as i32, all)?;
        // A frozen process only dies once thawed: a SIGKILL to a paused container means
        // "stop it now", as with `docker kill` of a paused container.
        if signal == libc::SIGKILL as u32 && inner.phase == Phase::Live(Status::Paused) {
            let cgroup = container.cgroup().clone();
            blocking(move || cgroup.thaw()).await??;
            inner.phase = Phase::Live(Status::Running);
        }
        tracing::info!(container = %self.id, signal, all, "signalled");
        Ok(())
    }

    /// Freezes every process of the container.
    pub async fn pause(&self) -> Result<()> {
        let mut inner = self.inner.lock().await;
        match inner.phase {
            Phase::Live(Status::Running) => {}
            Phase::Live(s) => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running ({s:?})",
                    self.id
                )))
            }
            _ => return Err(self.not_created()),
        }
        let cgroup = inner.container()?.cgroup().clone();
        // The v1 freezer is polled until the whole cgroup is FROZEN.
        blocking(move || cgroup.freeze()).await??;
        inner.phase = Phase::Live(Status::Paused);
        Ok(())
    }

    /// Thaws a paused container.
    pub async fn resume(&self) -> Result<()> {
        let mut inner = self.inner.lock().await;
        match inner.phase {
            Phase::Live(Status::Paused) => {}
            Phase::Live(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not paused",
                    self.id
                )))
            }
            _ => return Err(self.not_created()),
        }
        let cgroup = inner.container()?.cgroup().clone();
        blocking(move || cgroup.thaw()).await??;
        inner.phase = Phase::Live(Status::Running);
        Ok(())
    }
}
