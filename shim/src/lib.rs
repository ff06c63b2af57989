//! berth-shim: one process per container that owns its namespaces, cgroup, rootfs mount,
//! stdio and exit status, and serves the Task API (`berth.shim.v1`). The engine and the
//! builder use the client half of this crate to spawn and reach shims.

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
