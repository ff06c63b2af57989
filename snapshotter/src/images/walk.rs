//! Everything an image record keeps alive: the blobs of its index, manifests, configs and
//! layers (every platform present here), and the chain IDs of its unpacked layers. Save
//! writes these blobs; garbage collection keeps them.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::chain::chain_ids;
use crate::images::record::Descriptor;
use crate::images::resolve::{BlobReader, ConfigSummary, MAX_CONFIG, MAX_MANIFEST};
use crate::store::Store;

/// What an image references.
#[derive(Debug, Default)]
pub struct Walked {
    /// Blob digests.
    pub blobs: BTreeSet<String>,
    /// Chain IDs (snapshot names) of every layer prefix.
    pub chains: BTreeSet<String>,
}

#[derive(Deserialize)]
struct Ref {
    digest: String,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    manifests: Option<Vec<Ref>>,
    #[serde(default)]
    config: Option<Ref>,
    #[serde(default)]
    layers: Vec<Ref>,
}

/// Walks `target`; blobs missing from the content store (platforms never pulled) are
/// skipped below an index, and an error at the top.
pub fn walk(store: &Store, target: &Descriptor) -> Result<Walked> {
    let mut w = Walked::default();
    walk_into(store, &target.digest, true, &mut w)?;
    Ok(w)
}

fn walk_into(store: &Store, digest: &str, required: bool, w: &mut Walked) -> Result<()> {
    let d = Digest::parse(digest)?;
    if !required && !store.has_blob(&d) {
        return Ok(());
    }
    w.blobs.insert(digest.to_string());
    let doc: Doc = serde_json::from_slice(&store.read_blob(&d, MAX_MANIFEST)?)
        .map_err(|e| Error::InvalidArgument(format!("manifest {digest}: {e}")))?;
    if let Some(list) = doc.manifests {
        for m in list {
            walk_into(store, &m.digest, false, w)?;
        }
        return Ok(());
    }
    w.blobs.extend(doc.layers.iter().map(|l| l.digest.clone()));
    if let Some(config) = doc.config {
        w.blobs.insert(config.digest.clone());
        let summary: ConfigSummary =
            serde_json::from_slice(&store.read_blob(&Digest::parse(&config.digest)?, MAX_CONFIG)?)
                .map_err(|e| {
                    Error::InvalidArgument(format!("image config {}: {e}", config.digest))
                })?;
        w.chains.extend(chain_ids(&summary.rootfs.diff_ids));
    }
    Ok(())
}
