//! Create: the container's cgroup and init process, from the bundle, through the runtime
//! core's [`Container`]; the init waits for Start.

use std::path::PathBuf;

use tokio::sync::watch;

use super::io::{Io, StdioSpec};
use super::{blocking, Phase, Status, Task};
use crate::container::{Container, CreateOptions};
use crate::error::{Error, Result};
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
    /// A pseudo-terminal for the init.
    pub terminal: bool,
    /// The init's stdio.
    pub stdio: StdioSpec,
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
        if spec.terminal {
            return Err(Error::FailedPrecondition("TTY not supported yet".into()));
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
        let (io, stdio) = Io::open(&spec.stdio, &self.id)?;
        let reap_guard = self.reap_lock.clone().lock_owned().await;
        let id = self.id.clone();
        let bundle_dir = spec.bundle.clone();
        let rootfs = spec.rootfs;
        let created = blocking(move || {
            // The core waits for the intermediate process (and for the init on failure):
            // the reaper must not reap them meanwhile.
            let _reap_guard = reap_guard;
            let bundle = Bundle::load(&bundle_dir)?;
            let mut opts = CreateOptions::new(id);
            opts.rootfs_mounts = rootfs;
            opts.stdio = stdio;
            Container::create(&bundle, opts)
        })
        .await?;
        // On failure `io` is dropped here: the container's pipe ends are closed already,
        // so nothing is lost.
        let container = created?;
        let pid = container.pid().as_raw() as u32;
        inner.phase = Phase::Live(Status::Created);
        inner.bundle = spec.bundle;
        inner.container = Some(container);
        inner.pid = pid;
        inner.started_at = None;
        inner.exit = None;
        inner.exit_tx = watch::Sender::new(None);
        inner.io = Some(io);
        tracing::info!(container = %self.id, pid, "created");
        Ok(pid)
    }
}
