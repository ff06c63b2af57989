//! The content store: immutable blobs by digest, written through resumable ingests.
//!
//! Modelled on containerd's content store (`core/content/content.go`): the domain interface
//! is [`ContentStore`] (containerd's Manager + Provider + IngestManager + Ingester in one
//! trait) with [`ContentWriter`] for an open ingest. It has two implementations:
//!
//! - [`LocalStore`], the files on disk (the snapshotter's own store);
//! - [`RemoteContentStore`], the gRPC client of `berth.content.v1.Content`.
//!
//! [`ContentService`] adapts any [`ContentStore`] to the generated gRPC server, and
//! [`testsuite`] holds the conformance checks both implementations pass.
//!
//! On disk (under `<root>/content`):
//!
//! ```text
//! blobs/sha256/<hex>          committed blobs, mode 0444
//! ingest/<sha256 of ref>/     one ingest: `data` (bytes written so far) and `meta.json`
//!                             (ref, started_at, expected total and digest)
//! ingest/.tmp-*               an ingest being created; renamed into place when complete
//! ```
//!
//! Labels and timestamps of committed blobs live in the sled tree
//! [`crate::metadata::CONTENT_LABELS`]: key the digest string, value the JSON of
//! `{"labels": {..}, "created_at": .., "updated_at": ..}`.
//!
//! Commit semantics (the contract of `content.proto`): a commit is refused when the size or
//! the digest does not match; the ingest is then *kept* (unlike containerd, which discards it
//! on a digest mismatch) so the client may abort it or rewrite it from offset 0. A commit of
//! a digest that is already stored answers AlreadyExists and removes the ingest.

mod client;
mod convert;
mod filter;
mod ingest;
mod labels;
mod service;
mod store;
#[cfg(test)]
mod tests;
pub mod testsuite;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub use client::{RemoteContentStore, RemoteWriter};
pub use filter::Filters;
pub use ingest::{LocalWriter, SweepReport};
pub use service::{service, ContentService};
pub use store::{LocalStore, DEFAULT_INGEST_MAX_AGE};

/// Labels of a blob. Sorted, so listings and stored JSON are stable.
pub type Labels = BTreeMap<String, String>;

/// The bytes of a blob, in chunks (up to 1 MiB each from [`LocalStore`]).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// Metadata of a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// When it was committed.
    pub created_at: SystemTime,
    /// When its labels last changed (`created_at` when they never did).
    pub updated_at: SystemTime,
    /// Its labels.
    pub labels: Labels,
}

/// State of an ingest (a write in progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    /// The client-chosen name of the ingest.
    pub reference: String,
    /// Bytes written so far: the offset the next write must start at.
    pub offset: u64,
    /// Expected total size, when a writer said so.
    pub total: Option<u64>,
    /// Expected digest, when a writer said so.
    pub expected: Option<Digest>,
    /// When the ingest began.
    pub started_at: SystemTime,
    /// When data was last written to it.
    pub updated_at: SystemTime,
}

/// The content store interface, implemented by the local store and by the gRPC client.
///
/// Errors use the crate's [`Error`] classes: NotFound (no such blob or ingest),
/// AlreadyExists (committing a stored digest), InvalidArgument (malformed input, or a commit
/// without an expected digest), FailedPrecondition (the ingest is locked by another writer; a
/// write at the wrong offset), DigestMismatch / SizeMismatch (a refused commit), OutOfRange (a
/// read past the end).
///
/// The methods return `Send` futures so that generic code (the gRPC adapter) can run them on
/// a multi-threaded runtime; implementations may still write `async fn`.
pub trait ContentStore: Send + Sync {
    /// An open ingest of this store.
    type Writer: ContentWriter;

    /// Metadata of a committed blob.
    fn info(&self, digest: &Digest) -> impl Future<Output = Result<Info>> + Send;

    /// Changes the labels of a committed blob and returns its metadata afterwards.
    /// `fieldpaths`: `labels` replaces all labels with `labels`; `labels.<key>` sets that
    /// one label from `labels`, or removes it when `labels` lacks the key. Empty: `labels`.
    fn update(
        &self,
        digest: &Digest,
        labels: Labels,
        fieldpaths: &[String],
    ) -> impl Future<Output = Result<Info>> + Send;

    /// Metadata of every committed blob matching `filters`, sorted by digest.
    fn list(&self, filters: &Filters) -> impl Future<Output = Result<Vec<Info>>> + Send;

    /// Removes a committed blob and its labels.
    fn delete(&self, digest: &Digest) -> impl Future<Output = Result<()>> + Send;

    /// The bytes of a blob from `offset`, `len` bytes of them or (None) up to the end. A
    /// range reaching beyond the end is cut at the end; an offset beyond it is OutOfRange.
    fn read(
        &self,
        digest: &Digest,
        offset: u64,
        len: Option<u64>,
    ) -> impl Future<Output = Result<ByteStream>> + Send;

    /// State of one ingest.
    fn status(&self, reference: &str) -> impl Future<Output = Result<IngestStatus>> + Send;

    /// State of every ingest whose ref starts with `prefix`, sorted by ref.
    fn list_statuses(&self, prefix: &str)
        -> impl Future<Output = Result<Vec<IngestStatus>>> + Send;

    /// Cancels an ingest and deletes its data; FailedPrecondition while a writer holds it.
    fn abort(&self, reference: &str) -> impl Future<Output = Result<()>> + Send;

    /// Opens (creating, or resuming at its stored offset) the ingest named `reference` and
    /// takes its lock; FailedPrecondition `ingest <ref> is locked` while another writer holds
    /// it. `total` and `expected`, when given, are recorded and checked at commit.
    fn writer(
        &self,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> impl Future<Output = Result<Self::Writer>> + Send;
}

/// An open ingest. Dropping it releases the ingest's lock and keeps its data (everything
/// written so far) for a later writer. For a remote store the release happens in the
/// background, once the server has handled what was sent: use [`ContentWriter::close`] when
/// the next writer must be able to open the ref at once.
pub trait ContentWriter: Send {
    /// The ingest's state.
    fn status(&mut self) -> impl Future<Output = Result<IngestStatus>> + Send;

    /// Records a new expected total size and/or digest (None leaves the recorded one).
    fn set_expected(
        &mut self,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Writes `data` at `offset`, which must be the current offset (sequential writes) or 0
    /// (start over, discarding what was written); otherwise FailedPrecondition. A remote
    /// writer only sends the data: the server's verdict (an error ends the call) reaches
    /// the caller on a later `write_at`, `status`, `commit` or `close`.
    fn write_at(&mut self, offset: u64, data: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Verifies and commits the blob. `size` and `expected` default to the recorded ones; an
    /// expected digest is required. A mismatch is SizeMismatch / DigestMismatch and keeps the
    /// ingest; a digest already stored is AlreadyExists and removes it. Returns the digest.
    fn commit(
        self,
        size: Option<u64>,
        expected: Option<Digest>,
        labels: Labels,
    ) -> impl Future<Output = Result<Digest>> + Send;

    /// Releases the ingest (keeping its data) and returns once the release is effective.
    fn close(self) -> impl Future<Output = Result<()>> + Send;
}

/// Reads a whole blob into memory: for manifests, configs and other small blobs.
pub async fn read_blob<S: ContentStore>(store: &S, digest: &Digest) -> Result<Vec<u8>> {
    let chunks: Vec<Bytes> = store.read(digest, 0, None).await?.try_collect().await?;
    Ok(chunks.concat())
}

/// Writes `data` as the blob `expected` through the ingest `reference`, resuming a partial
/// ingest when its bytes are a prefix of `data`'s length (their digest is checked at commit
/// anyway). A blob that is already stored counts as written, as containerd's `WriteBlob` does.
pub async fn write_bytes<S: ContentStore>(
    store: &S,
    reference: &str,
    data: Bytes,
    expected: &Digest,
    labels: Labels,
) -> Result<()> {
    let size = data.len() as u64;
    let mut writer = store
        .writer(reference, Some(size), Some(expected.clone()))
        .await?;
    let offset = writer.status().await?.offset;
    // A longer ingest cannot be a prefix of this blob: start over.
    let offset = if offset <= size { offset } else { 0 };
    // `offset <= size` fits in usize: it is at most `data.len()`.
    let start = usize::try_from(offset).unwrap_or(0);
    writer.write_at(offset, data.slice(start..)).await?;
    match writer
        .commit(Some(size), Some(expected.clone()), labels)
        .await
    {
        Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}
