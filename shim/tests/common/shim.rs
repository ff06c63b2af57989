//! A real `berth-shim` for Task API tests: spawned through the client half on a state dir
//! of its own, shut down by the test, SIGKILLed by a guard if a test fails first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_proto::shim::v1 as pb;
use berth_shim::client::{self, ShimClient, SpawnOptions};

use super::{need_root, TestBundle};

/// A fresh 64-hex container id.
pub fn hex_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:08x}{:08x}{:048x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

pub fn alive(pid: u32) -> bool {
    // A zombie has no cmdline; it is as good as gone (its parent, init, reaps it).
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

/// Polls asynchronously: the test's runtime must keep running its gRPC connections (the
/// shim's graceful close waits for the client to acknowledge it).
pub async fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A spawned shim and its state dir; SIGKILLs the shim if the test did not end it.
pub struct Shim {
    pub client: Option<ShimClient>,
    _state: tempfile::TempDir,
    dir: PathBuf,
    pub pid: u32,
}

impl Shim {
    pub async fn spawn(b: &mut TestBundle) -> Shim {
        Shim::spawn_in(b, "").await
    }

    /// Spawns with the state dir at `<tempdir>/<sub>`.
    pub async fn spawn_in(b: &mut TestBundle, sub: &str) -> Shim {
        b.id = hex_id();
        let state = tempfile::Builder::new()
            .prefix("berth-state")
            .tempdir()
            .unwrap();
        let dir = state.path().join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        let opts = SpawnOptions {
            id: b.id.clone(),
            state_dir: dir.clone(),
            shim_bin: PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")),
            log_format_json: true,
        };
        let client = client::spawn(&opts).await.unwrap();
        let pid = client.pid;
        Shim {
            client: Some(client),
            _state: state,
            dir,
            pid,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn task(&self) -> pb::task_client::TaskClient<tonic::transport::Channel> {
        self.client.as_ref().expect("connected").task.clone()
    }

    /// Shutdown with `now`, then the process must be gone.
    pub async fn shutdown(&self) {
        try_shutdown(self, true).await.unwrap();
        assert!(wait_gone(self.pid).await, "shim {} still alive", self.pid);
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir().join("shim.log")).unwrap_or_default();
            eprintln!("--- shim.log of {}:\n{log}", self.pid);
        }
        // Only the shim this test started: its pid, running berth-shim on our state dir.
        let ours = std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .is_ok_and(|c| c.contains("berth-shim") && c.contains(&*self.dir.to_string_lossy()));
        if ours {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(self.pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A test's bundle and a shim spawned for it; None when the test is skipped (see
/// [`need_root`]). Bound as `let Some((b, shim))`, the shim is dropped (its guard runs)
/// before the bundle removes the cgroups, as with two `let`s.
pub async fn setup() -> Option<(TestBundle, Shim)> {
    if !need_root() {
        return None;
    }
    let mut b = TestBundle::new();
    let shim = Shim::spawn(&mut b).await;
    Some((b, shim))
}

pub fn create_req(b: &TestBundle, stdio: Option<pb::StdioOptions>) -> pb::CreateRequest {
    pb::CreateRequest {
        id: b.id.clone(),
        bundle: b.path().to_string_lossy().into_owned(),
        stdio,
        ..Default::default()
    }
}

pub async fn create_and_start(shim: &Shim, req: pb::CreateRequest) -> u32 {
    let mut t = shim.task();
    let pid = t.create(req).await.unwrap().into_inner().pid;
    let started = t
        .start(pb::StartRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(started.pid, pid);
    pid
}

pub async fn wait(shim: &Shim) -> pb::WaitResponse {
    shim.task()
        .wait(pb::WaitRequest::default())
        .await
        .unwrap()
        .into_inner()
}

pub async fn state(shim: &Shim) -> pb::StateResponse {
    shim.task()
        .state(pb::StateRequest::default())
        .await
        .unwrap()
        .into_inner()
}

// The calls below answer with the shim's status, so that a test can assert on refusals;
// an empty `exec_id` names the init.

pub async fn start(shim: &Shim, exec_id: &str) -> Result<u32, tonic::Status> {
    shim.task()
        .start(pb::StartRequest {
            exec_id: exec_id.into(),
        })
        .await
        .map(|r| r.into_inner().pid)
}

pub async fn exec_state(shim: &Shim, exec_id: &str) -> Result<pb::StateResponse, tonic::Status> {
    shim.task()
        .state(pb::StateRequest {
            exec_id: exec_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn wait_exec(shim: &Shim, exec_id: &str) -> Result<pb::WaitResponse, tonic::Status> {
    shim.task()
        .wait(pb::WaitRequest {
            exec_id: exec_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn kill_exec(
    shim: &Shim,
    exec_id: &str,
    signal: u32,
    all: bool,
) -> Result<(), tonic::Status> {
    shim.task()
        .kill(pb::KillRequest {
            exec_id: exec_id.into(),
            signal,
            all,
        })
        .await
        .map(|_| ())
}

pub async fn delete_exec(shim: &Shim, exec_id: &str) -> Result<pb::DeleteResponse, tonic::Status> {
    shim.task()
        .delete(pb::DeleteRequest {
            exec_id: exec_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn resize(
    shim: &Shim,
    exec_id: &str,
    width: u32,
    height: u32,
) -> Result<(), tonic::Status> {
    shim.task()
        .resize_pty(pb::ResizePtyRequest {
            exec_id: exec_id.into(),
            width,
            height,
        })
        .await
        .map(|_| ())
}

/// CloseIO of stdin: the process reads end of file.
pub async fn close_stdin(shim: &Shim, exec_id: &str) -> Result<(), tonic::Status> {
    shim.task()
        .close_io(pb::CloseIoRequest {
            exec_id: exec_id.into(),
            stdin: true,
        })
        .await
        .map(|_| ())
}

pub async fn try_shutdown(shim: &Shim, now: bool) -> Result<(), tonic::Status> {
    shim.task()
        .shutdown(pb::ShutdownRequest { now })
        .await
        .map(|_| ())
}

pub async fn pids(shim: &Shim) -> Vec<pb::ProcessInfo> {
    shim.task()
        .pids(pb::PidsRequest {})
        .await
        .unwrap()
        .into_inner()
        .processes
}

pub fn log_records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
