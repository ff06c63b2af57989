//! Push: an image from the content store to a registry.
//!
//! From the record's target: an index pushes every platform manifest (all must be stored)
//! or, with a platform, only that platform's manifest (pushed under the tag itself). Blobs
//! (layers, then configs) upload concurrently, up to `max_concurrent_uploads` at a time:
//! a blob the repository has is skipped (HEAD); one another repository of the same registry
//! is known to have (the [`LABEL_SOURCE`](crate::images::pull::LABEL_SOURCE) label that
//! pulls and pushes keep) is mounted from there; the rest stream from the content store.
//! Manifests go last: platform manifests by digest, then the top one by tag, each with its
//! media type, so the tag never names a manifest whose blobs are missing.

use std::future::Future;
use std::sync::Arc;

use berth_proto::types::v1::TransferStatus;
use berth_registry_client::Reference;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::content::{ByteStream, ContentStore};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::progress::{kind_of, BlobProgress, Progress};
use crate::images::pull::{
    check_descriptor, remember_source, select_platform, source_label, Doc, Role,
};
use crate::images::record::{Descriptor, ImageRecord};
use crate::images::resolve::{BlobReader, Platform, MAX_MANIFEST};
use crate::store::Store;

/// Where a push writes to: one repository of a registry. Implemented over
/// `berth_registry_client::Repository`, and by fakes in tests.
pub trait Sink: Send + Sync + 'static {
    /// The reference pushed to.
    fn reference(&self) -> &Reference;

    /// The size of blob `digest` when the repository has it.
    fn blob_exists(&self, digest: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Asks the registry to mount blob `digest` from repository `from` (a path of the same
    /// registry); false when it would not.
    fn mount_blob(&self, digest: &str, from: &str) -> impl Future<Output = Result<bool>> + Send;

    /// Uploads a blob.
    fn push_blob(
        &self,
        digest: &str,
        size: u64,
        data: ByteStream,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Uploads a manifest under a tag or its digest; returns the digest the registry gave it.
    fn push_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Only this platform's manifest of an index.
    pub platform: Option<Platform>,
    /// Blobs uploaded at once.
    pub max_concurrent_uploads: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            platform: None,
            max_concurrent_uploads: crate::registry_config::DEFAULT_CONCURRENCY,
        }
    }
}

/// The outcome of a push.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pushed to, in full.
    pub reference: String,
    /// The manifest or index the tag now names.
    pub descriptor: Descriptor,
}

/// A stored manifest or index with its bytes.
struct Stored {
    desc: Descriptor,
    bytes: Bytes,
}

/// What a push sends.
struct Plan {
    /// Layers then configs, each once.
    blobs: Vec<Descriptor>,
    /// Manifests pushed by digest before the top one.
    manifests: Vec<Stored>,
    /// Pushed under the tag.
    top: Stored,
}

fn read_stored(store: &Store, desc: &Descriptor) -> Result<Stored> {
    let (digest, _) = check_descriptor(desc, Role::Manifest)?;
    let bytes = store
        .read_blob(&digest, MAX_MANIFEST)
        .map_err(|e| match e {
            Error::NotFound(_) => {
                Error::FailedPrecondition(format!("manifest {digest} is not in the content store"))
            }
            e => e,
        })?;
    let doc = Doc::parse(&bytes, &desc.digest)?;
    Ok(Stored {
        desc: Descriptor {
            media_type: doc.media_type(&desc.media_type),
            annotations: Default::default(),
            ..desc.clone()
        },
        bytes: Bytes::from(bytes),
    })
}

/// Works out what to send for `target`. Blocking.
fn plan(store: &Store, target: &Descriptor, platform: Option<&Platform>) -> Result<Plan> {
    let top = read_stored(store, target)?;
    let doc = Doc::parse(&top.bytes, &target.digest)?;
    let (top, images) =
        if doc.is_index(&top.desc.media_type) {
            let entries = doc.manifests.clone().unwrap_or_default();
            match platform {
                Some(want) => {
                    let entry = select_platform(&entries, want, &target.digest)?;
                    let m = read_stored(store, &entry.descriptor())?;
                    (m, Vec::new())
                }
                None => {
                    let mut images = Vec::new();
                    for e in &entries {
                        let stored =
                            read_stored(store, &e.descriptor()).map_err(|err| match err {
                                Error::FailedPrecondition(_) => Error::FailedPrecondition(format!(
                            "manifest {} ({}) of index {} is not in the content store: pull \
                             it with --all-platforms, or push one platform with --platform",
                            e.digest,
                            e.platform.as_ref().map(ToString::to_string).unwrap_or_default(),
                            target.digest
                        )),
                                err => err,
                            })?;
                        images.push(stored);
                    }
                    (top, images)
                }
            }
        } else {
            (top, Vec::new())
        };
    let mut layers = Vec::new();
    let mut configs = Vec::new();
    let manifests: Vec<&Stored> = if images.is_empty() {
        vec![&top]
    } else {
        images.iter().collect()
    };
    for m in manifests {
        let doc = Doc::parse(&m.bytes, &m.desc.digest)?;
        let (config, ls) = doc.image_parts(&m.desc.digest)?;
        configs.push(config);
        layers.extend(ls);
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    for b in layers.into_iter().chain(configs) {
        let (digest, _) = check_descriptor(&b, Role::Blob)?;
        if blobs.iter().any(|x| x.digest == b.digest) {
            continue;
        }
        if !store.has_blob(&digest) {
            return Err(Error::FailedPrecondition(format!(
                "blob {digest} of the image is not in the content store"
            )));
        }
        blobs.push(b);
    }
    Ok(Plan {
        blobs,
        manifests: images,
        top,
    })
}

/// Repositories of `host` that a stored blob is known to be in.
async fn known_sources(store: &Store, digest: &Digest, host: &str) -> Vec<String> {
    match store.content.info(digest).await {
        Ok(info) => info
            .labels
            .get(&source_label(host))
            .map(|v| {
                v.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// One push in progress.
struct Push<S> {
    store: Arc<Store>,
    sink: Arc<S>,
    slots: Arc<Semaphore>,
    progress: Progress,
    host: String,
    path: String,
}

impl<S: Sink> Push<S> {
    async fn blob(self: Arc<Self>, desc: Descriptor) -> Result<()> {
        let mut bp = self.progress.blob(&desc, kind_of(&desc.media_type));
        let result = self.upload(&desc, &mut bp).await;
        if let Err(e) = &result {
            bp.status(TransferStatus::Failed, 0, e.to_string()).await;
        }
        result
    }

    async fn upload(&self, desc: &Descriptor, bp: &mut BlobProgress) -> Result<()> {
        let (digest, size) = check_descriptor(desc, Role::Blob)?;
        bp.status(TransferStatus::Waiting, 0, "").await;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::FailedPrecondition("the push was cancelled".into()))?;
        if self.sink.blob_exists(digest.as_str()).await?.is_some() {
            tracing::debug!(digest = %digest, "blob exists in the repository");
            bp.status(TransferStatus::Exists, size, "").await;
            return Ok(());
        }
        for from in known_sources(&self.store, &digest, &self.host).await {
            if from == self.path {
                continue;
            }
            match self.sink.mount_blob(digest.as_str(), &from).await {
                Ok(true) => {
                    tracing::debug!(digest = %digest, from = %from, "blob mounted");
                    bp.status(TransferStatus::Mounted, size, format!("from {from}"))
                        .await;
                    return self.remember(&digest).await;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(digest = %digest, from = %from, error = %e, "mount refused")
                }
            }
        }
        bp.status(TransferStatus::Uploading, 0, "").await;
        let data = self.store.content.read(&digest, 0, None).await?;
        let mut counter = bp.clone();
        let mut sent = 0u64;
        let data: ByteStream = Box::pin(data.map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                counter.bytes(TransferStatus::Uploading, sent);
            }
            chunk
        }));
        self.sink.push_blob(digest.as_str(), size, data).await?;
        tracing::debug!(digest = %digest, size, "blob uploaded");
        bp.status(TransferStatus::Complete, size, "").await;
        self.remember(&digest).await
    }

    async fn remember(&self, digest: &Digest) -> Result<()> {
        remember_source(&self.store, digest, &self.host, &self.path).await
    }

    async fn manifest(&self, m: &Stored, tag_or_digest: &str) -> Result<()> {
        let mut bp = self.progress.blob(&m.desc, kind_of(&m.desc.media_type));
        let size = m.bytes.len() as u64;
        bp.status(TransferStatus::Uploading, 0, "").await;
        let pushed = self
            .sink
            .push_manifest(tag_or_digest, &m.desc.media_type, m.bytes.clone())
            .await;
        let result = match pushed {
            Ok(d) if d == m.desc.digest => Ok(()),
            Ok(d) => Err(Error::DigestMismatch {
                what: format!("manifest pushed to {}", self.sink.reference()),
                expected: m.desc.digest.clone(),
                actual: d,
            }),
            Err(e) => Err(e),
        };
        match &result {
            Ok(()) => bp.status(TransferStatus::Complete, size, "").await,
            Err(e) => bp.status(TransferStatus::Failed, 0, e.to_string()).await,
        }
        result
    }
}

/// Pushes the image of `record` to `sink`'s reference; see the module documentation.
pub async fn push<S: Sink>(
    store: Arc<Store>,
    sink: Arc<S>,
    record: &ImageRecord,
    opts: PushOptions,
    progress: Progress,
) -> Result<Pushed> {
    let reference = sink.reference().clone();
    let span = tracing::info_span!("push", image = %record.name, to = %reference);
    run(
        store,
        sink,
        record.target.clone(),
        opts,
        progress,
        reference,
    )
    .instrument(span)
    .await
}

async fn run<S: Sink>(
    store: Arc<Store>,
    sink: Arc<S>,
    target: Descriptor,
    opts: PushOptions,
    progress: Progress,
    reference: Reference,
) -> Result<Pushed> {
    let started = std::time::Instant::now();
    let plan = {
        let (store, platform) = (store.clone(), opts.platform.clone());
        tokio::task::spawn_blocking(move || plan(&store, &target, platform.as_ref()))
            .await
            .map_err(|e| Error::io("push worker", std::io::Error::other(e)))??
    };
    let tag = match (reference.digest(), reference.tag()) {
        (Some(d), _) if d != plan.top.desc.digest => {
            return Err(Error::InvalidArgument(format!(
                "cannot push {} to {reference}: the reference names another digest",
                plan.top.desc.digest
            )))
        }
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let push = Arc::new(Push {
        store,
        sink,
        slots: Arc::new(Semaphore::new(opts.max_concurrent_uploads.max(1))),
        progress,
        host: reference.domain().to_string(),
        path: reference.path().to_string(),
    });
    let mut uploads = JoinSet::new();
    for b in plan.blobs {
        uploads.spawn(push.clone().blob(b).in_current_span());
    }
    while let Some(done) = uploads.join_next().await {
        done.map_err(|e| Error::io("push worker", std::io::Error::other(e)))??;
    }
    for m in &plan.manifests {
        push.manifest(m, &m.desc.digest).await?;
    }
    push.manifest(&plan.top, &tag).await?;
    tracing::info!(
        digest = %plan.top.desc.digest,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pushed"
    );
    Ok(Pushed {
        reference: reference.to_string(),
        descriptor: plan.top.desc,
    })
}
