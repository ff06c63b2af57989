//! Ingests: partial writes under `content/ingest/<sha256 of ref>/`, resumable by ref, one
//! writer per ref at a time.
//!
//! The directory is named by the hash of the ref so any ref a client picks (slashes, `..`,
//! very long) is a safe file name; the ref itself is kept in `meta.json`. An ingest dir is
//! built under a `.tmp-` name and renamed into place, so a crash never leaves one without
//! its `meta.json`. The work here is blocking; [`LocalWriter`] runs it on the blocking pool.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::store::{blocking, hash_reader, Shared};
use super::{labels, ContentWriter, IngestStatus, Labels};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};

/// The bytes written so far.
pub(super) const DATA: &str = "data";
/// The ingest's ref and expectations.
const META: &str = "meta.json";
/// Prefix of entries being built (ingest dirs, `meta.json` replacements); swept at start.
pub(super) const TMP_PREFIX: &str = ".tmp-";
/// Refs are names, not payloads.
const MAX_REF_LEN: usize = 1024;

/// What `meta.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "ref")]
    reference: String,
    started_at: SystemTime,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    expected: Option<String>,
}

/// Refuses refs that cannot name an ingest.
pub(super) fn validate_ref(reference: &str) -> Result<()> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument("ingest ref is empty".into()));
    }
    if reference.len() > MAX_REF_LEN {
        return Err(Error::InvalidArgument(format!(
            "ingest ref is {} bytes long, more than {MAX_REF_LEN}",
            reference.len()
        )));
    }
    Ok(())
}

/// The refs held by writers (and, briefly, by aborts) of this process. Only this process
/// writes under `content/`, so an in-memory set is the whole lock.
#[derive(Debug, Default)]
pub(super) struct IngestLocks {
    held: Mutex<HashSet<String>>,
}

impl IngestLocks {
    /// Takes the lock of `reference`, or FailedPrecondition when someone holds it.
    pub(super) fn try_lock(self: &Arc<Self>, reference: &str) -> Result<RefLock> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if !held.insert(reference.to_string()) {
            return Err(Error::FailedPrecondition(format!(
                "ingest {reference} is locked"
            )));
        }
        Ok(RefLock {
            locks: Arc::clone(self),
            reference: reference.to_string(),
        })
    }
}

/// A held ref lock, released on drop.
#[derive(Debug)]
pub(super) struct RefLock {
    locks: Arc<IngestLocks>,
    reference: String,
}

impl Drop for RefLock {
    fn drop(&mut self) {
        let mut held = self
            .locks
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.reference);
    }
}

/// A unique `.tmp-` name: pid, counter and time, so names from an earlier run of the
/// process never collide with ours.
pub(super) fn temp_name(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{TMP_PREFIX}{what}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn read_meta(dir: &Path) -> Result<Option<Meta>> {
    let path = dir.join(META);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::io(format!("parse {}", path.display()), e.into()))
}

/// Replaces `meta.json` atomically: a reader sees the old or the new one, never half.
fn write_meta(dir: &Path, meta: &Meta) -> Result<()> {
    let tmp = dir.join(temp_name("meta"));
    let json = serde_json::to_vec(meta)
        .map_err(|e| Error::io(format!("encode {}", tmp.display()), e.into()))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .context(|| format!("create {}", tmp.display()))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(META)).context(|| format!("rename {}", tmp.display()))
}

fn status_from(meta: &Meta, data: &std::fs::Metadata) -> IngestStatus {
    IngestStatus {
        reference: meta.reference.clone(),
        offset: data.len(),
        total: meta.total,
        expected: meta.expected.as_deref().and_then(|d| Digest::parse(d).ok()),
        started_at: meta.started_at,
        updated_at: data.modified().unwrap_or(meta.started_at),
    }
}

/// The state of the ingest in `dir`; None when there is none.
fn read_status(dir: &Path) -> Result<Option<IngestStatus>> {
    let Some(meta) = read_meta(dir)? else {
        return Ok(None);
    };
    let data = dir.join(DATA);
    match std::fs::metadata(&data) {
        Ok(md) => Ok(Some(status_from(&meta, &md))),
        // A writer recreates a missing data file; until then the ingest is empty.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(IngestStatus {
            reference: meta.reference.clone(),
            offset: 0,
            total: meta.total,
            expected: meta.expected.as_deref().and_then(|d| Digest::parse(d).ok()),
            started_at: meta.started_at,
            updated_at: meta.started_at,
        })),
        Err(e) => Err(Error::io(format!("stat {}", data.display()), e)),
    }
}

/// State of the ingest `reference`.
pub(super) fn status(shared: &Shared, reference: &str) -> Result<IngestStatus> {
    validate_ref(reference)?;
    read_status(&shared.ingest_dir(reference))?
        .filter(|s| s.reference == reference)
        .ok_or_else(|| Error::NotFound(format!("ingest {reference}")))
}

/// State of every ingest whose ref starts with `prefix`, sorted by ref. Unreadable entries
/// are skipped with a warning: one broken ingest must not hide the others.
pub(super) fn list(shared: &Shared, prefix: &str) -> Result<Vec<IngestStatus>> {
    let mut out = Vec::new();
    for entry in read_dir(&shared.ingests)? {
        if entry.starts_with(TMP_PREFIX) {
            continue;
        }
        match read_status(&shared.ingests.join(&entry)) {
            Ok(Some(s)) if s.reference.starts_with(prefix) => out.push(s),
            Ok(_) => {}
            Err(e) => tracing::warn!(entry, error = %e, "skipping unreadable ingest"),
        }
    }
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    Ok(out)
}

/// Deletes the ingest `reference`; FailedPrecondition while a writer holds it.
pub(super) fn abort(shared: &Shared, reference: &str) -> Result<()> {
    validate_ref(reference)?;
    // Holding the lock while deleting keeps a writer from opening the ingest halfway.
    let _lock = shared.locks.try_lock(reference)?;
    let dir = shared.ingest_dir(reference);
    if read_meta(&dir)?.is_none_or(|m| m.reference != reference) {
        return Err(Error::NotFound(format!("ingest {reference}")));
    }
    std::fs::remove_dir_all(&dir).context(|| format!("remove {}", dir.display()))?;
    tracing::info!(reference, "aborted ingest");
    Ok(())
}

/// Names of the entries of `dir` that are valid UTF-8 (ours all are).
pub(super) fn read_dir(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).context(|| format!("read {}", dir.display()))? {
        let entry = entry.context(|| format!("read {}", dir.display()))?;
        if let Ok(name) = entry.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

/// What [`super::LocalStore::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Ingests untouched for longer than the maximum age, or unreadable.
    pub ingests_removed: usize,
    /// `.tmp-` leftovers of interrupted creations.
    pub temp_removed: usize,
}

/// Removes `.tmp-` leftovers, unreadable ingests, and ingests not written to for longer
/// than `max_age` (their writer is presumed gone for good). Ingests held by a writer of
/// this process are left alone.
pub(super) fn sweep(shared: &Shared, max_age: Duration) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let now = SystemTime::now();
    for entry in read_dir(&shared.ingests)? {
        let path = shared.ingests.join(&entry);
        if entry.starts_with(TMP_PREFIX) {
            remove_any(&path)?;
            report.temp_removed += 1;
            continue;
        }
        let status = match read_status(&path) {
            Ok(Some(s)) => s,
            Ok(None) | Err(_) => {
                tracing::warn!(entry, "removing unreadable ingest");
                remove_any(&path)?;
                report.ingests_removed += 1;
                continue;
            }
        };
        // Leftovers of an interrupted meta.json replacement.
        for inner in read_dir(&path).unwrap_or_default() {
            if inner.starts_with(TMP_PREFIX) {
                remove_any(&path.join(inner))?;
                report.temp_removed += 1;
            }
        }
        // In-process writes (`write_blob`) cannot be resumed by anyone once their process
        // is gone: they are temporary state, whatever their age.
        let private = status.reference.starts_with(TMP_PREFIX);
        let idle = now.duration_since(status.updated_at).unwrap_or_default();
        if idle <= max_age && !private {
            continue;
        }
        let Ok(_lock) = shared.locks.try_lock(&status.reference) else {
            continue;
        };
        tracing::info!(reference = status.reference, idle = ?idle, "removing stale ingest");
        remove_any(&path)?;
        report.ingests_removed += 1;
    }
    Ok(report)
}

fn remove_any(path: &Path) -> Result<()> {
    let res = match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.context(|| format!("remove {}", path.display()))
}

/// An open ingest, holding its ref's lock. Blocking.
pub(super) struct Ingest {
    shared: Arc<Shared>,
    dir: PathBuf,
    meta: Meta,
    file: File,
    offset: u64,
    updated_at: SystemTime,
    /// Hash of bytes 0..offset, when this handle saw all of them; a resumed ingest has
    /// none until commit hashes the file.
    hasher: Option<Hasher>,
    _lock: RefLock,
}

impl Ingest {
    /// Opens or creates the ingest `reference`.
    pub(super) fn open(
        shared: Arc<Shared>,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<Self> {
        validate_ref(reference)?;
        let lock = shared.locks.try_lock(reference)?;
        let dir = shared.ingest_dir(reference);
        let meta = match read_meta(&dir) {
            Ok(Some(meta)) if meta.reference == reference => meta,
            // A ref hashing to another ref's dir cannot happen with sha256; a broken or
            // foreign meta.json is replaced, and its data with it.
            Ok(_) | Err(_) => {
                if dir.exists() {
                    tracing::warn!(reference, dir = %dir.display(), "replacing broken ingest");
                    remove_any(&dir)?;
                }
                create(&shared, &dir, reference)?
            }
        };
        let data = dir.join(DATA);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            // Resuming: the bytes already written are the point.
            .truncate(false)
            .mode(0o600)
            .open(&data)
            .context(|| format!("open {}", data.display()))?;
        let md = file
            .metadata()
            .context(|| format!("stat {}", data.display()))?;
        let offset = md.len();
        let mut ingest = Ingest {
            updated_at: md.modified().unwrap_or(meta.started_at),
            shared,
            dir,
            meta,
            file,
            offset,
            hasher: (offset == 0).then(Hasher::new),
            _lock: lock,
        };
        ingest.set_expected(total, expected)?;
        tracing::debug!(reference, offset, "opened ingest");
        Ok(ingest)
    }

    pub(super) fn status(&self) -> IngestStatus {
        IngestStatus {
            reference: self.meta.reference.clone(),
            offset: self.offset,
            total: self.meta.total,
            expected: self
                .meta
                .expected
                .as_deref()
                .and_then(|d| Digest::parse(d).ok()),
            started_at: self.meta.started_at,
            updated_at: self.updated_at,
        }
    }

    /// Records new expectations, writing `meta.json` only when they change.
    pub(super) fn set_expected(
        &mut self,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<()> {
        let mut meta = self.meta.clone();
        if total.is_some() {
            meta.total = total;
        }
        if let Some(d) = expected {
            meta.expected = Some(d.to_string());
        }
        if meta.total != self.meta.total || meta.expected != self.meta.expected {
            write_meta(&self.dir, &meta)?;
            self.meta = meta;
        }
        Ok(())
    }

    pub(super) fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset != self.offset {
            if offset != 0 {
                return Err(Error::FailedPrecondition(format!(
                    "write at offset {offset} to ingest {}, which is at offset {}",
                    self.meta.reference, self.offset
                )));
            }
            self.file
                .set_len(0)
                .context(|| format!("truncate {}", self.dir.join(DATA).display()))?;
            self.offset = 0;
            self.hasher = Some(Hasher::new());
        }
        if data.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(data, offset)
            .context(|| format!("write {}", self.dir.join(DATA).display()))?;
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        self.offset += data.len() as u64;
        self.updated_at = SystemTime::now();
        Ok(())
    }

    /// Digest and length of the bytes written, hashing the file when this handle did not
    /// see them all (a resumed ingest).
    pub(super) fn current_digest(&mut self) -> Result<(Digest, u64)> {
        if let Some(h) = self.hasher.as_ref().filter(|h| h.len() == self.offset) {
            return Ok((h.clone().finish(), self.offset));
        }
        let data = self.dir.join(DATA);
        let file = File::open(&data).context(|| format!("open {}", data.display()))?;
        let hasher = hash_reader(file).context(|| format!("hash {}", data.display()))?;
        let len = hasher.len();
        self.hasher = Some(hasher.clone());
        Ok((hasher.finish(), len))
    }

    /// Verifies and installs the blob (see [`ContentWriter::commit`]).
    pub(super) fn commit(
        mut self,
        size: Option<u64>,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<Digest> {
        labels::validate(&labels)?;
        self.set_expected(size, expected)?;
        let reference = self.meta.reference.clone();
        let expected = self
            .meta
            .expected
            .as_deref()
            .map(Digest::parse)
            .transpose()?
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "commit of ingest {reference}: no expected digest was given"
                ))
            })?;
        let what = format!("ingest {reference}");
        self.file
            .sync_all()
            .context(|| format!("fsync {}", self.dir.join(DATA).display()))?;
        let (actual, len) = self.current_digest()?;
        if let Some(total) = self.meta.total.filter(|t| *t != len) {
            return Err(Error::SizeMismatch {
                what,
                expected: total,
                actual: len,
            });
        }
        if actual != expected {
            return Err(Error::DigestMismatch {
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let installed = self
            .shared
            .install(&self.file, &self.dir.join(DATA), &expected);
        // Installed or already there: either way this ingest has nothing left to give.
        if installed.is_ok() || matches!(installed, Err(Error::AlreadyExists(_))) {
            if let Err(e) = remove_any(&self.dir) {
                tracing::warn!(reference, error = %e, "ingest left behind after commit; sweep removes it");
            }
        }
        installed?;
        self.shared.put_record(&expected, labels)?;
        tracing::info!(digest = %expected, size = len, reference, "committed blob");
        Ok(expected)
    }
}

/// Creates the ingest dir under a temp name and renames it into place.
fn create(shared: &Shared, dir: &Path, reference: &str) -> Result<Meta> {
    let tmp = shared.ingests.join(temp_name("ingest"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .context(|| format!("create {}", tmp.display()))?;
    let meta = Meta {
        reference: reference.to_string(),
        started_at: SystemTime::now(),
        total: None,
        expected: None,
    };
    let built = write_meta(&tmp, &meta).and_then(|()| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.join(DATA))
            .context(|| format!("create {}", tmp.join(DATA).display()))?;
        std::fs::rename(&tmp, dir)
            .context(|| format!("rename {} to {}", tmp.display(), dir.display()))
    });
    if built.is_err() {
        let _ = remove_any(&tmp);
    }
    built.map(|()| meta)
}

/// Removes the ingest dir of `reference` if it exists (no lock taken: for the owner of a
/// private ref, e.g. [`super::LocalStore::write_blob`] cleaning up after a failure).
pub(super) fn remove(shared: &Shared, reference: &str) -> Result<()> {
    remove_any(&shared.ingest_dir(reference))
}

/// Writes all of `reader` to `ingest` from offset 0, in 1 MiB reads.
pub(super) fn copy_into(ingest: &mut Ingest, mut reader: impl Read) -> Result<()> {
    let mut buf = vec![0u8; super::store::CHUNK];
    let mut offset = 0;
    // Start over even if a stale ingest of the same name had bytes.
    ingest.write_at(0, &[])?;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read blob data to store", e)),
        };
        ingest.write_at(offset, &buf[..n])?;
        offset += n as u64;
    }
}

/// [`ContentWriter`] of [`super::LocalStore`]: an open ingest, its file work run on the
/// blocking pool.
pub struct LocalWriter {
    /// None only while an operation runs on the blocking pool, or after one was cancelled
    /// midway (the handle, and with it the lock, was then dropped on the pool).
    ingest: Option<Ingest>,
    reference: String,
}

impl std::fmt::Debug for LocalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWriter")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl LocalWriter {
    pub(super) async fn open(
        shared: Arc<Shared>,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<Self> {
        let r = reference.to_string();
        let ingest = blocking(move || Ingest::open(shared, &r, total, expected)).await?;
        Ok(LocalWriter {
            ingest: Some(ingest),
            reference: reference.to_string(),
        })
    }

    fn take(&mut self) -> Result<Ingest> {
        self.ingest.take().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "writer of ingest {} was interrupted; open a new one",
                self.reference
            ))
        })
    }

    /// Runs `f` on the ingest on the blocking pool and puts the ingest back.
    async fn run<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Ingest) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut ingest = self.take()?;
        let (ingest, res) = blocking(move || {
            let res = f(&mut ingest);
            Ok((ingest, res))
        })
        .await?;
        self.ingest = Some(ingest);
        res
    }
}

impl ContentWriter for LocalWriter {
    async fn status(&mut self) -> Result<IngestStatus> {
        match &self.ingest {
            Some(i) => Ok(i.status()),
            None => self.take().map(|i| i.status()),
        }
    }

    async fn set_expected(&mut self, total: Option<u64>, expected: Option<Digest>) -> Result<()> {
        self.run(move |i| i.set_expected(total, expected)).await
    }

    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<()> {
        self.run(move |i| i.write_at(offset, &data)).await
    }

    async fn commit(
        mut self,
        size: Option<u64>,
        expected: Option<Digest>,
        labels: Labels,
    ) -> Result<Digest> {
        let ingest = self.take()?;
        blocking(move || ingest.commit(size, expected, labels)).await
    }

    async fn close(self) -> Result<()> {
        // Dropping the handle releases the lock at once.
        Ok(())
    }
}
