//! One module per command.

pub mod completion;
pub mod events;
pub mod info;
pub mod version;
