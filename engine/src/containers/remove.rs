//! Remove (`rm`, `rm -f`, and `--rm` after exit): kill first when forced, then the shim,
//! the snapshot, the state and root directories, and last the record (freeing the name).

use std::sync::Arc;
use std::time::Duration;

use berth_proto::engine::v1::ContainerStatus;
use berth_proto::shim::v1::ShutdownRequest;

use super::create::remove_snapshot;
use super::kill::{send, shim_of, SIGKILL};
use super::stop::exited_since;
use super::{monitor, record, restore, Manager};
use crate::error::{Error, Result};

/// How long `rm -f` waits for the killed container's exit before tearing its shim down.
const KILL_WAIT: Duration = Duration::from_secs(15);

/// `Containers.Remove`
pub async fn remove(m: &Arc<Manager>, given: &str, force: bool) -> Result<()> {
    let rec = m.resolve(given)?;
    remove_id(m, &rec.id, force).await
}

/// Removes the container with full id `id`.
pub async fn remove_id(m: &Arc<Manager>, id: &str, force: bool) -> Result<()> {
    let live = m.live(id);
    let _op = live.op.lock().await;
    let rec = m
        .store
        .get(id)?
        .ok_or_else(|| record::no_such_container(id))?;
    let restarting = rec.status() == ContainerStatus::Restarting;
    if rec.is_running() && !force {
        let what = if restarting { "restarting" } else { "running" };
        return Err(Error::FailedPrecondition(format!(
            "You cannot remove a {what} container {id}. Stop the container before \
             attempting removal or force remove"
        )));
    }
    // One waiting to restart has no process: there is nothing to kill.
    if rec.is_running() && !restarting {
        // The exit this kill causes must not bring the restart policy into play.
        m.store.update(id, |r| r.manually_stopped = true)?;
        let mut rx = live.exits.subscribe();
        let seen = rx.borrow().count;
        match shim_of(m, &live, id).await {
            Ok(mut task) => {
                send(&mut task, SIGKILL, true).await?;
                m.publish("kill", &rec, [("signal", SIGKILL.to_string())]);
                if !exited_since(&mut rx, seen, Some(KILL_WAIT)).await {
                    tracing::warn!(container = %id, "no exit after SIGKILL: shutting the shim down");
                    let _ = task.shutdown(ShutdownRequest { now: true }).await;
                }
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "the shim is unreachable: cleaning up after it");
                restore::clean_after_lost_shim(m, id).await;
                let exit = monitor::lost_exit(&m.state_dir(id));
                let _ = m.store.update(id, |r| r.set_exited(&exit));
            }
        }
    }
    // A shim still serving the state directory (normally none by now) is stopped, with
    // whatever it runs.
    let mut shim = live.shim();
    if shim.is_none() && m.state_dir(id).join(berth_shim::state::SOCKET).exists() {
        shim = berth_shim::client::connect(&m.state_dir(id))
            .await
            .ok()
            .map(|c| c.task);
    }
    if let Some(mut task) = shim {
        let _ = tokio::time::timeout(
            Duration::from_secs(20),
            task.shutdown(ShutdownRequest { now: true }),
        )
        .await;
        live.set_shim(None);
    }
    remove_snapshot(m, id).await?;
    let (state_dir, root_dir) = (m.state_dir(id), m.root_dir(id));
    tokio::task::spawn_blocking(move || {
        restore::unmount_under(&state_dir);
        for dir in [&state_dir, &root_dir] {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "removing a container directory");
                }
            }
        }
    })
    .await
    .map_err(|e| Error::io("remove the container's directories", std::io::Error::other(e)))?;
    let last = m
        .store
        .get(id)?
        .map(|r| r.exit_status())
        .unwrap_or_else(|| rec.exit_status());
    m.store.remove(id)?;
    m.persist();
    m.bury(id, last.clone());
    live.exits.send_modify(|e| {
        e.removed = true;
        e.last.get_or_insert(last);
    });
    m.forget(id);
    m.publish("destroy", &rec, []);
    tracing::info!(container = %id, name = %rec.name, "container removed");
    Ok(())
}
