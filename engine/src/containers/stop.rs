//! Stop (the stop signal, then SIGKILL after the timeout) and Restart.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::kill::{send, shim_of, SIGKILL};
use super::record;
use super::{restart_policy, signal, start, Exits, Live, Manager};
use crate::error::{Error, Result};

/// Seconds Stop waits when neither the request nor the container says.
pub const DEFAULT_TIMEOUT: i32 = 10;
/// How long an exit may take after SIGKILL before Stop gives up.
const AFTER_KILL: Duration = Duration::from_secs(30);

/// Waits until an exit after `seen` is announced (or the container is removed); false on
/// timeout.
pub async fn exited_since(
    rx: &mut watch::Receiver<Exits>,
    seen: u64,
    timeout: Option<Duration>,
) -> bool {
    let wait = rx.wait_for(|e| e.count > seen || e.removed);
    match timeout {
        None => wait.await.is_ok(),
        Some(t) => matches!(tokio::time::timeout(t, wait).await, Ok(Ok(_))),
    }
}

/// `Containers.Stop`
pub async fn stop(m: &Arc<Manager>, given: &str, timeout: Option<i32>, sig: &str) -> Result<()> {
    let rec = m.resolve(given)?;
    let live = m.live(&rec.id);
    let _op = live.op.lock().await;
    stop_locked(m, &live, &rec.id, timeout, sig).await
}

/// Stops the container `id`, whose operation lock the caller holds.
pub async fn stop_locked(
    m: &Arc<Manager>,
    live: &Live,
    id: &str,
    timeout: Option<i32>,
    sig: &str,
) -> Result<()> {
    let rec = m
        .store
        .get(id)?
        .ok_or_else(|| record::no_such_container(id))?;
    if !rec.is_running() {
        return Ok(());
    }
    if restart_policy::cancel(m, live, id)? {
        m.publish("stop", &rec, []);
        return Ok(());
    }
    // Before the signal: the exit it causes must not bring the restart policy into play.
    let rec = m.store.update(id, |r| r.manually_stopped = true)?;
    let config = rec.config();
    let sig = match signal::parse(sig)? {
        Some(s) => s,
        None => signal::parse(&config.stop_signal)?.unwrap_or(15),
    };
    let timeout = timeout.or(config.stop_timeout).unwrap_or(DEFAULT_TIMEOUT);
    let mut rx = live.exits.subscribe();
    let seen = rx.borrow().count;
    let mut task = shim_of(m, live, id).await?;
    send(&mut task, sig, false).await?;
    m.publish("kill", &rec, [("signal", sig.to_string())]);
    super::pause::thaw_after_signal(m, &mut task, &rec).await;
    let limit = (timeout >= 0).then(|| Duration::from_secs(timeout as u64));
    if !exited_since(&mut rx, seen, limit).await {
        tracing::info!(container = %id, timeout, "container did not stop in time: killing it");
        send(&mut task, SIGKILL, true).await?;
        m.publish("kill", &rec, [("signal", SIGKILL.to_string())]);
        if !exited_since(&mut rx, seen, Some(AFTER_KILL)).await {
            return Err(Error::Unavailable {
                service: "shim",
                message: format!(
                    "container {id} did not exit {}s after SIGKILL",
                    AFTER_KILL.as_secs()
                ),
            });
        }
    }
    m.publish("stop", &rec, []);
    Ok(())
}

/// `Containers.Restart`
pub async fn restart(m: &Arc<Manager>, given: &str, timeout: Option<i32>, sig: &str) -> Result<()> {
    let rec = m.resolve(given)?;
    let live = m.live(&rec.id);
    let _op = live.op.lock().await;
    stop_locked(m, &live, &rec.id, timeout, sig).await?;
    let rec = start::reset_restarts(m, &live, &rec.id)?;
    start::start_locked(m, &live, &rec).await?;
    m.publish("restart", &rec, []);
    Ok(())
}
