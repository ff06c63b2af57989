//! [`RemoteContentStore`]: the [`ContentStore`] interface over a `berth.content.v1` channel.

use berth_proto::content::v1 as pb;
use berth_proto::content::v1::content_client::ContentClient;
use berth_proto::content::v1::WriteAction;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::convert::{error, optional_size, signed, system_time};
use super::{ByteStream, ContentStore, ContentWriter, Filters, Info, IngestStatus, Labels};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// Largest `data` per WriteRequest: well under tonic's 4 MiB default message limit.
const WRITE_CHUNK: usize = 1 << 20;

/// A server answer that lacks a required part: the server is broken, not the caller.
fn missing(what: &str) -> Error {
    Error::Remote(Status::internal(format!(
        "content service answered without {what}"
    )))
}

/// The content store of a remote `berth.content.v1` service.
#[derive(Debug, Clone)]
pub struct RemoteContentStore {
    client: ContentClient<Channel>,
}

impl RemoteContentStore {
    /// A store over `channel` (e.g. from `berth_rpc::connect::connect`).
    pub fn new(channel: Channel) -> Self {
        RemoteContentStore {
            client: ContentClient::new(channel),
        }
    }

    fn client(&self) -> ContentClient<Channel> {
        self.client.clone()
    }
}

impl ContentStore for RemoteContentStore {
    type Writer = RemoteWriter;

    async fn info(&self, digest: &Digest) -> Result<Info> {
        let req = pb::InfoRequest {
            digest: digest.to_string(),
        };
        let resp = self.client().info(req).await.map_err(error)?.into_inner();
        resp.info.ok_or_else(|| missing("info"))?.try_into()
    }

    async fn update(&self, digest: &Digest, labels: Labels, fieldpaths: &[String]) -> Result<Info> {
        let req = pb::UpdateRequest {
            info: Some(pb::ContentInfo {
                digest: digest.to_string(),
                labels: labels.into_iter().collect(),
                ..Default::default()
            }),
            update_mask: (!fieldpaths.is_empty()).then(|| prost_types::FieldMask {
                paths: fieldpaths.to_vec(),
            }),
        };
        let resp = self.client().update(req).await.map_err(error)?.into_inner();
        resp.info.ok_or_else(|| missing("info"))?.try_into()
    }

    async fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        let req = pb::ListRequest {
            filters: filters.to_strings(),
        };
        let mut stream = self.client().list(req).await.map_err(error)?.into_inner();
        let mut out = Vec::new();
        while let Some(batch) = stream.message().await.map_err(error)? {
            for info in batch.info {
                out.push(info.try_into()?);
            }
        }
        Ok(out)
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let req = pb::DeleteRequest {
            digest: digest.to_string(),
        };
        self.client().delete(req).await.map_err(error)?;
        Ok(())
    }

    async fn read(&self, digest: &Digest, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        if len == Some(0) {
            // On the wire size 0 means "to the end"; check the blob and range, read nothing.
            let info = self.info(digest).await?;
            if offset > info.size {
                return Err(Error::OutOfRange(format!(
                    "offset {offset} is past the end of blob {digest} ({} bytes)",
                    info.size
                )));
            }
            return Ok(Box::pin(futures::stream::empty()));
        }
        let req = pb::ReadRequest {
            digest: digest.to_string(),
            offset: signed(offset),
            size: len.map_or(0, signed),
        };
        let stream = self.client().read(req).await.map_err(error)?.into_inner();
        Ok(Box::pin(stream.map(|r| {
            r.map(|chunk| Bytes::from(chunk.data)).map_err(error)
        })))
    }

    async fn status(&self, reference: &str) -> Result<IngestStatus> {
        let req = pb::StatusRequest {
            r#ref: reference.to_string(),
        };
        let resp = self.client().status(req).await.map_err(error)?.into_inner();
        resp.status.ok_or_else(|| missing("status"))?.try_into()
    }

    async fn list_statuses(&self, prefix: &str) -> Result<Vec<IngestStatus>> {
        let req = pb::ListStatusesRequest {
            prefix: prefix.to_string(),
        };
        let resp = self.client().list_statuses(req).await.map_err(error)?;
        resp.into_inner()
            .statuses
            .into_iter()
            .map(TryInto::try_into)
            .collect()
    }

    async fn abort(&self, reference: &str) -> Result<()> {
        let req = pb::AbortRequest {
            r#ref: reference.to_string(),
        };
        self.client().abort(req).await.map_err(error)?;
        Ok(())
    }

    async fn writer(
        &self,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<RemoteWriter> {
        RemoteWriter::open(self.client(), reference, total, expected).await
    }
}

/// A Write call held open: the server holds the ingest's lock until the call ends.
#[derive(Debug)]
pub struct RemoteWriter {
    client: ContentClient<Channel>,
    reference: String,
    /// Our half of the call; taken by `close` and `Drop`.
    requests: Option<mpsc::Sender<pb::WriteRequest>>,
    /// The server's half; taken by `close` and `Drop`.
    responses: Option<Streaming<pb::WriteResponse>>,
    /// Expectations not yet sent: they ride on the next message.
    pending_total: Option<u64>,
    pending_expected: Option<Digest>,
    /// The latest expected digest this writer knows of, for [`ContentWriter::status`].
    expected: Option<Digest>,
}

impl RemoteWriter {
    async fn open(
        mut client: ContentClient<Channel>,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(8);
        let first = pb::WriteRequest {
            action: WriteAction::Stat.into(),
            r#ref: reference.to_string(),
            total: total.map_or(0, signed),
            expected: expected.as_ref().map(Digest::to_string).unwrap_or_default(),
            ..Default::default()
        };
        // The first message takes the lock; its answer says whether we got it.
        tx.send(first).await.map_err(|_| missing("a write call"))?;
        let responses = client
            .write(ReceiverStream::new(rx))
            .await
            .map_err(error)?
            .into_inner();
        let mut writer = RemoteWriter {
            client,
            reference: reference.to_string(),
            requests: Some(tx),
            responses: Some(responses),
            pending_total: None,
            pending_expected: None,
            expected,
        };
        writer.answer(WriteAction::Stat).await?;
        Ok(writer)
    }

    /// Sends one message; when the call has ended, its error.
    async fn send(&mut self, mut req: pb::WriteRequest) -> Result<()> {
        if let Some(t) = self.pending_total.take() {
            req.total = signed(t);
        }
        if let Some(d) = self.pending_expected.take() {
            req.expected = d.to_string();
        }
        let (Some(requests), Some(responses)) = (&self.requests, &mut self.responses) else {
            return Err(missing("an open write call"));
        };
        if requests.send(req).await.is_err() {
            // The server ended the call: its status says why.
            return Err(match responses.message().await {
                Err(status) => error(status),
                Ok(_) => missing("an answer before ending the write call"),
            });
        }
        Ok(())
    }

    fn responses(&mut self) -> Result<&mut Streaming<pb::WriteResponse>> {
        self.responses
            .as_mut()
            .ok_or_else(|| missing("an open write call"))
    }

    /// Waits for the answer to a STAT or COMMIT.
    async fn answer(&mut self, action: WriteAction) -> Result<pb::WriteResponse> {
        match self.responses()?.message().await {
            Ok(Some(resp)) if resp.action == i32::from(action) => Ok(resp),
            Ok(Some(_)) => Err(missing(&format!("an answer to {}", action.as_str_name()))),
            Ok(None) => Err(missing("an answer before ending the write call")),
            Err(status) => Err(error(status)),
        }
    }

    /// An error the server already sent (it does not answer WRITE messages, but ends the
    /// call when one fails), without waiting for one.
    fn early_error(&mut self) -> Result<()> {
        match self.responses()?.message().now_or_never() {
            None => Ok(()),
            Some(Err(status)) => Err(error(status)),
            Some(Ok(_)) => Err(missing("silence after a WRITE")),
        }
    }
}

impl ContentWriter for RemoteWriter {
    async fn status(&mut self) -> Result<IngestStatus> {
        let req = pb::WriteRequest {
            action: WriteAction::Stat.into(),
            ..Default::default()
        };
        self.send(req).await?;
        let resp = self.answer(WriteAction::Stat).await?;
        // A STAT answer has no expected digest; the Status call has, when another writer
        // set it earlier.
        if self.expected.is_none() {
            self.expected = ContentStore::status(
                &RemoteContentStore {
                    client: self.client.clone(),
                },
                &self.reference,
            )
            .await?
            .expected;
        }
        Ok(IngestStatus {
            reference: self.reference.clone(),
            offset: super::convert::unsigned(resp.offset, "offset")?,
            total: optional_size(resp.total, "total")?,
            expected: self.expected.clone(),
            started_at: system_time(resp.started_at),
            updated_at: system_time(resp.updated_at),
        })
    }

    async fn set_expected(&mut self, total: Option<u64>, expected: Option<Digest>) -> Result<()> {
        if total.is_some() {
            self.pending_total = total;
        }
        if expected.is_some() {
            self.pending_expected.clone_from(&expected);
            self.expected = expected;
        }
        Ok(())
    }

    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<()> {
        self.early_error()?;
        let mut pos = 0;
        // One message even for no data: a write at offset 0 starts the ingest over.
        loop {
            let end = data.len().min(pos + WRITE_CHUNK);
            let req = pb::WriteRequest {
                action: WriteAction::Write.into(),
                offset: signed(offset + pos as u64),
                data: data[pos..end].to_vec(),
                ..Default::default()
            };
            self.send(req).await?;
            pos = end;
            if pos >= data.len() {
                return self.early_error();
            }
        }
    }

    async fn commit(
        mut self,
        size: Option<u64>,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<Digest> {
        self.set_expected(size, expected).await?;
        let req = pb::WriteRequest {
            action: WriteAction::Commit.into(),
            labels: labels.into_iter().collect(),
            ..Default::default()
        };
        self.send(req).await?;
        let resp = self.answer(WriteAction::Commit).await?;
        Digest::parse(&resp.digest)
    }

    async fn close(mut self) -> Result<()> {
        // Ending our input ends the call once the server has handled every message sent;
        // it releases the ingest before it ends the response stream, so once that ends the
        // ref is free.
        self.requests.take();
        let Some(mut responses) = self.responses.take() else {
            return Err(missing("an open write call"));
        };
        while responses.message().await.map_err(error)?.is_some() {}
        Ok(())
    }
}

impl Drop for RemoteWriter {
    /// Ends the call gracefully in the background: the server still writes every message
    /// already sent (so a later writer resumes after them) and then releases the ingest.
    /// Dropping the response stream instead would cancel the call and lose writes in flight.
    fn drop(&mut self) {
        self.requests.take();
        let Some(mut responses) = self.responses.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { while let Ok(Some(_)) = responses.message().await {} });
        }
    }
}
