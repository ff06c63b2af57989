//! berth-shim: one process per container that owns its namespaces, cgroup, rootfs mount,
//! stdio and exit status, and serves the Task API (`berth.shim.v1`). The engine and the
//! builder use the client half of this crate to spawn and reach shims.
//!
//! The container runtime is a library with seams (youki's layout): [`spec`] loads and
//! validates the OCI bundle, [`cgroups`] knows cgroups and nothing of containers,
//! [`rootfs`] and [`init`] build the container through the [`syscall::Syscall`] seam,
//! [`process`] runs the start protocol over [`channel`], and [`container`] ties one
//! container's lifecycle together.

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod container;
mod error;
pub mod init;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod syscall;

pub use container::{run_container, Container, CreateOptions, ExitStatus};
pub use error::{Error, Result};
pub use process::Stdio;
pub use rootfs::MountSpec;
pub use spec::Bundle;

use berth_proto::shim::v1::task_server::{self, TaskServer};
use berth_rpc::serve::ServiceSet;

/// `berth.shim.v1.Task`; its RPCs answer `UNIMPLEMENTED` until the container lifecycle lands.
#[derive(Debug, Clone, Copy)]
pub struct Task;
impl task_server::Task for Task {}

/// The gRPC services of a shim process.
pub fn services() -> ServiceSet {
    ServiceSet::new("berth-shim").with(TaskServer::new(Task))
}
