//! Unpacking: a layer blob becomes a committed snapshot named by its chain ID, on top of
//! its parent chain. A layer already unpacked (by this image or another sharing it) is not
//! unpacked again, so a shared base layer is stored once. Used for every image layer and
//! by the `Snapshots.Apply` RPC.

use std::collections::HashMap;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::chain::chain_on;
use crate::images::record::Descriptor;
use crate::images::resolve::Resolved;
use crate::snapshots::Snapshotter;
use crate::store::Store;

/// Snapshot label recording a layer's diff ID.
pub const LABEL_DIFF_ID: &str = "berth.snapshot.diff-id";
/// Snapshot label recording the layer blob it was unpacked from.
pub const LABEL_LAYER_DIGEST: &str = "berth.snapshot.layer-digest";

fn unique_key(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (secs, nanos) = crate::images::record::now();
    format!("extract-{}-{n}-{secs}{nanos:09}-{what}", std::process::id())
}

/// A layer applied to a snapshot.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Name of the committed snapshot.
    pub chain_id: String,
    /// The layer's diff ID.
    pub diff_id: String,
    /// True when it existed and nothing was unpacked.
    pub existed: bool,
}

/// Unpacks `layer` on `parent` (a committed chain ID, or "" for the bottom layer). With
/// `expected_diff_id` the result is known before reading the blob, and the uncompressed
/// stream must hash to it. Blocking: call from a blocking thread.
pub fn apply_layer(
    store: &Store,
    layer: &Descriptor,
    parent: &str,
    expected_diff_id: Option<&str>,
    mut labels: HashMap<String, String>,
) -> Result<Applied> {
    let rt = tokio::runtime::Handle::current();
    let blob = Digest::parse(&layer.digest)?;
    if let Some(diff_id) = expected_diff_id {
        Digest::parse(diff_id)?;
        let chain = chain_on(parent, diff_id);
        if rt.block_on(store.snapshots.is_committed(&chain))? {
            return Ok(Applied {
                chain_id: chain,
                diff_id: diff_id.to_string(),
                existed: true,
            });
        }
    }
    let key = unique_key(blob.hex());
    rt.block_on(store.snapshots.prepare(&key, parent, HashMap::new()))?;
    let unpacked = (|| {
        let upper = store.snapshots.upper_dir(&key)?;
        let file = store.content.open_blob(&blob)?;
        let stats = crate::layer::apply(&upper, std::io::BufReader::with_capacity(1 << 20, file))?;
        if let Some(expected) = expected_diff_id {
            if stats.diff_id.as_str() != expected {
                return Err(Error::DigestMismatch {
                    what: format!("layer {blob} (uncompressed)"),
                    expected: expected.to_string(),
                    actual: stats.diff_id.to_string(),
                });
            }
        }
        tracing::debug!(layer = %blob, bytes = stats.size, "layer unpacked");
        Ok(stats.diff_id.to_string())
    })();
    let result = unpacked.and_then(|diff_id| {
        let chain = chain_on(parent, &diff_id);
        labels.insert(LABEL_DIFF_ID.to_string(), diff_id.clone());
        labels.insert(LABEL_LAYER_DIGEST.to_string(), blob.to_string());
        match rt.block_on(store.snapshots.commit(&chain, &key, labels)) {
            Ok(()) => Ok(Applied {
                chain_id: chain,
                diff_id,
                existed: false,
            }),
            // Another unpack of the same layer won the race: its snapshot is as good.
            Err(Error::AlreadyExists(_)) => Ok(Applied {
                chain_id: chain,
                diff_id,
                existed: true,
            }),
            Err(e) => Err(e),
        }
    });
    if result.as_ref().map(|a| a.existed).unwrap_or(true) {
        if let Err(e) = rt.block_on(store.snapshots.remove(&key)) {
            tracing::warn!(key = %key, error = %e, "could not remove an unpack snapshot");
        }
    }
    result
}

/// Makes sure every layer of `image` is unpacked. Blocking.
pub fn unpack(store: &Store, image: &Resolved) -> Result<()> {
    for (i, layer) in image.layers.iter().enumerate() {
        let parent = if i == 0 {
            ""
        } else {
            image.chain_ids[i - 1].as_str()
        };
        apply_layer(
            store,
            layer,
            parent,
            Some(&image.diff_ids[i]),
            HashMap::new(),
        )?;
    }
    Ok(())
}
