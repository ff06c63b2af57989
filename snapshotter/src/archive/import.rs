//! `import`: a root filesystem tar becomes a one-layer image, with `--change`
//! instructions applied to its configuration.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Map, Value};

use crate::archive::changes;
use crate::error::{Error, Result};
use crate::images::media;
use crate::images::record::{normalize, Descriptor, ImageRecord, DANGLING_PREFIX};
use crate::images::resolve::{self, Platform};
use crate::images::unpack::unpack;
use crate::store::Store;

/// What `import` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name to record; `None`: a dangling image.
    pub name: Option<String>,
    /// Dockerfile-style changes.
    pub changes: Vec<String>,
    /// History comment.
    pub message: String,
    /// Platform recorded; `None`: the host's.
    pub platform: Option<Platform>,
}

fn rfc3339_now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

/// Imports the root filesystem read from `reader`. Blocking.
pub fn import(
    store: &Store,
    opts: &ImportOptions,
    reader: impl Read,
) -> Result<(ImageRecord, String)> {
    let name = opts.name.as_deref().map(normalize).transpose()?;
    let mut config_section = Map::new();
    changes::apply(&mut config_section, &opts.changes)?;
    let _writing = store.writing();

    // The layer is stored uncompressed: its digest is then its diff ID, and unpacking it
    // needs no decompression.
    let mut tar = crate::layer::decompress(reader)?;
    let (layer_digest, layer_size) = store.content.write_blob(&mut tar, None)?;
    if layer_size == 0 {
        return Err(Error::InvalidArgument(
            "the root filesystem archive is empty".into(),
        ));
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let created = rfc3339_now();
    let mut history = Map::new();
    history.insert("created".into(), json!(created));
    history.insert("created_by".into(), json!("berthctl import"));
    if !opts.message.is_empty() {
        history.insert("comment".into(), json!(opts.message));
    }
    let mut config = json!({
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": Value::Object(config_section),
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.as_str()]},
        "history": [Value::Object(history)],
    });
    if !platform.variant.is_empty() {
        config["variant"] = json!(platform.variant);
    }
    if !opts.message.is_empty() {
        config["comment"] = json!(opts.message);
    }
    let config = serde_json::to_vec(&config).map_err(|e| Error::Archive(e.to_string()))?;
    let (config_digest, config_size) = store.content.write_blob(&mut config.as_slice(), None)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest.as_str(), "size": config_size},
        "layers": [{"mediaType": media::OCI_LAYER, "digest": layer_digest.as_str(), "size": layer_size}],
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Archive(e.to_string()))?;
    let (manifest_digest, manifest_size) =
        store.content.write_blob(&mut manifest.as_slice(), None)?;
    let target = Descriptor {
        media_type: media::OCI_MANIFEST.into(),
        digest: manifest_digest.to_string(),
        size: manifest_size as i64,
        annotations: BTreeMap::new(),
    };
    let resolved = resolve::resolve(store, &target, Some(&platform))?;
    if platform.matches(&Platform::host()) {
        unpack(store, &resolved)?;
    }
    let record_name = name.unwrap_or_else(|| format!("{DANGLING_PREFIX}{}", target.digest));
    let record = store.images.put(&record_name, target)?;
    Ok((record, config_digest.to_string()))
}
