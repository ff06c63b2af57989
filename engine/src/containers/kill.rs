//! Kill: a signal to the container's main process (`kill -s`), and the signalling that Stop
//! and Remove share.

use std::sync::Arc;

use berth_proto::engine::v1::ContainerStatus;
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::shim::v1::KillRequest;
use tonic::transport::Channel;

use super::record::Record;
use super::{signal, Live, Manager};
use crate::error::{Error, Result};

/// SIGKILL.
pub const SIGKILL: u32 = 9;

/// Sends `sig` through the shim. A process that exited meanwhile is not an error: the
/// exit is on its way to the monitor.
pub async fn send(task: &mut TaskClient<Channel>, sig: u32, all: bool) -> Result<()> {
    match task
        .kill(KillRequest {
            exec_id: String::new(),
            signal: sig,
            all,
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) =>
        {
            tracing::debug!(error = %s.message(), "signal not delivered: the process is gone");
            Ok(())
        }
        Err(s) => Err(Error::downstream("shim", s)),
    }
}

/// The shim client of a running container: the one held, else a fresh connection.
pub async fn shim_of(m: &Manager, live: &Live, id: &str) -> Result<TaskClient<Channel>> {
    if let Some(t) = live.shim() {
        return Ok(t);
    }
    match berth_shim::client::connect(&m.state_dir(id)).await {
        Ok(c) => {
            live.set_shim(Some(c.task.clone()));
            Ok(c.task)
        }
        Err(e) => Err(Error::Unavailable {
            service: "shim",
            message: format!("cannot reach the shim of container {id}: {e}"),
        }),
    }
}

/// Docker's refusal of what needs a running process while the container waits to restart.
pub fn restarting(id: &str) -> Error {
    Error::FailedPrecondition(format!(
        "Container {id} is restarting, wait until the container is running"
    ))
}

/// The container `given` names, which must be running, and its shim.
pub async fn running_shim(m: &Manager, given: &str) -> Result<(Record, TaskClient<Channel>)> {
    let rec = m.resolve(given)?;
    if !rec.is_running() {
        return Err(Error::FailedPrecondition(format!(
            "Container {} is not running",
            rec.id
        )));
    }
    if rec.status() == ContainerStatus::Restarting {
        return Err(restarting(&rec.id));
    }
    let live = m.live(&rec.id);
    let task = shim_of(m, &live, &rec.id).await?;
    Ok((rec, task))
}

/// `Containers.Kill`
pub async fn kill(m: &Arc<Manager>, given: &str, sig: &str) -> Result<()> {
    let rec = m.resolve(given)?;
    if !rec.is_running() {
        return Err(Error::FailedPrecondition(format!(
            "Cannot kill container: {given}: Container {} is not running",
            rec.id
        )));
    }
    let sig = signal::parse(sig)?.unwrap_or(SIGKILL);
    let live = m.live(&rec.id);
    // As Docker: any signal from the user puts the restart policy to rest until the next
    // start; a container waiting to restart just stays exited.
    if super::restart_policy::cancel(m, &live, &rec.id)? {
        m.publish("kill", &rec, [("signal", sig.to_string())]);
        return Ok(());
    }
    m.store.update(&rec.id, |r| r.manually_stopped = true)?;
    let mut task = shim_of(m, &live, &rec.id).await?;
    send(&mut task, sig, false).await?;
    m.publish("kill", &rec, [("signal", sig.to_string())]);
    super::pause::thaw_after_signal(m, &mut task, &rec).await;
    Ok(())
}
