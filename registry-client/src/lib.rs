//! OCI distribution client: image references, auth, manifests, blob transfer.

pub mod error;
pub mod reference;

pub use error::{Error, Result};
pub use reference::Reference;
