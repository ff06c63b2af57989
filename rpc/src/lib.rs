//! How berth processes serve and reach gRPC.
//!
//! Every berth service (engine, snapshotter, builder, shim) listens the same way: a unix
//! socket guarded by a pid lock, the standard health and reflection services, the `Version`
//! service, a tracing span per request, and a graceful drain on SIGTERM/SIGINT. Clients reach
//! them through [`connect`]. This crate owns that plumbing so each service writes only its
//! own handlers.

pub mod address;
pub mod cli;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod error;
pub mod fds;
pub mod listen;
pub mod logging;
pub mod pidlock;
pub mod serve;
pub mod shutdown;
pub mod unimplemented;
pub mod version;

pub use address::Address;
pub use error::{Error, Result};
