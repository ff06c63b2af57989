//! Layers in and out of snapshots — the `Diff` and `Apply` RPCs. They need the content
//! store as well as the snapshotter, so the snapshots service reaches them through this
//! trait, implemented by the snapshotter's [`Store`].

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::snapshots::v1 as pb;

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::convert;
use crate::images::unpack::apply_layer;
use crate::layer::{Compression, Compressor};
use crate::snapshots::Snapshotter;
use crate::store::Store;

/// Diff and Apply.
#[tonic::async_trait]
pub trait LayerTransfer: Send + Sync + 'static {
    /// Stores the changes of a snapshot as a layer blob.
    async fn diff(&self, req: pb::DiffRequest) -> Result<pb::DiffResponse>;
    /// Unpacks a layer blob into a committed snapshot.
    async fn apply(&self, req: pb::ApplyRequest) -> Result<pb::ApplyResponse>;
}

/// [`LayerTransfer`] over the local store.
pub struct StoreLayers(pub Arc<Store>);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("layer worker", std::io::Error::other(e)))?
}

fn compression(req: &pb::DiffRequest) -> Result<Compression> {
    let by_enum = match pb::Compression::try_from(req.compression) {
        Ok(pb::Compression::None) => Compression::None,
        Ok(pb::Compression::Zstd) => Compression::Zstd,
        Ok(pb::Compression::Gzip | pb::Compression::Unspecified) => Compression::Gzip,
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "unknown compression {}",
                req.compression
            )))
        }
    };
    if !req.media_type.is_empty() && Compression::from_media_type(&req.media_type) != Some(by_enum)
    {
        return Err(Error::InvalidArgument(format!(
            "media type {:?} does not match the {by_enum:?} compression asked for",
            req.media_type
        )));
    }
    Ok(by_enum)
}

#[tonic::async_trait]
impl LayerTransfer for StoreLayers {
    async fn diff(&self, req: pb::DiffRequest) -> Result<pb::DiffResponse> {
        let kind = compression(&req)?;
        let upper = self.0.snapshots.upper_dir(&req.key)?;
        let store = self.0.clone();
        let (digest, size, diff_id) = blocking(move || {
            // The tar is produced on one thread and stored from the other end of a pipe,
            // so the layer is never held in memory or written twice.
            let (reader, writer) = std::io::pipe().map_err(|e| Error::io("create a pipe", e))?;
            let producer = std::thread::spawn(move || -> Result<String> {
                let mut out = Compressor::new(writer, kind, 3)?;
                let stats = crate::layer::diff(&upper, &mut out)?;
                out.finish()?;
                Ok(stats.diff_id.to_string())
            });
            let stored = store.content.write_blob(reader, None);
            let diff_id = producer
                .join()
                .map_err(|_| Error::io("diff", std::io::Error::other("diff thread panicked")))??;
            let (digest, size) = stored?;
            Ok((digest, size, diff_id))
        })
        .await?;
        if !req.labels.is_empty() {
            self.0
                .content
                .update(&digest, req.labels.into_iter().collect(), &[])
                .await?;
        }
        let media_type = if req.media_type.is_empty() {
            kind.oci_media_type().to_string()
        } else {
            req.media_type
        };
        Ok(pb::DiffResponse {
            layer: Some(berth_proto::types::v1::Descriptor {
                media_type,
                digest: digest.to_string(),
                size: size as i64,
                ..Default::default()
            }),
            diff_id,
        })
    }

    async fn apply(&self, req: pb::ApplyRequest) -> Result<pb::ApplyResponse> {
        let layer = convert::from_descriptor(
            req.layer
                .ok_or_else(|| Error::InvalidArgument("layer is required".into()))?,
        )?;
        if !crate::images::media::is_layer(&layer.media_type) {
            return Err(Error::InvalidArgument(format!(
                "{:?} is not a layer media type",
                layer.media_type
            )));
        }
        if !self.0.has_blob(&Digest::parse(&layer.digest)?) {
            return Err(Error::NotFound(format!("layer blob {}", layer.digest)));
        }
        let store = self.0.clone();
        let diff_id = Some(req.diff_id).filter(|d| !d.is_empty());
        let labels: HashMap<String, String> = req.labels;
        let parent = req.parent;
        let applied = blocking(move || {
            let _writing = store.writing();
            apply_layer(&store, &layer, &parent, diff_id.as_deref(), labels)
        })
        .await?;
        let size = self
            .0
            .snapshots
            .usage(&applied.chain_id)
            .await
            .map(|u| u.size as i64)
            .unwrap_or(0);
        Ok(pb::ApplyResponse {
            chain_id: applied.chain_id,
            diff_id: applied.diff_id,
            existed: applied.existed,
            size,
        })
    }
}
