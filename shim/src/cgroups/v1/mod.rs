//! cgroup v1: the same relative path in every mounted hierarchy; one file per controller.

mod blkio;
mod cpu;
mod cpuset;
mod devices;
mod freezer;
mod memory;
pub(crate) mod pids;

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::fs;
use super::{CgroupManager, MountView, Stats, V1Hierarchy, V1View};
use crate::error::{Error, Result};

/// A cgroup on a v1 (legacy or hybrid) host.
#[derive(Debug, Clone)]
pub struct V1Manager {
    hierarchies: Vec<V1Hierarchy>,
    path: PathBuf,
}

impl V1Manager {
    /// A manager for `path` (relative) in `hierarchies`. Tests pass a fake tree here.
    pub fn new(hierarchies: Vec<V1Hierarchy>, path: PathBuf) -> Self {
        V1Manager { hierarchies, path }
    }

    fn dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.hierarchies
            .iter()
            .map(|h| h.mount_point.join(&self.path))
    }

    /// The cgroup's directory in the hierarchy carrying `controller`.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.has(controller))
            .map(|h| h.mount_point.join(&self.path))
    }

    fn require(&self, controller: &str) -> Result<PathBuf> {
        self.controller_dir(controller).ok_or_else(|| {
            Error::Cgroup(format!(
                "the {controller} controller is not mounted on this host, but the container asks for {controller} limits"
            ))
        })
    }

    /// A hierarchy directory to list processes from: pids or memory when mounted (every
    /// container process is in those), otherwise the first one.
    fn procs_dir(&self) -> Option<PathBuf> {
        self.controller_dir("pids")
            .or_else(|| self.controller_dir("memory"))
            .or_else(|| self.dirs().next())
    }
}

impl CgroupManager for V1Manager {
    fn path(&self) -> &Path {
        &self.path
    }

    fn create(&self) -> Result<()> {
        for h in &self.hierarchies {
            let dir = h.mount_point.join(&self.path);
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Cgroup(format!("create {}: {e}", dir.display())))?;
            if h.has("cpuset") {
                cpuset::inherit_down(&h.mount_point, &self.path)?;
            }
        }
        Ok(())
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            fs::write(&dir, "cgroup.procs", pid)?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(m) = r.memory() {
            memory::apply(&self.require("memory")?, m)?;
        }
        if let Some(c) = r.cpu() {
            if c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.realtime_runtime().is_some()
                || c.realtime_period().is_some()
                || c.idle().is_some()
            {
                cpu::apply(&self.require("cpu")?, c)?;
            }
            if c.cpus().is_some() || c.mems().is_some() {
                cpuset::apply(&self.require("cpuset")?, c)?;
            }
        }
        if let Some(p) = r.pids() {
            pids::apply(&self.require("pids")?, p)?;
        }
        if let Some(d) = r.devices() {
            if !d.is_empty() {
                devices::apply(&self.require("devices")?, d)?;
            }
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        if let Some(dir) = self.controller_dir("memory") {
            s.memory = memory::stats(&dir)?;
        }
        if let Some(dir) = self.controller_dir("pids") {
            s.pids = pids::stats(&dir)?;
        }
        if let Some(dir) = self.controller_dir("cpuacct") {
            s.cpu.usage_ns = fs::read_u64_opt(&dir, "cpuacct.usage")?.unwrap_or(0);
        }
        if let Some(dir) = self.controller_dir("blkio") {
            s.blkio = blkio::stats(&dir)?;
        }
        Ok(s)
    }

    fn freeze(&self) -> Result<()> {
        freezer::set(&self.require("freezer")?, true)
    }

    fn thaw(&self) -> Result<()> {
        freezer::set(&self.require("freezer")?, false)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        match self.procs_dir() {
            Some(d) => fs::procs(&d),
            None => Ok(Vec::new()),
        }
    }

    fn kill_all(&self) -> Result<()> {
        let Some(dir) = self.procs_dir() else {
            return Ok(());
        };
        // Frozen, no process can fork a new one between listing and killing.
        let frozen = self.controller_dir("freezer").filter(|d| d.exists());
        if let Some(f) = &frozen {
            freezer::set(f, true)?;
        }
        for pid in fs::procs(&dir)? {
            // ESRCH: already gone.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(f) = &frozen {
            // SIGKILL is delivered once the tasks run again.
            freezer::set(f, false)?;
        }
        fs::wait_empty(&dir, Duration::from_secs(10))
    }

    fn remove(&self) -> Result<()> {
        let mut first_err = None;
        for dir in self.dirs() {
            if let Err(e) = fs::remove_tree(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn mount_view(&self) -> MountView {
        MountView::V1(
            self.hierarchies
                .iter()
                .map(|h| V1View {
                    dir: h.dir_name(),
                    options: h.options.clone(),
                    host_path: h.mount_point.join(&self.path),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests;
