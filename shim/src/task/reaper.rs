//! The shim is a child subreaper: processes orphaned below it (an exec's double fork, a
//! daemon inside a host-pid container) are reparented to it rather than to the host's
//! init, and it reaps every child so none lingers as a zombie. The init's status goes to
//! the task.

use std::sync::Arc;
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::signal::unix::{signal, SignalKind};

use super::Task;
use crate::error::{Error, Result};

/// `prctl(PR_SET_CHILD_SUBREAPER)`.
pub fn become_subreaper() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(|e| Error::sys("prctl(PR_SET_CHILD_SUBREAPER)", e))
}

/// Reaps every child that has ended, without blocking.
fn sweep() -> Vec<(WaitStatus, SystemTime)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return out,
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "waitpid");
                return out;
            }
            Ok(status) => out.push((status, SystemTime::now())),
        }
    }
}

/// Starts the reaper: a sweep now, then one per SIGCHLD. Must be called before any child
/// exists, inside the runtime.
pub fn spawn(task: Arc<Task>) -> Result<tokio::task::JoinHandle<()>> {
    let mut sigchld =
        signal(SignalKind::child()).map_err(|e| Error::io("install the SIGCHLD handler", e))?;
    Ok(tokio::spawn(async move {
        loop {
            let reaped = {
                let _guard = task.reap_lock.lock().await;
                sweep()
            };
            for (status, at) in reaped {
                // Exit handling may block on cleanup; reaping must go on meanwhile.
                tokio::spawn(task.clone().on_exit(status, at));
            }
            if sigchld.recv().await.is_none() {
                return;
            }
        }
    }))
}
