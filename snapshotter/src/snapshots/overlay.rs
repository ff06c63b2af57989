//! The overlayfs snapshotter (containerd's `plugins/snapshots/overlay`).
//!
//! On disk, every snapshot is `<root>/snapshots/<id>/` with `fs/` (its own files: the upper
//! directory while active, a lower directory once committed) and, for active snapshots,
//! `work/` (overlayfs's work directory). Ids are numbers from a counter, never user keys, so
//! no key can reach the filesystem.
//!
//! Crash safety comes from ordering, not from locks that a crash would forget:
//! - create: build `tmp-<unique>/`, rename it to `<id>/`, then record the metadata. A crash
//!   leaves at most a directory nobody references.
//! - remove: delete the metadata, rename `<id>/` to `rm-<id>/`, then delete it. A crash
//!   leaves at most a directory nobody references.
//!
//! Such leftovers (`tmp-*`, `rm-*`, ids without a record) are swept at start and by
//! [`Snapshotter::cleanup`].

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use super::store::{check_parent, Record, Store};
use super::{
    validate_key, validate_labels, Cleaned, Filters, Info, Kind, Labels, Mount, Snapshotter, Usage,
};
use crate::error::{Error, IoContext, Result};

/// Prefix of directories being built.
const TMP_PREFIX: &str = "tmp-";
/// Prefix of directories being deleted.
const RM_PREFIX: &str = "rm-";

/// Snapshots as overlayfs directories under `<root>/snapshots`, metadata in sled.
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct OverlaySnapshotter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OverlaySnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlaySnapshotter")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// `<root>/snapshots`.
    dir: PathBuf,
    store: Store,
    /// Creating and removing take it shared, sweeping takes it exclusive: a sweep must not
    /// delete a directory that a prepare has renamed into place but not recorded yet, nor
    /// one that a remove is deleting.
    sweep: RwLock<()>,
    /// Pass `index=off`: with the kernel's inode index on, mounting a lower directory under
    /// a second upper directory fails, and snapshots share lowers all the time.
    index_off: bool,
}

impl OverlaySnapshotter {
    /// Opens the snapshotter at `<root>/snapshots` with records in `db` (from
    /// [`crate::metadata::open`]), and sweeps what a crash left behind.
    pub async fn open(root: &Path, db: &sled::Db) -> Result<Self> {
        let dir = root.join("snapshots");
        berth_rpc::listen::create_dir(&dir, 0o700)?;
        let sn = OverlaySnapshotter {
            inner: Arc::new(Inner {
                dir,
                store: Store::open(db)?,
                sweep: RwLock::new(()),
                index_off: Path::new("/sys/module/overlay/parameters/index").exists(),
            }),
        };
        let swept = sn.blocking(|i| i.cleanup()).await?;
        if swept.removed > 0 {
            tracing::info!(
                removed = swept.removed,
                bytes = swept.reclaimed_bytes,
                "swept leftover snapshot directories"
            );
        }
        Ok(sn)
    }

    /// A staging directory for a layer unpacked before its parent chain exists; see
    /// [`Staged`].
    pub fn stage(&self) -> Result<Staged> {
        self.inner.stage()
    }

    /// Commits a [`Staged`] directory as snapshot `name` on `parent` ("" for none).
    pub fn commit_staged(
        &self,
        staged: Staged,
        name: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<()> {
        self.inner.commit_staged(staged, name, parent, labels)
    }

    /// The directory holding the snapshot's own files: the overlay upper directory of an
    /// active snapshot (write a layer's files here, unmounted, then commit), or the layer
    /// of a committed one (its changes relative to its parent, for Diff). Views have none.
    pub fn upper_dir(&self, key: &str) -> Result<PathBuf> {
        let rec = self.inner.store.get_required(key)?;
        if rec.kind == Kind::View {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is a view; it has no files of its own"
            )));
        }
        Ok(self.inner.fs_dir(rec.id))
    }

    /// The directories of the snapshot's parents, nearest first: what overlayfs stacks
    /// below [`upper_dir`](Self::upper_dir).
    pub fn lower_dirs(&self, key: &str) -> Result<Vec<PathBuf>> {
        let rec = self.inner.store.get_required(key)?;
        Ok(self
            .inner
            .parent_ids(&rec)?
            .into_iter()
            .map(|id| self.inner.fs_dir(id))
            .collect())
    }

    /// Runs `f` on a blocking thread: every operation touches the disk.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::io("snapshot operation", std::io::Error::other(e))),
        }
    }
}

impl Snapshotter for OverlaySnapshotter {
    async fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let (key, parent) = (key.to_string(), parent.to_string());
        self.blocking(move |i| i.create(Kind::Active, &key, &parent, labels))
            .await
    }

    async fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let (key, parent) = (key.to_string(), parent.to_string());
        self.blocking(move |i| i.create(Kind::View, &key, &parent, labels))
            .await
    }

    async fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let key = key.to_string();
        self.blocking(move |i| {
            let rec = i.store.get_required(&key)?;
            if rec.kind == Kind::Committed {
                return Err(Error::FailedPrecondition(format!(
                    "snapshot {key:?} is committed; mount a view of it instead"
                )));
            }
            i.mounts(&rec)
        })
        .await
    }

    async fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        let (name, key) = (name.to_string(), key.to_string());
        self.blocking(move |i| {
            validate_key("snapshot name", &name)?;
            validate_labels(&labels)?;
            let rec = i.store.commit(&name, &key, &labels)?;
            i.store.flush()?;
            tracing::info!(key = %key, name = %name, id = rec.id, "snapshot committed");
            Ok(())
        })
        .await
    }

    async fn remove(&self, key: &str) -> Result<()> {
        let key = key.to_string();
        self.blocking(move |i| i.remove(&key)).await
    }

    async fn stat(&self, key: &str) -> Result<Info> {
        let key = key.to_string();
        self.blocking(move |i| Ok(i.store.get_required(&key)?.info(&key)))
            .await
    }

    async fn update(&self, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let change = LabelChange::new(info.labels, fieldpaths)?;
        let key = info.name;
        self.blocking(move |i| {
            let rec = i.store.update_labels(&key, |labels| change.apply(labels))?;
            i.store.flush()?;
            tracing::debug!(key = %key, "snapshot labels updated");
            Ok(rec.info(&key))
        })
        .await
    }

    async fn list(&self, filters: &Filters) -> Result<Vec<Info>> {
        let filters = filters.clone();
        self.blocking(move |i| {
            Ok(i.store
                .all()?
                .into_iter()
                .map(|(key, rec)| rec.info(&key))
                .filter(|info| filters.matches(info))
                .collect())
        })
        .await
    }

    async fn usage(&self, key: &str) -> Result<Usage> {
        let key = key.to_string();
        self.blocking(move |i| {
            let rec = i.store.get_required(&key)?;
            disk_usage(&i.fs_dir(rec.id))
        })
        .await
    }

    async fn cleanup(&self) -> Result<Cleaned> {
        self.blocking(|i| i.cleanup()).await
    }
}

/// A validated label update.
struct LabelChange {
    labels: Labels,
    /// `None`: replace all labels; otherwise the label keys to set or remove.
    keys: Option<Vec<String>>,
}

impl LabelChange {
    fn new(labels: Labels, fieldpaths: &[String]) -> Result<Self> {
        validate_labels(&labels)?;
        let mut keys = Some(Vec::new());
        for path in fieldpaths {
            if path == "labels" {
                keys = None;
            } else if let Some(k) = path.strip_prefix("labels.").filter(|k| !k.is_empty()) {
                if let Some(keys) = &mut keys {
                    keys.push(k.to_string());
                }
            } else {
                return Err(Error::InvalidArgument(format!(
                    "field {path:?} cannot be updated; only \"labels\" and \"labels.<key>\" can"
                )));
            }
        }
        if fieldpaths.is_empty() {
            keys = None;
        }
        Ok(LabelChange { labels, keys })
    }

    fn apply(&self, labels: &mut Labels) {
        match &self.keys {
            None => labels.clone_from(&self.labels),
            Some(keys) => {
                for k in keys {
                    match self.labels.get(k) {
                        Some(v) => labels.insert(k.clone(), v.clone()),
                        None => labels.remove(k),
                    };
                }
            }
        }
    }
}

impl Inner {
    fn snapshot_dir(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("fs")
    }

    fn work_dir(&self, id: u64) -> PathBuf {
        self.snapshot_dir(id).join("work")
    }

    /// Ids of the parent chain, nearest first.
    fn parent_ids(&self, rec: &Record) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = rec.parent.clone();
        while let Some(key) = next {
            // A parent cannot be removed while it has children, so a missing one means the
            // metadata is damaged.
            let p = self.store.get(&key)?.ok_or_else(|| {
                Error::io(
                    format!("read parent snapshot {key:?}"),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the parent's record is missing",
                    ),
                )
            })?;
            ids.push(p.id);
            next = p.parent;
        }
        Ok(ids)
    }

    /// The mounts of an active snapshot or view, as containerd's overlay snapshotter makes
    /// them.
    fn mounts(&self, rec: &Record) -> Result<Vec<Mount>> {
        let parents = self.parent_ids(rec)?;
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let bind = |dir: PathBuf, ro: bool| {
            vec![Mount {
                fs_type: "bind".into(),
                source: path(dir),
                target: String::new(),
                options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
            }]
        };
        // overlayfs needs at least one lower directory (two without an upper one): the
        // smaller cases are bind mounts.
        match (rec.kind, parents.as_slice()) {
            (Kind::Active, []) => return Ok(bind(self.fs_dir(rec.id), false)),
            (Kind::View, []) => return Ok(bind(self.fs_dir(rec.id), true)),
            (Kind::View, [only]) => return Ok(bind(self.fs_dir(*only), true)),
            _ => {}
        }
        let mut options = Vec::new();
        if self.index_off {
            options.push("index=off".to_string());
        }
        if rec.kind == Kind::Active {
            options.push(format!("workdir={}", path(self.work_dir(rec.id))));
            options.push(format!("upperdir={}", path(self.fs_dir(rec.id))));
        } else {
            // Only lower directories: overlayfs is read-only anyway; "ro" says so to
            // whoever reads the mounts.
            options.push("ro".into());
        }
        let lowers: Vec<String> = parents.iter().map(|id| path(self.fs_dir(*id))).collect();
        options.push(format!("lowerdir={}", lowers.join(":")));
        Ok(vec![Mount {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options,
        }])
    }

    fn create(&self, kind: Kind, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        validate_key("snapshot key", key)?;
        validate_labels(&labels)?;
        let parent = (!parent.is_empty()).then_some(parent);
        // Checked again inside the transaction; checking first spares the disk work for
        // the common mistakes.
        if self.store.get(key)?.is_some() {
            return Err(Error::AlreadyExists(format!("snapshot {key:?}")));
        }
        let parent_rec = match parent {
            None => None,
            Some(p) => {
                let rec = self
                    .store
                    .get(p)?
                    .ok_or_else(|| Error::NotFound(format!("parent snapshot {p:?}")))?;
                check_parent(p, rec.kind)?;
                Some(rec)
            }
        };

        let _shared = self.sweep.read().unwrap_or_else(PoisonError::into_inner);
        let tmp = self.make_tmp_dir(kind, parent.zip(parent_rec.as_ref()))?;
        let id = match self.store.next_id() {
            Ok(id) => id,
            Err(e) => {
                remove_dir_logged(&tmp);
                return Err(e);
            }
        };
        let dir = self.snapshot_dir(id);
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            remove_dir_logged(&tmp);
            return Err(Error::io(
                format!("rename {} to {}", tmp.display(), dir.display()),
                e,
            ));
        }
        let now = SystemTime::now();
        let rec = Record {
            id,
            kind,
            parent: parent.map(str::to_string),
            created: now,
            updated: now,
            labels,
            children: 0,
        };
        // The rename must be on disk before the record that points at it.
        let recorded = sync_dir(&self.dir)
            .and_then(|()| self.store.create(key, &rec))
            .and_then(|()| self.store.flush());
        if let Err(e) = recorded {
            self.delete_dir(id);
            return Err(e);
        }
        tracing::info!(key = %key, id, kind = %kind, parent = ?parent, "snapshot created");
        self.mounts(&rec)
    }

    /// Builds a new snapshot directory under a temporary name.
    fn make_tmp_dir(&self, kind: Kind, parent: Option<(&str, &Record)>) -> Result<PathBuf> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let tmp = self.dir.join(format!(
            "{TMP_PREFIX}{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let mkdir = |p: &Path, mode: u32| {
            std::fs::DirBuilder::new()
                .mode(mode)
                .create(p)
                .context(|| format!("create {}", p.display()))
        };
        mkdir(&tmp, 0o700)?;
        let built = (|| {
            let fs = tmp.join("fs");
            mkdir(&fs, 0o755)?;
            if let Some((p_key, p)) = parent {
                // overlayfs shows the upper directory's owner and mode for the root of the
                // merged tree, so a fresh root:root 0755 upper would hide what the layers
                // below set for "/".
                let from = self.fs_dir(p.id);
                let st = match std::fs::metadata(&from) {
                    Ok(st) => st,
                    // Removed since we looked it up; the transaction would refuse it too.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Error::NotFound(format!("parent snapshot {p_key:?}")))
                    }
                    Err(e) => return Err(Error::io(format!("stat {}", from.display()), e)),
                };
                std::os::unix::fs::chown(&fs, Some(st.uid()), Some(st.gid()))
                    .context(|| format!("chown {}", fs.display()))?;
                std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(st.mode() & 0o7777))
                    .context(|| format!("chmod {}", fs.display()))?;
            } else {
                // The umask may have narrowed the mode asked for.
                std::fs::set_permissions(&fs, std::fs::Permissions::from_mode(0o755))
                    .context(|| format!("chmod {}", fs.display()))?;
            }
            if kind == Kind::Active {
                mkdir(&tmp.join("work"), 0o711)?;
            }
            Ok(())
        })();
        match built {
            Ok(()) => Ok(tmp),
            Err(e) => {
                remove_dir_logged(&tmp);
                Err(e)
            }
        }
    }

    /// A directory to unpack a layer into before its parent chain is committed, so the
    /// layers of an image can be unpacked in parallel; `commit_staged` then makes
    /// it a committed snapshot with a rename. It lives under a `tmp-` name, so a crash
    /// leaves nothing the start-up sweep does not remove.
    pub fn stage(&self) -> Result<Staged> {
        let _shared = self.sweep.read().unwrap_or_else(PoisonError::into_inner);
        let tmp = self.make_tmp_dir(Kind::Committed, None)?;
        Ok(Staged { tmp, done: false })
    }

    /// Records `staged` as committed snapshot `name` on `parent` (a committed snapshot,
    /// or "" for none).
    pub fn commit_staged(
        &self,
        mut staged: Staged,
        name: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<()> {
        validate_key("snapshot name", name)?;
        validate_labels(&labels)?;
        if self.store.get(name)?.is_some() {
            return Err(Error::AlreadyExists(format!("snapshot {name:?}")));
        }
        let parent = (!parent.is_empty()).then_some(parent);
        if let Some(p) = parent {
            let rec = self
                .store
                .get(p)?
                .ok_or_else(|| Error::NotFound(format!("parent snapshot {p:?}")))?;
            check_parent(p, rec.kind)?;
            // As in `create`: a layer without an entry for "/" shows its parent's root.
            let fs = staged.fs();
            let own = std::fs::metadata(&fs).context(|| format!("stat {}", fs.display()))?;
            if own.uid() == 0 && own.gid() == 0 && own.mode() & 0o7777 == 0o755 {
                let from = std::fs::metadata(self.fs_dir(rec.id))
                    .context(|| format!("stat parent {p:?}"))?;
                std::os::unix::fs::chown(&fs, Some(from.uid()), Some(from.gid()))
                    .context(|| format!("chown {}", fs.display()))?;
                std::fs::set_permissions(
                    &fs,
                    std::fs::Permissions::from_mode(from.mode() & 0o7777),
                )
                .context(|| format!("chmod {}", fs.display()))?;
            }
        }
        let _shared = self.sweep.read().unwrap_or_else(PoisonError::into_inner);
        let id = self.store.next_id()?;
        let dir = self.snapshot_dir(id);
        std::fs::rename(&staged.tmp, &dir)
            .context(|| format!("rename {} to {}", staged.tmp.display(), dir.display()))?;
        staged.done = true;
        let now = SystemTime::now();
        let rec = Record {
            id,
            kind: Kind::Committed,
            parent: parent.map(str::to_string),
            created: now,
            updated: now,
            labels,
            children: 0,
        };
        let recorded = sync_dir(&self.dir)
            .and_then(|()| self.store.create(name, &rec))
            .and_then(|()| self.store.flush());
        if let Err(e) = recorded {
            self.delete_dir(id);
            return Err(e);
        }
        tracing::info!(name = %name, id, parent = ?parent, "staged snapshot committed");
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        let _shared = self.sweep.read().unwrap_or_else(PoisonError::into_inner);
        let rec = self.store.remove(key)?;
        self.store.flush()?;
        tracing::info!(key = %key, id = rec.id, "snapshot removed");
        // The key is free already; if deleting the files fails, cleanup finds them.
        self.delete_dir(rec.id);
        Ok(())
    }

    /// Deletes `<id>/` by renaming it to `rm-<id>/` first, so a crash halfway through
    /// leaves a name the sweep recognises instead of a half-deleted snapshot directory.
    /// Failures are logged: the directory is unreferenced and cleanup will retry.
    fn delete_dir(&self, id: u64) {
        let dir = self.snapshot_dir(id);
        let doomed = self.dir.join(format!("{RM_PREFIX}{id}"));
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => remove_dir_logged(&doomed),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(id, error = %e, "could not rename snapshot directory for removal");
                remove_dir_logged(&dir);
            }
        }
    }

    /// Deletes temporary, half-removed and unreferenced directories.
    fn cleanup(&self) -> Result<Cleaned> {
        let _exclusive = self.sweep.write().unwrap_or_else(PoisonError::into_inner);
        let known: HashSet<u64> = self
            .store
            .all()?
            .into_iter()
            .map(|(_, rec)| rec.id)
            .collect();
        let mut cleaned = Cleaned::default();
        let entries =
            std::fs::read_dir(&self.dir).context(|| format!("read {}", self.dir.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("read {}", self.dir.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            let leftover = name.starts_with(TMP_PREFIX)
                || name.starts_with(RM_PREFIX)
                || name.parse::<u64>().is_ok_and(|id| !known.contains(&id));
            if !leftover {
                continue;
            }
            let bytes = disk_usage(&path).map(|u| u.size).unwrap_or_default();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::info!(dir = %path.display(), bytes, "removed leftover snapshot directory");
                    cleaned.removed += 1;
                    cleaned.reclaimed_bytes += bytes;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove leftover directory");
                }
            }
        }
        Ok(cleaned)
    }
}

/// A layer being unpacked outside any snapshot; see [`OverlaySnapshotter::stage`]. Removed
/// on drop unless committed.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    done: bool,
}

impl Staged {
    /// The directory to unpack into.
    pub fn fs(&self) -> PathBuf {
        self.tmp.join("fs")
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            remove_dir_logged(&self.tmp);
        }
    }
}

fn remove_dir_logged(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "could not remove directory"),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .context(|| format!("sync {}", dir.display()))
}

/// Space used below `root`, as du counts it: allocated blocks, hard links once.
fn disk_usage(root: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    // Files may vanish while we walk (an active snapshot is in use): skip them.
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    while let Some(path) = stack.pop() {
        let md = match std::fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(Error::io(format!("stat {}", path.display()), e)),
        };
        if seen.insert((md.dev(), md.ino())) {
            usage.inodes += 1;
            usage.size += md.blocks() * 512;
        }
        if md.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
            };
            for entry in entries {
                match entry {
                    Ok(entry) => stack.push(entry.path()),
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
                }
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_changes_follow_the_field_mask() {
        let have: Labels = [("a", "1"), ("b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want: Labels = [("b".to_string(), "3".to_string())].into();
        let mut l = have.clone();
        LabelChange::new(want.clone(), &[]).unwrap().apply(&mut l);
        assert_eq!(l, want);
        let mut l = have.clone();
        LabelChange::new(want.clone(), &["labels.b".into(), "labels.a".into()])
            .unwrap()
            .apply(&mut l);
        assert_eq!(l, want);
        let mut l = have.clone();
        LabelChange::new(want.clone(), &["labels.c".into()])
            .unwrap()
            .apply(&mut l);
        assert_eq!(l, have);
        assert!(LabelChange::new(want, &["parent".into()]).is_err());
    }
}
