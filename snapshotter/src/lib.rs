//! berth-snapshotter: owns image data — blobs by digest (content), layers as overlayfs
//! snapshots, and image records — and pulls and pushes them through `registry-client`.

use berth_rpc::cli::Settings;
use berth_rpc::serve::ServiceSet;

/// The gRPC services of the snapshotter process.
pub fn services(_settings: &Settings) -> ServiceSet {
    ServiceSet::new("berth-snapshotter")
}
