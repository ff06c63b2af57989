//! Create: the container's cgroup and init process, from the bundle, through the runtime
//! core's [`Container`]; the init waits for Start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::io::{self, Io, StdioSpec};
use super::{blocking, Phase, Status, Task};
use crate::container::{Container, CreateOptions};
use crate::error::{Error, Result};
use crate::exec::ExecBase;
use crate::rootfs::MountSpec;
use crate::spec::Bundle;
use crate::state;

/// A Create request in domain terms.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// Container id; must be the shim's.
    pub id: String,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// Mounts that make the root filesystem; empty when it is in place.
    pub rootfs: Vec<MountSpec>,
    /// A pseudo-terminal for the init (the spec's `process.terminal` must agree).
    pub terminal: bool,
    /// The init's stdio.
    pub stdio: StdioSpec,
    /// Initial terminal size (width, height), with `terminal`.
    pub console_size: Option<(u32, u32)>,
}

impl Task {
    /// Creates the container; returns the init's host pid.
    pub async fn create(&self, spec: CreateSpec) -> Result<u32> {
        if spec.id != self.id {
            return Err(Error::InvalidArgument(format!(
                "container id {:?} does not match this shim's {}",
                spec.id, self.id
            )));
        }
        if !spec.bundle.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "bundle path {} is not absolute",
                spec.bundle.display()
            )));
        }
        let mut inner = self.inner.lock().await;
        if !matches!(inner.phase, Phase::Empty | Phase::Deleted) {
            return Err(Error::AlreadyExists(format!(
                "container {} is already created",
                self.id
            )));
        }
        // A status left by an earlier container in this state dir is not this one's.
        state::remove_exit(&self.state_dir)?;
        let (mut io, stdio) = Io::open(&spec.stdio, &self.id, spec.terminal)?;
        let reap_guard = self.reap_lock.clone().lock_owned().await;
        let id = self.id.clone();
        let bundle_dir = spec.bundle.clone();
        let rootfs = spec.rootfs;
        let terminal = spec.terminal;
        let created = blocking(move || {
            // The core waits for the intermediate process (and for the init on failure):
            // the reaper must not reap them meanwhile.
            let _reap_guard = reap_guard;
            let bundle = Bundle::load(&bundle_dir)?;
            let wants = bundle
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false);
            if wants != terminal {
                return Err(Error::InvalidArgument(format!(
                    "the request's terminal ({terminal}) and the spec's process.terminal ({wants}) disagree"
                )));
            }
            let mut opts = CreateOptions::new(id);
            opts.rootfs_mounts = rootfs;
            opts.stdio = stdio;
            // Of the spec, only this outlives the create.
            let exec_base = ExecBase::new(&bundle.spec)?;
            let container = Container::create(&bundle, opts)?;
            Ok((container, exec_base))
        })
        .await?;
        // On failure `io` is dropped here: the container's pipe ends are closed already,
        // so nothing is lost.
        let (mut container, exec_base) = created?;
        if let Some(master) = container.take_console() {
            let size = spec
                .console_size
                .map(|(w, h)| (io::clamp_cells(w), io::clamp_cells(h)));
            if let Err(e) = io.set_console(master, size) {
                // Dropping the created container kills and reaps the init (and removes
                // the cgroup): the reaper must not take the init meanwhile.
                let reap_guard = self.reap_lock.clone().lock_owned().await;
                blocking(move || {
                    let _reap_guard = reap_guard;
                    drop(container);
                })
                .await?;
                return Err(e);
            }
        }
        let pid = container.pid().as_raw() as u32;
        inner.phase = Phase::Live(Status::Created);
        inner.bundle = spec.bundle;
        inner.container = Some(container);
        inner.pid = pid;
        inner.started_at = None;
        inner.exit = None;
        inner.exit_tx = watch::Sender::new(None);
        inner.io = Some(io);
        inner.exec_base = Some(Arc::new(exec_base));
        inner.execs = HashMap::new();
        tracing::info!(container = %self.id, pid, "created");
        Ok(pid)
    }
}
