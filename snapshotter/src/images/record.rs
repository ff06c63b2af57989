//! Image records: a name → the descriptor of its manifest or index, in sled.
//!
//! Names are stored in their full normalised form (`docker.io/library/busybox:latest`); a
//! dangling image (it lost its last name but is kept until pruned) is stored as
//! `<none>@<target digest>`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use berth_registry_client::Reference;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Prefix of the records of dangling images.
pub const DANGLING_PREFIX: &str = "<none>@";

/// A content descriptor as stored in records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the blob.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// OCI annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Full normalised name, or `<none>@<digest>`.
    pub name: String,
    /// The manifest or index.
    pub target: Descriptor,
    /// Labels of the record.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time, seconds and nanoseconds since the epoch.
    pub created: (i64, u32),
    /// Last change.
    pub updated: (i64, u32),
}

impl ImageRecord {
    /// A record created now.
    pub fn new(name: String, target: Descriptor) -> Self {
        let now = now();
        ImageRecord {
            name,
            target,
            labels: BTreeMap::new(),
            created: now,
            updated: now,
        }
    }

    /// True for a `<none>@…` record.
    pub fn is_dangling(&self) -> bool {
        self.name.starts_with(DANGLING_PREFIX)
    }

    /// The name parsed as a reference (`None` for dangling records).
    pub fn reference(&self) -> Option<Reference> {
        if self.is_dangling() {
            return None;
        }
        Reference::parse(&self.name).ok()
    }
}

/// Seconds and nanoseconds since the epoch.
pub fn now() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos())
}

/// Normalises a user-given name: a reference (`busybox` → `docker.io/library/busybox:latest`)
/// or a dangling record name.
pub fn normalize(name: &str) -> Result<String> {
    if name.starts_with(DANGLING_PREFIX) {
        return Ok(name.to_string());
    }
    Reference::parse(name)
        .map(|r| r.to_string())
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// The records, in sled.
#[derive(Clone)]
pub struct ImageStore {
    tree: sled::Tree,
    /// Serialises changes: moving a name and keeping a dangling placeholder for its old
    /// target read several records before writing one batch.
    writes: std::sync::Arc<std::sync::Mutex<()>>,
}

impl ImageStore {
    /// Opens the records tree of `db`.
    pub fn open(db: &sled::Db) -> Result<Self> {
        Ok(ImageStore {
            tree: db.open_tree(crate::metadata::IMAGES)?,
            writes: Default::default(),
        })
    }

    fn decode(v: &[u8]) -> Result<ImageRecord> {
        serde_json::from_slice(v).map_err(|e| Error::Archive(format!("corrupt image record: {e}")))
    }

    /// The record named `name` (already normalised).
    pub fn get(&self, name: &str) -> Result<ImageRecord> {
        match self.tree.get(name)? {
            Some(v) => Self::decode(&v),
            None => Err(Error::NotFound(format!("image {name}"))),
        }
    }

    /// Every record, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.tree
            .iter()
            .values()
            .map(|v| Self::decode(&v?))
            .collect()
    }

    /// Records whose target is `digest`.
    pub fn by_target(&self, digest: &str) -> Result<Vec<ImageRecord>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| r.target.digest == digest)
            .collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a record; `AlreadyExists` when the name is taken.
    pub fn create(&self, record: ImageRecord) -> Result<ImageRecord> {
        let value = serde_json::to_vec(&record).map_err(|e| Error::Archive(e.to_string()))?;
        match self
            .tree
            .compare_and_swap(&record.name, None::<&[u8]>, Some(value))?
        {
            Ok(()) => Ok(record),
            Err(_) => Err(Error::AlreadyExists(format!("image {}", record.name))),
        }
    }

    /// Points `name` at `target`, creating the record or moving an existing one (keeping its
    /// creation time and labels). When the old target loses its last name, a dangling record
    /// keeps it until pruned, as Docker does. Returns the record.
    pub fn put(&self, name: &str, target: Descriptor) -> Result<ImageRecord> {
        let _w = self.lock();
        let old = match self.get(name) {
            Ok(r) => Some(r),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let record = match &old {
            Some(r) if r.target == target => return Ok(r.clone()),
            Some(r) => ImageRecord {
                target: target.clone(),
                updated: now(),
                ..r.clone()
            },
            None => ImageRecord::new(name.to_string(), target.clone()),
        };
        let value = serde_json::to_vec(&record).map_err(|e| Error::Archive(e.to_string()))?;
        let dangling_of_new = format!("{DANGLING_PREFIX}{}", target.digest);
        let mut batch = sled::Batch::default();
        batch.insert(name.as_bytes(), value);
        // A named image no longer needs its dangling placeholder.
        if name != dangling_of_new {
            batch.remove(dangling_of_new.as_bytes());
        }
        if let Some(old) = old {
            self.keep_dangling(&old, name, &mut batch)?;
        }
        self.tree.apply_batch(batch)?;
        Ok(record)
    }

    /// Deletes the record `name`; returns it.
    pub fn delete(&self, name: &str) -> Result<ImageRecord> {
        let _w = self.lock();
        let record = self.get(name)?;
        self.tree.remove(name)?;
        Ok(record)
    }

    /// Replaces the labels of `name`.
    pub fn set_labels(&self, name: &str, labels: BTreeMap<String, String>) -> Result<ImageRecord> {
        let _w = self.lock();
        let mut record = self.get(name)?;
        record.labels = labels;
        record.updated = now();
        let value = serde_json::to_vec(&record).map_err(|e| Error::Archive(e.to_string()))?;
        self.tree.insert(name, value)?;
        Ok(record)
    }

    /// Adds a dangling record for `old`'s target when no other name than `except` keeps it.
    fn keep_dangling(
        &self,
        old: &ImageRecord,
        except: &str,
        batch: &mut sled::Batch,
    ) -> Result<()> {
        let still_named = self
            .by_target(&old.target.digest)?
            .iter()
            .any(|r| r.name != except && !r.is_dangling());
        if !still_named {
            let dangling = ImageRecord {
                name: format!("{DANGLING_PREFIX}{}", old.target.digest),
                updated: now(),
                ..old.clone()
            };
            let value = serde_json::to_vec(&dangling).map_err(|e| Error::Archive(e.to_string()))?;
            batch.insert(dangling.name.as_bytes(), value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(n: u8) -> Descriptor {
        Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32)),
            size: 10,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn retagging_leaves_a_dangling_record_for_the_old_target() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = ImageStore::open(&db).unwrap();
        let name = normalize("busybox").unwrap();
        store.put(&name, desc(1)).unwrap();
        store.put(&name, desc(2)).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            [
                format!("<none>@{}", desc(1).digest),
                "docker.io/library/busybox:latest".to_string()
            ]
        );
        // Naming the old target again removes its placeholder.
        store
            .put(&normalize("busybox:old").unwrap(), desc(1))
            .unwrap();
        assert!(store.list().unwrap().iter().all(|r| !r.is_dangling()));
        assert!(matches!(
            store.create(ImageRecord::new(name, desc(3))),
            Err(Error::AlreadyExists(_))
        ));
    }

    #[test]
    fn an_unnamed_image_keeps_its_dangling_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = ImageStore::open(&db).unwrap();
        let name = format!("{DANGLING_PREFIX}{}", desc(4).digest);
        store.put(&name, desc(4)).unwrap();
        assert_eq!(store.get(&name).unwrap().target, desc(4));
    }
}
