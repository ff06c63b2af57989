//! The harness of the container tests: an [`Engine`] with a test image imported, berthctl
//! run against it, the ids of the containers a test made, and at the end the check that
//! nothing of them is left on the host (`crate::leftovers`) — or, for a failed test, a
//! scrub of whatever they left.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use berth_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use berth_proto::snapshots::v1::MountsRequest;
use berth_rpc::Address;
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::{leftovers, Engine};

/// The `--change`s that make busybox the entrypoint, so `IMAGE sh -c …` runs its sh.
pub const BUSYBOX_ENTRYPOINT: [&str; 2] = [r#"ENTRYPOINT ["/bin/busybox"]"#, r#"CMD ["sh"]"#];

/// [`BUSYBOX_ENTRYPOINT`] followed by `extra` changes.
pub fn busybox_changes<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    BUSYBOX_ENTRYPOINT.iter().chain(extra).copied().collect()
}

/// A command's standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// True when Debian's runc is installed. Without it a runc test is skipped — unless `CI`
/// is set, where that is a failure.
pub fn runc_installed() -> bool {
    if Command::new("runc").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but runc is not installed"
    );
    eprintln!("skipped: runc is not installed");
    false
}

/// A test's engine with its image imported. `clean_up` (or the drop of a test that did
/// not call it) removes every container and asserts that nothing of them is left on the
/// host; a failed test's containers are scrubbed on drop instead, without the engine
/// (which may be what failed).
pub struct World {
    engine: Option<Engine>,
    /// The engine's directories, kept for the scrub while the engine is being restarted.
    root: PathBuf,
    state: PathBuf,
    /// The image `sh` runs.
    image: String,
    /// Every container id the test saw, for the leftover checks.
    ids: Mutex<Vec<String>>,
    /// Temporary files (image tars, env files, profiles).
    scratch: tempfile::TempDir,
    /// Set once `clean_up` ran, so that the drop does not run it again.
    cleaned: AtomicBool,
}

impl World {
    /// A new engine with `rootfs` (a tar) imported as `reference` with `changes`.
    pub async fn new(rootfs: &[u8], reference: &str, changes: &[&str]) -> World {
        World::with_engine(Engine::start(&[]).await, rootfs, reference, changes)
    }

    /// `engine` with `rootfs` imported as `reference` with `changes`.
    pub fn with_engine(engine: Engine, rootfs: &[u8], reference: &str, changes: &[&str]) -> World {
        let w = World {
            root: engine.root.path().to_path_buf(),
            state: engine.state.path().to_path_buf(),
            engine: Some(engine),
            image: reference.to_string(),
            ids: Mutex::default(),
            scratch: tempfile::tempdir().expect("scratch dir"),
            cleaned: AtomicBool::new(false),
        };
        w.import(rootfs, reference, changes);
        w
    }

    /// The engine (panics while it is being restarted).
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("the world's engine")
    }

    /// Directory for the test's temporary files.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Writes `contents` to `name` in the scratch directory; its path.
    pub fn scratch_file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.scratch().join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        path
    }

    /// Imports the rootfs tar `rootfs` as `reference` with `changes`.
    pub fn import(&self, rootfs: &[u8], reference: &str, changes: &[&str]) {
        let tar = tempfile::Builder::new()
            .suffix(".tar")
            .tempfile_in(self.scratch())
            .expect("scratch tar");
        std::fs::write(tar.path(), rootfs).expect("write the rootfs tar");
        let path = tar.path().to_str().expect("utf-8 scratch path");
        let mut args = vec!["import"];
        for c in changes {
            args.extend(["--change", c]);
        }
        args.extend([path, reference]);
        self.ok(&args);
    }

    /// Runs berthctl against the engine.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.engine().ctl(args)
    }

    /// Runs berthctl with `input` as its standard input.
    pub fn ctl_in(&self, args: &[&str], input: &[u8]) -> Output {
        self.engine().ctl_env(args, &[], input)
    }

    /// Runs berthctl, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "berthctl {args:?} failed ({}): {}\nengine log:\n{}",
            out.status,
            stderr(&out),
            self.engine().log_text()
        );
        stdout(&out)
    }

    /// `run --rm [opts] IMAGE sh -c script`.
    pub fn sh(&self, opts: &[&str], script: &str) -> Output {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend([self.image.as_str(), "sh", "-c", script]);
        self.ctl(&args)
    }

    /// `sh`, asserting exit 0; returns stdout.
    pub fn sh_ok(&self, opts: &[&str], script: &str) -> String {
        let out = self.sh(opts, script);
        assert_eq!(
            out.status.code(),
            Some(0),
            "run {opts:?} {script:?}: {}{}\nengine log:\n{}",
            stdout(&out),
            stderr(&out),
            self.engine().log_text()
        );
        stdout(&out)
    }

    /// A field of `/proc/self/status` in a container run with `opts`.
    pub fn status_field(&self, opts: &[&str], field: &str) -> String {
        let out = self.sh_ok(opts, &format!("grep '^{field}:' /proc/self/status"));
        out.trim()
            .strip_prefix(&format!("{field}:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// `run -d …`; returns the full id, remembered for the leftover checks.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        self.new_id(&all)
    }

    /// `create …`; returns the full id, remembered for the leftover checks.
    pub fn create(&self, args: &[&str]) -> String {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        self.new_id(&all)
    }

    fn new_id(&self, args: &[&str]) -> String {
        let id = self.ok(args).trim().to_string();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        self.remember(&id);
        id
    }

    /// Adds `id` to the containers checked for leftovers.
    pub fn remember(&self, id: &str) {
        self.ids_mut().push(id.to_string());
    }

    /// The container ids the test saw so far.
    pub fn seen_ids(&self) -> Vec<String> {
        self.ids_mut().clone()
    }

    fn ids_mut(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // A test thread that panicked holding the lock left a list that is still whole.
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `inspect` of one object.
    pub fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).expect("inspect JSON");
        v[0].clone()
    }

    /// The container's `State.Status`.
    pub fn status(&self, name: &str) -> String {
        self.inspect(name)["State"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Containers listed by `ps -a`.
    pub fn all_ids(&self) -> Vec<String> {
        self.ok(&["ps", "-a", "-q", "--no-trunc"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The engine's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state.clone()
    }

    /// The container's bundle directory.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state.join("containers").join(id)
    }

    /// The pid of the container's shim.
    pub fn shim_pid(&self, id: &str) -> i32 {
        crate::read_pid(&self.container_dir(id).join("shim.pid")).expect("shim.pid")
    }

    /// SIGKILLs the engine and waits for it to exit; its containers live on.
    pub async fn kill_engine(&mut self) {
        let engine = self.engine.as_mut().expect("the world's engine");
        engine.signal(Signal::SIGKILL);
        engine.wait_exit(Duration::from_secs(10)).await;
    }

    /// Starts a new engine on the directories of the one that exited (`kill_engine`).
    pub async fn restart_engine(&mut self) {
        let engine = self.engine.take().expect("the world's engine");
        self.engine = Some(Engine::start_in(engine, &[]).await);
    }

    /// Runs the bundle of the created container `id` under runc as `name` (its rootfs
    /// mounted from the snapshotter for the while), then deletes it there; runc's output.
    pub async fn run_under_runc(&self, id: &str, name: &str) -> Output {
        let bundle = self.container_dir(id);
        let addr = Address::Unix(self.state.join("snapshotter.sock"));
        let channel = berth_rpc::connect::connect(&addr, None)
            .await
            .expect("connect to the snapshotter");
        let mounts: Vec<berth_snapshotter::mount::Mount> = SnapshotsClient::new(channel)
            .mounts(MountsRequest {
                key: id.to_string(),
            })
            .await
            .expect("the container's mounts")
            .into_inner()
            .mounts
            .into_iter()
            .map(Into::into)
            .collect();
        let mounted = berth_snapshotter::mount::Mounted::new(&mounts, &bundle.join("rootfs"))
            .expect("mount the rootfs");
        let runc_root = tempfile::tempdir().expect("runc root");
        let out = Command::new("runc")
            .arg("--root")
            .arg(runc_root.path())
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .expect("run runc");
        let _ = Command::new("runc")
            .arg("--root")
            .arg(runc_root.path())
            .args(["delete", "-f", name])
            .output();
        mounted.unmount().expect("unmount the rootfs");
        out
    }

    /// Removes every container and asserts that nothing of them is left on the host.
    pub fn clean_up(&self) {
        self.cleaned.store(true, Ordering::Relaxed);
        let ids = self.all_ids();
        self.ids_mut().extend(ids.iter().cloned());
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let out = self.ctl(&args);
            assert!(out.status.success(), "rm -f: {}", stderr(&out));
        }
        assert!(self.all_ids().is_empty());
        leftovers::assert_nothing_left(&self.root, &self.state, &self.seen_ids());
    }

    /// Ids of containers with a directory on disk: what a failed test may have left,
    /// found without the engine.
    fn ids_on_disk(&self) -> Vec<String> {
        [&self.root, &self.state]
            .iter()
            .filter_map(|d| std::fs::read_dir(d.join("containers")).ok())
            .flat_map(|dir| dir.flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut ids = self.seen_ids();
            ids.extend(self.ids_on_disk());
            leftovers::scrub(&self.root, &self.state, &ids);
        } else if !self.cleaned.load(Ordering::Relaxed) && self.engine.is_some() {
            self.clean_up();
        }
    }
}
