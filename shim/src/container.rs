//! One container's lifecycle in the shim: create (cgroup + init), start, exec, wait,
//! kill, clean up. The Task API sits on this; tests drive it through [`run_container`].

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use crate::cgroups::{AnyManager, CgroupManager, Layout};
use crate::error::{Error, Result};
use crate::exec::ExecConfig;
use crate::init::InitConfig;
use crate::process::{self, CreatedProcess, Stdio};
use crate::rootfs::MountSpec;
use crate::spec::Bundle;

/// Options of [`Container::create`] that are not in the bundle.
#[derive(Debug)]
pub struct CreateOptions {
    /// Container id (cgroup name when the spec has no `cgroupsPath`, and in logs).
    pub id: String,
    /// Filesystems to mount at `<bundle>/rootfs` (the snapshot's mounts); empty when the
    /// rootfs directory is ready as it is.
    pub rootfs_mounts: Vec<MountSpec>,
    /// Parent of the container's cgroup when the spec has no `cgroupsPath`.
    pub cgroup_parent: PathBuf,
    /// The host's cgroup layout; `None` detects it.
    pub cgroup_layout: Option<Layout>,
    /// The init's stdio.
    pub stdio: Stdio,
}

impl CreateOptions {
    /// Defaults: no rootfs mounts, cgroup under `berth/`, detected layout, inherited stdio.
    pub fn new(id: impl Into<String>) -> Self {
        CreateOptions {
            id: id.into(),
            rootfs_mounts: Vec::new(),
            cgroup_parent: PathBuf::from("berth"),
            cgroup_layout: None,
            stdio: Stdio::default(),
        }
    }
}

/// How the container's init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code as Docker reports it: the process's code, or 128 + the signal number.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
}

/// The allow rules for the devices the shim always creates in `/dev`; appended to a
/// spec's device list (as runc does) so "deny all" never breaks `/dev/null`.
fn standard_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    Ok(crate::spec::default_device_rules()?
        .into_iter()
        .filter(|r| r.allow() && r.major().is_some())
        .collect())
}

#[derive(Debug)]
enum State {
    Created(CreatedProcess),
    Running,
    Exited(ExitStatus),
}

/// A container: its init process and its cgroup.
#[derive(Debug)]
pub struct Container {
    id: String,
    pid: Pid,
    cgroup: AnyManager,
    state: Option<State>,
    console: Option<OwnedFd>,
}

/// The exit code Docker reports for a process that could not be started: 126 when the
/// program is there but may not be executed, 127 otherwise (not found, or setup failed).
pub fn start_failure_code(e: &Error) -> i32 {
    if e.to_string().contains("permission denied") {
        126
    } else {
        127
    }
}

impl Container {
    /// Creates the cgroup and the init, which sets everything up and then waits for
    /// [`Container::start`]. On error nothing is left behind.
    pub fn create(bundle: &Bundle, opts: CreateOptions) -> Result<Container> {
        let id = opts.id;
        let layout = match opts.cgroup_layout {
            Some(l) => l,
            None => Layout::detect()?,
        };
        let linux = bundle
            .spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::invalid("linux is missing"))?;
        let cgroup_path = match linux.cgroups_path() {
            Some(p) => p.clone(),
            None => opts.cgroup_parent.join(&id),
        };
        let cgroup = AnyManager::new(&layout, &cgroup_path)?;
        let (cfg, warnings) =
            InitConfig::new(bundle, &id, opts.rootfs_mounts, cgroup.mount_view())?;
        for w in warnings {
            tracing::warn!(container = %id, "{w}");
        }
        cgroup.create()?;
        let created = (|| {
            let mut resources = linux.resources().clone().unwrap_or_else(empty_resources);
            if let Some(devices) = resources.devices_mut() {
                if !devices.is_empty() {
                    devices.extend(standard_device_rules()?);
                }
            }
            cgroup.apply(&resources)?;
            process::create(&cfg, opts.stdio, &cgroup)
        })();
        let mut created = match created {
            Ok(c) => c,
            Err(e) => {
                let _ = cgroup.kill_all();
                if let Err(re) = cgroup.remove() {
                    tracing::warn!(container = %id, error = %re, "removing the cgroup after a failed create");
                }
                return Err(e);
            }
        };
        let pid = created.pid();
        let console = created.take_console();
        tracing::debug!(container = %id, pid = pid.as_raw(), cgroup = %cgroup_path.display(), "container created");
        Ok(Container {
            id,
            pid,
            cgroup,
            state: Some(State::Created(created)),
            console,
        })
    }

    /// The master of the init's terminal (once), when the spec asked for one.
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Creates an exec process in the running container: it joins the init's namespaces
    /// and the container's cgroup, is set up, and waits for [`CreatedProcess::start`].
    /// The caller must keep the init from being reaped while this runs.
    pub fn exec(&self, cfg: &ExecConfig, stdio: Stdio) -> Result<CreatedProcess> {
        if !matches!(self.state, Some(State::Running)) {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                self.id
            )));
        }
        process::create_exec(self.pid, cfg, stdio, &self.cgroup)
    }

    /// Execs the container process. Exec errors ("executable file not found in $PATH")
    /// are returned here, and the container is then cleaned up.
    pub fn start(&mut self) -> Result<()> {
        match self.state.take() {
            Some(State::Created(c)) => match c.start() {
                Ok(_) => {
                    self.state = Some(State::Running);
                    tracing::debug!(container = %self.id, pid = self.pid.as_raw(), "container started");
                    Ok(())
                }
                Err(e) => {
                    self.state = Some(State::Exited(ExitStatus {
                        code: start_failure_code(&e),
                        signal: None,
                        oom_killed: false,
                    }));
                    self.cleanup();
                    Err(e)
                }
            },
            other => {
                self.state = other;
                Err(Error::Protocol(format!(
                    "container {} is not in the created state",
                    self.id
                )))
            }
        }
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The init's pid on the host.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &AnyManager {
        &self.cgroup
    }

    /// Sends `sig` to the init (`all`: to every process in the container's cgroup).
    pub fn kill(&self, sig: Signal, all: bool) -> Result<()> {
        self.kill_signo(sig as i32, all)
    }

    /// [`Container::kill`] with a raw signal number: the Task API takes any signal,
    /// realtime ones included (`SIGRTMIN+3` is systemd's stop signal), which nix's
    /// `Signal` cannot name.
    pub fn kill_signo(&self, signo: i32, all: bool) -> Result<()> {
        if !matches!(self.state, Some(State::Running) | Some(State::Created(_))) {
            return Err(Error::Protocol(format!(
                "container {} is not running",
                self.id
            )));
        }
        let send = |pid: i32| {
            // SAFETY: kill(2) takes plain integers; no memory is involved.
            nix::errno::Errno::result(unsafe { libc::kill(pid, signo) }).map(drop)
        };
        if all {
            for pid in self.cgroup.pids()? {
                // ESRCH: it exited between listing and signalling.
                let _ = send(pid);
            }
            return Ok(());
        }
        send(self.pid.as_raw())
            .map_err(|e| Error::sys(format!("kill {} with signal {signo}", self.pid), e))
    }

    /// How the init ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match &self.state {
            Some(State::Exited(s)) => Some(*s),
            _ => None,
        }
    }

    /// Records the end of the init when the caller reaped it (a shim is a child subreaper
    /// and reaps every child itself, so [`Container::wait`] cannot), then cleans up as
    /// `wait` does. `None` when `status` is not an exit (stopped, continued) or not the
    /// init's. Idempotent.
    pub fn exited(&mut self, status: WaitStatus) -> Option<ExitStatus> {
        if let Some(State::Exited(s)) = &self.state {
            return Some(*s);
        }
        let (pid, code, signal) = match status {
            WaitStatus::Exited(pid, code) => (pid, code, None),
            WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as i32, Some(sig as i32)),
            _ => return None,
        };
        if pid != self.pid {
            return None;
        }
        // A created init that died (killed before Start) was reaped already: dropping
        // its handle must not signal the pid again, so it is not aborted.
        Some(self.finish(code, signal))
    }

    /// Waits for the init to exit, then removes what is left (processes that escaped the
    /// pid namespace's teardown, the cgroup). Idempotent.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(State::Exited(s)) = &self.state {
            return Ok(*s);
        }
        if let Some(State::Created(_)) = &self.state {
            return Err(Error::Protocol(format!(
                "container {} was never started",
                self.id
            )));
        }
        let status = loop {
            match waitpid(self.pid, None) {
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("wait for init {}", self.pid), e)),
                Ok(WaitStatus::Exited(_, code)) => break (code, None),
                Ok(WaitStatus::Signaled(_, sig, _)) => break (128 + sig as i32, Some(sig as i32)),
                Ok(_) => continue,
            }
        };
        Ok(self.finish(status.0, status.1))
    }

    fn finish(&mut self, code: i32, signal: Option<i32>) -> ExitStatus {
        let oom_killed = match self.cgroup.stats() {
            Ok(s) => s.memory.oom_kills > 0,
            Err(e) => {
                tracing::warn!(container = %self.id, error = %e, "reading cgroup stats after exit");
                false
            }
        };
        let exit = ExitStatus {
            code,
            signal,
            oom_killed,
        };
        self.state = Some(State::Exited(exit));
        tracing::debug!(container = %self.id, code = exit.code, oom_killed, "container exited");
        self.cleanup();
        exit
    }

    fn cleanup(&self) {
        if let Err(e) = self.cgroup.kill_all() {
            tracing::warn!(container = %self.id, error = %e, "killing leftover processes");
        }
        if let Err(e) = self.cgroup.remove() {
            tracing::warn!(container = %self.id, error = %e, "removing the cgroup");
        }
    }
}

impl Drop for Container {
    /// A container dropped while alive is killed and cleaned up: nothing outlives its
    /// handle by accident (the Task API will keep handles for as long as containers run).
    fn drop(&mut self) {
        match self.state.take() {
            Some(State::Created(c)) => {
                c.abort();
                self.cleanup();
            }
            Some(State::Running) => {
                let _ = signal::kill(self.pid, Signal::SIGKILL);
                self.state = Some(State::Running);
                let _ = self.wait();
            }
            _ => {}
        }
    }
}

fn empty_resources() -> LinuxResources {
    oci_spec::runtime::LinuxResourcesBuilder::default()
        .build()
        .unwrap_or_default()
}

/// Loads the bundle at `bundle_dir`, creates and starts the container.
pub fn run_container(bundle_dir: &Path, opts: CreateOptions) -> Result<Container> {
    let bundle = Bundle::load(bundle_dir)?;
    let mut c = Container::create(&bundle, opts)?;
    c.start()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_map_to_dockers_codes() {
        let not_found = Error::Init("exec: \"x\": executable file not found in $PATH".into());
        assert_eq!(start_failure_code(&not_found), 127);
        let denied = Error::Init("exec /etc/passwd: permission denied".into());
        assert_eq!(start_failure_code(&denied), 126);
        let cwd = Error::Init("chdir to working directory /x: ENOENT".into());
        assert_eq!(start_failure_code(&cwd), 127);
    }
}
