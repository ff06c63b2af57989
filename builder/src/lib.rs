//! berth-builder: turns a Dockerfile and a build context into an image.

use berth_rpc::cli::Settings;
use berth_rpc::serve::ServiceSet;

/// The gRPC services of the builder process.
pub fn services(_settings: &Settings) -> ServiceSet {
    ServiceSet::new("berth-builder")
}
