//! The gRPC adapter: serves any [`Snapshotter`] as `berth.snapshots.v1.Snapshots`. Each
//! handler unpacks the request, calls the trait and converts the answer; errors become
//! status codes through `From<Error> for Status`. Diff and Apply go to a
//! [`LayerTransfer`], since they need the content store too.

use std::sync::Arc;

use berth_proto::snapshots::v1 as pb;
use berth_proto::snapshots::v1::snapshots_server::{Snapshots, SnapshotsServer};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::convert::{info_to_proto, mounts_to_proto, update_info_from_proto, usage_to_proto};
use super::layers::LayerTransfer;
use super::{Filters, OverlaySnapshotter, Snapshotter};

/// Infos per `ListResponse` message: small enough for any message size limit, large
/// enough that a few thousand snapshots are a few messages.
const LIST_BATCH: usize = 100;

/// `berth.snapshots.v1.Snapshots` in front of a [`Snapshotter`].
pub struct SnapshotsService<S> {
    sn: Arc<S>,
    /// Diff and Apply, when the service has a content store behind it.
    layers: Option<Arc<dyn LayerTransfer>>,
}

impl<S> Clone for SnapshotsService<S> {
    fn clone(&self) -> Self {
        SnapshotsService {
            sn: self.sn.clone(),
            layers: self.layers.clone(),
        }
    }
}

impl<S: Snapshotter> SnapshotsService<S> {
    /// Serves `sn`; Diff and Apply answer UNIMPLEMENTED until [`Self::with_layers`].
    pub fn new(sn: Arc<S>) -> Self {
        SnapshotsService { sn, layers: None }
    }

    /// Serves Diff and Apply through `layers`.
    pub fn with_layers(mut self, layers: Arc<dyn LayerTransfer>) -> Self {
        self.layers = Some(layers);
        self
    }

    /// The snapshotter behind the service.
    pub fn snapshotter(&self) -> &Arc<S> {
        &self.sn
    }
}

/// The tonic service for the local overlay snapshotter, without Diff and Apply.
pub fn service(
    sn: Arc<OverlaySnapshotter>,
) -> SnapshotsServer<SnapshotsService<OverlaySnapshotter>> {
    SnapshotsServer::new(SnapshotsService::new(sn))
}

/// The tonic service for the snapshotter's store, Diff and Apply included.
pub fn store_service(
    store: Arc<crate::store::Store>,
) -> SnapshotsServer<SnapshotsService<OverlaySnapshotter>> {
    let layers = Arc::new(super::layers::StoreLayers(store.clone()));
    SnapshotsServer::new(SnapshotsService::new(store.snapshots.clone()).with_layers(layers))
}

#[tonic::async_trait]
impl<S: Snapshotter> Snapshots for SnapshotsService<S> {
    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key))]
    async fn prepare(
        &self,
        req: Request<pb::PrepareRequest>,
    ) -> Result<Response<pb::PrepareResponse>, Status> {
        let r = req.into_inner();
        let mounts = self.sn.prepare(&r.key, &r.parent, r.labels).await?;
        Ok(Response::new(pb::PrepareResponse {
            mounts: mounts_to_proto(mounts),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key))]
    async fn view(
        &self,
        req: Request<pb::ViewRequest>,
    ) -> Result<Response<pb::ViewResponse>, Status> {
        let r = req.into_inner();
        let mounts = self.sn.view(&r.key, &r.parent, r.labels).await?;
        Ok(Response::new(pb::ViewResponse {
            mounts: mounts_to_proto(mounts),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key))]
    async fn mounts(
        &self,
        req: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let mounts = self.sn.mounts(&req.get_ref().key).await?;
        Ok(Response::new(pb::MountsResponse {
            mounts: mounts_to_proto(mounts),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key, name = %req.get_ref().name))]
    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let r = req.into_inner();
        self.sn.commit(&r.name, &r.key, r.labels).await?;
        Ok(Response::new(pb::CommitResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key))]
    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        self.sn.remove(&req.get_ref().key).await?;
        Ok(Response::new(pb::RemoveResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key))]
    async fn stat(
        &self,
        req: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let info = self.sn.stat(&req.get_ref().key).await?;
        Ok(Response::new(pb::StatResponse {
            info: Some(info_to_proto(info)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = tracing::field::Empty))]
    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let r = req.into_inner();
        let info = r.info.ok_or_else(|| {
            Status::invalid_argument("update needs info (the snapshot's name and labels)")
        })?;
        tracing::Span::current().record("key", info.name.as_str());
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self.sn.update(update_info_from_proto(info), &paths).await?;
        Ok(Response::new(pb::UpdateResponse {
            info: Some(info_to_proto(info)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<BoxStream<pb::ListResponse>>, Status> {
        let filters = Filters::parse(&req.get_ref().filters)?;
        let infos = self.sn.list(&filters).await?;
        let mut batches = Vec::with_capacity(infos.len().div_ceil(LIST_BATCH));
        let mut infos = infos.into_iter().map(info_to_proto).peekable();
        while infos.peek().is_some() {
            batches.push(Ok(pb::ListResponse {
                info: infos.by_ref().take(LIST_BATCH).collect(),
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.get_ref().key))]
    async fn usage(
        &self,
        req: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let usage = self.sn.usage(&req.get_ref().key).await?;
        Ok(Response::new(usage_to_proto(usage)))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn cleanup(
        &self,
        _req: Request<pb::CleanupRequest>,
    ) -> Result<Response<pb::CleanupResponse>, Status> {
        let cleaned = self.sn.cleanup().await?;
        Ok(Response::new(pb::CleanupResponse {
            removed: cleaned.removed,
            reclaimed_bytes: cleaned.reclaimed_bytes,
        }))
    }

    async fn diff(
        &self,
        req: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        let layers = self.layers.as_ref().ok_or_else(|| {
            Status::unimplemented("berth.snapshots.v1.Snapshots/Diff needs a content store")
        })?;
        Ok(Response::new(layers.diff(req.into_inner()).await?))
    }

    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let layers = self.layers.as_ref().ok_or_else(|| {
            Status::unimplemented("berth.snapshots.v1.Snapshots/Apply needs a content store")
        })?;
        Ok(Response::new(layers.apply(req.into_inner()).await?))
    }
}
