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
use crate::snapshots::{Snapshotter, Staged};
use crate::store::Store;

/// Snapshot label recording a layer's diff ID.
pub const LABEL_DIFF_ID: &str = "berth.snapshot.diff-id";
/// Snapshot label recording the layer blob it was unpacked from.
pub const LABEL_LAYER_DIGEST: &str = "berth.snapshot.layer-digest";

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
    let (staged, diff_id) = stage_layer(store, layer)?;
    if let Some(expected) = expected_diff_id {
        if diff_id != expected {
            return Err(Error::DigestMismatch {
                what: format!("layer {} (uncompressed)", layer.digest),
                expected: expected.to_string(),
                actual: diff_id,
            });
        }
    }
    let chain = chain_on(parent, &diff_id);
    labels.insert(LABEL_DIFF_ID.to_string(), diff_id.clone());
    labels.insert(LABEL_LAYER_DIGEST.to_string(), layer.digest.clone());
    let existed = match store
        .snapshots
        .commit_staged(staged, &chain, parent, labels)
    {
        Ok(()) => false,
        // Another unpack of the same layer won the race: its snapshot is as good.
        Err(Error::AlreadyExists(_)) => true,
        Err(e) => return Err(e),
    };
    Ok(Applied {
        chain_id: chain,
        diff_id,
        existed,
    })
}

/// Layers unpacked ahead of time into staging directories, by layer blob digest, each
/// with the diff ID it hashed to (see `archive::load`, which unpacks while it receives).
pub type Prestaged = HashMap<String, (Staged, String)>;

/// Makes sure every layer of `image` is unpacked. Blocking.
pub fn unpack(store: &Store, image: &Resolved) -> Result<()> {
    unpack_with(store, image, &mut Prestaged::new())
}

/// Like [`unpack`], using layers from `prestaged` where there are.
///
/// Missing layers are unpacked in parallel (one thread per CPU) into staging directories,
/// each checked against its diff ID, then committed bottom-up, each on the one below.
pub fn unpack_with(store: &Store, image: &Resolved, prestaged: &mut Prestaged) -> Result<()> {
    let rt = tokio::runtime::Handle::current();
    let mut missing = Vec::new();
    for (i, chain) in image.chain_ids.iter().enumerate() {
        if !rt.block_on(store.snapshots.is_committed(chain))? {
            missing.push(i);
        }
    }
    let mut ready: Vec<(usize, Result<Staged>)> = Vec::new();
    let mut todo = Vec::new();
    for i in missing {
        match prestaged.remove(&image.layers[i].digest) {
            Some((staged, diff_id)) if diff_id == image.diff_ids[i] => ready.push((i, Ok(staged))),
            Some((_, diff_id)) => {
                return Err(Error::DigestMismatch {
                    what: format!("layer {} (uncompressed)", image.layers[i].digest),
                    expected: image.diff_ids[i].clone(),
                    actual: diff_id,
                })
            }
            None => todo.push(i),
        }
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(todo.len());
    let queue = std::sync::Mutex::new(todo.into_iter());
    let results = std::sync::Mutex::new(ready);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some(i) = next else { break };
                let staged = stage_layer(store, &image.layers[i]).and_then(|(staged, diff_id)| {
                    if diff_id == image.diff_ids[i] {
                        Ok(staged)
                    } else {
                        Err(Error::DigestMismatch {
                            what: format!("layer {} (uncompressed)", image.layers[i].digest),
                            expected: image.diff_ids[i].clone(),
                            actual: diff_id,
                        })
                    }
                });
                let failed = staged.is_err();
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, staged));
                if failed {
                    break;
                }
            });
        }
    });
    let mut staged = results.into_inner().unwrap_or_else(|p| p.into_inner());
    staged.sort_by_key(|(i, _)| *i);
    for (i, layer) in staged {
        let layer = layer?;
        let parent = if i == 0 {
            ""
        } else {
            image.chain_ids[i - 1].as_str()
        };
        let labels = HashMap::from([
            (LABEL_DIFF_ID.to_string(), image.diff_ids[i].clone()),
            (
                LABEL_LAYER_DIGEST.to_string(),
                image.layers[i].digest.clone(),
            ),
        ]);
        match store
            .snapshots
            .commit_staged(layer, &image.chain_ids[i], parent, labels)
        {
            // Another unpack of the same layer won the race: its snapshot is as good.
            Ok(()) | Err(Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Unpacks one layer blob into a staging directory; returns it with the diff ID the
/// uncompressed stream hashed to.
pub fn stage_layer(store: &Store, layer: &Descriptor) -> Result<(Staged, String)> {
    let blob = Digest::parse(&layer.digest)?;
    let staged = store.snapshots.stage()?;
    let file = store.content.open_blob(&blob)?;
    let stats = crate::layer::apply(
        &staged.fs(),
        std::io::BufReader::with_capacity(1 << 20, file),
    )?;
    tracing::debug!(layer = %blob, bytes = stats.size, "layer unpacked");
    Ok((staged, stats.diff_id.to_string()))
}
