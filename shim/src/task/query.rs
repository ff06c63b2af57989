//! State, Pids, Stats, Info: questions that change nothing.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{blocking, Phase, Status, Task};
use crate::cgroups::{CgroupManager, Stats};
use crate::error::{Error, Result};
use crate::state::ExitRecord;

/// The init process as State reports it.
#[derive(Debug, Clone)]
pub struct ProcessState {
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Host pid.
    pub pid: u32,
    /// Where it stands.
    pub status: Status,
    /// Whether its stdin pipe is open.
    pub stdin_open: bool,
    /// Its end, when stopped.
    pub exit: Option<ExitRecord>,
    /// When it was started.
    pub started_at: Option<SystemTime>,
}

/// The shim and its container, for Info.
#[derive(Debug, Clone)]
pub struct ShimInfo {
    /// The shim's pid.
    pub shim_pid: u32,
    /// The init's host pid; 0 before Create.
    pub task_pid: u32,
    /// The bundle; empty before Create.
    pub bundle: PathBuf,
}

impl Task {
    /// The init's state.
    pub async fn state(&self) -> Result<ProcessState> {
        let inner = self.inner.lock().await;
        let Some(status) = inner.status() else {
            return Err(self.not_created());
        };
        Ok(ProcessState {
            bundle: inner.bundle.clone(),
            pid: inner.pid,
            status,
            stdin_open: inner.io.as_ref().is_some_and(|io| io.stdin_open()),
            exit: inner.exit.clone(),
            started_at: inner.started_at,
        })
    }

    /// Host pids of the container's processes, sorted.
    pub async fn pids(&self) -> Result<Vec<u32>> {
        let inner = self.inner.lock().await;
        match inner.phase {
            // The cgroup is gone with the last process.
            Phase::Live(Status::Stopped) => Ok(Vec::new()),
            Phase::Live(_) => {
                let mut pids: Vec<u32> = inner
                    .container()?
                    .cgroup()
                    .pids()?
                    .into_iter()
                    .map(|p| p as u32)
                    .collect();
                pids.sort_unstable();
                Ok(pids)
            }
            Phase::Empty | Phase::Deleted => Err(self.not_created()),
        }
    }

    /// A resource usage sample from the container's cgroup.
    pub async fn stats(&self) -> Result<Stats> {
        let cgroup = {
            let inner = self.inner.lock().await;
            match inner.phase {
                Phase::Live(Status::Stopped) => {
                    return Err(Error::FailedPrecondition(format!(
                        "container {} is not running",
                        self.id
                    )))
                }
                Phase::Live(_) => inner.container()?.cgroup().clone(),
                Phase::Empty | Phase::Deleted => return Err(self.not_created()),
            }
        };
        blocking(move || cgroup.stats()).await?
    }

    /// The shim's identity.
    pub async fn info(&self) -> ShimInfo {
        let inner = self.inner.lock().await;
        let live = matches!(inner.phase, Phase::Live(_));
        ShimInfo {
            shim_pid: std::process::id(),
            task_pid: if live { inner.pid } else { 0 },
            bundle: if live {
                inner.bundle.clone()
            } else {
                PathBuf::new()
            },
        }
    }
}
