//! berth-builder: turns a Dockerfile and a build context into an image.

use berth_proto::builder::v1::builder_server::{self, BuilderServer};
use berth_rpc::cli::Settings;
use berth_rpc::serve::ServiceSet;

/// `berth.builder.v1.Builder`; its RPCs answer `UNIMPLEMENTED` until builds land.
#[derive(Debug, Clone, Copy)]
pub struct Builder;
impl builder_server::Builder for Builder {}

/// The gRPC services of the builder process.
pub fn services(_settings: &Settings) -> ServiceSet {
    ServiceSet::new("berth-builder").with(BuilderServer::new(Builder))
}
