//! State, Pids, Stats, Info: questions that change nothing.

use std::path::PathBuf;
use std::time::SystemTime;

use super::netdev::{self, InterfaceStats};
use super::{blocking, Phase, Status, Task};
use crate::cgroups::{CgroupManager, Stats};
use crate::error::{Error, Result};
use crate::state::ExitRecord;

/// A process (the init or an exec) as State reports it.
#[derive(Debug, Clone)]
pub struct ProcessState {
    /// Empty for the init, else the exec id.
    pub exec_id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Host pid.
    pub pid: u32,
    /// Where it stands.
    pub status: Status,
    /// Whether it has a terminal.
    pub terminal: bool,
    /// Whether its stdin is open.
    pub stdin_open: bool,
    /// Its end, when stopped.
    pub exit: Option<ExitRecord>,
    /// When it was started.
    pub started_at: Option<SystemTime>,
}

/// One Stats sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The container's cgroup.
    pub cgroup: Stats,
    /// Interfaces of its network namespace, loopback left out; empty on the host's.
    pub networks: Vec<InterfaceStats>,
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
    /// The state of the init (`exec_id` empty) or of an exec process.
    pub async fn state(&self, exec_id: &str) -> Result<ProcessState> {
        let inner = self.inner.lock().await;
        if !exec_id.is_empty() {
            let e = self.exec_entry(&inner, exec_id)?;
            return Ok(ProcessState {
                exec_id: exec_id.to_string(),
                bundle: inner.bundle.clone(),
                pid: e.pid,
                status: e.status,
                terminal: e.io.terminal(),
                stdin_open: e.io.stdin_open(),
                exit: e.exit.clone(),
                started_at: e.started_at,
            });
        }
        let Some(status) = inner.status() else {
            return Err(self.not_created());
        };
        Ok(ProcessState {
            exec_id: String::new(),
            bundle: inner.bundle.clone(),
            pid: inner.pid,
            status,
            terminal: inner.io.as_ref().is_some_and(|io| io.terminal()),
            stdin_open: inner.io.as_ref().is_some_and(|io| io.stdin_open()),
            exit: inner.exit.clone(),
            started_at: inner.started_at,
        })
    }

    /// Host pids of the container's processes, sorted, each with the id of the exec
    /// process it is the main process of (empty for the init and every other process).
    pub async fn pids(&self) -> Result<Vec<(u32, String)>> {
        let inner = self.inner.lock().await;
        match inner.phase {
            // The cgroup is gone with the last process.
            Phase::Live(Status::Stopped) => Ok(Vec::new()),
            Phase::Live(_) => {
                let mut pids: Vec<(u32, String)> = inner
                    .container()?
                    .cgroup()
                    .pids()?
                    .into_iter()
                    .map(|p| {
                        let pid = p as u32;
                        let exec_id = inner
                            .execs
                            .iter()
                            .find(|(_, e)| e.status == Status::Running && e.pid == pid)
                            .map(|(id, _)| id.clone())
                            .unwrap_or_default();
                        (pid, exec_id)
                    })
                    .collect();
                pids.sort_unstable();
                Ok(pids)
            }
            Phase::Empty | Phase::Deleted => Err(self.not_created()),
        }
    }

    /// A resource usage sample: the container's cgroup, and the traffic of its network
    /// namespace. Network figures are best effort: the init may be exiting.
    pub async fn stats(&self) -> Result<Sample> {
        let (cgroup, pid) = {
            let inner = self.inner.lock().await;
            match inner.phase {
                Phase::Live(Status::Stopped) => {
                    return Err(Error::FailedPrecondition(format!(
                        "container {} is not running",
                        self.id
                    )))
                }
                Phase::Live(_) => (inner.container()?.cgroup().clone(), inner.pid),
                Phase::Empty | Phase::Deleted => return Err(self.not_created()),
            }
        };
        let id = self.id.clone();
        blocking(move || {
            let cgroup = cgroup.stats()?;
            let networks = netdev::read(pid).unwrap_or_else(|e| {
                tracing::debug!(container = %id, error = %e, "no network stats");
                Vec::new()
            });
            Ok(Sample { cgroup, networks })
        })
        .await?
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
