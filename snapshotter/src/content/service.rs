//! [`ContentService`]: `berth.content.v1.Content` over any [`ContentStore`]. Handlers
//! unpack, validate, call the store and convert; the store never sees a `tonic::Request`.

use std::sync::Arc;

use berth_proto::content::v1 as pb;
use berth_proto::content::v1::content_server::{Content, ContentServer};
use berth_proto::content::v1::WriteAction;
use futures::{StreamExt, TryStreamExt};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::{self, digest, optional_digest, optional_size, signed, timestamp, unsigned};
use super::{ContentStore, ContentWriter, Filters, IngestStatus, LocalStore};
use crate::error::{Error, Result};

/// Infos per `ListResponse`: small messages, few of them.
const LIST_BATCH: usize = 128;

/// The content service over the local store, ready to add to a tonic server.
pub fn service(store: Arc<LocalStore>) -> ContentServer<ContentService<LocalStore>> {
    ContentServer::new(ContentService::new(store))
}

/// The gRPC adapter of a [`ContentStore`].
#[derive(Debug)]
pub struct ContentService<S> {
    store: Arc<S>,
}

impl<S> ContentService<S> {
    /// Serves `store`.
    pub fn new(store: Arc<S>) -> Self {
        ContentService { store }
    }
}

#[tonic::async_trait]
impl<S: ContentStore + 'static> Content for ContentService<S> {
    #[tracing::instrument(level = "debug", skip_all, fields(digest = %req.get_ref().digest))]
    async fn info(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let info = self.store.info(&digest(&req.get_ref().digest)?).await?;
        Ok(Response::new(pb::InfoResponse {
            info: Some(info.into()),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(digest = tracing::field::Empty))]
    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let req = req.into_inner();
        let info = req
            .info
            .ok_or_else(|| Error::InvalidArgument("update: info is required".into()))?;
        let d = digest(&info.digest)?;
        tracing::Span::current().record("digest", tracing::field::display(&d));
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let labels = info.labels.into_iter().collect();
        let info = self.store.update(&d, labels, &paths).await?;
        Ok(Response::new(pb::UpdateResponse {
            info: Some(info.into()),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<BoxStream<pb::ListResponse>>, Status> {
        let filters = Filters::parse(&req.get_ref().filters)?;
        let infos = self.store.list(&filters).await?;
        let batches: Vec<_> = infos
            .chunks(LIST_BATCH)
            .map(|c| {
                Ok(pb::ListResponse {
                    info: c.iter().cloned().map(Into::into).collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(digest = %req.get_ref().digest))]
    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.store.delete(&digest(&req.get_ref().digest)?).await?;
        Ok(Response::new(pb::DeleteResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(digest = %req.get_ref().digest))]
    async fn read(
        &self,
        req: Request<pb::ReadRequest>,
    ) -> Result<Response<BoxStream<pb::ReadResponse>>, Status> {
        let req = req.into_inner();
        let d = digest(&req.digest)?;
        let offset = unsigned(req.offset, "offset")?;
        let len = optional_size(req.size, "size")?;
        let chunks = self.store.read(&d, offset, len).await?;
        let responses = chunks.map_err(Status::from).scan(offset, |pos, chunk| {
            let resp = chunk.map(|data| {
                let offset = signed(*pos);
                *pos += data.len() as u64;
                pb::ReadResponse {
                    offset,
                    data: data.into(),
                }
            });
            futures::future::ready(Some(resp))
        });
        Ok(Response::new(Box::pin(responses)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(reference = %req.get_ref().r#ref))]
    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.store.status(&req.get_ref().r#ref).await?;
        Ok(Response::new(pb::StatusResponse {
            status: Some(status.into()),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_statuses(
        &self,
        req: Request<pb::ListStatusesRequest>,
    ) -> Result<Response<pb::ListStatusesResponse>, Status> {
        let statuses = self.store.list_statuses(&req.get_ref().prefix).await?;
        Ok(Response::new(pb::ListStatusesResponse {
            statuses: statuses.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn write(
        &self,
        req: Request<Streaming<pb::WriteRequest>>,
    ) -> Result<Response<BoxStream<pb::WriteResponse>>, Status> {
        let session = WriteSession::<S> {
            store: Arc::clone(&self.store),
            reference: None,
            writer: None,
        };
        Ok(Response::new(Box::pin(session.run(req.into_inner()))))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(reference = %req.get_ref().r#ref))]
    async fn abort(
        &self,
        req: Request<pb::AbortRequest>,
    ) -> Result<Response<pb::AbortResponse>, Status> {
        self.store.abort(&req.get_ref().r#ref).await?;
        Ok(Response::new(pb::AbortResponse {}))
    }
}

/// One Write call: the ingest it holds (from its first message until it ends) and the
/// protocol of `content.proto` — STAT and COMMIT answered, WRITE not, an error ends it.
struct WriteSession<S: ContentStore> {
    store: Arc<S>,
    reference: Option<String>,
    writer: Option<S::Writer>,
}

impl<S: ContentStore + 'static> WriteSession<S> {
    /// The response stream. The session lives in the stream's state, so the ingest's lock
    /// is released as soon as the call ends: input closed, error, commit, or the client gone.
    fn run(
        self,
        inbound: Streaming<pb::WriteRequest>,
    ) -> impl futures::Stream<Item = Result<pb::WriteResponse, Status>> + Send + 'static {
        futures::stream::unfold(Some((self, inbound)), |state| async move {
            let (mut session, mut inbound) = state?;
            loop {
                let req = match inbound.next().await {
                    Some(Ok(req)) => req,
                    // Input closed or broken: end the call and release the ingest.
                    None | Some(Err(_)) => return None,
                };
                match session.handle(req).await {
                    Ok(None) => continue,
                    Ok(Some(resp)) => {
                        // After a commit the writer is gone: nothing more to serve.
                        let next = session.writer.is_some().then_some((session, inbound));
                        return Some((Ok(resp), next));
                    }
                    Err(e) => {
                        tracing::debug!(reference = ?session.reference, error = %e, "write failed");
                        return Some((Err(convert::write_status(e)), None));
                    }
                }
            }
        })
    }

    async fn handle(&mut self, req: pb::WriteRequest) -> Result<Option<pb::WriteResponse>> {
        let action = match WriteAction::try_from(req.action) {
            Ok(a) if a != WriteAction::Unspecified => a,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "write: invalid action {}",
                    req.action
                )))
            }
        };
        let total = optional_size(req.total, "total")?;
        let expected = optional_digest(&req.expected)?;
        let offset = unsigned(req.offset, "offset")?;
        let writer = self.writer_for(&req.r#ref).await?;
        if total.is_some() || expected.is_some() {
            writer.set_expected(total, expected).await?;
        }
        match action {
            WriteAction::Stat => {
                if !req.data.is_empty() {
                    return Err(Error::InvalidArgument(
                        "write: a STAT message carries no data".into(),
                    ));
                }
                Ok(Some(response(
                    WriteAction::Stat,
                    writer.status().await?,
                    String::new(),
                )))
            }
            WriteAction::Write => {
                writer.write_at(offset, req.data.into()).await?;
                Ok(None)
            }
            _ => {
                if !req.data.is_empty() {
                    writer.write_at(offset, req.data.into()).await?;
                }
                let status = writer.status().await?;
                let Some(writer) = self.writer.take() else {
                    return Err(Error::FailedPrecondition("write: no open ingest".into()));
                };
                let labels = req.labels.into_iter().collect();
                let d = writer.commit(None, None, labels).await?;
                let size = status.offset;
                Ok(Some(response(
                    WriteAction::Commit,
                    IngestStatus {
                        total: Some(size),
                        ..status
                    },
                    d.to_string(),
                )))
            }
        }
    }

    /// The writer of this call, opened by the first message (which must name the ref).
    async fn writer_for(&mut self, reference: &str) -> Result<&mut S::Writer> {
        match &self.reference {
            None if reference.is_empty() => {
                return Err(Error::InvalidArgument(
                    "write: the first message must name a ref".into(),
                ))
            }
            None => {
                self.writer = Some(self.store.writer(reference, None, None).await?);
                self.reference = Some(reference.to_string());
            }
            Some(held) if !reference.is_empty() && held != reference => {
                return Err(Error::InvalidArgument(format!(
                    "write: message names ref {reference} but the call holds {held}"
                )))
            }
            Some(_) => {}
        }
        self.writer
            .as_mut()
            .ok_or_else(|| Error::FailedPrecondition("write: the ingest was committed".into()))
    }
}

fn response(action: WriteAction, s: IngestStatus, digest: String) -> pb::WriteResponse {
    pb::WriteResponse {
        action: action.into(),
        offset: signed(s.offset),
        total: s.total.map_or(0, signed),
        digest,
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
    }
}
