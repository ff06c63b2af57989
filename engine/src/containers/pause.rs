//! Pause and Unpause: the shim freezes and thaws every process of the container (the
//! cgroup freezer); the record says paused meanwhile.

use std::sync::Arc;

use berth_proto::engine::v1::ContainerStatus;
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::shim::v1::{PauseRequest, ResumeRequest};
use tonic::transport::Channel;

use super::kill::shim_of;
use super::record::{self, Record};
use super::Manager;
use crate::error::{Error, Result};

fn set_paused(m: &Manager, id: &str, paused: bool) -> Result<Record> {
    let rec = m.store.update(id, |r| {
        let s = r.state_mut();
        s.paused = paused;
        s.status = if paused {
            ContainerStatus::Paused
        } else {
            ContainerStatus::Running
        } as i32;
    })?;
    m.persist();
    Ok(rec)
}

/// `Containers.Pause`
pub async fn pause(m: &Arc<Manager>, given: &str) -> Result<()> {
    freeze(m, given, true).await
}

/// `Containers.Unpause`
pub async fn unpause(m: &Arc<Manager>, given: &str) -> Result<()> {
    freeze(m, given, false).await
}

/// Freezes (`pause`) or thaws a container, with Docker's refusals for the wrong state.
async fn freeze(m: &Arc<Manager>, given: &str, pause: bool) -> Result<()> {
    let rec = m.resolve(given)?;
    let live = m.live(&rec.id);
    let _op = live.op.lock().await;
    let rec = m
        .store
        .get(&rec.id)?
        .ok_or_else(|| record::no_such_container(given))?;
    let refusal = match (pause, rec.status()) {
        (true, ContainerStatus::Running) | (false, ContainerStatus::Paused) => None,
        (_, ContainerStatus::Restarting) => {
            return Err(super::kill::restarting(&rec.id));
        }
        (true, ContainerStatus::Paused) => Some("is already paused"),
        (true, _) => Some("is not running"),
        (false, _) => Some("is not paused"),
    };
    if let Some(why) = refusal {
        return Err(Error::FailedPrecondition(format!(
            "Container {} {why}",
            rec.id
        )));
    }
    let mut task = shim_of(m, &live, &rec.id).await?;
    let done = if pause {
        task.pause(PauseRequest {}).await.map(|_| ())
    } else {
        task.resume(ResumeRequest {}).await.map(|_| ())
    };
    done.map_err(|s| Error::downstream("shim", s))?;
    let rec = set_paused(m, &rec.id, pause)?;
    let action = if pause { "pause" } else { "unpause" };
    m.publish(action, &rec, []);
    tracing::info!(container = %rec.id, "container {action}d");
    Ok(())
}

/// Thaws a paused container that was just signalled, so that the signal is acted on (a
/// frozen process handles no signal, not even SIGKILL under cgroup v1), as Docker does for
/// `stop` and `kill` of a paused container.
pub async fn thaw_after_signal(m: &Manager, task: &mut TaskClient<Channel>, rec: &Record) {
    if rec.status() != ContainerStatus::Paused {
        return;
    }
    match task.resume(ResumeRequest {}).await {
        Ok(_) => {
            if let Err(e) = set_paused(m, &rec.id, false) {
                tracing::warn!(container = %rec.id, error = %e, "recording the unpause");
            }
            m.publish("unpause", rec, []);
        }
        Err(s) => {
            tracing::warn!(container = %rec.id, error = %s.message(), "thawing the signalled container")
        }
    }
}
