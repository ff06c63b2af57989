//! Embedded mode: the engine starts `berth-snapshotter` and `berth-builder` itself, waits
//! for them to be healthy, restarts one that dies (with backoff), and stops them when it
//! stops. Children die with the engine even when it is SIGKILLed (`PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_rpc::Address;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::error::{Error, Result};
use crate::events::EventLog;

/// First wait before restarting a service that died; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A service that ran this long before dying starts over at [`MIN_BACKOFF`].
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a started service has to report SERVING.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a service has to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One service the engine runs itself.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Short name, e.g. "snapshotter".
    pub name: &'static str,
    /// Executable.
    pub bin: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The socket it serves on.
    pub socket: PathBuf,
}

/// What the supervisor knows of its child, for `Info`.
#[derive(Debug, Default, Clone)]
pub struct ChildState {
    /// Pid while running.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
}

/// A running supervisor.
pub struct Supervised {
    /// Shared view of the child.
    pub state: Arc<Mutex<ChildState>>,
    /// Becomes true each time the child reports SERVING, false when it dies.
    pub healthy: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Supervised {
    /// Waits until the child is healthy the first time, or fails after `timeout`.
    pub async fn wait_healthy(&mut self, name: &'static str, timeout: Duration) -> Result<()> {
        let res = tokio::time::timeout(timeout, self.healthy.wait_for(|h| *h)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Error::Unavailable {
                service: name,
                message: format!("not SERVING after {timeout:?} (see its log lines above)"),
            }),
        }
    }

    /// Waits for the supervisor to finish after its token was cancelled.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Starts supervising `spec` until `stop` is cancelled.
pub fn start(spec: Spec, events: EventLog, stop: CancellationToken) -> Supervised {
    let state = Arc::new(Mutex::new(ChildState::default()));
    let (tx, healthy) = watch::channel(false);
    let task = tokio::spawn(run(spec, events, stop, state.clone(), tx));
    Supervised {
        state,
        healthy,
        task,
    }
}

fn set_state(state: &Mutex<ChildState>, f: impl FnOnce(&mut ChildState)) {
    f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
}

async fn run(
    spec: Spec,
    events: EventLog,
    stop: CancellationToken,
    state: Arc<Mutex<ChildState>>,
    healthy: watch::Sender<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        match spawn(&spec) {
            Ok(mut child) => {
                let pid = child.id();
                set_state(&state, |s| s.pid = pid);
                let pid_s = pid.map(|p| p.to_string()).unwrap_or_default();
                tracing::info!(service = spec.name, pid = ?pid, "service started");
                events.publish("service", "start", spec.name, [("pid", pid_s.clone())]);
                let exited = tokio::select! {
                    status = watch_child(&spec, &mut child, &healthy, &events) => Some(status),
                    _ = stop.cancelled() => None,
                };
                let _ = healthy.send(false);
                set_state(&state, |s| s.pid = None);
                let Some(status) = exited else {
                    terminate(spec.name, &mut child).await;
                    events.publish("service", "stop", spec.name, [("pid", pid_s)]);
                    return;
                };
                let code = describe(status);
                tracing::warn!(service = spec.name, pid = ?pid, status = %code, "service died");
                events.publish(
                    "service",
                    "die",
                    spec.name,
                    [("pid", pid_s), ("exitStatus", code)],
                );
            }
            Err(e) => {
                tracing::error!(service = spec.name, bin = %spec.bin.display(), error = %e, "cannot start service");
                events.publish("service", "error", spec.name, [("error", e.to_string())]);
            }
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff = MIN_BACKOFF;
        }
        tracing::info!(service = spec.name, delay = ?backoff, "restarting service");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        set_state(&state, |s| s.restarts += 1);
        events.publish("service", "restart", spec.name, []);
    }
}

/// Waits for SERVING, reports it, then waits for the child to exit.
async fn watch_child(
    spec: &Spec,
    child: &mut Child,
    healthy: &watch::Sender<bool>,
    events: &EventLog,
) -> ExitStatus {
    let addr = Address::Unix(spec.socket.clone());
    tokio::select! {
        status = child.wait() => return status.unwrap_or_default(),
        ok = wait_serving(&addr, START_TIMEOUT) => {
            if ok {
                tracing::info!(service = spec.name, "service is SERVING");
                events.publish("service", "healthy", spec.name, []);
                let _ = healthy.send(true);
            } else {
                tracing::error!(service = spec.name, timeout = ?START_TIMEOUT, "service never became SERVING");
            }
        }
    }
    child.wait().await.unwrap_or_default()
}

/// Polls the standard health service at `addr` until it says SERVING.
pub async fn wait_serving(addr: &Address, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(2);
    while Instant::now() < deadline {
        if health(addr).await == Some(ServingStatus::Serving) {
            return true;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(50));
    }
    false
}

/// The overall health status at `addr`, or `None` when it does not answer.
pub async fn health(addr: &Address) -> Option<ServingStatus> {
    let ask = async {
        let channel = berth_rpc::connect::connect(addr, None).await.ok()?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(resp.into_inner().status).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

fn spawn(spec: &Spec) -> std::io::Result<Child> {
    let engine = nix::unistd::getpid();
    let mut cmd = Command::new(&spec.bin);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (setpgid, prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            // Own process group: a Ctrl-C at the engine's terminal reaches only the
            // engine, which then stops its services in order.
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // The engine may have died before the line above took effect.
            if nix::unistd::getppid() != engine {
                return Err(std::io::Error::other("engine exited during start"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

async fn terminate(name: &'static str, child: &mut Child) {
    let Some(pid) = child.id() else { return };
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    if tokio::time::timeout(STOP_TIMEOUT, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(service = name, pid, "service ignored SIGTERM; killing it");
        let _ = child.kill().await;
    }
    tracing::info!(service = name, pid, "service stopped");
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => Signal::try_from(sig)
            .map(|s| format!("killed by {s}"))
            .unwrap_or_else(|_| format!("killed by signal {sig}")),
        _ => "unknown".into(),
    }
}
