//! A [`Snapshotter`] reached over gRPC: for processes that use the snapshotter service
//! without owning it (the engine, the builder).

use berth_proto::snapshots::v1 as pb;
use berth_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use tonic::transport::Channel;

use super::convert::{
    error_from_status, info_from_proto, info_to_proto, mounts_from_proto, usage_from_proto,
};
use super::{Cleaned, Filters, Info, Labels, Mount, Snapshotter, Usage};
use crate::error::{Error, Result};

/// A client of `berth.snapshots.v1.Snapshots`. Errors come back as the same
/// [`Error`] classes a local snapshotter returns (NotFound, AlreadyExists, …); other
/// statuses (Unavailable, …) as [`Error::Remote`].
#[derive(Debug, Clone)]
pub struct RemoteSnapshotter {
    client: SnapshotsClient<Channel>,
}

impl RemoteSnapshotter {
    /// A snapshotter over `channel` (e.g. from `berth_rpc::connect::connect`).
    pub fn new(channel: Channel) -> Self {
        RemoteSnapshotter {
            client: SnapshotsClient::new(channel),
        }
    }

    /// The generated client, for the RPCs outside the trait (Diff, Apply).
    pub fn client(&self) -> SnapshotsClient<Channel> {
        self.client.clone()
    }
}

fn missing(what: &str) -> Error {
    Error::Remote(tonic::Status::internal(format!(
        "the snapshotter's answer lacks {what}"
    )))
}

impl Snapshotter for RemoteSnapshotter {
    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let req = pb::PrepareRequest {
            key: key.to_string(),
            parent: parent.to_string(),
            labels,
        };
        let resp = self
            .client()
            .prepare(req)
            .await
            .map_err(error_from_status)?;
        Ok(mounts_from_proto(resp.into_inner().mounts))
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let req = pb::ViewRequest {
            key: key.to_string(),
            parent: parent.to_string(),
            labels,
        };
        let resp = self.client().view(req).await.map_err(error_from_status)?;
        Ok(mounts_from_proto(resp.into_inner().mounts))
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let req = pb::MountsRequest {
            key: key.to_string(),
        };
        let resp = self.client().mounts(req).await.map_err(error_from_status)?;
        Ok(mounts_from_proto(resp.into_inner().mounts))
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let req = pb::CommitRequest {
            name: name.to_string(),
            key: key.to_string(),
            labels,
        };
        self.client().commit(req).await.map_err(error_from_status)?;
        Ok(())
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let req = pb::RemoveRequest {
            key: key.to_string(),
        };
        self.client().remove(req).await.map_err(error_from_status)?;
        Ok(())
    }

    async fn stat(&self, key: &str) -> Result<Info> {
        let req = pb::StatRequest {
            key: key.to_string(),
        };
        let resp = self.client().stat(req).await.map_err(error_from_status)?;
        info_from_proto(resp.into_inner().info.ok_or_else(|| missing("info"))?)
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let req = pb::UpdateRequest {
            info: Some(info_to_proto(info)),
            update_mask: Some(prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let resp = self.client().update(req).await.map_err(error_from_status)?;
        info_from_proto(resp.into_inner().info.ok_or_else(|| missing("info"))?)
    }

    async fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        let req = pb::ListRequest {
            filters: filters.as_strings().to_vec(),
        };
        let mut stream = self
            .client()
            .list(req)
            .await
            .map_err(error_from_status)?
            .into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(error_from_status)? {
            for info in batch.info {
                out.push(info_from_proto(info)?);
            }
        }
        Ok(out)
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let req = pb::UsageRequest {
            key: key.to_string(),
        };
        let resp = self.client().usage(req).await.map_err(error_from_status)?;
        Ok(usage_from_proto(resp.into_inner()))
    }

    async fn cleanup(&self) -> Result<Cleaned> {
        let resp = self
            .client()
            .cleanup(pb::CleanupRequest {})
            .await
            .map_err(error_from_status)?
            .into_inner();
        Ok(Cleaned {
            removed: resp.removed,
            reclaimed_bytes: resp.reclaimed_bytes,
        })
    }
}
