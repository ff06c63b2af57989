//! Everything the snapshotter keeps, in one place: the content store, the snapshots and the
//! image records, plus the lock that keeps garbage collection from sweeping data a
//! running load, import or unpack has written but not yet referenced.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::content::LocalStore;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::images::record::ImageStore;
use crate::images::resolve::BlobReader;
use crate::snapshots::OverlaySnapshotter;

/// The snapshotter's data.
pub struct Store {
    /// Persistent root directory.
    pub root: PathBuf,
    /// Blobs by digest.
    pub content: Arc<LocalStore>,
    /// Layers as overlayfs snapshots.
    pub snapshots: Arc<OverlaySnapshotter>,
    /// Image records.
    pub images: ImageStore,
    gc: RwLock<()>,
}

impl Store {
    /// Opens (creating) everything under `root`.
    pub async fn open(root: &Path) -> Result<Arc<Self>> {
        let db = crate::metadata::open(root)?;
        let content = Arc::new(LocalStore::open(root, &db)?);
        let snapshots = Arc::new(OverlaySnapshotter::open(root, &db).await?);
        let images = ImageStore::open(&db)?;
        Ok(Arc::new(Store {
            root: root.to_path_buf(),
            content,
            snapshots,
            images,
            gc: RwLock::new(()),
        }))
    }

    /// Held by anything that writes data before referencing it.
    pub fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gc.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by garbage collection.
    pub fn collecting(&self) -> RwLockWriteGuard<'_, ()> {
        self.gc.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store {
    /// True when the content store has `digest`.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.content.path(digest).is_file()
    }
}

impl BlobReader for Store {
    fn read_blob(&self, digest: &Digest, max: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        let file = self.content.open_blob(digest)?;
        let len = file
            .metadata()
            .context(|| format!("stat blob {digest}"))?
            .len();
        if len > max {
            return Err(Error::InvalidArgument(format!(
                "blob {digest} is {len} bytes, more than the {max} allowed for it"
            )));
        }
        let mut buf = Vec::with_capacity(len as usize);
        file.take(max)
            .read_to_end(&mut buf)
            .context(|| format!("read blob {digest}"))?;
        Ok(buf)
    }
}
