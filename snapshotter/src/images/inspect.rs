//! Finding images by name or id, and describing one platform of an image.

use std::collections::BTreeMap;

use berth_proto::images::v1 as pb;

use crate::error::{Error, Result};
use crate::images::convert;
use crate::images::record::{normalize, Descriptor, ImageRecord};
use crate::images::resolve::{resolve, Platform};
use crate::snapshots::Snapshotter;
use crate::store::Store;

/// The records `name` designates: the record of that name, or every record of the image
/// whose id (config digest, host platform) is `name` or starts with it, as Docker resolves
/// `sha256:<hex>`, `<hex>` and unique hex prefixes.
pub fn find(store: &Store, name: &str) -> Result<Vec<ImageRecord>> {
    if let Ok(full) = normalize(name) {
        match store.images.get(&full) {
            Ok(r) => return Ok(vec![r]),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let is_hex = !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return Err(Error::NotFound(format!("image {name}")));
    }
    let hex = hex.to_ascii_lowercase();
    let mut by_id: BTreeMap<String, Vec<ImageRecord>> = BTreeMap::new();
    for r in store.images.list()? {
        let Ok(resolved) = resolve(store, &r.target, None) else {
            continue;
        };
        let id = resolved.config.digest;
        if id["sha256:".len()..].starts_with(&hex) {
            by_id.entry(id).or_default().push(r);
        }
    }
    match by_id.len() {
        0 => Err(Error::NotFound(format!("image {name}"))),
        1 => Ok(by_id.into_values().next().unwrap_or_default()),
        n => Err(Error::InvalidArgument(format!(
            "{name} is ambiguous: it matches {n} image ids; give more of the id"
        ))),
    }
}

/// The distinct targets `names` designate, each with the records whose names the archive
/// carries, for `save`. As in Docker, a name saves that name and an image id saves the
/// image without names.
pub fn targets_for_save(
    store: &Store,
    names: &[String],
) -> Result<Vec<(Descriptor, Vec<ImageRecord>)>> {
    let mut out: Vec<(Descriptor, Vec<ImageRecord>)> = Vec::new();
    for name in names {
        let records = find(store, name)?;
        let by_name =
            records.len() == 1 && normalize(name).ok().as_deref() == Some(records[0].name.as_str());
        let Some(first) = records.into_iter().next() else {
            continue;
        };
        let slot = match out.iter().position(|(t, _)| *t == first.target) {
            Some(i) => i,
            None => {
                out.push((first.target.clone(), Vec::new()));
                out.len() - 1
            }
        };
        if by_name && !out[slot].1.iter().any(|r| r.name == first.name) {
            out[slot].1.push(first);
        }
    }
    Ok(out)
}

/// Describes the image `name` for `platform` (the host's when `None`).
pub fn inspect(
    store: &Store,
    name: &str,
    platform: Option<&Platform>,
) -> Result<pb::InspectResponse> {
    let records = find(store, name)?;
    let record = records
        .first()
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("image {name}")))?;
    let resolved = resolve(store, &record.target, platform)?;
    let rt = tokio::runtime::Handle::current();
    let chain = resolved.top_chain_id().to_string();
    let unpacked = chain.is_empty() || rt.block_on(store.snapshots.is_committed(&chain))?;
    let mut size = 0i64;
    if unpacked {
        for c in &resolved.chain_ids {
            size += rt
                .block_on(store.snapshots.usage(c))
                .map(|u| u.size as i64)
                .unwrap_or(0);
        }
    }
    let names = store
        .images
        .by_target(&record.target.digest)?
        .into_iter()
        .map(|r| r.name)
        .filter(|n| *n != record.name)
        .collect();
    Ok(pb::InspectResponse {
        image: Some(convert::image(&record)),
        manifest: Some(convert::descriptor(&resolved.manifest)),
        config: Some(convert::descriptor(&resolved.config)),
        config_json: resolved.config_json.clone(),
        layers: resolved.layers.iter().map(convert::descriptor).collect(),
        diff_ids: resolved.diff_ids.clone(),
        chain_id: chain,
        unpacked,
        size,
        platforms: resolved.platforms.iter().map(convert::platform).collect(),
        names,
    })
}
