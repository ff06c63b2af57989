//! The two image archive formats: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) and Docker's `docker save` format (`manifest.json` listing config
//! and layer files per image). `docker save` since Docker 25 writes both in one tar, and so
//! does berth.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `oci-layout`
pub const OCI_LAYOUT_FILE: &str = "oci-layout";
/// `index.json`
pub const INDEX_FILE: &str = "index.json";
/// `manifest.json`
pub const DOCKER_MANIFEST_FILE: &str = "manifest.json";
/// The legacy `repositories` file of old `docker save` archives.
pub const REPOSITORIES_FILE: &str = "repositories";
/// Content of `oci-layout`.
pub const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// Annotation with the full image name (containerd, Docker 25+).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's reference name annotation (a tag, or a whole reference as skopeo writes it).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// Path of the configuration file in the archive.
    pub config: String,
    /// Names, e.g. "busybox:latest".
    #[serde(default, deserialize_with = "null_as_empty")]
    pub repo_tags: Vec<String>,
    /// Paths of the layer files, bottom first.
    pub layers: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Path of a blob in an OCI layout, e.g. `blobs/sha256/<hex>`.
pub fn blob_path(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("blobs/{alg}/{hex}"),
        None => format!("blobs/{digest}"),
    }
}

/// The digest a layout path names, when it is `blobs/sha256/<hex>` (or `<hex>.json`, the
/// configuration files of old `docker save` archives).
pub fn digest_in_path(path: &str) -> Option<String> {
    let hex_ok =
        |h: &str| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if let Some(hex) = path.strip_prefix("blobs/sha256/") {
        return hex_ok(hex).then(|| format!("sha256:{hex}"));
    }
    if let Some(hex) = path.strip_suffix(".json") {
        return hex_ok(hex).then(|| format!("sha256:{hex}"));
    }
    None
}

/// Annotations for an index entry naming `full` (e.g. `docker.io/library/busybox:latest`).
pub fn name_annotations(full: &str, tag: Option<&str>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(ANNOTATION_IMAGE_NAME.to_string(), full.to_string());
    if let Some(tag) = tag {
        a.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
    }
    a
}

/// Normalises a path inside an archive: no leading `./` or `/`, no `.` components; `None`
/// for one that climbs out with `..`.
pub fn clean_path(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in_path(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            digest_in_path(&format!("{hex}.json")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_path("blobs/sha256/../x"), None);
        assert_eq!(clean_path("./a/./b/../c"), Some("a/c".into()));
        assert_eq!(clean_path("../x"), None);
        let m: Vec<DockerManifestEntry> = serde_json::from_str(
            r#"[{"Config":"c.json","RepoTags":null,"Layers":["l/layer.tar"]}]"#,
        )
        .unwrap();
        assert!(m[0].repo_tags.is_empty());
    }
}
