//! `load`: an image archive (OCI layout, `docker save` output, or both in one tar; plain,
//! gzip or zstd) streamed into the content store, its images unpacked, then recorded.
//! Records come last, so an interrupted load never lists a half image; what it left in
//! the content store is swept by garbage collection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::Mutex;

use serde_json::json;

use crate::archive::layout::{self, DockerManifestEntry};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::images::media;
use crate::images::record::{normalize, Descriptor, ImageRecord, DANGLING_PREFIX};
use crate::images::resolve;
use crate::images::unpack::{stage_layer, unpack_with, Prestaged, LABEL_LAYER_DIGEST};
use crate::snapshots::{Filters as SnapshotFilters, Snapshotter};
use crate::store::Store;

/// Largest metadata file (index.json, manifest.json, repositories) accepted.
const MAX_METADATA: u64 = 16 << 20;

/// One image found in an archive.
#[derive(Debug, Clone)]
pub struct Found {
    /// Full names to record it under; empty: dangling.
    pub names: Vec<String>,
    /// Its manifest or index.
    pub target: Descriptor,
}

/// What the tar held, after its blobs went to the content store.
#[derive(Default)]
struct Scanned {
    /// Archive path → blob written from it.
    files: HashMap<String, (Digest, u64)>,
    /// Symlinks and hardlinks: archive path → the path it points to.
    aliases: HashMap<String, String>,
    index_json: Option<Vec<u8>>,
    manifest_json: Option<Vec<u8>>,
    has_layout: bool,
}

impl Scanned {
    fn blob(&self, path: &str) -> Result<(Digest, u64)> {
        let mut p = layout::clean_path(path)
            .ok_or_else(|| Error::Archive(format!("path {path:?} leaves the archive")))?;
        // Old `docker save` archives link duplicate layers to one file.
        for _ in 0..16 {
            match self.aliases.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        self.files.get(&p).cloned().ok_or_else(|| {
            Error::Archive(format!(
                "{path} is named in the archive's metadata but missing"
            ))
        })
    }
}

fn read_small(entry: &mut impl Read, name: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    entry
        .take(MAX_METADATA + 1)
        .read_to_end(&mut buf)
        .context(|| format!("read {name} from the archive"))?;
    if buf.len() as u64 > MAX_METADATA {
        return Err(Error::Archive(format!(
            "{name} is larger than {MAX_METADATA} bytes"
        )));
    }
    Ok(buf)
}

fn scan(store: &Store, reader: impl Read, on_blob: &mut dyn FnMut(&Digest)) -> Result<Scanned> {
    let reader = crate::layer::decompress(reader)?;
    let mut archive = tar::Archive::new(reader);
    let mut s = Scanned::default();
    let entries = archive
        .entries()
        .map_err(|e| Error::Archive(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Archive(format!("corrupt tar: {e}")))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = layout::clean_path(&raw)
            .ok_or_else(|| Error::Archive(format!("entry {raw:?} leaves the archive")))?;
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let resolved = if kind.is_symlink() && !target.starts_with('/') {
                let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                layout::clean_path(&format!("{dir}/{target}"))
            } else {
                layout::clean_path(&target)
            };
            let resolved = resolved.ok_or_else(|| {
                Error::Archive(format!("link {raw:?} points outside the archive"))
            })?;
            s.aliases.insert(path, resolved);
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let base = path.rsplit('/').next().unwrap_or("");
        match path.as_str() {
            layout::OCI_LAYOUT_FILE => {
                read_small(&mut entry, &path)?;
                s.has_layout = true;
            }
            layout::INDEX_FILE => s.index_json = Some(read_small(&mut entry, &path)?),
            layout::DOCKER_MANIFEST_FILE => s.manifest_json = Some(read_small(&mut entry, &path)?),
            layout::REPOSITORIES_FILE => {}
            // Per-layer metadata of old `docker save` archives: not needed.
            _ if path.contains('/') && (base == "json" || base == "VERSION") => {}
            _ => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| Error::Archive(format!("{raw}: {e}")))?;
                let expected = match layout::digest_in_path(&path) {
                    Some(d) => Some((Digest::parse(&d)?, size)),
                    None => None,
                };
                let written =
                    store
                        .content
                        .write_blob(&mut entry, expected)
                        .map_err(|e| match e {
                            Error::DigestMismatch {
                                expected, actual, ..
                            } => Error::DigestMismatch {
                                what: format!("{path} in the archive"),
                                expected,
                                actual,
                            },
                            e => e,
                        })?;
                on_blob(&written.0);
                s.files.insert(path, written);
            }
        }
    }
    Ok(s)
}

fn names_from_annotations(a: &BTreeMap<String, String>) -> Vec<String> {
    if let Some(n) = a.get(layout::ANNOTATION_IMAGE_NAME) {
        if let Ok(n) = normalize(n) {
            return vec![n];
        }
    }
    // skopeo writes the whole reference here; a bare tag names no repository.
    match a.get(layout::ANNOTATION_REF_NAME) {
        Some(r) if r.contains('/') || r.contains(':') => normalize(r).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn detect_layer_type(store: &Store, digest: &Digest) -> Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut f = store.content.open_blob(digest)?;
    let n = f
        .read(&mut magic)
        .context(|| format!("read blob {digest}"))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => media::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media::OCI_LAYER_ZSTD,
        _ => media::OCI_LAYER,
    })
}

/// Builds and stores an OCI manifest for a `docker save` entry.
fn manifest_for(store: &Store, s: &Scanned, entry: &DockerManifestEntry) -> Result<Descriptor> {
    let (config, config_size) = s.blob(&entry.config)?;
    let mut layers = Vec::new();
    for l in &entry.layers {
        let (d, size) = s.blob(l)?;
        layers.push(json!({
            "mediaType": detect_layer_type(store, &d)?,
            "digest": d.as_str(),
            "size": size,
        }));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.as_str(), "size": config_size},
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Archive(e.to_string()))?;
    let (digest, size) = store.content.write_blob(&mut bytes.as_slice(), None)?;
    Ok(Descriptor {
        media_type: media::OCI_MANIFEST.into(),
        digest: digest.to_string(),
        size: size as i64,
        annotations: BTreeMap::new(),
    })
}

fn find_images(store: &Store, s: &Scanned) -> Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    if let Some(index) = &s.index_json {
        #[derive(serde::Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Entry {
            #[serde(default)]
            media_type: String,
            digest: String,
            size: i64,
            #[serde(default)]
            annotations: BTreeMap<String, String>,
        }
        let index: Index = serde_json::from_slice(index)
            .map_err(|e| Error::Archive(format!("index.json: {e}")))?;
        for e in index.manifests {
            let digest = Digest::parse(&e.digest)?;
            if !store.has_blob(&digest) {
                return Err(Error::Archive(format!(
                    "index.json names {digest}, which the archive lacks"
                )));
            }
            let names = names_from_annotations(&e.annotations);
            let target = Descriptor {
                media_type: e.media_type,
                digest: e.digest,
                size: e.size,
                annotations: BTreeMap::new(),
            };
            match found.iter_mut().find(|f| f.target.digest == target.digest) {
                Some(f) => f.names.extend(names),
                None => found.push(Found { names, target }),
            }
        }
    }
    if let Some(m) = &s.manifest_json {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(m).map_err(|e| Error::Archive(format!("manifest.json: {e}")))?;
        for entry in entries {
            let mut names = Vec::new();
            for t in &entry.repo_tags {
                names
                    .push(normalize(t).map_err(|e| Error::Archive(format!("manifest.json: {e}")))?);
            }
            let (config, _) = s.blob(&entry.config)?;
            // Docker 25+ archives describe the same images in index.json: add the names there.
            let same = found.iter_mut().find(|f| {
                resolve::resolve(store, &f.target, None)
                    .map(|r| r.config.digest == config.as_str())
                    .unwrap_or(false)
            });
            match same {
                Some(f) => f.names.extend(names),
                None => found.push(Found {
                    names,
                    target: manifest_for(store, s, &entry)?,
                }),
            }
        }
    }
    if found.is_empty() {
        return Err(Error::Archive(
            "no images found: expected an OCI image layout (index.json) or a docker save archive (manifest.json)".into(),
        ));
    }
    for f in &mut found {
        f.names.sort();
        f.names.dedup();
    }
    Ok(found)
}

/// True when the blob starts like a layer: gzip, zstd, or a tar header.
fn looks_like_layer(store: &Store, digest: &Digest) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = store.content.open_blob(digest) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    matches!(
        &head[..n.min(4)],
        [0x1f, 0x8b, ..] | [0x28, 0xb5, 0x2f, 0xfd]
    ) || (n == 512 && &head[257..262] == b"ustar")
}

/// Layer blobs some snapshot was already unpacked from.
fn unpacked_layers(store: &Store) -> Result<HashSet<String>> {
    let rt = tokio::runtime::Handle::current();
    let all = rt.block_on(store.snapshots.list(&SnapshotFilters::default()))?;
    Ok(all
        .into_iter()
        .filter_map(|s| s.labels.get(LABEL_LAYER_DIGEST).cloned())
        .collect())
}

/// Loads every image of the archive read from `reader`. Blocking.
///
/// Layers are unpacked while the archive is still arriving: each stored blob that looks
/// like a layer goes to a second thread that unpacks it into a staging directory, before
/// the manifests (often at the end of the archive) say which image it belongs to.
pub fn load(store: &Store, reader: impl Read) -> Result<Vec<ImageRecord>> {
    let _writing = store.writing();
    let known = unpacked_layers(store)?;
    let prestaged = Mutex::new(Prestaged::new());
    let (tx, rx) = std::sync::mpsc::channel::<Digest>();
    let scanned = std::thread::scope(|scope| {
        scope.spawn(|| {
            for digest in rx {
                if known.contains(digest.as_str()) || !looks_like_layer(store, &digest) {
                    continue;
                }
                let desc = Descriptor {
                    media_type: String::new(),
                    digest: digest.to_string(),
                    size: 0,
                    annotations: BTreeMap::new(),
                };
                // A failure here is reported by the regular unpack, which tries again.
                if let Ok(staged) = stage_layer(store, &desc) {
                    prestaged
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(digest.to_string(), staged);
                }
            }
        });
        let tx = tx;
        scan(store, reader, &mut |d| {
            let _ = tx.send(d.clone());
        })
    })?;
    let mut prestaged = prestaged.into_inner().unwrap_or_else(|p| p.into_inner());
    let found = find_images(store, &scanned)?;
    // Unpack everything first: a record is only written for an image that is complete.
    for f in &found {
        match resolve::resolve(store, &f.target, None) {
            Ok(r) => unpack_with(store, &r, &mut prestaged)?,
            // An index without this host's platform is still loaded (it can be saved and
            // pushed); it just cannot run here.
            Err(Error::NotFound(why)) => {
                tracing::warn!(target = %f.target.digest, %why, "not unpacked")
            }
            Err(e) => return Err(e),
        }
    }
    let mut records = Vec::new();
    for f in found {
        if f.names.is_empty() {
            let name = format!("{DANGLING_PREFIX}{}", f.target.digest);
            let named = store
                .images
                .by_target(&f.target.digest)?
                .into_iter()
                .find(|r| !r.is_dangling());
            records.push(match named {
                Some(r) => r,
                None => store.images.put(&name, f.target.clone())?,
            });
        }
        for name in &f.names {
            records.push(store.images.put(name, f.target.clone())?);
        }
    }
    Ok(records)
}
