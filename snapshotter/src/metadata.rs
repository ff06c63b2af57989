//! The snapshotter's sled database under `<root>/metadata/snapshotter`. Each module owns
//! its trees; their names are here so none collide.

use std::path::Path;

use crate::error::Result;

/// Labels of content blobs, keyed by digest.
pub const CONTENT_LABELS: &str = "content.labels";
/// Snapshot records, keyed by snapshot key.
pub const SNAPSHOTS: &str = "snapshots";
/// Image records, keyed by name.
pub const IMAGES: &str = "images";
/// Counters (e.g. the next snapshot id).
pub const COUNTERS: &str = "counters";

/// Opens (creating) the database.
pub fn open(root: &Path) -> Result<sled::Db> {
    let dir = root.join("metadata");
    berth_rpc::listen::create_dir(&dir, 0o700)?;
    Ok(sled::Config::new()
        .path(dir.join("snapshotter"))
        .cache_capacity(16 << 20)
        .open()?)
}
