//! Pull: an image from a registry into the content store, unpacked, then recorded.
//!
//! The pipeline, for the manifest of the requested (or host) platform:
//!
//! 1. resolve the reference; an index picks the platform's manifest (`all_platforms`
//!    keeps every platform's manifest, config and layers, unpacking only the chosen one);
//!    index, manifests and config go to the content store first (verified by digest);
//! 2. every layer downloads at once, up to `max_concurrent_downloads` at a time, into a
//!    resumable ingest (`pull-<digest>`), hashed as it is written; a layer whose snapshot
//!    is missing is *tee'd*: its bytes also stream to a blocking thread that decompresses
//!    and unpacks them into a staging directory while the download runs, so unpacking a
//!    layer never waits for the other downloads;
//! 3. a blob is committed to the content store only when its digest and size match; a
//!    mismatch fails the pull with a message naming the digest (and drops the ingest);
//! 4. staged layers are committed bottom-up as snapshots named by chain ID, each as soon
//!    as it and the one below are ready, after checking its diff ID against the config;
//! 5. the image record is written last, so a failed or cancelled pull records nothing.
//!
//! Blobs already stored are not fetched again; layers already unpacked are not unpacked
//! again. Two pulls needing the same blob share one download and one unpack
//! ([`Downloads`]). The whole pull holds the store's `writing` lock, so garbage collection
//! never sweeps half a pull. Dropping the future cancels the pull: tasks are aborted,
//! staging directories removed; partial ingests stay for the next pull to resume.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_proto::types::v1::{BlobKind, TransferProgress, TransferStatus};
use berth_registry_client::Reference;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::content::{ByteStream, ContentStore, ContentWriter, Labels, LocalWriter};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::media;
use crate::images::progress::{kind_of, BlobProgress, Progress};
use crate::images::record::{Descriptor, ImageRecord};
use crate::images::resolve::{self, ConfigSummary, Platform, Resolved, MAX_CONFIG, MAX_MANIFEST};
use crate::images::singleflight::SingleFlight;
use crate::images::unpack::{stage_layer, LABEL_DIFF_ID, LABEL_LAYER_DIGEST};
use crate::snapshots::{Snapshotter, Staged};
use crate::store::Store;

/// Prefix of the ingest refs of pulls: one ref per blob, so a download interrupted by a
/// cancelled pull resumes where it stopped in the next one.
pub const INGEST_PREFIX: &str = "pull-";

/// Label of a blob naming the repositories of a registry known to have it, as
/// `berth.distribution.source.<host>` = comma-separated repository paths. Set by pull and
/// push; push uses it to mount a blob from another repository instead of uploading it.
pub const LABEL_SOURCE: &str = "berth.distribution.source.";

/// Repositories remembered per registry in [`LABEL_SOURCE`].
const MAX_SOURCES: usize = 8;

/// Bytes gathered before one write to the ingest and one send to the unpacker.
const PIECE: usize = 1 << 20;

/// Pieces buffered between a download and its unpacker; a slower unpacker slows the
/// download down beyond this, so memory stays bounded.
const PIPE_DEPTH: usize = 16;

/// Pieces buffered between a download and its ingest writer.
const WRITE_DEPTH: usize = 4;

/// How long a pull waits for another writer of the same ingest (a cancelled pull still
/// releasing it) before giving up.
const INGEST_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A manifest or index as fetched: descriptor (digest verified) and bytes.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its descriptor; the media type is the one the registry declared.
    pub descriptor: Descriptor,
    /// The document.
    pub bytes: Bytes,
}

/// Where a pull reads from: one repository of a registry. Implemented over
/// `berth_registry_client::Repository`, and by fakes in tests.
pub trait Source: Send + Sync + 'static {
    /// The reference pulled.
    fn reference(&self) -> &Reference;

    /// The manifest or index the reference names (by digest when it has one, else by tag).
    fn resolve(&self) -> impl Future<Output = Result<Fetched>> + Send;

    /// The manifest or index `digest` of the repository, verified.
    fn fetch_manifest(&self, digest: &str) -> impl Future<Output = Result<Fetched>> + Send;

    /// The bytes of blob `digest` (of `size` bytes) from `offset`, not verified: the
    /// caller hashes them.
    fn fetch_blob(
        &self,
        digest: &str,
        size: u64,
        offset: u64,
    ) -> impl Future<Output = Result<ByteStream>> + Send;
}

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Platform to pick from an index; `None`: the host's.
    pub platform: Option<Platform>,
    /// Keep every platform of an index (only the chosen one is unpacked).
    pub all_platforms: bool,
    /// Blobs downloaded at once.
    pub max_concurrent_downloads: usize,
    /// Labels to set on the image record.
    pub labels: BTreeMap<String, String>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            all_platforms: false,
            max_concurrent_downloads: crate::registry_config::DEFAULT_CONCURRENCY,
            labels: BTreeMap::new(),
        }
    }
}

/// The outcome of a pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image record.
    pub record: ImageRecord,
    /// The unpacked image.
    pub image: Resolved,
    /// Its platform, from its configuration.
    pub platform: Platform,
    /// True when the record already pointed to this target and nothing was fetched.
    pub up_to_date: bool,
}

/// The state of a shared download, as its flight publishes it to every pull waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobState {
    /// Where the blob is.
    pub status: TransferStatus,
    /// Bytes done in that status.
    pub current: u64,
}

impl BlobState {
    fn new(status: TransferStatus, current: u64) -> Self {
        BlobState { status, current }
    }
}

/// A blob a flight made available: stored in the content store, and for a layer maybe
/// unpacked into a staging directory that the first pull to need it commits.
#[derive(Debug)]
pub struct Ready {
    staged: Mutex<Option<(Staged, String)>>,
    fetched: bool,
}

impl Ready {
    fn new(staged: Option<(Staged, String)>, fetched: bool) -> Arc<Self> {
        Arc::new(Ready {
            staged: Mutex::new(staged),
            fetched,
        })
    }

    /// Takes the staged layer and its diff ID, if still there.
    fn take(&self) -> Option<(Staged, String)> {
        self.staged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

type FlightResult = std::result::Result<Arc<Ready>, Arc<Error>>;

/// The downloads in progress, shared by the concurrent pulls of one store: a blob two pulls
/// need is downloaded (and unpacked) once.
#[derive(Default)]
pub struct Downloads {
    flights: SingleFlight<String, FlightResult, BlobState>,
}

impl Downloads {
    /// No download in progress.
    pub fn new() -> Self {
        Self::default()
    }

    /// Downloads running (or abandoned and not yet forgotten).
    pub fn len(&self) -> usize {
        self.flights.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.flights.is_empty()
    }
}

/// Holds `store.writing()` for as long as it lives, so garbage collection waits for the
/// pull. The lock guard cannot cross an `await`, so a thread of its own holds it.
struct WritingLease {
    _release: std::sync::mpsc::Sender<()>,
}

impl WritingLease {
    async fn acquire(store: &Arc<Store>) -> Result<Self> {
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let store = Arc::clone(store);
        std::thread::Builder::new()
            .name("pull-lease".into())
            .spawn(move || {
                let _writing = store.writing();
                if held_tx.send(()).is_ok() {
                    // Returns when the lease (the sender) is dropped.
                    let _ = released.recv();
                }
            })
            .map_err(|e| Error::io("start the pull's lease thread", e))?;
        held_rx.await.map_err(|_| {
            Error::io(
                "take the store's writing lock",
                std::io::Error::other("lease thread ended"),
            )
        })?;
        Ok(WritingLease { _release: release })
    }
}

/// Parts of a manifest or index read here (both shapes, so a document that is both is
/// refused).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Doc {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<Vec<Entry>>,
    #[serde(default)]
    pub config: Option<Entry>,
    #[serde(default)]
    pub layers: Option<Vec<Entry>>,
}

/// A descriptor inside a manifest or index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Entry {
    pub(crate) fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: self.annotations.clone(),
        }
    }
}

impl Doc {
    /// Parses a manifest or index, refusing an ambiguous one.
    pub(crate) fn parse(bytes: &[u8], digest: &str) -> Result<Doc> {
        let doc: Doc = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidArgument(format!("manifest {digest}: invalid JSON: {e}")))?;
        if doc.manifests.is_some() && (doc.layers.is_some() || doc.config.is_some()) {
            return Err(Error::InvalidArgument(format!(
                "manifest {digest} is both an index and a manifest; refusing the ambiguous document"
            )));
        }
        Ok(doc)
    }

    /// True for an index, by the declared media type or, without one, by its shape.
    pub(crate) fn is_index(&self, declared: &str) -> bool {
        let mt = self.media_type.as_deref().unwrap_or(declared);
        if media::is_index(mt) {
            true
        } else if media::is_manifest(mt) {
            false
        } else {
            self.manifests.is_some()
        }
    }

    /// The media type: declared, inside, or from the shape.
    pub(crate) fn media_type(&self, declared: &str) -> String {
        if !declared.is_empty() {
            return declared.to_string();
        }
        match &self.media_type {
            Some(mt) if !mt.is_empty() => mt.clone(),
            _ if self.manifests.is_some() => media::OCI_INDEX.to_string(),
            _ => media::OCI_MANIFEST.to_string(),
        }
    }

    /// Config and layers of a manifest.
    pub(crate) fn image_parts(&self, digest: &str) -> Result<(Descriptor, Vec<Descriptor>)> {
        if self.manifests.is_some() {
            return Err(Error::InvalidArgument(format!(
                "manifest {digest} is an index inside an index; nested indexes are not supported"
            )));
        }
        let config = self
            .config
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument(format!("manifest {digest} has no config")))?
            .descriptor();
        let layers = self
            .layers
            .iter()
            .flatten()
            .map(Entry::descriptor)
            .collect();
        Ok((config, layers))
    }
}

/// The entry of `index` (digest `digest`) to use for `want`: the first whose platform
/// matches, skipping entries without a platform and attestations (`unknown/unknown`), as
/// [`resolve::resolve`] does. NotFound lists the platforms the index has.
pub(crate) fn select_platform<'a>(
    entries: &'a [Entry],
    want: &Platform,
    digest: &str,
) -> Result<&'a Entry> {
    let candidates = || {
        entries
            .iter()
            .filter_map(|e| e.platform.as_ref().map(|p| (e, p)))
            .filter(|(_, p)| p.os != "unknown")
    };
    candidates()
        .find(|(_, p)| want.matches(p))
        .map(|(e, _)| e)
        .ok_or_else(|| {
            let available: Vec<String> = candidates().map(|(_, p)| p.to_string()).collect();
            Error::NotFound(format!(
                "no manifest for platform {want} in {digest} (available: {})",
                available.join(", ")
            ))
        })
}

/// What a descriptor is for, to check its size against the right cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// An index or manifest.
    Manifest,
    /// An image configuration.
    Config,
    /// A layer of the image being unpacked.
    Layer,
    /// Any other blob (a layer of another platform, an attestation).
    Blob,
}

/// Refuses a descriptor whose digest is malformed, whose size is negative or above the
/// cap of its role, or (a layer to unpack) whose media type is not a layer's.
pub(crate) fn check_descriptor(d: &Descriptor, role: Role) -> Result<(Digest, u64)> {
    let digest = Digest::parse(&d.digest)?;
    let size = u64::try_from(d.size).map_err(|_| {
        Error::InvalidArgument(format!("descriptor of {digest} has a negative size"))
    })?;
    let cap = match role {
        Role::Manifest => MAX_MANIFEST,
        Role::Config => MAX_CONFIG,
        Role::Layer | Role::Blob => u64::MAX,
    };
    if size > cap {
        return Err(Error::InvalidArgument(format!(
            "{} {digest} is {size} bytes, more than the {cap} allowed",
            if role == Role::Config {
                "config"
            } else {
                "manifest"
            }
        )));
    }
    if role == Role::Layer && !media::is_layer(&d.media_type) {
        return Err(Error::InvalidArgument(format!(
            "layer {digest} has media type {:?}, which is not an image layer",
            d.media_type
        )));
    }
    Ok((digest, size))
}

/// An error shared by every pull waiting on a flight, as an error of one of them.
fn relay(e: &Error) -> Error {
    match e {
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
        Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::OutOfRange(m) => Error::OutOfRange(m.clone()),
        Error::Archive(m) => Error::Archive(m.clone()),
        Error::DigestMismatch {
            what,
            expected,
            actual,
        } => Error::DigestMismatch {
            what: what.clone(),
            expected: expected.clone(),
            actual: actual.clone(),
        },
        Error::SizeMismatch {
            what,
            expected,
            actual,
        } => Error::SizeMismatch {
            what: what.clone(),
            expected: *expected,
            actual: *actual,
        },
        Error::Layer { entry, reason } => Error::Layer {
            entry: entry.clone(),
            reason: reason.clone(),
        },
        Error::Io { context, source } => Error::Io {
            context: context.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Remote(s) => Error::Remote(s.clone()),
        Error::Registry(r) => Error::Remote(tonic::Status::new(
            crate::error::registry_code(r),
            r.to_string(),
        )),
        Error::Metadata(_) | Error::Rpc(_) => Error::Remote(tonic::Status::internal(e.to_string())),
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::io("pull worker", std::io::Error::other(e))
}

/// Runs blocking work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

/// The label key naming the repositories of `host` that have a blob.
pub fn source_label(host: &str) -> String {
    format!("{LABEL_SOURCE}{host}")
}

/// `current` (a [`LABEL_SOURCE`] value) with `path` added; `None` when it is there.
pub(crate) fn add_source(current: Option<&str>, path: &str) -> Option<String> {
    let mut paths: Vec<&str> = current
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.is_empty())
        .collect();
    if paths.contains(&path) {
        return None;
    }
    paths.insert(0, path);
    paths.truncate(MAX_SOURCES);
    Some(paths.join(","))
}

/// Records that `host`/`path` has the stored blob `digest`.
pub(crate) async fn remember_source(
    store: &Store,
    digest: &Digest,
    host: &str,
    path: &str,
) -> Result<()> {
    let key = source_label(host);
    let info = store.content.info(digest).await?;
    if let Some(value) = add_source(info.labels.get(&key).map(String::as_str), path) {
        let labels = Labels::from([(key.clone(), value)]);
        store
            .content
            .update(digest, labels, &[format!("labels.{key}")])
            .await?;
    }
    Ok(())
}

/// A blocking reader over the pieces of a download: what a layer's unpacker reads while
/// the download runs. The stream must end with [`Piece::End`]; a download that stops
/// before (failed, cancelled) is a read error.
struct PipeReader {
    rx: mpsc::Receiver<Piece>,
    current: Bytes,
    ended: bool,
    /// Compressed bytes taken from the pipe so far, for progress.
    consumed: Arc<AtomicU64>,
}

enum Piece {
    Data(Bytes),
    End,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(b)) => {
                    self.consumed.fetch_add(b.len() as u64, Ordering::Relaxed);
                    self.current = b;
                }
                Some(Piece::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "the download stopped before the end of the layer",
                    ))
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Unpacks a layer from its download into a staging directory. Blocking.
fn unpack_piped(
    store: &Store,
    rx: mpsc::Receiver<Piece>,
    consumed: Arc<AtomicU64>,
) -> Result<(Staged, String)> {
    let staged = store.snapshots.stage()?;
    let reader = PipeReader {
        rx,
        current: Bytes::new(),
        ended: false,
        consumed,
    };
    let stats = crate::layer::apply(&staged.fs(), reader)?;
    Ok((staged, stats.diff_id.to_string()))
}

/// Opens the ingest of a pull, waiting while another writer (a cancelled pull's, being
/// released) holds it.
async fn open_writer(
    store: &Store,
    reference: &str,
    size: u64,
    digest: &Digest,
) -> Result<LocalWriter> {
    let deadline = tokio::time::Instant::now() + INGEST_LOCK_WAIT;
    loop {
        match store
            .content
            .writer(reference, Some(size), Some(digest.clone()))
            .await
        {
            Err(Error::FailedPrecondition(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

/// One blob's download: the work of a flight.
struct Download<S> {
    store: Arc<Store>,
    source: Arc<S>,
    slots: Arc<Semaphore>,
    desc: Descriptor,
    unpack: bool,
    labels: Labels,
}

impl<S: Source> Download<S> {
    async fn run(self, state: watch::Sender<BlobState>) -> Result<Arc<Ready>> {
        let (digest, size) = check_descriptor(&self.desc, Role::Blob)?;
        if self.store.has_blob(&digest) {
            if !self.unpack {
                return Ok(Ready::new(None, false));
            }
            state.send_replace(BlobState::new(TransferStatus::Extracting, 0));
            let (store, desc) = (self.store.clone(), self.desc.clone());
            let staged = blocking(move || stage_layer(&store, &desc)).await?;
            return Ok(Ready::new(Some(staged), false));
        }
        let reference = format!("{INGEST_PREFIX}{digest}");
        // A resumed ingest whose bytes turn out wrong is dropped and fetched again, once.
        let mut retried = false;
        loop {
            match self.download(&digest, size, &reference, &state).await {
                Err(Resumed(e)) if !retried => {
                    tracing::warn!(digest = %digest, error = %e, "resumed download was corrupt; fetching it again");
                    retried = true;
                }
                Err(Resumed(e)) | Err(Fresh(e)) => return Err(e),
                Ok(ready) => return Ok(ready),
            }
        }
    }

    async fn download(
        &self,
        digest: &Digest,
        size: u64,
        reference: &str,
        state: &watch::Sender<BlobState>,
    ) -> std::result::Result<Arc<Ready>, Attempt> {
        // A download slot is held while bytes arrive, not while they are verified (an
        // fsync) or the unpacker catches up: the next download starts meanwhile.
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Fresh(Error::FailedPrecondition("the pull was cancelled".into())))?;
        let mut writer = open_writer(&self.store, reference, size, digest)
            .await
            .map_err(Fresh)?;
        let mut start = writer.status().await.map_err(Fresh)?.offset;
        if start > size {
            start = 0;
        }
        let wrap = |e| if start > 0 { Resumed(e) } else { Fresh(e) };
        tracing::debug!(digest = %digest, size, offset = start, unpack = self.unpack, "downloading");
        // Tee the download into an unpacker, unless it resumes (the unpacker needs the
        // bytes from the start; it then reads the stored blob once it is complete).
        let consumed = Arc::new(AtomicU64::new(0));
        let (pipe, unpacker) = if self.unpack && start == 0 {
            let (tx, rx) = mpsc::channel(PIPE_DEPTH);
            let (store, consumed) = (self.store.clone(), consumed.clone());
            let handle = tokio::task::spawn_blocking(move || unpack_piped(&store, rx, consumed));
            (Some(tx), Some(handle))
        } else {
            (None, None)
        };
        state.send_replace(BlobState::new(TransferStatus::Downloading, start));
        let writer = if start < size {
            self.transfer(digest, size, start, writer, pipe, state)
                .await
                .map_err(Fresh)?
        } else {
            if let Some(pipe) = pipe {
                let _ = pipe.send(Piece::End).await;
            }
            writer
        };
        drop(slot);
        state.send_replace(BlobState::new(TransferStatus::Verifying, size));
        match writer
            .commit(Some(size), Some(digest.clone()), self.labels.clone())
            .await
        {
            Ok(_) | Err(Error::AlreadyExists(_)) => {}
            Err(e @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. })) => {
                // Never kept: the next pull must not resume from these bytes.
                if let Err(abort) = self.store.content.abort(reference).await {
                    tracing::warn!(digest = %digest, error = %abort, "could not drop a corrupt ingest");
                }
                return Err(wrap(mismatch(e, digest, self.source.reference())));
            }
            Err(e) => return Err(Fresh(e)),
        }
        tracing::debug!(digest = %digest, size, "blob stored");
        let staged = match unpacker {
            Some(mut handle) => {
                // The unpacker fell behind the download: report how far it is.
                let every = crate::images::progress::INTERVAL;
                let mut tick = tokio::time::interval_at(
                    tokio::time::Instant::now() + Duration::from_millis(20),
                    every,
                );
                let done = loop {
                    tokio::select! {
                        done = &mut handle => break done,
                        _ = tick.tick() => {
                            let at = consumed.load(Ordering::Relaxed);
                            state.send_replace(BlobState::new(TransferStatus::Extracting, at));
                        }
                    }
                };
                Some(done.map_err(|e| Fresh(join_error(e)))?.map_err(Fresh)?)
            }
            None if self.unpack => {
                state.send_replace(BlobState::new(TransferStatus::Extracting, 0));
                let (store, desc) = (self.store.clone(), self.desc.clone());
                Some(
                    blocking(move || stage_layer(&store, &desc))
                        .await
                        .map_err(Fresh)?,
                )
            }
            None => None,
        };
        Ok(Ready::new(staged, true))
    }

    /// Streams the blob from `start` into the ingest and, when teeing, into the unpacker;
    /// returns the writer once every byte is written.
    async fn transfer(
        &self,
        digest: &Digest,
        size: u64,
        start: u64,
        mut writer: LocalWriter,
        mut pipe: Option<mpsc::Sender<Piece>>,
        state: &watch::Sender<BlobState>,
    ) -> Result<LocalWriter> {
        let (pieces_tx, mut pieces) = mpsc::channel::<Bytes>(WRITE_DEPTH);
        let write = async move {
            let mut offset = start;
            while let Some(piece) = pieces.recv().await {
                let n = piece.len() as u64;
                writer.write_at(offset, piece).await?;
                offset += n;
            }
            Ok::<_, Error>(writer)
        };
        let read = async move {
            let mut stream = self.source.fetch_blob(digest.as_str(), size, start).await?;
            let mut received = start;
            let mut buf = BytesMut::with_capacity(PIECE);
            loop {
                let chunk = stream.next().await.transpose()?;
                let last = chunk.is_none();
                if let Some(chunk) = &chunk {
                    received += chunk.len() as u64;
                    if received > size {
                        return Err(Error::SizeMismatch {
                            what: format!("blob {digest} from {}", self.source.reference()),
                            expected: size,
                            actual: received,
                        });
                    }
                    buf.extend_from_slice(chunk);
                    state.send_replace(BlobState::new(TransferStatus::Downloading, received));
                }
                if buf.len() >= PIECE || (last && !buf.is_empty()) {
                    let piece = buf.split().freeze();
                    buf.reserve(PIECE);
                    if pieces_tx.send(piece.clone()).await.is_err() {
                        // The writer failed: its error is the one to report.
                        return Ok(());
                    }
                    if let Some(p) = &pipe {
                        if p.send(Piece::Data(piece)).await.is_err() {
                            // The unpacker failed; its error comes after the commit.
                            pipe = None;
                        }
                    }
                }
                if last {
                    break;
                }
            }
            if received != size {
                return Err(Error::SizeMismatch {
                    what: format!("blob {digest} from {}", self.source.reference()),
                    expected: size,
                    actual: received,
                });
            }
            if let Some(p) = &pipe {
                let _ = p.send(Piece::End).await;
            }
            Ok(())
        };
        let (writer, ()) = futures::try_join!(write, read)?;
        Ok(writer)
    }
}

/// How a download attempt failed: from a resumed ingest (worth one fresh try) or not.
enum Attempt {
    Fresh(Error),
    Resumed(Error),
}
use Attempt::{Fresh, Resumed};

/// A commit refusal, reworded to name the blob and where it came from.
fn mismatch(e: Error, digest: &Digest, reference: &Reference) -> Error {
    let what = format!("blob {digest} from {reference}");
    match e {
        Error::DigestMismatch {
            expected, actual, ..
        } => Error::DigestMismatch {
            what,
            expected,
            actual,
        },
        Error::SizeMismatch {
            expected, actual, ..
        } => Error::SizeMismatch {
            what,
            expected,
            actual,
        },
        e => e,
    }
}

/// One pull in progress.
struct Pull<S> {
    store: Arc<Store>,
    downloads: Arc<Downloads>,
    source: Arc<S>,
    slots: Arc<Semaphore>,
    progress: Progress,
    host: String,
    path: String,
    /// Set when anything was downloaded, stored or unpacked.
    changed: AtomicBool,
}

impl<S: Source> Pull<S> {
    fn labels(&self) -> Labels {
        Labels::from([(source_label(&self.host), self.path.clone())])
    }

    /// Stores a fetched manifest or index; reports it.
    async fn store_manifest(&self, m: &Fetched, media_type: &str) -> Result<()> {
        let (digest, size) = check_descriptor(&m.descriptor, Role::Manifest)?;
        if m.bytes.len() as u64 != size {
            return Err(Error::SizeMismatch {
                what: format!("manifest {digest} from {}", self.source.reference()),
                expected: size,
                actual: m.bytes.len() as u64,
            });
        }
        let desc = Descriptor {
            media_type: media_type.to_string(),
            ..m.descriptor.clone()
        };
        let mut bp = self.progress.blob(&desc, kind_of(media_type));
        if self.store.has_blob(&digest) {
            bp.status(TransferStatus::Exists, size, "").await;
            return Ok(());
        }
        let (store, bytes) = (self.store.clone(), m.bytes.clone());
        blocking(move || {
            store
                .content
                .write_blob(bytes.as_ref(), Some((digest, size)))
        })
        .await?;
        self.changed.store(true, Ordering::Relaxed);
        bp.status(TransferStatus::Complete, size, "").await;
        Ok(())
    }

    /// Makes `desc` available through a (possibly shared) download, relaying its progress
    /// to this pull's client.
    async fn fetch(
        &self,
        desc: &Descriptor,
        unpack: bool,
        bp: &mut BlobProgress,
    ) -> Result<Arc<Ready>> {
        let joined = self.downloads.flights.join(
            desc.digest.clone(),
            BlobState::new(TransferStatus::Waiting, 0),
            |state| {
                let work = Download {
                    store: self.store.clone(),
                    source: self.source.clone(),
                    slots: self.slots.clone(),
                    desc: desc.clone(),
                    unpack,
                    labels: self.labels(),
                };
                async move { work.run(state).await.map_err(Arc::new) }.in_current_span()
            },
        );
        if !joined.leader {
            tracing::debug!(digest = %desc.digest, "joining another pull's download");
        }
        let mut state = joined.progress;
        let mut result = joined.result;
        let mut watching = true;
        let outcome = loop {
            tokio::select! {
                r = &mut result => break r,
                changed = state.changed(), if watching => {
                    if changed.is_err() {
                        watching = false;
                        continue;
                    }
                    let s = state.borrow_and_update().clone();
                    if matches!(s.status, TransferStatus::Downloading | TransferStatus::Extracting) {
                        bp.bytes(s.status, s.current);
                    } else if s.status != bp.current_status() {
                        bp.status(s.status, s.current, "").await;
                    }
                }
            }
        };
        match outcome {
            Ok(ready) => {
                if ready.fetched {
                    self.changed.store(true, Ordering::Relaxed);
                }
                Ok(ready)
            }
            Err(e) => {
                bp.status(TransferStatus::Failed, 0, e.to_string()).await;
                Err(relay(&e))
            }
        }
    }

    /// Stores a blob that is not unpacked (a config, another platform's layer).
    async fn fetch_plain(self: Arc<Self>, desc: Descriptor, role: Role) -> Result<()> {
        let (digest, size) = check_descriptor(&desc, role)?;
        let mut bp = self.progress.blob(&desc, kind_of(&desc.media_type));
        if self.store.has_blob(&digest) {
            bp.status(TransferStatus::Exists, size, "").await;
            return Ok(());
        }
        self.fetch(&desc, false, &mut bp).await?;
        bp.status(TransferStatus::Complete, size, "").await;
        Ok(())
    }

    /// Layer `layer` of the image, to become snapshot `chain`: `None` when both are there
    /// already, else what the commit needs.
    async fn layer(
        self: Arc<Self>,
        layer: Descriptor,
        chain: String,
    ) -> Result<Option<Arc<Ready>>> {
        let (digest, size) = check_descriptor(&layer, Role::Layer)?;
        let mut bp = self.progress.blob(&layer, BlobKind::Layer);
        let committed = self.store.snapshots.is_committed(&chain).await?;
        if committed && self.store.has_blob(&digest) {
            bp.status(TransferStatus::Exists, size, "").await;
            return Ok(None);
        }
        bp.status(TransferStatus::Waiting, 0, "").await;
        self.fetch(&layer, !committed, &mut bp).await.map(Some)
    }

    /// Commits layer `i` of `image` on the one below (committed before). Blocking work.
    async fn commit(&self, image: &Resolved, i: usize, ready: Arc<Ready>) -> Result<()> {
        let layer = image.layers[i].clone();
        let chain = image.chain_ids[i].clone();
        let diff_id = image.diff_ids[i].clone();
        let parent = if i == 0 {
            String::new()
        } else {
            image.chain_ids[i - 1].clone()
        };
        let store = self.store.clone();
        let unpacked = blocking(move || {
            let rt = tokio::runtime::Handle::current();
            if rt.block_on(store.snapshots.is_committed(&chain))? {
                return Ok(false);
            }
            // Taken by another pull needing this layer on another parent: unpack again.
            let (staged, actual) = match ready.take() {
                Some(s) => s,
                None => stage_layer(&store, &layer)?,
            };
            if actual != diff_id {
                return Err(Error::DigestMismatch {
                    what: format!("layer {} (uncompressed)", layer.digest),
                    expected: diff_id,
                    actual,
                });
            }
            let labels = HashMap::from([
                (LABEL_DIFF_ID.to_string(), diff_id),
                (LABEL_LAYER_DIGEST.to_string(), layer.digest.clone()),
            ]);
            match store
                .snapshots
                .commit_staged(staged, &chain, &parent, labels)
            {
                Ok(()) => Ok(true),
                // Another pull committed it first: as good.
                Err(Error::AlreadyExists(_)) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await;
        let mut bp = self.progress.blob(&image.layers[i], BlobKind::Layer);
        match unpacked {
            Ok(new) => {
                if new {
                    self.changed.store(true, Ordering::Relaxed);
                }
                tracing::debug!(layer = %image.layers[i].digest, chain = %image.chain_ids[i], new, "layer ready");
                let size = u64::try_from(image.layers[i].size).unwrap_or(0);
                bp.status(TransferStatus::Complete, size, "").await;
                Ok(())
            }
            Err(e) => {
                bp.status(TransferStatus::Failed, 0, e.to_string()).await;
                Err(e)
            }
        }
    }

    /// Another platform's manifest of an `all_platforms` pull: stored with its config and
    /// layers, not unpacked.
    async fn other_platform(self: Arc<Self>, entry: Descriptor) -> Result<()> {
        let m = self.source.fetch_manifest(&entry.digest).await?;
        if m.descriptor.digest != entry.digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest from {}", self.source.reference()),
                expected: entry.digest.clone(),
                actual: m.descriptor.digest.clone(),
            });
        }
        let doc = Doc::parse(&m.bytes, &entry.digest)?;
        let media_type = doc.media_type(&entry.media_type);
        self.store_manifest(&m, &media_type).await?;
        let (config, layers) = doc.image_parts(&entry.digest)?;
        let mut set = JoinSet::new();
        set.spawn(
            self.clone()
                .fetch_plain(config, Role::Config)
                .in_current_span(),
        );
        for l in layers {
            set.spawn(self.clone().fetch_plain(l, Role::Blob).in_current_span());
        }
        while let Some(done) = set.join_next().await {
            done.map_err(join_error)??;
        }
        Ok(())
    }

    /// Labels every blob of `image` with this repository, for pushes to mount from.
    async fn remember(&self, image: &Resolved) -> Result<()> {
        for d in image.layers.iter().chain([&image.config]) {
            let digest = Digest::parse(&d.digest)?;
            remember_source(&self.store, &digest, &self.host, &self.path).await?;
        }
        Ok(())
    }
}

/// Pulls `source`'s reference into `store`; see the module documentation.
pub async fn pull<S: Source>(
    store: Arc<Store>,
    downloads: Arc<Downloads>,
    source: Arc<S>,
    opts: PullOptions,
    progress: Progress,
) -> Result<Pulled> {
    let reference = source.reference().clone();
    let span = tracing::info_span!("pull", image = %reference);
    run(store, downloads, source, opts, progress, reference)
        .instrument(span)
        .await
}

async fn run<S: Source>(
    store: Arc<Store>,
    downloads: Arc<Downloads>,
    source: Arc<S>,
    opts: PullOptions,
    progress: Progress,
    reference: Reference,
) -> Result<Pulled> {
    let started = std::time::Instant::now();
    let name = reference.to_string();
    let _lease = WritingLease::acquire(&store).await?;
    let pull = Arc::new(Pull {
        store: store.clone(),
        downloads,
        source,
        slots: Arc::new(Semaphore::new(opts.max_concurrent_downloads.max(1))),
        progress,
        host: reference.domain().to_string(),
        path: reference.path().to_string(),
        changed: AtomicBool::new(false),
    });
    pull.progress
        .send(TransferProgress {
            status: TransferStatus::Resolving as i32,
            message: name.clone(),
            ..Default::default()
        })
        .await;
    let top = pull.source.resolve().await?;
    let top_doc = Doc::parse(&top.bytes, &top.descriptor.digest)?;
    let target = Descriptor {
        media_type: top_doc.media_type(&top.descriptor.media_type),
        annotations: BTreeMap::new(),
        ..top.descriptor.clone()
    };
    tracing::info!(digest = %target.digest, media_type = %target.media_type, "resolved");
    pull.store_manifest(&top, &target.media_type).await?;
    let want = opts.platform.clone().unwrap_or_else(Platform::host);

    // The manifest to unpack, and with `all_platforms` the others to keep.
    let mut others = Vec::new();
    let (chosen, chosen_doc) = if top_doc.is_index(&target.media_type) {
        let entries = top_doc.manifests.clone().unwrap_or_default();
        let entry = select_platform(&entries, &want, &target.digest)?.clone();
        if opts.all_platforms {
            let mut seen = vec![entry.digest.clone()];
            for e in &entries {
                if !seen.contains(&e.digest) {
                    seen.push(e.digest.clone());
                    others.push(e.descriptor());
                }
            }
        }
        let m = pull.source.fetch_manifest(&entry.digest).await?;
        if m.descriptor.digest != entry.digest {
            return Err(Error::DigestMismatch {
                what: format!("manifest for {want} from {reference}"),
                expected: entry.digest.clone(),
                actual: m.descriptor.digest.clone(),
            });
        }
        let doc = Doc::parse(&m.bytes, &entry.digest)?;
        let media_type = doc.media_type(&entry.media_type);
        if doc.is_index(&media_type) {
            return Err(Error::InvalidArgument(format!(
                "index {} points to another index; nested indexes are not supported",
                target.digest
            )));
        }
        pull.store_manifest(&m, &media_type).await?;
        (entry.descriptor(), doc)
    } else {
        (target.clone(), top_doc)
    };
    let (config, layers) = chosen_doc.image_parts(&chosen.digest)?;
    for l in &layers {
        check_descriptor(l, Role::Layer)?;
    }
    // Other platforms download alongside (sharing the download slots).
    let mut background = JoinSet::new();
    for entry in others {
        background.spawn(pull.clone().other_platform(entry).in_current_span());
    }
    pull.clone().fetch_plain(config, Role::Config).await?;
    let image = {
        let (store, target, want) = (store.clone(), target.clone(), want.clone());
        blocking(move || resolve::resolve(&*store, &target, Some(&want))).await?
    };
    if image.manifest.digest != chosen.digest {
        return Err(Error::InvalidArgument(format!(
            "index {} resolves to {} for {want}, not {}",
            target.digest, image.manifest.digest, chosen.digest
        )));
    }
    tracing::debug!(layers = image.layers.len(), "pulling layers");

    // Every layer downloads (and unpacks) at once; commits go bottom-up as they can.
    let mut tasks = JoinSet::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let (pull, layer, chain) = (pull.clone(), layer.clone(), image.chain_ids[i].clone());
        tasks.spawn(async move { (i, pull.layer(layer, chain).await) }.in_current_span());
    }
    let mut ready: Vec<Option<Option<Arc<Ready>>>> = vec![None; image.layers.len()];
    let mut next = 0;
    while let Some(done) = tasks.join_next().await {
        let (i, result) = done.map_err(join_error)?;
        ready[i] = Some(result?);
        while let Some(slot) = ready.get_mut(next) {
            match slot.take() {
                None => break,
                Some(None) => {}
                Some(Some(r)) => pull.commit(&image, next, r).await?,
            }
            next += 1;
        }
    }
    while let Some(done) = background.join_next().await {
        done.map_err(join_error)??;
    }
    pull.remember(&image).await?;

    // Everything is stored and unpacked: record it.
    let old = match store.images.get(&name) {
        Ok(r) => Some(r),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let mut record = store.images.put(&name, target.clone())?;
    if !opts.labels.is_empty() {
        let mut labels = record.labels.clone();
        labels.extend(opts.labels.clone());
        if labels != record.labels {
            record = store.images.set_labels(&name, labels)?;
        }
    }
    let up_to_date =
        old.is_some_and(|o| o.target == target) && !pull.changed.load(Ordering::Relaxed);
    let summary: ConfigSummary = serde_json::from_slice(&image.config_json).unwrap_or_default();
    let platform = Platform {
        os: summary.os,
        architecture: summary.architecture,
        variant: summary.variant.unwrap_or_default(),
    };
    tracing::info!(
        digest = %target.digest,
        chain_id = %image.top_chain_id(),
        up_to_date,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "pulled"
    );
    Ok(Pulled {
        record,
        image,
        platform,
        up_to_date,
    })
}

#[cfg(test)]
#[path = "pull_tests.rs"]
mod tests;
