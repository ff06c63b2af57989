//! berth-shim: one process per container that owns its namespaces, cgroup, rootfs mount,
//! stdio and exit status, and serves the Task API (`berth.shim.v1`). The engine and the
//! builder use the client half of this crate ([`client`]) to spawn and reach shims.
//!
//! The container runtime is a library with seams (youki's layout): [`spec`] loads and
//! validates the OCI bundle, [`cgroups`] knows cgroups and nothing of containers,
//! [`rootfs`] and [`init`] build the container through the [`syscall::Syscall`] seam,
//! [`exec`] plans extra processes in a running container, [`console`] gives a process a
//! terminal, [`seccomp`] compiles its filter, [`process`] runs the start protocol (init
//! and exec alike) over [`channel`], and [`container`] ties one container's lifecycle
//! together. On top: [`task`] is the Task API (a domain `Task` and its gRPC adapter),
//! [`logs`] the json-file log, [`daemon`] and [`server`] the `berth-shim` process,
//! [`state`] the files it shares with the engine.

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod client;
pub mod console;
pub mod container;
pub mod daemon;
mod error;
pub mod exec;
pub mod init;
pub mod logs;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod server;
pub mod spec;
pub mod state;
pub mod syscall;
pub mod task;

pub use container::{run_container, Container, CreateOptions, ExitStatus};
pub use error::{Error, Result};
pub use process::Stdio;
pub use rootfs::MountSpec;
pub use spec::Bundle;
