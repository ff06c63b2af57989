//! Start: spawn the container's shim, have it create the container from the bundle on the
//! snapshot's mounts, start the init, and watch for its exit (see [`super::monitor`]).

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::engine::v1::ContainerStatus;
use berth_proto::shim::v1::{
    CreateRequest, LogOptions, ShutdownRequest, StartRequest, StdioOptions,
};
use berth_shim::client::SpawnOptions;

use super::create::{BUNDLE_COPY, BUNDLE_FILES};
use super::record::{self, Record};
use super::{monitor, Live, Manager};
use crate::error::{Error, Result};

fn shim_error(status: tonic::Status) -> Error {
    Error::downstream("shim", status)
}

/// Rebuilds the state directory from the bundle copy when it is gone (after a reboot).
fn ensure_bundle(state_dir: &Path, root_dir: &Path) -> Result<()> {
    if state_dir.join("config.json").is_file() {
        return Ok(());
    }
    let copy = root_dir.join(BUNDLE_COPY);
    if !copy.join("config.json").is_file() {
        return Err(Error::FailedPrecondition(format!(
            "the container's bundle is missing from {} and {}: remove the container and \
             create it again",
            state_dir.display(),
            copy.display()
        )));
    }
    let io = |what: &Path, e| Error::io(format!("restore {}", what.display()), e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir.join("rootfs"))
        .map_err(|e| io(state_dir, e))?;
    for f in BUNDLE_FILES {
        std::fs::copy(copy.join(f), state_dir.join(f)).map_err(|e| io(&state_dir.join(f), e))?;
    }
    Ok(())
}

/// The exit code Docker gives a container whose start failed: 127 when the command does
/// not exist, 126 when it cannot be run, 128 otherwise.
pub fn start_failure_code(message: &str) -> i32 {
    let m = message.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        127
    } else if m.contains("permission denied") || m.contains("is a directory") {
        126
    } else {
        128
    }
}

/// `Containers.Start`
pub async fn start(m: &Arc<Manager>, given: &str) -> Result<()> {
    let rec = m.resolve(given)?;
    let live = m.live(&rec.id);
    let _op = live.op.lock().await;
    let rec = m
        .store
        .get(&rec.id)?
        .ok_or_else(|| record::no_such_container(given))?;
    if rec.is_running() {
        return Ok(());
    }
    let rec = reset_restarts(m, &live, &rec.id)?;
    start_locked(m, &live, &rec).await
}

/// A start by the user: as Docker, the restart count, the back-off and the "stopped by
/// hand" mark start over.
pub fn reset_restarts(m: &Manager, live: &Live, id: &str) -> Result<Record> {
    *live.restart_delay.lock().unwrap_or_else(|p| p.into_inner()) = None;
    m.store.update(id, |r| {
        r.restart_count = 0;
        r.manually_stopped = false;
    })
}

/// Starts `rec`, whose operation lock the caller holds. Starting a running container does
/// nothing; one waiting in RESTARTING is started.
pub async fn start_locked(m: &Arc<Manager>, live: &Arc<Live>, rec: &Record) -> Result<()> {
    match rec.status() {
        ContainerStatus::Running | ContainerStatus::Paused => return Ok(()),
        ContainerStatus::Dead => {
            return Err(Error::FailedPrecondition(format!(
                "container {} is marked for removal and cannot be started",
                rec.id
            )))
        }
        _ => {}
    }
    let state_dir = m.state_dir(&rec.id);
    let root_dir = m.root_dir(&rec.id);
    {
        let (s, r) = (state_dir.clone(), root_dir.clone());
        tokio::task::spawn_blocking(move || ensure_bundle(&s, &r))
            .await
            .map_err(|e| Error::io("restore the bundle", std::io::Error::other(e)))??;
    }
    let mounts = m.rootfs_mounts(&rec.id).await?;
    let opts = SpawnOptions {
        id: rec.id.clone(),
        state_dir: state_dir.clone(),
        shim_bin: m.ctx.shim_bin.clone(),
        log_format_json: m.ctx.log_format_json,
    };
    let shim = berth_shim::client::spawn(&opts)
        .await
        .map_err(|e| Error::Unavailable {
            service: "shim",
            message: format!("cannot start berth-shim for {}: {e}", rec.short_id()),
        })?;
    let mut task = shim.task.clone();
    let config = rec.config();
    let log = config.log_config.clone().unwrap_or_default();
    let started = async {
        task.create(CreateRequest {
            id: rec.id.clone(),
            bundle: state_dir.display().to_string(),
            rootfs: mounts,
            terminal: config.tty,
            stdio: Some(StdioOptions {
                stdin: config.open_stdin,
                // The engine closes stdin itself when an attached client's stdin ends
                // (see attach.rs): a detach must not close it.
                stdin_once: false,
                log: Some(LogOptions {
                    path: rec.log_path.clone(),
                    max_size_bytes: log.max_size_bytes,
                    max_files: log.max_files,
                }),
            }),
            console_size: super::attach::pending_console_size(live),
        })
        .await?;
        super::attach::join_pending(live, &task).await;
        task.start(StartRequest {
            exec_id: String::new(),
        })
        .await
    }
    .await;
    let pid = match started {
        Ok(r) => r.into_inner().pid,
        Err(status) => {
            let _ = task.shutdown(ShutdownRequest { now: true }).await;
            let message = status.message().to_string();
            let code = start_failure_code(&message);
            let _ = m.store.update(&rec.id, |r| {
                let s = r.state_mut();
                s.exit_code = code;
                s.error = message.clone();
            });
            tracing::warn!(container = %rec.id, error = %message, "container failed to start");
            return Err(shim_error(status));
        }
    };
    let now = SystemTime::now();
    let rec = m.store.update(&rec.id, |r| {
        let s = r.state_mut();
        s.status = ContainerStatus::Running as i32;
        s.running = true;
        s.paused = false;
        s.restarting = false;
        s.oom_killed = false;
        s.pid = pid as i64;
        s.exit_code = 0;
        s.error = String::new();
        s.started_at = Some(now.into());
    })?;
    m.persist();
    live.set_shim(Some(task.clone()));
    m.publish("start", &rec, []);
    tracing::info!(container = %rec.id, pid, shim = shim.pid, "container started");
    monitor::watch(m.clone(), rec.id.clone(), task, shim.pid);
    Ok(())
}
