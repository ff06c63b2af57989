//! `berth.images.v1.Images`: image records, inspect, load, save, import, pull, push and
//! login. Handlers unpack the request, run the domain code (on a blocking thread where it
//! does file I/O) and convert the answer.

use std::io::Write;
use std::sync::Arc;

use berth_proto::images::v1 as pb;
use berth_proto::images::v1::images_server::{Images, ImagesServer};
use futures::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use crate::archive::import::ImportOptions;
use crate::error::{Error, Result};
use crate::images::convert;
use crate::images::filter::Filter;
use crate::images::inspect;
use crate::images::progress::{transfer_stream, Progress};
use crate::images::pull::{self, Downloads, PullOptions, Pulled};
use crate::images::push::{self, PushOptions, Pushed};
use crate::images::record::{normalize, ImageRecord};
use crate::images::remote::Registries;
use crate::store::Store;

/// The service.
#[derive(Clone)]
pub struct ImagesService {
    store: Arc<Store>,
    registries: Arc<Registries>,
    downloads: Arc<Downloads>,
}

/// The generated server around the service; pulls and pushes go through `registries`.
pub fn service(store: Arc<Store>, registries: Arc<Registries>) -> ImagesServer<ImagesService> {
    ImagesServer::new(ImagesService {
        store,
        registries,
        downloads: Arc::new(Downloads::new()),
    })
}

/// A request's transfer concurrency: 0 for the configured default, at most 64.
fn concurrency(asked: u32, default: usize) -> Result<usize> {
    match usize::try_from(asked).unwrap_or(usize::MAX) {
        0 => Ok(default),
        n if n <= crate::registry_config::MAX_CONCURRENCY => Ok(n),
        n => Err(Error::InvalidArgument(format!(
            "{n} concurrent transfers asked; at most {} are allowed",
            crate::registry_config::MAX_CONCURRENCY
        ))),
    }
}

fn parse_reference(reference: &str) -> Result<berth_registry_client::Reference> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument("no image reference given".into()));
    }
    Ok(berth_registry_client::Reference::parse(reference)?)
}

fn pull_progress(p: berth_proto::types::v1::TransferProgress) -> pb::PullResponse {
    pb::PullResponse {
        msg: Some(pb::pull_response::Msg::Progress(p)),
    }
}

fn pull_result(p: Pulled) -> pb::PullResponse {
    let manifest = berth_proto::types::v1::Descriptor {
        platform: Some(convert::platform(&p.platform)),
        ..convert::descriptor(&p.image.manifest)
    };
    pb::PullResponse {
        msg: Some(pb::pull_response::Msg::Result(pb::PullResult {
            image: Some(convert::image(&p.record)),
            manifest: Some(manifest),
            config: Some(convert::descriptor(&p.image.config)),
            chain_id: p.image.top_chain_id().to_string(),
            up_to_date: p.up_to_date,
        })),
    }
}

fn push_progress(p: berth_proto::types::v1::TransferProgress) -> pb::PushResponse {
    pb::PushResponse {
        msg: Some(pb::push_response::Msg::Progress(p)),
    }
}

fn push_result(p: Pushed) -> pb::PushResponse {
    pb::PushResponse {
        msg: Some(pb::push_response::Msg::Result(pb::PushResult {
            reference: p.reference,
            pushed: Some(convert::descriptor(&p.descriptor)),
        })),
    }
}

/// Runs blocking domain code off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("worker failed: {e}"))),
    }
}

/// A byte stream from a client-streaming call, as a blocking reader.
fn reader<M: Send + 'static>(
    stream: impl futures::Stream<Item = Result<M, Status>> + Send + Unpin + 'static,
    data: fn(M) -> Option<Vec<u8>>,
) -> SyncIoBridge<impl tokio::io::AsyncRead + Unpin> {
    let bytes = stream.filter_map(move |m| {
        futures::future::ready(match m {
            Ok(m) => data(m).map(|d| Ok(bytes::Bytes::from(d))),
            Err(s) => Some(Err(std::io::Error::other(s.message().to_string()))),
        })
    });
    SyncIoBridge::new(StreamReader::new(Box::pin(bytes)))
}

/// A writer whose bytes become the messages of a server stream, 1 MiB at a time.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Result<pb::SaveResponse, Status>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1 << 20;

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Ok(pb::SaveResponse { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let name = normalize(&req.into_inner().name)?;
        let record = self.store.images.get(&name)?;
        Ok(Response::new(pb::GetResponse {
            image: Some(convert::image(&record)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let filter = Filter::parse(&req.into_inner().filters)?;
        let images = self
            .store
            .images
            .list()?
            .iter()
            .filter(|r| filter.matches(r))
            .map(convert::image)
            .collect();
        Ok(Response::new(pb::ListResponse { images }))
    }

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let image = req
            .into_inner()
            .image
            .ok_or_else(|| Status::invalid_argument("image is required"))?;
        let record = self.record_from(image)?;
        self.require_target(&record)?;
        let record = self.store.images.create(record)?;
        Ok(Response::new(pb::CreateResponse {
            image: Some(convert::image(&record)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let req = req.into_inner();
        let image = req
            .image
            .ok_or_else(|| Status::invalid_argument("image is required"))?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let wanted = self.record_from(image)?;
        self.require_target(&wanted)?;
        let mut record = self.store.images.get(&wanted.name)?;
        let all = paths.is_empty();
        if all || paths.iter().any(|p| p == "target") {
            record = self.store.images.put(&record.name, wanted.target.clone())?;
        }
        let mut labels = record.labels.clone();
        for p in &paths {
            if let Some(key) = p.strip_prefix("labels.") {
                match wanted.labels.get(key) {
                    Some(v) => labels.insert(key.to_string(), v.clone()),
                    None => labels.remove(key),
                };
            } else if p != "target" && p != "labels" {
                return Err(Status::invalid_argument(format!(
                    "cannot update {p:?}: use target, labels or labels.<key>"
                )));
            }
        }
        if all || paths.iter().any(|p| p == "labels") {
            labels = wanted.labels.clone();
        }
        if labels != record.labels {
            record = self.store.images.set_labels(&record.name, labels)?;
        }
        Ok(Response::new(pb::UpdateResponse {
            image: Some(convert::image(&record)),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = req.into_inner();
        let name = normalize(&req.name)?;
        self.store.images.delete(&name)?;
        let store = self.store.clone();
        let gc = blocking(move || crate::gc::collect(&store));
        let reclaimed = if req.sync {
            gc.await?.reclaimed
        } else {
            tokio::spawn(async move {
                if let Err(e) = gc.await {
                    tracing::warn!(error = %e, "garbage collection failed");
                }
            });
            0
        };
        Ok(Response::new(pb::DeleteResponse {
            reclaimed_bytes: reclaimed,
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let req = req.into_inner();
        let platform = convert::from_platform(req.platform)?;
        let store = self.store.clone();
        let resp = blocking(move || inspect::inspect(&store, &req.name, platform.as_ref())).await?;
        Ok(Response::new(resp))
    }

    async fn load(
        &self,
        req: Request<Streaming<pb::LoadRequest>>,
    ) -> Result<Response<pb::LoadResponse>, Status> {
        let input = reader(req.into_inner(), |m: pb::LoadRequest| Some(m.data));
        let store = self.store.clone();
        let records = blocking(move || crate::archive::load::load(&store, input)).await?;
        Ok(Response::new(pb::LoadResponse {
            images: records.iter().map(convert::image).collect(),
        }))
    }

    async fn save(
        &self,
        req: Request<pb::SaveRequest>,
    ) -> Result<Response<BoxStream<pb::SaveResponse>>, Status> {
        let names = req.into_inner().names;
        if names.is_empty() {
            return Err(Status::invalid_argument("name at least one image to save"));
        }
        let store = self.store.clone();
        // Resolve every name first, so a typo fails the call instead of a half archive.
        let images = blocking({
            let store = store.clone();
            move || inspect::targets_for_save(&store, &names)
        })
        .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            let res = crate::archive::save::save(&store, &images, &mut out)
                .and_then(|_| out.flush().map_err(|e| Error::io("send archive", e)));
            if let Err(e) = res {
                let _ = tx.blocking_send(Err(Status::from(e)));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn import(
        &self,
        req: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty import stream"))?;
        let Some(pb::import_request::Msg::Options(o)) = first.msg else {
            return Err(Status::invalid_argument(
                "the first message of Import must carry the options",
            ));
        };
        let opts = ImportOptions {
            name: Some(o.name).filter(|n| !n.is_empty()),
            changes: o.changes,
            message: o.message,
            platform: convert::from_platform(o.platform)?,
        };
        let input = reader(stream, |m: pb::ImportRequest| match m.msg {
            Some(pb::import_request::Msg::Data(d)) => Some(d),
            _ => None,
        });
        let store = self.store.clone();
        let (record, id) =
            blocking(move || crate::archive::import::import(&store, &opts, input)).await?;
        Ok(Response::new(pb::ImportResponse {
            image: Some(convert::image(&record)),
            image_id: id,
        }))
    }

    async fn pull(
        &self,
        req: Request<pb::PullRequest>,
    ) -> Result<Response<BoxStream<pb::PullResponse>>, Status> {
        let req = req.into_inner();
        let reference = parse_reference(&req.reference)?;
        let config = self.registries.config();
        let opts = PullOptions {
            platform: convert::from_platform(req.platform)?,
            all_platforms: req.all_platforms,
            max_concurrent_downloads: concurrency(
                req.max_concurrent_downloads,
                config.max_concurrent_downloads,
            )?,
            labels: req.labels.into_iter().collect(),
        };
        let source = Arc::new(
            self.registries
                .open(&reference, req.registry_auth, req.insecure)?,
        );
        let (progress, updates) = Progress::channel();
        let work = pull::pull(
            self.store.clone(),
            self.downloads.clone(),
            source,
            opts,
            progress,
        );
        Ok(Response::new(transfer_stream(
            work,
            updates,
            pull_progress,
            pull_result,
        )))
    }

    async fn push(
        &self,
        req: Request<pb::PushRequest>,
    ) -> Result<Response<BoxStream<pb::PushResponse>>, Status> {
        let req = req.into_inner();
        let record = self.store.images.get(&normalize(&req.name)?)?;
        let reference = if req.reference.is_empty() {
            record.reference().ok_or_else(|| {
                Status::invalid_argument(format!(
                    "image {} has no name to push to: give a reference",
                    record.name
                ))
            })?
        } else {
            parse_reference(&req.reference)?
        };
        let opts = PushOptions {
            platform: convert::from_platform(req.platform)?,
            max_concurrent_uploads: concurrency(
                req.max_concurrent_uploads,
                self.registries.config().max_concurrent_uploads,
            )?,
        };
        let sink = Arc::new(
            self.registries
                .open(&reference, req.registry_auth, req.insecure)?,
        );
        let (progress, updates) = Progress::channel();
        let store = self.store.clone();
        let work = async move { push::push(store, sink, &record, opts, progress).await };
        Ok(Response::new(transfer_stream(
            work,
            updates,
            push_progress,
            push_result,
        )))
    }

    async fn login(
        &self,
        req: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = req.into_inner();
        let auth = req
            .registry_auth
            .ok_or_else(|| Status::invalid_argument("registry_auth is required"))?;
        self.registries.login(auth, req.insecure).await?;
        Ok(Response::new(pb::LoginResponse {
            identity_token: String::new(),
        }))
    }
}

impl ImagesService {
    /// A record may only point at content the store has.
    fn require_target(&self, r: &ImageRecord) -> Result<(), Status> {
        let digest = crate::digest::Digest::parse(&r.target.digest)?;
        if !self.store.has_blob(&digest) {
            return Err(Status::failed_precondition(format!(
                "{} is not in the content store",
                r.target.digest
            )));
        }
        Ok(())
    }

    fn record_from(&self, image: pb::Image) -> Result<ImageRecord, Status> {
        let name = normalize(&image.name)?;
        let target = convert::from_descriptor(
            image
                .target
                .ok_or_else(|| Status::invalid_argument("image.target is required"))?,
        )?;
        let mut record = ImageRecord::new(name, target);
        record.labels = image.labels.into_iter().collect();
        Ok(record)
    }
}
