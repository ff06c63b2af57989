//! Unpacking an image: each layer becomes a committed snapshot named by its chain ID, on
//! top of the previous one. Layers already unpacked (by this image or another sharing
//! them) are skipped, so a shared base layer is unpacked once.

use std::collections::HashMap;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::resolve::Resolved;
use crate::store::Store;

/// Snapshot label recording a layer's diff ID.
pub const LABEL_DIFF_ID: &str = "berth.snapshot.diff-id";
/// Snapshot label recording the layer blob it was unpacked from.
pub const LABEL_LAYER_DIGEST: &str = "berth.snapshot.layer-digest";

fn unique_key(chain: &str) -> String {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    format!("extract-{}-{chain}", hex::encode(b))
}

/// Makes sure every layer of `image` is unpacked. Blocking: call from a blocking thread.
pub fn unpack(store: &Store, image: &Resolved) -> Result<()> {
    let rt = tokio::runtime::Handle::current();
    for (i, layer) in image.layers.iter().enumerate() {
        let chain = &image.chain_ids[i];
        if rt.block_on(store.snapshots.is_committed(chain))? {
            continue;
        }
        let parent = if i == 0 { "" } else { image.chain_ids[i - 1].as_str() };
        let key = unique_key(chain);
        let labels = HashMap::from([
            (LABEL_DIFF_ID.to_string(), image.diff_ids[i].clone()),
            (LABEL_LAYER_DIGEST.to_string(), layer.digest.clone()),
        ]);
        rt.block_on(store.snapshots.prepare(&key, parent, HashMap::new()))?;
        let applied = (|| {
            let upper = store.snapshots.upper_dir(&key)?;
            let blob = store.content.open_blob(&Digest::parse(&layer.digest)?)?;
            let stats = crate::layer::apply(&upper, std::io::BufReader::with_capacity(1 << 20, blob))?;
            if stats.diff_id.as_str() != image.diff_ids[i] {
                return Err(Error::DigestMismatch {
                    what: format!("layer {} (uncompressed)", layer.digest),
                    expected: image.diff_ids[i].clone(),
                    actual: stats.diff_id.to_string(),
                });
            }
            tracing::debug!(layer = %layer.digest, chain = %chain, bytes = stats.size, "layer unpacked");
            Ok(())
        })();
        let committed = match applied {
            Ok(()) => rt.block_on(store.snapshots.commit(chain, &key, labels)),
            Err(e) => Err(e),
        };
        match committed {
            Ok(()) => {}
            // Another unpack of the same layer won the race: its snapshot is as good.
            Err(Error::AlreadyExists(_)) => {
                let _ = rt.block_on(store.snapshots.remove(&key));
            }
            Err(e) => {
                if let Err(rm) = rt.block_on(store.snapshots.remove(&key)) {
                    tracing::warn!(key = %key, error = %rm, "could not remove a failed unpack");
                }
                return Err(e);
            }
        }
    }
    Ok(())
}
