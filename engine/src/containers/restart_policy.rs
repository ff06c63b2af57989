//! Restart policies (`--restart no|always|unless-stopped|on-failure[:N]`), as Docker has
//! them. The monitor records an exit with [`record_exit`], which decides in the same record
//! update, then calls [`after_exit`]: a container to restart waits in RESTARTING for its
//! back-off (100 ms, doubling up to a minute, back to 100 ms after a run
//! of 10 s or more) and is started again under its operation lock, unless a stop, kill or
//! remove came first. A stop or kill by the user (any signal, as Docker) marks the
//! container manually stopped: no restart until the next `start`. At engine start,
//! [`on_boot`] starts the exited containers whose policy says so: `always` ones even when
//! stopped by hand, `unless-stopped` ones only when not.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::engine::v1::{ContainerStatus, ExitStatus, RestartPolicy, RestartPolicyName};

use super::record::Record;
use super::{start, Manager};
use crate::error::{Error, Result};

/// First back-off.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest back-off.
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Docker's name of a policy.
fn name(p: RestartPolicyName) -> &'static str {
    match p {
        RestartPolicyName::Unspecified | RestartPolicyName::No => "no",
        RestartPolicyName::Always => "always",
        RestartPolicyName::UnlessStopped => "unless-stopped",
        RestartPolicyName::OnFailure => "on-failure",
    }
}

/// The policy as inspect shows it: `{"Name": "always", "MaximumRetryCount": 0}`.
pub fn inspect_json(p: Option<&RestartPolicy>) -> serde_json::Value {
    let (n, max) = p.map_or((RestartPolicyName::No, 0), |p| {
        (p.name(), p.maximum_retry_count)
    });
    serde_json::json!({"Name": name(n), "MaximumRetryCount": max})
}

/// Refuses what Docker refuses: a retry count with a policy other than on-failure, and a
/// policy with `--rm`.
pub fn validate(p: Option<&RestartPolicy>, auto_remove: bool) -> Result<()> {
    let Some(p) = p else { return Ok(()) };
    let n = p.name();
    if p.maximum_retry_count > 0 && n != RestartPolicyName::OnFailure {
        return Err(Error::InvalidArgument(format!(
            "maximum retry count cannot be used with restart policy '{}'",
            name(n)
        )));
    }
    if auto_remove && !matches!(n, RestartPolicyName::Unspecified | RestartPolicyName::No) {
        return Err(Error::InvalidArgument(
            "conflicting options: cannot specify both --restart and --rm".into(),
        ));
    }
    Ok(())
}

/// Whether the policy restarts a container after `exit_code`. `boot`: the engine is
/// starting (an `always` container comes back even when stopped by hand).
fn wants_restart(rec: &Record, exit_code: i32, boot: bool) -> bool {
    let Some(p) = rec.config().restart_policy.as_ref() else {
        return false;
    };
    let stopped = rec.manually_stopped;
    match p.name() {
        RestartPolicyName::Unspecified | RestartPolicyName::No => false,
        RestartPolicyName::Always => boot || !stopped,
        RestartPolicyName::UnlessStopped => !stopped,
        RestartPolicyName::OnFailure => {
            let max = p.maximum_retry_count;
            !stopped && exit_code != 0 && (max == 0 || rec.restart_count < max)
        }
    }
}

/// The back-off before the next restart, from the last one and how long the run lasted.
fn next_delay(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(d) if ran < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

/// Records an exit in `r` (under the record's update, so no stop can slip between the
/// exit and the decision): RESTARTING when the policy restarts it, else EXITED.
pub fn record_exit(r: &mut Record, exit: &ExitStatus, shutting_down: bool) {
    r.set_exited(exit);
    if !shutting_down && wants_restart(r, exit.exit_code, false) {
        let s = r.state_mut();
        s.status = ContainerStatus::Restarting as i32;
        s.restarting = true;
        s.running = true;
    }
}

/// Called by the monitor once the exit is recorded and announced: schedules the restart
/// of a container left RESTARTING, after its back-off. Returns whether it did.
pub fn after_exit(m: &Arc<Manager>, rec: &Record) -> bool {
    if rec.status() != ContainerStatus::Restarting {
        return false;
    }
    // How long the run that just ended lasted.
    let ran = rec
        .state
        .as_ref()
        .and_then(|s| {
            let started = SystemTime::try_from(s.started_at?).ok()?;
            let finished = SystemTime::try_from(s.finished_at?).ok()?;
            finished.duration_since(started).ok()
        })
        .unwrap_or_default();
    let live = m.live(&rec.id);
    let delay = {
        let mut last = live.restart_delay.lock().unwrap_or_else(|p| p.into_inner());
        let d = next_delay(*last, ran);
        *last = Some(d);
        d
    };
    tracing::info!(container = %rec.id, delay = ?delay, "restarting the container (restart policy)");
    spawn_restart(m.clone(), rec.id.clone(), delay, true);
    true
}

/// Starts the container `id` after `delay`, if it is still waiting for it (RESTARTING)
/// or, at boot, still exited. `count`: a restart by the policy (counted), not a fresh start
/// at engine start.
fn spawn_restart(m: Arc<Manager>, id: String, delay: Duration, count: bool) {
    tokio::spawn(async move {
        let shutdown = m.ctx.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            // The record stays RESTARTING; the next engine start picks it up.
            () = shutdown.cancelled() => return,
        }
        let live = m.live(&id);
        let _op = live.op.lock().await;
        let Ok(Some(rec)) = m.store.get(&id) else {
            return; // removed meanwhile
        };
        let waiting = match rec.status() {
            ContainerStatus::Restarting => true,
            ContainerStatus::Exited | ContainerStatus::Created => !count,
            _ => false,
        };
        if !waiting {
            return;
        }
        // A restart counts; a start at engine start begins anew, as Docker's.
        let rec = if count {
            m.store.update(&id, |r| r.restart_count += 1)
        } else {
            start::reset_restarts(&m, &live, &id)
        };
        let Ok(rec) = rec else { return };
        if let Err(e) = start::start_locked(&m, &live, &rec).await {
            tracing::warn!(container = %id, error = %e, "the restart policy could not start the container");
            // As Docker: a failed restart leaves the container exited.
            let _ = m.store.update(&id, |r| {
                let s = r.state_mut();
                s.status = ContainerStatus::Exited as i32;
                s.restarting = false;
                s.running = false;
            });
            m.persist();
        }
    });
}

/// A container waiting in RESTARTING is stopped by the user (stop, kill): it becomes
/// exited with its last exit status, and waiters hear of it. Returns false when it was
/// not waiting.
pub fn cancel(m: &Manager, live: &super::Live, id: &str) -> Result<bool> {
    let Some(rec) = m.store.get(id)? else {
        return Ok(false);
    };
    if rec.status() != ContainerStatus::Restarting {
        return Ok(false);
    }
    let rec = m.store.update(id, |r| {
        r.manually_stopped = true;
        let s = r.state_mut();
        s.status = ContainerStatus::Exited as i32;
        s.restarting = false;
        s.running = false;
    })?;
    m.persist();
    let last = rec.exit_status();
    live.exits.send_modify(|e| {
        e.count += 1;
        e.last = Some(last);
    });
    Ok(true)
}

/// At engine start, after live restore: containers left RESTARTING by the last engine
/// are started now; exited ones whose policy says so too (not counted as restarts, as
/// Docker).
pub fn on_boot(m: &Arc<Manager>) -> Result<()> {
    for rec in m.store.all()? {
        let restarting = rec.status() == ContainerStatus::Restarting;
        let exited = rec.status() == ContainerStatus::Exited
            && wants_restart(&rec, rec.exit_status().exit_code, true);
        if restarting || exited {
            tracing::info!(container = %rec.id, "starting the container at engine start (restart policy)");
            spawn_restart(m.clone(), rec.id.clone(), Duration::ZERO, restarting);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::engine::v1::ContainerConfig;

    fn rec(name: RestartPolicyName, max: u32, stopped: bool, count: u32) -> Record {
        Record {
            config: Some(ContainerConfig {
                restart_policy: Some(RestartPolicy {
                    name: name as i32,
                    maximum_retry_count: max,
                }),
                ..Default::default()
            }),
            manually_stopped: stopped,
            restart_count: count,
            ..Default::default()
        }
    }

    #[test]
    fn policies_decide_as_dockers() {
        use RestartPolicyName::*;
        assert!(!wants_restart(&Record::default(), 1, false));
        assert!(!wants_restart(&rec(No, 0, false, 0), 1, true));
        assert!(wants_restart(&rec(Always, 0, false, 0), 0, false));
        assert!(!wants_restart(&rec(Always, 0, true, 0), 0, false));
        assert!(wants_restart(&rec(Always, 0, true, 0), 0, true));
        assert!(wants_restart(&rec(UnlessStopped, 0, false, 9), 0, false));
        assert!(!wants_restart(&rec(UnlessStopped, 0, true, 0), 0, true));
        assert!(!wants_restart(&rec(OnFailure, 0, false, 0), 0, false));
        assert!(wants_restart(&rec(OnFailure, 0, false, 100), 3, false));
        assert!(wants_restart(&rec(OnFailure, 2, false, 1), 3, false));
        assert!(!wants_restart(&rec(OnFailure, 2, false, 2), 3, false));
        assert!(!wants_restart(&rec(OnFailure, 0, true, 0), 3, false));
    }

    #[test]
    fn an_exit_is_recorded_restarting_or_exited() {
        let exit = |code| ExitStatus {
            exit_code: code,
            ..Default::default()
        };
        let mut r = rec(RestartPolicyName::OnFailure, 0, false, 0);
        record_exit(&mut r, &exit(1), false);
        assert_eq!(r.status(), ContainerStatus::Restarting);
        assert!(r.is_running());
        assert_eq!(r.exit_status().exit_code, 1);
        record_exit(&mut r, &exit(0), false);
        assert_eq!(r.status(), ContainerStatus::Exited);
        record_exit(&mut r, &exit(1), true);
        assert_eq!(
            r.status(),
            ContainerStatus::Exited,
            "the engine is stopping"
        );
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        let mut d = next_delay(None, short);
        assert_eq!(d, FIRST_DELAY);
        for _ in 0..20 {
            d = next_delay(Some(d), short);
        }
        assert_eq!(d, MAX_DELAY);
        assert_eq!(next_delay(Some(d), RESET_AFTER), FIRST_DELAY);
        assert_eq!(
            next_delay(Some(FIRST_DELAY), short),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn docker_refusals() {
        let p = |n: RestartPolicyName, max| RestartPolicy {
            name: n as i32,
            maximum_retry_count: max,
        };
        assert!(validate(Some(&p(RestartPolicyName::Always, 3)), false)
            .unwrap_err()
            .to_string()
            .contains("'always'"));
        assert!(validate(Some(&p(RestartPolicyName::OnFailure, 3)), false).is_ok());
        assert!(validate(Some(&p(RestartPolicyName::Always, 0)), true).is_err());
        assert!(validate(Some(&p(RestartPolicyName::No, 0)), true).is_ok());
    }
}
