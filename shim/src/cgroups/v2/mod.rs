//! cgroup v2: one unified hierarchy; controllers enabled down the tree through
//! `cgroup.subtree_control`. There is no devices controller: the device allowlist is an
//! eBPF program attached to the cgroup (`devices.rs`).

mod bpf;
mod cpu;
mod devices;
mod io;
mod memory;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use super::fs;
use super::v1::pids;
use super::{CgroupManager, MountView, Stats};
use crate::error::{Error, Result};

/// Controllers the shim enables for its cgroups when the host offers them.
const WANTED: &[&str] = &["cpu", "cpuset", "memory", "pids", "io"];

/// A cgroup on a cgroup v2 host.
#[derive(Debug, Clone)]
pub struct V2Manager {
    root: PathBuf,
    path: PathBuf,
}

impl V2Manager {
    /// A manager for `path` (relative) under the cgroup2 mount `root`. Tests pass a fake
    /// tree as `root`.
    pub fn new(root: PathBuf, path: PathBuf) -> Self {
        V2Manager { root, path }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.path)
    }

    fn require(&self, controller: &str) -> Result<()> {
        let enabled = fs::read(&self.dir(), "cgroup.controllers")?;
        if enabled.split(' ').any(|c| c == controller) {
            Ok(())
        } else {
            Err(Error::Cgroup(format!(
                "the {controller} controller is not available in {} (cgroup.controllers: {enabled:?})",
                self.dir().display()
            )))
        }
    }
}

impl CgroupManager for V2Manager {
    fn path(&self) -> &Path {
        &self.path
    }

    fn create(&self) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Cgroup(format!("create {}: {e}", dir.display())))?;
        let available = fs::read(&self.root, "cgroup.controllers")?;
        let enable: Vec<&str> = available
            .split(' ')
            .filter(|c| WANTED.contains(c))
            .collect();
        // Every ancestor of the leaf must delegate the controllers to its children.
        let mut cur = self.root.clone();
        let comps: Vec<_> = self.path.components().collect();
        for comp in &comps[..comps.len().saturating_sub(1)] {
            enable_controllers(&cur, &enable)?;
            cur.push(comp);
        }
        enable_controllers(&cur, &enable)
    }

    fn add_task(&self, pid: i32) -> Result<()> {
        fs::write(&self.dir(), "cgroup.procs", pid)
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        let dir = self.dir();
        if let Some(m) = r.memory() {
            self.require("memory")?;
            memory::apply(&dir, m)?;
        }
        if let Some(c) = r.cpu() {
            if c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.idle().is_some()
            {
                self.require("cpu")?;
                cpu::apply(&dir, c)?;
            }
            if c.realtime_runtime().is_some_and(|v| v != 0)
                || c.realtime_period().is_some_and(|v| v != 0)
            {
                return Err(Error::Cgroup(
                    "realtime CPU limits do not exist on cgroup v2".into(),
                ));
            }
            if c.cpus().is_some() || c.mems().is_some() {
                self.require("cpuset")?;
                if let Some(cpus) = c.cpus() {
                    fs::write(&dir, "cpuset.cpus", cpus)?;
                }
                if let Some(mems) = c.mems() {
                    fs::write(&dir, "cpuset.mems", mems)?;
                }
            }
        }
        if let Some(p) = r.pids() {
            self.require("pids")?;
            pids::apply(&dir, p)?;
        }
        if let Some(d) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            devices::apply(&dir, d)?;
        }
        for (key, value) in r.unified().iter().flatten() {
            if key.contains('/') || key.starts_with('.') || key.starts_with("cgroup.") {
                return Err(Error::Cgroup(format!(
                    "unified key {key:?} is not a controller file"
                )));
            }
            fs::write(&dir, key, value)?;
        }
        Ok(())
    }

    fn stats(&self) -> Result<Stats> {
        let dir = self.dir();
        let mut s = Stats::default();
        if dir.join("memory.current").exists() {
            s.memory = memory::stats(&dir)?;
        }
        if dir.join("pids.current").exists() {
            s.pids = pids::stats(&dir)?;
        }
        if dir.join("cpu.stat").exists() {
            s.cpu.usage_ns = fs::keyed(&dir, "cpu.stat", "usage_usec")?.unwrap_or(0) * 1000;
        }
        s.blkio = io::stats(&dir)?;
        Ok(s)
    }

    fn freeze(&self) -> Result<()> {
        set_frozen(&self.dir(), true)
    }

    fn thaw(&self) -> Result<()> {
        set_frozen(&self.dir(), false)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        fs::procs(&self.dir())
    }

    fn kill_all(&self) -> Result<()> {
        let dir = self.dir();
        if !dir.exists() {
            return Ok(());
        }
        if dir.join("cgroup.kill").exists() {
            // Kernel 5.14+: kills the whole subtree atomically.
            fs::write(&dir, "cgroup.kill", 1)?;
        } else {
            set_frozen(&dir, true)?;
            for pid in fs::procs(&dir)? {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            set_frozen(&dir, false)?;
        }
        fs::wait_empty(&dir, Duration::from_secs(10))
    }

    fn remove(&self) -> Result<()> {
        fs::remove_tree(&self.dir())
    }

    fn mount_view(&self) -> MountView {
        MountView::Unified {
            host_path: self.dir(),
        }
    }
}

fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<()> {
    let current = fs::read(dir, "cgroup.subtree_control")?;
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !current.split(' ').any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // One write: the kernel applies it all or nothing.
    fs::write(dir, "cgroup.subtree_control", missing.join(" "))
}

fn set_frozen(dir: &Path, frozen: bool) -> Result<()> {
    fs::write(dir, "cgroup.freeze", u8::from(frozen))?;
    let want = u64::from(frozen);
    let deadline = Instant::now() + Duration::from_secs(5);
    // cgroup.events reports "frozen 1" once every task has stopped.
    while fs::keyed(dir, "cgroup.events", "frozen")?.unwrap_or(want) != want {
        if Instant::now() >= deadline {
            return Err(Error::Cgroup(format!(
                "{} did not reach frozen={want}",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
