//! `save`: images written as one tar holding both an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and Docker's `manifest.json`, as Docker 25+ does, so
//! both `docker load` and OCI tools (skopeo `oci-archive:`, containerd) read it.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::json;

use crate::archive::layout::{self, DockerManifestEntry};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::images::media;
use crate::images::record::{Descriptor, ImageRecord};
use crate::images::resolve;
use crate::images::walk::walk;
use crate::store::Store;

fn header(path: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o444);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    // Paths here are short and ASCII (blobs/sha256/<64 hex> is 78 bytes).
    let _ = h.set_path(path);
    h.set_cksum();
    h
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    tar.append(&header(path, data.len() as u64), data)
        .context(|| format!("write {path} to the archive"))
}

/// Writes `images` (records, each with the names it is saved under) to `out`. Blocking.
pub fn save(
    store: &Store,
    images: &[(Descriptor, Vec<ImageRecord>)],
    out: impl Write,
) -> Result<()> {
    let mut tar = tar::Builder::new(out);
    let mut blobs = BTreeSet::new();
    let mut index_entries = Vec::new();
    let mut docker_entries = Vec::new();
    for (target, records) in images {
        blobs.extend(walk(store, target)?.blobs);
        let named: Vec<_> = records.iter().filter_map(|r| r.reference()).collect();
        if named.is_empty() {
            index_entries.push(json!({
                "mediaType": target.media_type, "digest": target.digest, "size": target.size,
            }));
        }
        for r in &named {
            index_entries.push(json!({
                "mediaType": target.media_type, "digest": target.digest, "size": target.size,
                "annotations": layout::name_annotations(&r.to_string(), r.tag()),
            }));
        }
        // manifest.json describes one platform per image: the host's, else the first.
        let resolved = match resolve::resolve(store, target, None) {
            Ok(r) => Some(r),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(r) = resolved {
            docker_entries.push(DockerManifestEntry {
                config: layout::blob_path(&r.config.digest),
                repo_tags: named
                    .iter()
                    .filter(|n| n.tag().is_some())
                    .map(|n| n.familiar())
                    .collect(),
                layers: r
                    .layers
                    .iter()
                    .map(|l| layout::blob_path(&l.digest))
                    .collect(),
            });
        }
    }
    append_bytes(
        &mut tar,
        layout::OCI_LAYOUT_FILE,
        layout::OCI_LAYOUT_CONTENT.as_bytes(),
    )?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": index_entries,
    });
    let index = serde_json::to_vec(&index).map_err(|e| Error::Archive(e.to_string()))?;
    append_bytes(&mut tar, layout::INDEX_FILE, &index)?;
    let manifest =
        serde_json::to_vec(&docker_entries).map_err(|e| Error::Archive(e.to_string()))?;
    append_bytes(&mut tar, layout::DOCKER_MANIFEST_FILE, &manifest)?;
    for d in &blobs {
        let digest = Digest::parse(d)?;
        let file = store.content.open_blob(&digest)?;
        let size = file
            .metadata()
            .context(|| format!("stat blob {digest}"))?
            .len();
        let path = layout::blob_path(d);
        tar.append(
            &header(&path, size),
            std::io::BufReader::with_capacity(1 << 20, file),
        )
        .context(|| format!("write {path} to the archive"))?;
    }
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .context(|| "finish the archive".into())
}
