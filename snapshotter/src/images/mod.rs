//! Image records and what they point to: names → manifests → configurations and layers.

pub mod chain;
pub mod convert;
pub mod filter;
pub mod inspect;
pub mod media;
pub mod progress;
pub mod pull;
pub mod push;
pub mod record;
pub mod remote;
pub mod resolve;
pub mod service;
pub mod singleflight;
pub mod unpack;
pub mod walk;
