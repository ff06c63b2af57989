//! Live restore: at engine start, every container recorded as running gets its shim back.
//! A shim that answers is watched again (an exit that happened while the engine was down is
//! reported by its `Wait` at once); a shim that is gone leaves its exit status in
//! `exit.json` when it had collected one, else the container is marked exited with 255. The
//! leftovers of a dead shim (processes in the container's cgroup, the cgroup, mounts under
//! the state directory) are removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_shim::cgroups::{AnyManager, CgroupManager, Layout};
use futures::StreamExt;

use berth_proto::engine::v1::ContainerStatus;
use berth_proto::shim::v1::{ProcessStatus, ShutdownRequest, StateRequest};
use berth_shim::state::SOCKET;

use super::record::Record;
use super::{monitor, Manager};
use crate::error::Result;

/// How long a shim has to answer at restore.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Containers restored at once.
const CONCURRENCY: usize = 16;

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir` in the engine's mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Detaches every mount at or below `dir` (a rootfs a dead shim left mounted), so that
/// removing the directory never deletes through a mount.
pub fn unmount_under(dir: &Path) {
    for p in mounts_under(dir) {
        if let Err(e) = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(mount = %p.display(), error = %e, "unmounting a container leftover");
        }
    }
}

/// Removes what a dead shim leaves: the container's processes and cgroup, its mounts.
pub async fn clean_after_lost_shim(m: &Manager, id: &str) {
    let state_dir = m.state_dir(id);
    let cgroup = PathBuf::from("/berth").join(id);
    let id = id.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        match Layout::detect().and_then(|l| AnyManager::new(&l, &cgroup)) {
            Ok(cg) => {
                if let Err(e) = cg.kill_all() {
                    tracing::debug!(container = %id, error = %e, "killing leftover processes");
                }
                if let Err(e) = cg.remove() {
                    tracing::debug!(container = %id, error = %e, "removing the cgroup");
                }
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "cannot reach the container's cgroup")
            }
        }
        unmount_under(&state_dir);
    })
    .await;
}

/// Reattaches to the shims of every container recorded as running, and of every
/// container whose state directory still has a shim socket (a start whose record update
/// had not reached the disk when the engine died).
pub async fn restore(m: &Arc<Manager>) -> Result<()> {
    let candidates: Vec<Record> = m
        .store
        .all()?
        .into_iter()
        .filter(|r| {
            // One waiting to restart has no shim: restart_policy::on_boot starts it.
            (r.is_running() && r.status() != ContainerStatus::Restarting)
                || m.state_dir(&r.id).join(SOCKET).exists()
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let n = candidates.len();
    futures::stream::iter(candidates)
        .for_each_concurrent(CONCURRENCY, |rec| async move { restore_one(m, rec).await })
        .await;
    tracing::info!(containers = n, elapsed = ?started.elapsed(), "live restore done");
    m.persist();
    Ok(())
}

async fn restore_one(m: &Arc<Manager>, rec: Record) {
    let id = rec.id.clone();
    let dir = m.state_dir(&id);
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, berth_shim::client::connect(&dir)).await;
    let shim = match connected {
        Ok(Ok(shim)) => shim,
        Ok(Err(e)) if rec.is_running() => {
            tracing::warn!(container = %id, error = %e, "the container's shim is gone");
            return lost(m, &id, &dir).await;
        }
        Err(_) if rec.is_running() => {
            tracing::warn!(container = %id, "the container's shim does not answer");
            return lost(m, &id, &dir).await;
        }
        _ => return,
    };
    let mut task = shim.task.clone();
    let state = task
        .state(StateRequest {
            exec_id: String::new(),
        })
        .await
        .map(|r| r.into_inner());
    let adopt = matches!(
        state.as_ref().map(|s| s.status()),
        Ok(ProcessStatus::Running | ProcessStatus::Paused | ProcessStatus::Stopped)
    );
    if !adopt {
        // A shim whose container never started (the engine died between spawning it and
        // Start): nothing runs; the record stays as it is.
        tracing::info!(container = %id, "shutting down a shim whose container never started");
        let _ = task.shutdown(ShutdownRequest { now: true }).await;
        if rec.is_running() {
            lost(m, &id, &dir).await;
        }
        return;
    }
    if !rec.is_running() {
        let st = state.unwrap_or_default();
        let started_at = st.started_at;
        let updated = m.store.update(&id, |r| {
            let s = r.state_mut();
            s.status = ContainerStatus::Running as i32;
            s.running = true;
            s.pid = st.pid as i64;
            s.exit_code = 0;
            s.error = String::new();
            if started_at.is_some() {
                s.started_at = started_at;
            }
        });
        match updated {
            Ok(r) => {
                tracing::info!(container = %id, "adopted a running container whose start was not recorded");
                m.publish("start", &r, []);
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "recording an adopted container");
                return;
            }
        }
    }
    tracing::info!(container = %id, shim = shim.pid, "reattached to the container's shim");
    m.live(&id).set_shim(Some(shim.task.clone()));
    monitor::watch(m.clone(), id, shim.task, shim.pid);
}
async fn lost(m: &Arc<Manager>, id: &str, dir: &Path) {
    clean_after_lost_shim(m, id).await;
    let exit = monitor::lost_exit(dir);
    monitor::finish(m, id, None, exit).await;
}
