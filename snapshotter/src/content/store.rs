//! [`LocalStore`]: the content store on disk, blobs at `content/blobs/sha256/<hex>`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ingest::{self, Ingest, IngestLocks, LocalWriter, SweepReport};
use super::{labels, ByteStream, ContentStore, Filters, Info, IngestStatus, Labels};
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use crate::metadata::CONTENT_LABELS;

/// Size of the chunks blobs are read, hashed and streamed in.
pub(super) const CHUNK: usize = 1 << 20;

/// Ingests not written to for this long are removed by [`LocalStore::sweep`] at start: long
/// enough for a client to resume an interrupted pull after a restart, short enough that
/// abandoned ones do not pile up.
pub const DEFAULT_INGEST_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The labels record of a blob, as stored in [`CONTENT_LABELS`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    labels: Labels,
    created_at: SystemTime,
    updated_at: SystemTime,
}

/// Paths and handles shared by the store and its open ingests.
#[derive(Debug)]
pub(super) struct Shared {
    /// `content/blobs/sha256`
    blobs: PathBuf,
    /// `content/ingest`
    pub(super) ingests: PathBuf,
    labels: sled::Tree,
    pub(super) locks: Arc<IngestLocks>,
}

/// Runs blocking filesystem work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("content store task", std::io::Error::other(e)))?
}

/// Hashes everything `r` yields, in 1 MiB reads.
pub(super) fn hash_reader(mut r: impl Read) -> std::io::Result<Hasher> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(hasher),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn decode(digest: &Digest, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::io(format!("decode labels of {digest}"), e.into()))
}

fn encode(digest: &Digest, record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(record)
        .map_err(|e| Error::io(format!("encode labels of {digest}"), e.into()))
}

fn not_found(digest: &Digest) -> Error {
    Error::NotFound(format!("blob {digest}"))
}

impl Shared {
    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub(super) fn ingest_dir(&self, reference: &str) -> PathBuf {
        // Hashing makes any ref a safe, fixed-length file name.
        self.ingests.join(Digest::of(reference.as_bytes()).hex())
    }

    fn record(&self, digest: &Digest) -> Result<Option<Record>> {
        let Some(bytes) = self.labels.get(digest.as_str())? else {
            return Ok(None);
        };
        decode(digest, &bytes).map(Some)
    }

    /// Stores the labels of a freshly committed blob, durably: they may carry the
    /// references garbage collection follows.
    pub(super) fn put_record(&self, digest: &Digest, labels: Labels) -> Result<()> {
        let now = SystemTime::now();
        let record = Record {
            labels,
            created_at: now,
            updated_at: now,
        };
        self.labels
            .insert(digest.as_str(), encode(digest, &record)?)?;
        self.labels.flush()?;
        Ok(())
    }

    /// Moves a verified ingest's data into `blobs/` (read-only, never replacing an existing
    /// blob) and fsyncs the directory so the rename survives a crash.
    pub(super) fn install(&self, file: &File, data: &Path, digest: &Digest) -> Result<()> {
        let target = self.blob_path(digest);
        let set_mode = |mode| {
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .context(|| format!("chmod {}", data.display()))
        };
        set_mode(0o444)?;
        let renamed = rustix::fs::renameat_with(
            rustix::fs::CWD,
            data,
            rustix::fs::CWD,
            &target,
            rustix::fs::RenameFlags::NOREPLACE,
        );
        let result = match renamed {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::EXIST) => Err(Error::AlreadyExists(format!("blob {digest}"))),
            // Filesystems without RENAME_NOREPLACE: check, then rename. Two commits of one
            // digest racing here both succeed, which is harmless: their bytes are the same.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                if target.exists() {
                    Err(Error::AlreadyExists(format!("blob {digest}")))
                } else {
                    std::fs::rename(data, &target)
                        .context(|| format!("rename {} to {}", data.display(), target.display()))
                }
            }
            Err(e) => Err(Error::io(
                format!("rename {} to {}", data.display(), target.display()),
                e.into(),
            )),
        };
        if result.is_err() {
            // The ingest stays for a retry; its writer must be able to reopen the data.
            set_mode(0o600)?;
            return result;
        }
        File::open(&self.blobs)
            .and_then(|d| d.sync_all())
            .context(|| format!("fsync {}", self.blobs.display()))
    }

    fn info(&self, digest: &Digest) -> Result<Info> {
        let path = self.blob_path(digest);
        let md = match std::fs::metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(digest)),
            Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
        };
        // A blob without a record (its labels were lost in a crash right after the rename)
        // is still a blob: its mtime stands in for the commit time.
        let record = self.record(digest)?.unwrap_or_else(|| {
            let t = md.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            Record {
                labels: Labels::new(),
                created_at: t,
                updated_at: t,
            }
        });
        Ok(Info {
            digest: digest.clone(),
            size: md.len(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            labels: record.labels,
        })
    }

    /// Read, change and write the record in one transaction, so concurrent updates of
    /// different labels do not lose each other's changes.
    fn update(&self, digest: &Digest, labels: Labels, fieldpaths: &[String]) -> Result<Info> {
        use sled::transaction::{ConflictableTransactionError as Abort, TransactionError};
        let info = self.info(digest)?;
        let record = self
            .labels
            .transaction(|tx| {
                let current = match tx.get(digest.as_str())? {
                    Some(bytes) => decode(digest, &bytes).map_err(Abort::Abort)?,
                    None => Record {
                        labels: Labels::new(),
                        created_at: info.created_at,
                        updated_at: info.updated_at,
                    },
                };
                let record = Record {
                    labels: labels::apply(&current.labels, labels.clone(), fieldpaths)
                        .map_err(Abort::Abort)?,
                    created_at: current.created_at,
                    updated_at: SystemTime::now(),
                };
                tx.insert(
                    digest.as_str(),
                    encode(digest, &record).map_err(Abort::Abort)?,
                )?;
                Ok(record)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => Error::Metadata(e),
            })?;
        self.labels.flush()?;
        tracing::debug!(digest = %digest, "updated labels");
        Ok(Info {
            labels: record.labels,
            created_at: record.created_at,
            updated_at: record.updated_at,
            ..info
        })
    }

    fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        for name in ingest::read_dir(&self.blobs)? {
            // Only names that are digests are blobs.
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                continue;
            };
            match self.info(&digest) {
                Ok(info) if filters.matches(&info) => out.push(info),
                Ok(_) | Err(Error::NotFound(_)) => {} // deleted while we listed
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// Metadata first, file after: a crash in between leaves an unlabelled blob, which
    /// garbage collection removes, never labels pointing at nothing.
    fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        if !path.exists() {
            return Err(not_found(digest));
        }
        self.labels.remove(digest.as_str())?;
        self.labels.flush()?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found(digest)),
            Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
        }
        tracing::info!(digest = %digest, "deleted blob");
        Ok(())
    }

    fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(digest)),
            Err(e) => Err(Error::io(format!("open {}", path.display()), e)),
        }
    }
}

/// The content store on disk. Cheap to clone; clones share the ingest locks.
#[derive(Debug, Clone)]
pub struct LocalStore {
    shared: Arc<Shared>,
}

impl LocalStore {
    /// Opens (creating its directories, mode 0700) the store under `<root>/content`, with
    /// labels in `db`'s [`CONTENT_LABELS`] tree. Call [`LocalStore::sweep`] once at start.
    pub fn open(root: &Path, db: &sled::Db) -> Result<Self> {
        let content = root.join("content");
        let blobs = content.join("blobs").join("sha256");
        let ingests = content.join("ingest");
        for dir in [
            content.clone(),
            content.join("blobs"),
            blobs.clone(),
            ingests.clone(),
        ] {
            berth_rpc::listen::create_dir(&dir, 0o700)?;
        }
        Ok(LocalStore {
            shared: Arc::new(Shared {
                blobs,
                ingests,
                labels: db.open_tree(CONTENT_LABELS)?,
                locks: Arc::default(),
            }),
        })
    }

    /// Where the blob `digest` is (or would be) stored.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.shared.blob_path(digest)
    }

    /// Opens a committed blob for reading (blocking); NotFound when it is not stored.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        self.shared.open_blob(digest)
    }

    /// Re-hashes a stored blob (blocking): DigestMismatch when its bytes on disk no longer
    /// hash to its name, e.g. after tampering or disk corruption.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let file = self.open_blob(digest)?;
        let actual = hash_reader(file)
            .context(|| format!("hash {}", self.path(digest).display()))?
            .finish();
        if actual != *digest {
            tracing::warn!(digest = %digest, actual = %actual, "stored blob is corrupt");
            return Err(Error::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }

    /// Stores all of `reader` as a blob (blocking; run it on the blocking pool), through an
    /// ingest under a private generated ref that is removed on failure.
    ///
    /// With `expected`, the data must have that digest and size (at most size + 1 bytes are
    /// read, so an endless reader cannot fill the disk); when that blob is already stored
    /// the reader is not read at all. Without it, the digest is computed. A blob already
    /// stored counts as written. Returns the digest and size.
    pub fn write_blob(
        &self,
        reader: impl Read,
        expected: Option<(Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        if let Some((digest, size)) = &expected {
            match std::fs::metadata(self.path(digest)) {
                Ok(md) if md.len() == *size => return Ok((digest.clone(), *size)),
                Ok(md) => {
                    return Err(Error::SizeMismatch {
                        what: format!("blob {digest}"),
                        expected: *size,
                        actual: md.len(),
                    })
                }
                Err(_) => {}
            }
        }
        let reference = ingest::temp_name("write-blob");
        let result = self.write_blob_under(&reference, reader, expected);
        if result.is_err() {
            if let Err(e) = ingest::remove(&self.shared, &reference) {
                tracing::warn!(reference, error = %e, "failed write left an ingest behind; sweep removes it");
            }
        }
        result
    }

    fn write_blob_under(
        &self,
        reference: &str,
        reader: impl Read,
        expected: Option<(Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        let (total, digest) = match &expected {
            Some((d, s)) => (Some(*s), Some(d.clone())),
            None => (None, None),
        };
        let mut ingest = Ingest::open(Arc::clone(&self.shared), reference, total, digest)?;
        match total {
            Some(size) => ingest::copy_into(&mut ingest, reader.take(size.saturating_add(1)))?,
            None => ingest::copy_into(&mut ingest, reader)?,
        }
        let (computed, size) = ingest.current_digest()?;
        let digest = expected.map(|(d, _)| d).unwrap_or(computed);
        match ingest.commit(None, Some(digest.clone()), Labels::new()) {
            Ok(_) | Err(Error::AlreadyExists(_)) => Ok((digest, size)),
            Err(e) => Err(e),
        }
    }

    /// Cleans up after a crash (blocking; call once at start, before serving): removes
    /// `.tmp-` leftovers and ingests not written to for longer than `max_age`
    /// ([`DEFAULT_INGEST_MAX_AGE`]); younger ingests stay so clients can resume them.
    pub fn sweep(&self, max_age: Duration) -> Result<SweepReport> {
        let report = ingest::sweep(&self.shared, max_age)?;
        if report != SweepReport::default() {
            tracing::info!(
                ingests = report.ingests_removed,
                temp = report.temp_removed,
                "swept content store"
            );
        }
        Ok(report)
    }

    /// Streams `start..end` of an open blob in [`CHUNK`]-sized reads on the blocking pool.
    fn chunks(file: File, digest: Digest, start: u64, end: u64) -> ByteStream {
        let file = Arc::new(file);
        Box::pin(futures::stream::try_unfold(start, move |pos| {
            let file = Arc::clone(&file);
            let digest = digest.clone();
            async move {
                if pos >= end {
                    return Ok(None);
                }
                // At most CHUNK, so it fits in usize.
                let n = usize::try_from((end - pos).min(CHUNK as u64)).unwrap_or(CHUNK);
                let chunk = blocking(move || {
                    let mut buf = vec![0u8; n];
                    // A short file (truncated on disk) is an error, not a short blob.
                    file.read_exact_at(&mut buf, pos)
                        .context(|| format!("read blob {digest} at offset {pos}"))?;
                    Ok(Bytes::from(buf))
                })
                .await?;
                Ok(Some((chunk, pos + n as u64)))
            }
        }))
    }
}

impl ContentStore for LocalStore {
    type Writer = LocalWriter;

    async fn info(&self, digest: &Digest) -> Result<Info> {
        let (shared, digest) = (Arc::clone(&self.shared), digest.clone());
        blocking(move || shared.info(&digest)).await
    }

    async fn update(&self, digest: &Digest, labels: Labels, fieldpaths: &[String]) -> Result<Info> {
        let (shared, digest, paths) = (
            Arc::clone(&self.shared),
            digest.clone(),
            fieldpaths.to_vec(),
        );
        blocking(move || shared.update(&digest, labels, &paths)).await
    }

    async fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        let (shared, filters) = (Arc::clone(&self.shared), filters.clone());
        blocking(move || shared.list(&filters)).await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let (shared, digest) = (Arc::clone(&self.shared), digest.clone());
        blocking(move || shared.delete(&digest)).await
    }

    async fn read(&self, digest: &Digest, offset: u64, len: Option<u64>) -> Result<ByteStream> {
        let (shared, d) = (Arc::clone(&self.shared), digest.clone());
        let (file, size) = blocking(move || {
            let file = shared.open_blob(&d)?;
            let size = file
                .metadata()
                .context(|| format!("stat {}", shared.blob_path(&d).display()))?
                .len();
            Ok((file, size))
        })
        .await?;
        if offset > size {
            return Err(Error::OutOfRange(format!(
                "offset {offset} is past the end of blob {digest} ({size} bytes)"
            )));
        }
        let end = len.map_or(size, |l| offset.saturating_add(l).min(size));
        tracing::debug!(digest = %digest, offset, end, "reading blob");
        Ok(Self::chunks(file, digest.clone(), offset, end))
    }

    async fn status(&self, reference: &str) -> Result<IngestStatus> {
        let (shared, r) = (Arc::clone(&self.shared), reference.to_string());
        blocking(move || ingest::status(&shared, &r)).await
    }

    async fn list_statuses(&self, prefix: &str) -> Result<Vec<IngestStatus>> {
        let (shared, p) = (Arc::clone(&self.shared), prefix.to_string());
        blocking(move || ingest::list(&shared, &p)).await
    }

    async fn abort(&self, reference: &str) -> Result<()> {
        let (shared, r) = (Arc::clone(&self.shared), reference.to_string());
        blocking(move || ingest::abort(&shared, &r)).await
    }

    async fn writer(
        &self,
        reference: &str,
        total: Option<u64>,
        expected: Option<Digest>,
    ) -> Result<LocalWriter> {
        LocalWriter::open(Arc::clone(&self.shared), reference, total, expected).await
    }
}
