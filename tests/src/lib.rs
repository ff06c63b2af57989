//! Fixtures for the end-to-end tests: start the real berth binaries in temporary
//! directories, hand out typed clients, and clean up every process they started.

pub mod image;
pub mod leftovers;
pub mod registry;
pub mod world;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use berth_rpc::Address;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Directory holding the built binaries: `$BERTH_BIN_DIR`, else the cargo target dir this
/// test binary runs from (`target/<profile>/deps/..`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path of a berth binary; panics with a hint when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// True when the test may do what needs root (mounts, namespaces). Without root it is
/// skipped — unless `CI` is set, where a missing capability is a failure.
pub fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "this test needs root, and CI is set: run the suite as root"
    );
    eprintln!("skipped: needs root");
    false
}

/// `berth-engine` that ignores the host's configuration file.
pub fn engine_command() -> Command {
    let mut cmd = Command::new(bin("berth-engine"));
    cmd.args(["--config", "/dev/null"]);
    cmd
}

/// True when the process with `pid` still exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the command name in parentheses.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Waits until `cond` holds, polling, or fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Reads the pid written in a berth `.pid` lock file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Health of the whole server at `addr`; `None` when it does not answer.
pub async fn health(addr: &Address, service: &str) -> Option<ServingStatus> {
    let channel = berth_rpc::connect::connect(addr, None).await.ok()?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(resp.into_inner().status).ok()
}

/// A running `berth-engine` in its own temporary root and state directories.
pub struct Engine {
    child: Option<Child>,
    /// Temporary root (persistent data).
    pub root: tempfile::TempDir,
    /// Temporary state directory (sockets, pid files).
    pub state: tempfile::TempDir,
    /// Where the log goes.
    pub log: PathBuf,
    /// Extra processes the test started (external services) to stop on drop.
    pub others: Vec<Child>,
}

impl Engine {
    /// Starts an engine with `extra` arguments and waits until its socket is SERVING.
    pub async fn start(extra: &[&str]) -> Engine {
        let mut engine = Engine::spawn(extra);
        engine.wait_serving().await;
        engine
    }

    /// Starts a new engine on the directories of `prev`, whose engine has exited.
    pub async fn start_in(mut prev: Engine, extra: &[&str]) -> Engine {
        if let Some(mut old) = prev.child.take() {
            let _ = old.wait();
        }
        prev.child = Some(prev.command(extra).spawn().expect("spawn berth-engine"));
        prev.wait_serving().await;
        prev
    }

    /// Starts an engine without waiting for it.
    pub fn spawn(extra: &[&str]) -> Engine {
        let root = tempfile::Builder::new()
            .prefix("berth-root")
            .tempdir()
            .unwrap();
        let state = tempfile::Builder::new()
            .prefix("berth-state")
            .tempdir()
            .unwrap();
        let mut engine = Engine {
            child: None,
            log: root.path().join("engine.log"),
            root,
            state,
            others: Vec::new(),
        };
        engine.child = Some(engine.command(extra).spawn().expect("spawn berth-engine"));
        engine
    }

    /// A `berth-engine` command on this engine's directories (for second instances).
    pub fn command(&self, extra: &[&str]) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open engine log");
        let mut cmd = Command::new(bin("berth-engine"));
        // Hermetic: never pick up the host's /etc/berth/config.toml.
        if !extra.contains(&"--config") {
            cmd.args(["--config", "/dev/null"]);
        }
        cmd.arg("--root")
            .arg(self.root.path())
            .arg("--state")
            .arg(self.state.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        cmd
    }

    /// The engine's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.state.path().join("engine.sock")
    }

    /// The engine's unix address.
    pub fn address(&self) -> Address {
        Address::Unix(self.socket())
    }

    /// `unix://…` for berthctl's `-H`.
    pub fn host(&self) -> String {
        self.address().to_string()
    }

    /// The engine's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Pid of an embedded service, from its lock file.
    pub fn service_pid(&self, name: &str) -> Option<i32> {
        read_pid(&self.state.path().join(format!("{name}.pid")))
    }

    /// The engine's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the engine answers health with SERVING.
    pub async fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.address();
        while Instant::now() < deadline {
            if health(&addr, "").await == Some(ServingStatus::Serving) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("engine exited with {status}; log:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("engine not SERVING after 30s; log:\n{}", self.log_text());
    }

    /// A connected channel to the engine.
    pub async fn channel(&self) -> Channel {
        berth_rpc::connect::connect(&self.address(), None)
            .await
            .expect("connect to engine")
    }

    /// Sends `sig` to the engine.
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), sig);
    }

    /// Waits for the engine to exit and returns its status. Async, so that the test's own
    /// client connections keep being served (answering the server's shutdown handshake).
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("engine child");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait engine") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "engine still running after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs berthctl against this engine.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_command(args).output().expect("run berthctl")
    }

    /// A berthctl command against this engine, for a test to add environment or input to.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("berthctl"));
        cmd.arg("-H")
            .arg(self.host())
            .args(args)
            .env_remove("BERTH_HOST");
        cmd
    }

    /// Runs berthctl against this engine with extra environment variables (e.g.
    /// `BERTH_CONFIG` and `DOCKER_CONFIG` naming temporary directories, so that a test never
    /// reads or writes the user's credentials) and `stdin` as its standard input.
    pub fn ctl_env(&self, args: &[&str], env: &[(&str, &Path)], stdin: &[u8]) -> Output {
        let mut cmd = self.ctl_command(args);
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run berthctl");
        let mut input = child.stdin.take().expect("berthctl stdin");
        // berthctl may exit without reading its input.
        let _ = std::io::Write::write_all(&mut input, stdin);
        drop(input);
        child.wait_with_output().expect("wait for berthctl")
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let services: Vec<i32> = ["snapshotter", "builder"]
            .iter()
            .filter_map(|s| self.service_pid(s))
            .collect();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for mut other in self.others.drain(..) {
            let _ = other.kill();
            let _ = other.wait();
        }
        // Embedded services would stop on their own (after draining, which waits for this
        // test's idle connections); tests that check that do so explicitly.
        for pid in services.into_iter().filter(|p| alive(*p)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}
