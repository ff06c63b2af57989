//! Wait: until the container is not running, until its next exit, or until it is removed.

use std::sync::Arc;

use berth_proto::engine::v1::{ExitStatus, WaitCondition};

use super::{record, Manager};
use crate::error::{Error, Result};

/// `Containers.Wait`
pub async fn wait(m: &Arc<Manager>, given: &str, cond: WaitCondition) -> Result<ExitStatus> {
    let rec = match m.resolve(given) {
        Ok(r) => r,
        Err(e) => {
            // A container removed just before (`run --rm` that ended quickly).
            return m.buried(given).ok_or(e);
        }
    };
    let live = m.live(&rec.id);
    let mut rx = live.exits.subscribe();
    let seen = rx.borrow().count;
    // Read again now that exits are watched: nothing can slip between.
    let Some(rec) = m.store.get(&rec.id)? else {
        m.forget(&rec.id);
        return m
            .buried(&rec.id)
            .ok_or_else(|| record::no_such_container(given));
    };
    let done = |e: &super::Exits| match cond {
        WaitCondition::Removed => e.removed,
        _ => e.count > seen || e.removed,
    };
    if matches!(cond, WaitCondition::NotRunning | WaitCondition::Unspecified) && !rec.is_running() {
        return Ok(rec.exit_status());
    }
    let shutdown = m.ctx.shutdown.clone();
    let exits = tokio::select! {
        r = rx.wait_for(done) => r.map(|e| e.clone()).map_err(|_| record::no_such_container(given))?,
        () = shutdown.cancelled() => {
            return Err(Error::Unavailable {
                service: "engine",
                message: "berth-engine is shutting down".into(),
            })
        }
    };
    Ok(exits
        .last
        .or_else(|| m.buried(&rec.id))
        .unwrap_or_else(|| rec.exit_status()))
}
