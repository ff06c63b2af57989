//! Snapshots: overlayfs layers as parent chains of directories.
//!
//! The model is containerd's (`core/snapshots/snapshotter.go`): a snapshot is named by a
//! caller-chosen key and is one of three [`Kind`]s. **Active** snapshots are writable (made by
//! [`Snapshotter::prepare`]); **views** are read-only (made by [`Snapshotter::view`]);
//! **committed** snapshots are immutable and are the only ones that can be parents (made by
//! [`Snapshotter::commit`] of an active snapshot). A snapshot with children cannot be
//! removed. The snapshotter does not mount anything: it returns [`Mount`] lists that the
//! caller applies with [`crate::mount`].
//!
//! - [`Snapshotter`]: the domain trait, implemented by [`OverlaySnapshotter`] (on disk) and
//!   [`RemoteSnapshotter`] (a gRPC client), both checked by [`testsuite::run`].
//! - [`SnapshotsService`]: the gRPC adapter serving any [`Snapshotter`] as
//!   `berth.snapshots.v1.Snapshots` (Diff and Apply are served elsewhere).

mod convert;
mod filter;
pub mod layers;
mod overlay;
mod remote;
mod service;
mod store;
pub mod testsuite;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::Result;
pub use crate::mount::Mount;
pub use filter::Filters;
pub use overlay::{OverlaySnapshotter, Staged};
pub use remote::RemoteSnapshotter;
pub use service::{service, store_service, SnapshotsService};

/// Labels of a snapshot.
pub type Labels = HashMap<String, String>;

/// The kind of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable; can be committed.
    Active,
    /// Read-only view of a committed snapshot; cannot be committed.
    View,
    /// Immutable; can be a parent.
    Committed,
}

impl Kind {
    /// The lower-case name used in filters and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The snapshot's key (for a committed snapshot, the name it was committed under).
    pub name: String,
    /// Key of the parent, a committed snapshot; empty for a snapshot on an empty
    /// filesystem (as in the proto and in `parent` arguments).
    pub parent: String,
    /// Kind.
    pub kind: Kind,
    /// When the snapshot was created (for a committed one: when it was committed).
    pub created: SystemTime,
    /// When its metadata last changed.
    pub updated: SystemTime,
    /// Labels.
    pub labels: Labels,
}

/// Disk space used by a snapshot on its own, not counting its parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes of disk blocks used (hard-linked files counted once).
    pub size: u64,
    /// Inodes used.
    pub inodes: u64,
}

/// What [`Snapshotter::cleanup`] freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cleaned {
    /// Leftover directories deleted.
    pub removed: u64,
    /// Bytes freed.
    pub reclaimed_bytes: u64,
}

/// Largest key or name a snapshot may have, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest label (key and value together), in bytes, as containerd allows.
pub const MAX_LABEL_LEN: usize = 4096;

/// Checks a snapshot key or name given by a caller.
pub fn validate_key(what: &str, key: &str) -> Result<()> {
    use crate::error::Error;
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes long; at most {MAX_KEY_LEN} are allowed",
            key.len()
        )));
    }
    Ok(())
}

/// Checks labels given by a caller.
pub fn validate_labels(labels: &Labels) -> Result<()> {
    use crate::error::Error;
    for (k, v) in labels {
        if k.is_empty() {
            return Err(Error::InvalidArgument(
                "label keys must not be empty".into(),
            ));
        }
        if k.len() + v.len() > MAX_LABEL_LEN {
            return Err(Error::InvalidArgument(format!(
                "label {k:?} is longer than {MAX_LABEL_LEN} bytes (key and value)"
            )));
        }
    }
    Ok(())
}

/// A snapshotter: creates, commits and removes layered filesystems and says how to mount
/// them. Implemented on disk by [`OverlaySnapshotter`] and over gRPC by
/// [`RemoteSnapshotter`]; [`testsuite::run`] checks an implementation.
///
/// A `parent` argument is the key of a committed snapshot, or `""` for none (as in the
/// proto and containerd). Errors use the crate's [`Error`](crate::Error) classes:
/// `NotFound` (no such snapshot or parent), `AlreadyExists` (key or name taken),
/// `InvalidArgument` (malformed key or labels, a parent that is not committed),
/// `FailedPrecondition` (removing a snapshot with children, committing or mounting a
/// snapshot of the wrong kind).
pub trait Snapshotter: Send + Sync + 'static {
    /// Creates an active snapshot `key` on `parent` and returns the mounts of its writable
    /// filesystem.
    fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> impl Future<Output = Result<Vec<Mount>>> + Send;

    /// Creates a read-only view `key` of `parent` and returns its mounts.
    fn view(
        &self,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> impl Future<Output = Result<Vec<Mount>>> + Send;

    /// Returns the mounts of an active snapshot or a view again.
    fn mounts(&self, key: &str) -> impl Future<Output = Result<Vec<Mount>>> + Send;

    /// Commits the active snapshot `key` as the committed snapshot `name` with `labels`;
    /// `key` is gone afterwards. Nothing may have `key` mounted any more.
    fn commit(
        &self,
        name: &str,
        key: &str,
        labels: Labels,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes a snapshot that has no children; its key is free at once.
    fn remove(&self, key: &str) -> impl Future<Output = Result<()>> + Send;

    /// The metadata of a snapshot.
    fn stat(&self, key: &str) -> impl Future<Output = Result<Info>> + Send;

    /// Changes the labels of snapshot `info.name`. `fieldpaths`: `"labels"` replaces all
    /// labels with `info.labels`; `"labels.<k>"` sets label `k` from `info.labels`, or
    /// removes it when `info.labels` lacks it. Empty means `["labels"]`. Returns the
    /// updated metadata.
    fn update(
        &self,
        info: Info,
        fieldpaths: &[String],
    ) -> impl Future<Output = Result<Info>> + Send;

    /// The snapshots matching `filters`, ordered by name.
    fn list(&self, filters: &Filters) -> impl Future<Output = Result<Vec<Info>>> + Send;

    /// Disk space the snapshot uses on its own.
    fn usage(&self, key: &str) -> impl Future<Output = Result<Usage>> + Send;

    /// Deletes leftovers of removed snapshots and interrupted operations.
    fn cleanup(&self) -> impl Future<Output = Result<Cleaned>> + Send;

    /// True when `key` exists and is committed (e.g. a layer already unpacked under its
    /// chain ID).
    fn is_committed(&self, key: &str) -> impl Future<Output = Result<bool>> + Send {
        async move {
            match self.stat(key).await {
                Ok(info) => Ok(info.kind == Kind::Committed),
                Err(crate::error::Error::NotFound(_)) => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}
