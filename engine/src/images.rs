//! `berth.engine.v1.Images`: the public image API. The snapshotter's `berth.images.v1.Images`
//! owns the records and the data; the engine adds Docker's view of them — one image per
//! configuration digest with its short names, the rules of `rmi` and `prune`, and events.
//!
//! Errors of the snapshotter reach the client with their code and message unchanged
//! ([`Error::downstream`]), except that an image the snapshotter cannot find is reported in
//! Docker's words, "No such image: busybox:latest".

pub mod config;
pub mod filter;
mod registry;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;

use berth_proto::engine::v1::images_server::{Images, ImagesServer};
use berth_proto::engine::v1::{
    images_import_request, DiskUsageEntry, DiskUsageResponse, ImageRemoveResult, ImageSummary,
    ImagesHistoryRequest, ImagesHistoryResponse, ImagesImportRequest, ImagesImportResponse,
    ImagesInspectRequest, ImagesInspectResponse, ImagesListRequest, ImagesListResponse,
    ImagesLoadRequest, ImagesLoadResponse, ImagesLoginRequest, ImagesLoginResponse,
    ImagesPruneRequest, ImagesPruneResponse, ImagesPullRequest, ImagesPullResponse,
    ImagesPushRequest, ImagesPushResponse, ImagesRemoveRequest, ImagesRemoveResponse,
    ImagesSaveRequest, ImagesSaveResponse, ImagesTagRequest, ImagesTagResponse, LoadedImage,
};
use berth_proto::images::v1 as snap;
use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::types::v1::Platform;
use berth_registry_client::Reference;
use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::context::Context;
use crate::error::{Error, Result};
use config::{Config, Names};
use filter::Filters;

/// Largest message either side of the image API accepts (configurations can be several MiB).
pub const MAX_MESSAGE: usize = 64 << 20;
const SERVICE: &str = "snapshotter";
/// Snapshotter `Inspect` calls in flight while listing.
const INSPECT_CONCURRENCY: usize = 16;
/// Filter keys of `List`.
const LIST_FILTERS: [&str; 5] = ["dangling", "reference", "label", "before", "since"];
/// Filter keys of `Prune`.
const PRUNE_FILTERS: [&str; 3] = ["until", "label", "label!"];

/// The Images service.
#[derive(Clone)]
pub struct ImagesService {
    ctx: Arc<Context>,
}

impl ImagesService {
    /// The generated server around it.
    pub fn server(ctx: Arc<Context>) -> ImagesServer<Self> {
        ImagesServer::new(ImagesService { ctx })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

/// A client of the snapshotter's image service.
fn client(ctx: &Context) -> ImagesClient<Channel> {
    ImagesClient::new(ctx.snapshotter.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

/// A snapshotter error, code kept.
fn down(status: Status) -> Error {
    Error::downstream(SERVICE, status)
}

/// A snapshotter error as a status for the client, code and message kept.
fn down_status(status: Status) -> Status {
    down(status).into()
}

/// How a reference the user gave is shown back: short for names ("busybox:latest"), as given
/// for ids.
fn shown(reference: &str) -> String {
    if reference.starts_with("sha256:") {
        return reference.to_string();
    }
    Reference::parse(reference)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| reference.to_string())
}

/// Docker's error for an image that does not exist.
fn no_such_image(reference: &str) -> Error {
    Error::NotFound(format!("No such image: {}", shown(reference)))
}

/// The full normalised name of `reference` when it is a name (not an id).
fn normalised(reference: &str) -> Option<String> {
    if reference.starts_with("sha256:") {
        return None;
    }
    Reference::parse(reference).ok().map(|r| r.to_string())
}

/// Parses the new name of a `tag` or `import`: a reference with a tag, not a digest.
fn new_name(target: &str) -> Result<Reference> {
    let r = Reference::parse(target).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if r.digest().is_some() {
        return Err(Error::InvalidArgument(format!(
            "refusing to create a tag with a digest reference: {target}"
        )));
    }
    if r.familiar_repository() == "sha256" {
        return Err(Error::InvalidArgument(format!(
            "refusing to create an ambiguous tag using digest algorithm as name: {target}"
        )));
    }
    Ok(r)
}

/// Twelve hex characters of an image id, as Docker shows it.
fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Short names of a set of records: tagged names go to `tags` (and `repository@target` to
/// `digests`); digest names to `digests`; dangling records to neither.
fn names_of<'a>(records: impl IntoIterator<Item = (&'a str, &'a str)>) -> Names {
    let mut tags = BTreeSet::new();
    let mut digests = BTreeSet::new();
    for (name, target) in records {
        let Ok(r) = Reference::parse(name) else {
            continue;
        };
        let repo = r.familiar_repository();
        match r.digest() {
            Some(d) => digests.insert(format!("{repo}@{d}")),
            None => {
                tags.insert(r.familiar());
                digests.insert(format!("{repo}@{target}"))
            }
        };
    }
    Names {
        tags: tags.into_iter().collect(),
        digests: digests.into_iter().collect(),
    }
}

/// Every record name of an inspected image: its own and the others with the same target.
fn record_names(info: &snap::InspectResponse) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in info.image.iter().map(|i| &i.name).chain(&info.names) {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

fn target_digest(image: Option<&snap::Image>) -> &str {
    image
        .and_then(|i| i.target.as_ref())
        .map(|t| t.digest.as_str())
        .unwrap_or_default()
}

/// Names of an inspected image.
fn names_of_info(info: &snap::InspectResponse) -> Names {
    let target = target_digest(info.image.as_ref());
    let names = record_names(info);
    names_of(names.iter().map(|n| (n.as_str(), target)))
}

/// One image: every record whose target resolves to the same configuration.
struct Entry {
    /// The configuration digest.
    id: String,
    /// The records.
    records: Vec<snap::Image>,
    /// The snapshotter's description (of one of the records).
    info: snap::InspectResponse,
    /// The parsed configuration.
    config: Config,
}

impl Entry {
    fn names(&self) -> Names {
        names_of(
            self.records
                .iter()
                .map(|r| (r.name.as_str(), target_digest(Some(r)))),
        )
    }
}

/// Every image, grouped by id. Records that no longer resolve (deleted meanwhile, or without a
/// manifest for this platform) are left out.
async fn catalog(ctx: &Context) -> Result<Vec<Entry>> {
    let mut c = client(ctx);
    let records = c
        .list(snap::ListRequest::default())
        .await
        .map_err(down)?
        .into_inner()
        .images;
    let mut by_target: BTreeMap<String, Vec<snap::Image>> = BTreeMap::new();
    for r in records {
        by_target
            .entry(target_digest(Some(&r)).to_string())
            .or_default()
            .push(r);
    }
    let inspected: Vec<_> = futures::stream::iter(by_target.into_values())
        .map(|records| {
            let mut c = c.clone();
            async move {
                let name = records[0].name.clone();
                let info = c
                    .inspect(snap::InspectRequest {
                        name,
                        platform: None,
                    })
                    .await;
                (records, info)
            }
        })
        .buffer_unordered(INSPECT_CONCURRENCY)
        .collect()
        .await;
    let mut by_id: BTreeMap<String, Entry> = BTreeMap::new();
    for (records, info) in inspected {
        let info = match info {
            Ok(i) => i.into_inner(),
            Err(s) if s.code() == Code::NotFound => {
                tracing::debug!(image = %records[0].name, error = %s.message(), "image left out of the list");
                continue;
            }
            Err(s) => return Err(down(s)),
        };
        let id = config::image_id(&info);
        match by_id.get_mut(&id) {
            Some(e) => e.records.extend(records),
            None => {
                let config = Config::parse(&info.config_json, &id);
                by_id.insert(
                    id.clone(),
                    Entry {
                        id,
                        records,
                        info,
                        config,
                    },
                );
            }
        }
    }
    Ok(by_id.into_values().collect())
}

/// Deletes the record `name`, waiting for garbage collection; returns the bytes it freed.
/// A record already gone counts as deleted.
async fn delete_record(ctx: &Context, name: &str) -> Result<u64> {
    match client(ctx)
        .delete(snap::DeleteRequest {
            name: name.to_string(),
            sync: true,
        })
        .await
    {
        Ok(r) => Ok(r.into_inner().reclaimed_bytes),
        Err(s) if s.code() == Code::NotFound => Ok(0),
        Err(s) => Err(down(s)),
    }
}

/// Feeds a client stream through to a backing service. `first` is sent before the client's
/// messages; `map` converts each client message (or drops it with `None`). When the client's
/// stream fails, the call to the service is dropped — cancelled, so that it never commits a
/// truncated archive — and the client's error is returned.
async fn forward<In, Out, R, Fut>(
    mut inbound: Streaming<In>,
    first: Option<Out>,
    mut map: impl FnMut(In) -> Result<Option<Out>, Status>,
    call: impl FnOnce(ReceiverStream<Out>) -> Fut,
) -> Result<R, Status>
where
    Out: Send + 'static,
    Fut: Future<Output = Result<R, Status>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Out>(2);
    let pump = async move {
        if let Some(first) = first {
            if tx.send(first).await.is_err() {
                return Ok(());
            }
        }
        while let Some(m) = inbound.message().await? {
            if let Some(out) = map(m)? {
                if tx.send(out).await.is_err() {
                    // The service ended the call; its answer says why.
                    break;
                }
            }
        }
        Ok::<(), Status>(())
    };
    let call = call(ReceiverStream::new(rx));
    tokio::pin!(pump, call);
    let mut pumping = true;
    loop {
        tokio::select! {
            r = &mut call => return r,
            p = &mut pump, if pumping => match p {
                Ok(()) => pumping = false,
                Err(s) => return Err(s),
            },
        }
    }
}

impl ImagesService {
    fn publish(&self, action: &str, id: &str, name: Option<String>) {
        let attrs = name.filter(|n| !n.is_empty()).map(|n| ("name", n));
        self.ctx.events.publish("image", action, id, attrs);
    }

    /// The snapshotter's description of the image `reference` names (a name, an id or a
    /// unique id prefix).
    async fn resolve(
        &self,
        reference: &str,
        platform: Option<Platform>,
    ) -> Result<snap::InspectResponse> {
        if reference.is_empty() {
            return Err(Error::InvalidArgument("no image given".into()));
        }
        let asked_platform = platform.is_some();
        match client(&self.ctx)
            .inspect(snap::InspectRequest {
                name: reference.to_string(),
                platform,
            })
            .await
        {
            Ok(r) => Ok(r.into_inner()),
            // The image exists but not for the platform asked: the snapshotter's message
            // says which platforms it has.
            Err(s) if s.code() == Code::NotFound && (asked_platform || is_platform_miss(&s)) => {
                Err(down(s))
            }
            Err(s) if s.code() == Code::NotFound => Err(no_such_image(reference)),
            Err(s) => Err(down(s)),
        }
    }

    /// Removes one image given to `rmi`; returns (untagged names, deleted ids).
    async fn remove_one(&self, reference: &str, force: bool) -> Result<(Vec<String>, Vec<String>)> {
        let info = self.resolve(reference, None).await?;
        let id = config::image_id(&info);
        let records = record_names(&info);
        let named: Vec<(String, Reference)> = records
            .iter()
            .filter_map(|n| Reference::parse(n).ok().map(|r| (n.clone(), r)))
            .collect();
        let by_name = normalised(reference).filter(|n| records.contains(n));
        let doomed: Vec<String> = match &by_name {
            Some(name) => {
                let other_tags = named.iter().any(|(n, r)| n != name && r.digest().is_none());
                if other_tags {
                    // Other tags keep the image: only this name goes.
                    vec![name.clone()]
                } else {
                    records.clone()
                }
            }
            None => {
                let repos: BTreeSet<String> =
                    named.iter().map(|(_, r)| r.familiar_repository()).collect();
                if repos.len() > 1 && !force {
                    return Err(Error::FailedPrecondition(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced \
                         in multiple repositories",
                        short_id(&id)
                    )));
                }
                records.clone()
            }
        };
        if doomed.len() == records.len() {
            // The image itself would go: not while a container uses it (its snapshot is a
            // child of the image's top layer). Untagging one of several names is fine.
            if let Some(c) = crate::containers::image_users(&self.ctx, &id)?.first() {
                return Err(Error::FailedPrecondition(format!(
                    "conflict: unable to delete {} - image is being used by {} container {} \
                     (remove the container first)",
                    if by_name.is_some() {
                        shown(reference)
                    } else {
                        short_id(&id).to_string()
                    },
                    if c.is_running() { "running" } else { "stopped" },
                    c.short_id()
                )));
            }
        }
        let mut untagged = Vec::new();
        for name in &doomed {
            delete_record(&self.ctx, name).await?;
            if let Some((_, r)) = named.iter().find(|(n, _)| n == name) {
                untagged.push(r.familiar());
                self.publish("untag", &id, Some(r.familiar()));
            }
        }
        let mut deleted = Vec::new();
        if doomed.len() == records.len() {
            self.publish("delete", &id, None);
            deleted.push(id);
        }
        Ok((untagged, deleted))
    }
}

/// True when a NotFound is about a missing platform rather than a missing image.
fn is_platform_miss(s: &Status) -> bool {
    s.message().contains("platform")
}

/// Sum of the unpacked sizes of images, counting images with the same top layer once.
fn unique_size<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> u64 {
    let mut seen = HashSet::new();
    entries
        .into_iter()
        .filter(|e| {
            let key = if e.info.chain_id.is_empty() {
                &e.id
            } else {
                &e.info.chain_id
            };
            seen.insert(key.clone())
        })
        .map(|e| e.info.size.max(0) as u64)
        .sum()
}

/// `System.DiskUsage`: the space images and containers take; volumes and the build cache do
/// not exist yet and count zero.
pub async fn disk_usage(ctx: &Context) -> Result<DiskUsageResponse> {
    let entries = catalog(ctx).await?;
    let size = unique_size(&entries);
    let used: HashSet<String> = crate::containers::Store::open(&ctx.db)?
        .all()?
        .into_iter()
        .map(|r| r.image_id)
        .collect();
    let unused = unique_size(entries.iter().filter(|e| !used.contains(&e.id)));
    let active = entries.iter().filter(|e| used.contains(&e.id)).count() as u64;
    let kind = |kind: &str| DiskUsageEntry {
        kind: kind.to_string(),
        ..Default::default()
    };
    Ok(DiskUsageResponse {
        entries: vec![
            DiskUsageEntry {
                kind: "images".into(),
                total: entries.len() as u64,
                active,
                size_bytes: size,
                reclaimable_bytes: unused,
            },
            crate::containers::disk_usage(ctx).await?,
            kind("volumes"),
            kind("build-cache"),
        ],
    })
}

/// Pulls an image for `Containers.Create` (`--pull`), draining the progress; publishes the
/// "pull" event as `Images.Pull` does.
pub async fn pull_for_create(ctx: Arc<Context>, req: ImagesPullRequest) -> Result<(), Status> {
    let mut stream = ImagesService { ctx }.pull_stream(req).await?;
    while let Some(m) = stream.next().await {
        m?;
    }
    Ok(())
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn pull(
        &self,
        req: Request<ImagesPullRequest>,
    ) -> Result<Response<BoxStream<ImagesPullResponse>>, Status> {
        Ok(Response::new(self.pull_stream(req.into_inner()).await?))
    }

    async fn push(
        &self,
        req: Request<ImagesPushRequest>,
    ) -> Result<Response<BoxStream<ImagesPushResponse>>, Status> {
        Ok(Response::new(self.push_stream(req.into_inner()).await?))
    }

    async fn login(
        &self,
        req: Request<ImagesLoginRequest>,
    ) -> Result<Response<ImagesLoginResponse>, Status> {
        Ok(Response::new(self.login_check(req.into_inner()).await?))
    }

    async fn list(
        &self,
        req: Request<ImagesListRequest>,
    ) -> Result<Response<ImagesListResponse>, Status> {
        let req = req.into_inner();
        let filters = Filters::parse(&req.filters, &LIST_FILTERS)?;
        let dangling = filters.bool("dangling")?;
        let mut before = None;
        for r in filters.get("before") {
            let info = self.resolve(r, None).await?;
            before = Config::parse(&info.config_json, r).created();
        }
        let mut since = None;
        for r in filters.get("since") {
            let info = self.resolve(r, None).await?;
            since = Config::parse(&info.config_json, r).created();
        }
        let patterns = filters.get("reference");
        let mut images = Vec::new();
        for e in catalog(&self.ctx).await? {
            let mut names = e.names();
            let is_dangling = names.tags.is_empty() && names.digests.is_empty();
            if dangling.is_some_and(|d| d != is_dangling) {
                continue;
            }
            let labels = e.config.labels();
            if !filters.labels_match(&labels) {
                continue;
            }
            let created = e.config.created();
            if let Some(b) = &before {
                if !created.as_ref().is_some_and(|c| filter::earlier(c, b)) {
                    continue;
                }
            }
            if let Some(s) = &since {
                if !created.as_ref().is_some_and(|c| filter::earlier(s, c)) {
                    continue;
                }
            }
            if !patterns.is_empty() {
                // Only the names that match are shown, as Docker does.
                let keep = |n: &String| {
                    Reference::parse(n)
                        .is_ok_and(|r| patterns.iter().any(|p| filter::reference_matches(p, &r)))
                };
                names.tags.retain(keep);
                names.digests.retain(keep);
                if names.tags.is_empty() && names.digests.is_empty() {
                    continue;
                }
            }
            images.push(ImageSummary {
                id: e.id.clone(),
                repo_tags: names.tags,
                repo_digests: names.digests,
                created,
                size: e.info.size,
                shared_size: -1,
                labels,
                containers: -1,
            });
        }
        images.sort_by(|a, b| {
            let key = |i: &ImageSummary| i.created.map(|t| (t.seconds, t.nanos));
            key(b).cmp(&key(a)).then_with(|| a.id.cmp(&b.id))
        });
        Ok(Response::new(ImagesListResponse { images }))
    }

    async fn inspect(
        &self,
        req: Request<ImagesInspectRequest>,
    ) -> Result<Response<ImagesInspectResponse>, Status> {
        let req = req.into_inner();
        let info = self.resolve(&req.reference, req.platform).await?;
        let names = names_of_info(&info);
        let config = Config::parse(&info.config_json, &config::image_id(&info));
        let json = config::docker_json(&info, &names, &config);
        Ok(Response::new(ImagesInspectResponse {
            image: Some(config::details(&info, &names, &config)),
            json: json.to_string(),
        }))
    }

    async fn tag(
        &self,
        req: Request<ImagesTagRequest>,
    ) -> Result<Response<ImagesTagResponse>, Status> {
        let req = req.into_inner();
        let name = new_name(&req.target)?;
        let info = self.resolve(&req.source, None).await?;
        let target = info.image.as_ref().and_then(|i| i.target.clone());
        let record = snap::Image {
            name: name.to_string(),
            target,
            ..Default::default()
        };
        let mut c = client(&self.ctx);
        match c
            .create(snap::CreateRequest {
                image: Some(record.clone()),
            })
            .await
        {
            Ok(_) => {}
            // The name is in use: move it to this image.
            Err(s) if s.code() == Code::AlreadyExists => {
                c.update(snap::UpdateRequest {
                    image: Some(record),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into()],
                    }),
                })
                .await
                .map_err(down)?;
            }
            Err(s) => return Err(down(s).into()),
        }
        self.publish("tag", &config::image_id(&info), Some(name.familiar()));
        Ok(Response::new(ImagesTagResponse {}))
    }

    async fn remove(
        &self,
        req: Request<ImagesRemoveRequest>,
    ) -> Result<Response<ImagesRemoveResponse>, Status> {
        let req = req.into_inner();
        if req.references.is_empty() {
            return Err(Error::InvalidArgument("no image given".into()).into());
        }
        // `no_prune` cannot be honoured: the snapshotter collects garbage on every delete.
        let mut results = Vec::new();
        for reference in &req.references {
            let mut result = ImageRemoveResult {
                reference: reference.clone(),
                ..Default::default()
            };
            match self.remove_one(reference, req.force).await {
                Ok((untagged, deleted)) => {
                    result.untagged = untagged;
                    result.deleted = deleted;
                }
                Err(e) => {
                    let s = Status::from(e);
                    result.error = s.message().to_string();
                    result.code = s.code() as i32;
                }
            }
            results.push(result);
        }
        Ok(Response::new(ImagesRemoveResponse { results }))
    }

    async fn history(
        &self,
        req: Request<ImagesHistoryRequest>,
    ) -> Result<Response<ImagesHistoryResponse>, Status> {
        let req = req.into_inner();
        let info = self.resolve(&req.reference, req.platform).await?;
        let names = names_of_info(&info);
        let config = Config::parse(&info.config_json, &config::image_id(&info));
        Ok(Response::new(ImagesHistoryResponse {
            entries: config::history(&info, &names.tags, &config),
        }))
    }

    async fn import(
        &self,
        req: Request<Streaming<ImagesImportRequest>>,
    ) -> Result<Response<ImagesImportResponse>, Status> {
        use images_import_request::Msg;
        let mut inbound = req.into_inner();
        let first = inbound.message().await?;
        let Some(Msg::Options(opts)) = first.and_then(|m| m.msg) else {
            return Err(Status::invalid_argument(
                "the first message of Import must carry the options",
            ));
        };
        let name = match opts.reference.as_str() {
            "" => None,
            r => Some(new_name(r)?),
        };
        let options = snap::ImportOptions {
            name: name.as_ref().map(ToString::to_string).unwrap_or_default(),
            changes: opts.changes,
            message: opts.message,
            platform: opts.platform,
        };
        let first = snap::ImportRequest {
            msg: Some(snap::import_request::Msg::Options(options)),
        };
        let map = |m: ImagesImportRequest| match m.msg {
            Some(Msg::Data(data)) => Ok(Some(snap::ImportRequest {
                msg: Some(snap::import_request::Msg::Data(data)),
            })),
            Some(Msg::Options(_)) => Err(Status::invalid_argument(
                "Import takes its options in the first message only",
            )),
            None => Ok(None),
        };
        let mut c = client(&self.ctx);
        let resp = forward(inbound, Some(first), map, |s| async move {
            c.import(s).await.map_err(down_status)
        })
        .await?
        .into_inner();
        self.publish(
            "import",
            &resp.image_id,
            name.as_ref().map(Reference::familiar),
        );
        Ok(Response::new(ImagesImportResponse {
            image_id: resp.image_id,
            reference: name.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }

    async fn load(
        &self,
        req: Request<Streaming<ImagesLoadRequest>>,
    ) -> Result<Response<ImagesLoadResponse>, Status> {
        let map = |m: ImagesLoadRequest| Ok(Some(snap::LoadRequest { data: m.data }));
        let mut c = client(&self.ctx);
        let loaded = forward(req.into_inner(), None, map, |s| async move {
            c.load(s).await.map_err(down_status)
        })
        .await?
        .into_inner()
        .images;
        let mut images = Vec::new();
        for record in loaded {
            // The images are stored by now: one that does not describe for this host (an
            // archive for another platform) is still reported, by its target digest.
            let id = match self.resolve(&record.name, None).await {
                Ok(info) => config::image_id(&info),
                Err(e) => {
                    tracing::warn!(image = %record.name, error = %e, "loaded image not inspectable");
                    target_digest(Some(&record)).to_string()
                }
            };
            let name = Reference::parse(&record.name)
                .map(|r| r.familiar())
                .unwrap_or_default();
            self.publish("load", &id, Some(name.clone()));
            images.push(LoadedImage { name, id });
        }
        Ok(Response::new(ImagesLoadResponse { images }))
    }

    async fn save(
        &self,
        req: Request<ImagesSaveRequest>,
    ) -> Result<Response<BoxStream<ImagesSaveResponse>>, Status> {
        let req = req.into_inner();
        if req.references.is_empty() {
            return Err(Status::invalid_argument("no image given to save"));
        }
        // Resolve first, so that a missing image fails before any byte is sent.
        let mut names = Vec::new();
        let mut saved = Vec::new();
        for reference in &req.references {
            let info = self.resolve(reference, None).await?;
            let id = config::image_id(&info);
            match normalised(reference).filter(|n| record_names(&info).contains(n)) {
                Some(name) => {
                    names.push(name);
                    saved.push((id, Some(shown(reference))));
                }
                None => {
                    names.push(id.clone());
                    saved.push((id, None));
                }
            }
        }
        let stream = client(&self.ctx)
            .save(snap::SaveRequest { names })
            .await
            .map_err(down)?
            .into_inner();
        for (id, name) in saved {
            self.publish("save", &id, name);
        }
        let stream = stream.map(|r| {
            r.map(|m| ImagesSaveResponse { data: m.data })
                .map_err(down_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn prune(
        &self,
        req: Request<ImagesPruneRequest>,
    ) -> Result<Response<ImagesPruneResponse>, Status> {
        let req = req.into_inner();
        let filters = Filters::parse(&req.filters, &PRUNE_FILTERS)?;
        let until = filters
            .get("until")
            .iter()
            .map(|v| filter::parse_until(v))
            .collect::<Result<Vec<_>>>()?;
        let mut out = ImagesPruneResponse::default();
        for e in catalog(&self.ctx).await? {
            let names = e.names();
            let dangling = names.tags.is_empty() && names.digests.is_empty();
            if !req.all && !dangling {
                continue;
            }
            if !crate::containers::image_users(&self.ctx, &e.id)?.is_empty() {
                continue;
            }
            if !filters.labels_match(&e.config.labels()) {
                continue;
            }
            let created = e.config.created();
            if !until
                .iter()
                .all(|u| created.as_ref().is_some_and(|c| filter::earlier(c, u)))
            {
                continue;
            }
            for record in &e.records {
                out.reclaimed_bytes += delete_record(&self.ctx, &record.name).await?;
                if let Ok(r) = Reference::parse(&record.name) {
                    self.publish("untag", &e.id, Some(r.familiar()));
                    out.untagged.push(r.familiar());
                }
            }
            self.publish("delete", &e.id, None);
            out.deleted.push(e.id);
        }
        Ok(Response::new(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn names_are_short_and_split_into_tags_and_digests() {
        let n = names_of([
            ("docker.io/library/busybox:latest", D1),
            ("docker.io/library/busybox:1.36", D1),
            ("localhost:5000/app:v1", D1),
            (&*format!("docker.io/library/busybox@{D2}"), D1),
            (&*format!("<none>@{D1}"), D1),
        ]);
        assert_eq!(
            n.tags,
            ["busybox:1.36", "busybox:latest", "localhost:5000/app:v1"]
        );
        assert_eq!(
            n.digests,
            [
                format!("busybox@{D1}"),
                format!("busybox@{D2}"),
                format!("localhost:5000/app@{D1}")
            ]
        );
        assert_eq!(names_of([(&*format!("<none>@{D1}"), D1)]), Names::default());
    }

    #[test]
    fn user_references_are_shown_short_and_ids_as_given() {
        assert_eq!(shown("busybox"), "busybox:latest");
        assert_eq!(shown("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(shown("sha256:abc"), "sha256:abc");
        assert_eq!(shown("Bad Name"), "Bad Name");
        assert_eq!(
            no_such_image("nosuch").to_string(),
            "No such image: nosuch:latest"
        );
        assert_eq!(normalised("sha256:abc"), None);
        assert_eq!(
            normalised("busybox").as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(short_id(D1), "111111111111");
    }

    #[test]
    fn new_names_refuse_digests_and_ambiguity() {
        assert_eq!(
            new_name("app").unwrap().to_string(),
            "docker.io/library/app:latest"
        );
        assert!(new_name(&format!("app@{D1}")).is_err());
        assert!(new_name("sha256:abc").is_err());
        assert!(new_name("UPPER").is_err());
    }
}
