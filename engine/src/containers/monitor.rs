//! The exit watch of a running container: a task that waits on the shim's `Wait`, then
//! tears the shim down, records the exit (state exited, code, time, OOM), announces it to
//! waiters and events, and removes the container when it was created with `--rm`.
//!
//! The record is updated only after the shim has deleted the container (its output is then
//! fully in the log, its cgroup and mounts gone), so whoever sees "exited" sees a container
//! with nothing left running. The task takes no container lock: Stop and Remove hold theirs
//! while they wait for this announcement.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::engine::v1::ExitStatus;
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::shim::v1::{DeleteRequest, ShutdownRequest, WaitRequest};
use tonic::transport::Channel;

use super::Manager;

/// How long the shim gets to tear the container down after its exit.
const TEARDOWN: Duration = Duration::from_secs(10);

/// True when process `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// The exit status the shim persisted in the state directory, if any.
pub fn persisted_exit(state_dir: &Path) -> Option<ExitStatus> {
    match berth_shim::state::read_exit(state_dir) {
        Ok(Some(r)) => Some(ExitStatus {
            exit_code: r.exit_status as i32,
            oom_killed: r.oom_killed,
            finished_at: Some(r.exited_at.into()),
            error: String::new(),
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(dir = %state_dir.display(), error = %e, "unreadable exit status");
            None
        }
    }
}

/// The status of a container whose shim is gone: the persisted one, else 255.
pub fn lost_exit(state_dir: &Path) -> ExitStatus {
    persisted_exit(state_dir).unwrap_or_else(|| ExitStatus {
        exit_code: 255,
        oom_killed: false,
        finished_at: Some(SystemTime::now().into()),
        error: "the container's shim died; its exit status is unknown".into(),
    })
}

/// Watches the container `id` run by the shim `task` (process `shim_pid`) until it exits.
pub fn watch(m: Arc<Manager>, id: String, task: TaskClient<Channel>, shim_pid: u32) {
    tokio::spawn(async move {
        let shutdown = m.ctx.shutdown.clone();
        let exit = tokio::select! {
            e = wait_exit(&m, &id, task.clone(), shim_pid) => e,
            // The engine stops; the shim and its container live on (live restore).
            () = shutdown.cancelled() => return,
        };
        finish(&m, &id, exit.1, exit.0).await;
    });
}

/// Waits for the exit; returns it with the (possibly reconnected) client, `None` when the
/// shim is gone.
async fn wait_exit(
    m: &Manager,
    id: &str,
    mut task: TaskClient<Channel>,
    shim_pid: u32,
) -> (ExitStatus, Option<TaskClient<Channel>>) {
    let state_dir = m.state_dir(id);
    let mut delay = Duration::from_millis(50);
    loop {
        match task
            .wait(WaitRequest {
                exec_id: String::new(),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                let status = ExitStatus {
                    exit_code: r.exit_status as i32,
                    oom_killed: r.oom_killed,
                    finished_at: r.exited_at.or_else(|| Some(SystemTime::now().into())),
                    error: String::new(),
                };
                return (status, Some(task));
            }
            Err(s) => {
                if !pid_alive(shim_pid) {
                    tracing::warn!(container = %id, shim = shim_pid, "the container's shim is gone");
                    super::restore::clean_after_lost_shim(m, id).await;
                    return (lost_exit(&state_dir), None);
                }
                tracing::debug!(container = %id, error = %s.message(), "waiting on the shim failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                if let Ok(c) = berth_shim::client::connect(&state_dir).await {
                    task = c.task;
                }
            }
        }
    }
}

/// Tears the shim down, records and announces the exit, auto-removes.
pub async fn finish(
    m: &Arc<Manager>,
    id: &str,
    task: Option<TaskClient<Channel>>,
    exit: ExitStatus,
) {
    if let Some(mut t) = task {
        let del = tokio::time::timeout(
            TEARDOWN,
            t.delete(DeleteRequest {
                exec_id: String::new(),
            }),
        )
        .await;
        if !matches!(del, Ok(Ok(_))) {
            tracing::warn!(container = %id, result = ?del.map(|r| r.map(|_| ())), "the shim did not delete the container");
        }
        let _ = tokio::time::timeout(TEARDOWN, t.shutdown(ShutdownRequest { now: true })).await;
    }
    let live = m.live(id);
    live.set_shim(None);
    let shutting_down = m.ctx.shutdown.is_cancelled();
    let updated = m.store.update(id, |r| {
        super::restart_policy::record_exit(r, &exit, shutting_down)
    });
    m.persist();
    live.exits.send_modify(|e| {
        e.count += 1;
        e.last = Some(exit.clone());
    });
    let rec = match updated {
        Ok(rec) => rec,
        Err(_) => return, // removed meanwhile (rm -f)
    };
    m.publish("die", &rec, [("exitCode", exit.exit_code.to_string())]);
    if exit.oom_killed {
        m.publish("oom", &rec, []);
    }
    tracing::info!(container = %id, exit_code = exit.exit_code, oom = exit.oom_killed, "container exited");
    if super::restart_policy::after_exit(m, &rec) {
        return;
    }
    if rec.config().auto_remove {
        if let Err(e) = super::remove::remove_id(m, id, false).await {
            tracing::debug!(container = %id, error = %e, "auto-remove skipped");
        }
    }
}
