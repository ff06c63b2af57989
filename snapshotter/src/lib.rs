//! berth-snapshotter: owns image data — blobs by digest (content), layers as overlayfs
//! snapshots, and image records — and pulls and pushes them through `registry-client`.

// pending helper APIs: pub mod archive;
pub mod content;
pub mod digest;
pub mod error;
// pending helper APIs: pub mod gc;
pub mod images;
pub mod layer;
pub mod metadata;
pub mod mount;
pub mod snapshots;
// pending helper APIs: pub mod store;

pub use error::{Error, Result};

use berth_proto::content::v1::content_server::{self, ContentServer};
use berth_proto::images::v1::images_server::{self, ImagesServer};
use berth_proto::snapshots::v1::snapshots_server::{self, SnapshotsServer};
use berth_rpc::cli::Settings;
use berth_rpc::serve::ServiceSet;

/// `berth.content.v1.Content`; its RPCs answer `UNIMPLEMENTED` until the content store lands.
#[derive(Debug, Clone, Copy)]
pub struct Content;
impl content_server::Content for Content {}

/// `berth.snapshots.v1.Snapshots`; pending like [`Content`].
#[derive(Debug, Clone, Copy)]
pub struct Snapshots;
impl snapshots_server::Snapshots for Snapshots {}

/// `berth.images.v1.Images`; pending like [`Content`].
#[derive(Debug, Clone, Copy)]
pub struct Images;
impl images_server::Images for Images {}

/// The gRPC services of the snapshotter process.
pub fn services(_settings: &Settings) -> ServiceSet {
    ServiceSet::new("berth-snapshotter")
        .with(ContentServer::new(Content))
        .with(SnapshotsServer::new(Snapshots))
        .with(ImagesServer::new(Images))
}
