//! Image records and what they point to: names → manifests → configurations and layers.

pub mod chain;
pub mod convert;
pub mod filter;
// pending helper APIs: pub mod inspect;
pub mod media;
pub mod record;
pub mod resolve;
// pending helper APIs: pub mod service;
// pending helper APIs: pub mod unpack;
// pending helper APIs: pub mod walk;
