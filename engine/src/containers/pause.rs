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
    let rec = m.resolve(given)?;
    let live = m.live(&rec.id);
    let _op = live.op.lock().await;
    let rec = m
        .store
        .get(&rec.id)?
        .ok_or_else(|| record::no_such_container(given))?;
    match rec.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused => {
            return Err(Error::FailedPrecondition(format!(
                "Container {} is already paused",
                rec.id
            )))
        }
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "Container {} is not running",
                rec.id
            )))
        }
    }
    let mut task = shim_of(m, &live, &rec.id).await?;
    task.pause(PauseRequest {})
        .await
        .map_err(|s| Error::downstream("shim", s))?;
    let rec = set_paused(m, &rec.id, true)?;
    m.publish("pause", &rec, []);
    tracing::info!(container = %rec.id, "container paused");
    Ok(())
}

/// `Containers.Unpause`
pub async fn unpause(m: &Arc<Manager>, given: &str) -> Result<()> {
    let rec = m.resolve(given)?;
    let live = m.live(&rec.id);
    let _op = live.op.lock().await;
    let rec = m
        .store
        .get(&rec.id)?
        .ok_or_else(|| record::no_such_container(given))?;
    if rec.status() != ContainerStatus::Paused {
        return Err(Error::FailedPrecondition(format!(
            "Container {} is not paused",
            rec.id
        )));
    }
    let mut task = shim_of(m, &live, &rec.id).await?;
    task.resume(ResumeRequest {})
        .await
        .map_err(|s| Error::downstream("shim", s))?;
    let rec = set_paused(m, &rec.id, false)?;
    m.publish("unpause", &rec, []);
    tracing::info!(container = %rec.id, "container unpaused");
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
