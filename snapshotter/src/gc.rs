//! Garbage collection: mark everything reachable from the roots — image records, and the
//! active and view snapshots (containers, unpacks in progress) — then sweep the rest.
//! Metadata goes first, files after, so a crash in between leaves only orphan files that
//! the startup sweep removes.

use std::collections::{BTreeSet, HashMap};

use crate::content::{ContentStore, Filters as ContentFilters};
use crate::digest::Digest;
use crate::error::Result;
use crate::images::walk::walk;
use crate::snapshots::{Filters as SnapshotFilters, Kind, Snapshotter};
use crate::store::Store;

/// What a collection removed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    /// Blobs deleted.
    pub blobs: u64,
    /// Snapshots removed.
    pub snapshots: u64,
    /// Bytes freed.
    pub reclaimed: u64,
}

/// Runs one collection. Blocking.
pub fn collect(store: &Store) -> Result<Report> {
    let _gc = store.collecting();
    let rt = tokio::runtime::Handle::current();
    let mut blobs = BTreeSet::new();
    let mut chains = BTreeSet::new();
    for record in store.images.list()? {
        match walk(store, &record.target) {
            Ok(w) => {
                blobs.extend(w.blobs);
                chains.extend(w.chains);
            }
            // A record whose blobs are damaged keeps nothing but is not fatal for others.
            Err(e) => tracing::warn!(image = %record.name, error = %e, "cannot walk image"),
        }
    }
    let snapshots = rt.block_on(store.snapshots.list(&SnapshotFilters::default()))?;
    let parents: HashMap<String, String> = snapshots
        .iter()
        .map(|s| (s.name.clone(), s.parent.clone()))
        .collect();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut mark = |mut name: String| {
        while !name.is_empty() && keep.insert(name.clone()) {
            name = parents.get(&name).cloned().unwrap_or_default();
        }
    };
    for s in &snapshots {
        if s.kind != Kind::Committed || chains.contains(&s.name) {
            mark(s.name.clone());
        }
    }
    let mut report = Report::default();
    // Children before parents: a snapshot with children cannot be removed.
    let mut doomed: Vec<_> = snapshots
        .iter()
        .filter(|s| !keep.contains(&s.name))
        .collect();
    while !doomed.is_empty() {
        let has_child: BTreeSet<&str> = doomed.iter().map(|s| s.parent.as_str()).collect();
        let (leaves, rest): (Vec<_>, Vec<_>) = doomed
            .into_iter()
            .partition(|s| !has_child.contains(s.name.as_str()));
        if leaves.is_empty() {
            break;
        }
        for s in leaves {
            let size = rt
                .block_on(store.snapshots.usage(&s.name))
                .map(|u| u.size)
                .unwrap_or(0);
            match rt.block_on(store.snapshots.remove(&s.name)) {
                Ok(()) => {
                    report.snapshots += 1;
                    report.reclaimed += size;
                }
                Err(e) => tracing::warn!(snapshot = %s.name, error = %e, "cannot remove"),
            }
        }
        doomed = rest;
    }
    for info in rt.block_on(store.content.list(&ContentFilters::default()))? {
        if blobs.contains(info.digest.as_str()) {
            continue;
        }
        let digest: Digest = info.digest.clone();
        match rt.block_on(store.content.delete(&digest)) {
            Ok(()) => {
                report.blobs += 1;
                report.reclaimed += info.size;
            }
            Err(e) => tracing::warn!(digest = %digest, error = %e, "cannot delete blob"),
        }
    }
    tracing::info!(
        blobs = report.blobs,
        snapshots = report.snapshots,
        reclaimed = report.reclaimed,
        "garbage collected"
    );
    Ok(report)
}
