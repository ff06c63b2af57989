//! Image archives: load, save and import.

pub mod changes;
pub mod import;
pub mod layout;
pub mod load;
pub mod save;
