//! berth-engine: the public API of berth. It routes calls to the snapshotter and builder,
//! keeps container records and the event log, and in embedded mode supervises the services
//! behind it.

pub mod backend;
pub mod containers;
pub mod context;
pub mod error;
pub mod events;
pub mod host;
pub mod images;
pub mod metadata;
pub mod pending;
pub mod server;
pub mod settings;
pub mod supervisor;
pub mod system;

pub use error::{Error, Result};
