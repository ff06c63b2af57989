//! From a record's target to what a container needs: the manifest for a platform, its
//! configuration, its layers, their diff IDs and chain IDs. Every blob read here is
//! size-capped and was digest-checked when it entered the content store.

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::images::chain::chain_ids;
use crate::images::media;
use crate::images::record::Descriptor;

/// Largest manifest or index accepted, as registries do.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest image configuration accepted.
pub const MAX_CONFIG: u64 = 8 << 20;

/// Reads a whole blob, refusing one larger than the given cap.
pub trait BlobReader {
    /// The bytes of `digest`, at most `max` of them.
    fn read_blob(&self, digest: &Digest, max: u64) -> Result<Vec<u8>>;
}

/// An OS/architecture pair with an optional variant, as in OCI indexes.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
pub struct Platform {
    /// e.g. "linux"
    pub os: String,
    /// GOARCH spelling, e.g. "amd64"
    pub architecture: String,
    /// e.g. "v8"; empty when none
    #[serde(default)]
    pub variant: String,
}

impl Platform {
    /// The platform of this host.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", ""),
            "aarch64" => ("arm64", "v8"),
            "arm" => ("arm", "v7"),
            "x86" => ("386", ""),
            "powerpc64" => ("ppc64le", ""),
            "s390x" => ("s390x", ""),
            "riscv64" => ("riscv64", ""),
            other => (other, ""),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.into(),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts.get(2).map(|v| v.to_string()).unwrap_or_default(),
            }),
            _ => Err(Error::InvalidArgument(format!(
                "invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64"
            ))),
        }
    }

    /// True when an index entry for `other` can run here. An entry without a variant
    /// matches any variant (arm64's v8 is implied, as containerd's matcher does).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (other.variant.is_empty()
                || self.variant.is_empty()
                || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

impl RawDescriptor {
    fn into_descriptor(self) -> Descriptor {
        Descriptor {
            media_type: self.media_type,
            digest: self.digest,
            size: self.size,
            annotations: self.annotations,
        }
    }
}

/// The parts of a manifest or index berth reads; both shapes in one struct, so a document
/// that is both can be refused.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<RawDescriptor>>,
}

/// The parts of an image configuration berth reads.
#[derive(Debug, Deserialize, Default)]
pub struct ConfigSummary {
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// The rootfs section.
    pub rootfs: RootFs,
}

/// `rootfs` of a configuration.
#[derive(Debug, Deserialize, Default)]
pub struct RootFs {
    /// Must be "layers".
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Digests of the uncompressed layers.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One platform's image, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest.
    pub manifest: Descriptor,
    /// The configuration descriptor; its digest is the image id.
    pub config: Descriptor,
    /// The configuration JSON.
    pub config_json: Vec<u8>,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// Their diff IDs.
    pub diff_ids: Vec<String>,
    /// Chain IDs of every layer prefix.
    pub chain_ids: Vec<String>,
    /// Platforms present when the target is an index.
    pub platforms: Vec<Platform>,
    /// Every manifest and index blob walked to get here (for GC and save).
    pub walked: Vec<Descriptor>,
}

impl Resolved {
    /// Chain ID of the top layer; empty without layers.
    pub fn top_chain_id(&self) -> &str {
        self.chain_ids.last().map(String::as_str).unwrap_or("")
    }
}

fn parse_manifest(bytes: &[u8], declared: &str, digest: &str) -> Result<RawManifest> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidArgument(format!("manifest {digest}: invalid JSON: {e}")))?;
    if raw.manifests.is_some() && (raw.layers.is_some() || raw.config.is_some()) {
        return Err(Error::InvalidArgument(format!(
            "manifest {digest} is both an index and a manifest; refusing the ambiguous document"
        )));
    }
    if let Some(inner) = &raw.media_type {
        if !declared.is_empty() && inner != declared {
            return Err(Error::InvalidArgument(format!(
                "manifest {digest}: media type {inner:?} inside differs from {declared:?}"
            )));
        }
    }
    let mt = raw.media_type.as_deref().unwrap_or(declared);
    if media::DOCKER_SCHEMA1.contains(&mt) || raw.schema_version == Some(1) {
        return Err(Error::InvalidArgument(format!(
            "manifest {digest} is Docker schema 1, which is deprecated and not supported: \
             rebuild or re-push the image with a current tool"
        )));
    }
    Ok(raw)
}

fn digest_of(d: &str) -> Result<Digest> {
    Digest::parse(d)
}

/// Resolves `target` for `platform` (the host's when `None`).
pub fn resolve(
    blobs: &impl BlobReader,
    target: &Descriptor,
    platform: Option<&Platform>,
) -> Result<Resolved> {
    let host = Platform::host();
    let want = platform.unwrap_or(&host);
    let bytes = blobs.read_blob(&digest_of(&target.digest)?, MAX_MANIFEST)?;
    let raw = parse_manifest(&bytes, &target.media_type, &target.digest)?;
    let mut walked = vec![target.clone()];
    let (manifest_desc, manifest, platforms) = if let Some(list) = raw.manifests {
        let mut platforms = Vec::new();
        let mut chosen = None;
        for entry in list {
            let Some(p) = entry.platform.clone() else {
                continue;
            };
            // Attestations and other artifacts sit in indexes as "unknown/unknown".
            if p.os == "unknown" {
                continue;
            }
            platforms.push(p.clone());
            if chosen.is_none() && want.matches(&p) {
                chosen = Some(entry);
            }
        }
        let entry = chosen.ok_or_else(|| {
            Error::NotFound(format!(
                "no manifest for platform {want} in {} (available: {})",
                target.digest,
                platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let desc = entry.into_descriptor();
        let bytes = blobs.read_blob(&digest_of(&desc.digest)?, MAX_MANIFEST)?;
        let raw = parse_manifest(&bytes, &desc.media_type, &desc.digest)?;
        if raw.manifests.is_some() {
            return Err(Error::InvalidArgument(format!(
                "index {} points to another index; nested indexes are not supported",
                target.digest
            )));
        }
        walked.push(desc.clone());
        (desc, raw, platforms)
    } else {
        (target.clone(), raw, Vec::new())
    };
    let config = manifest.config.ok_or_else(|| {
        Error::InvalidArgument(format!("manifest {} has no config", manifest_desc.digest))
    })?;
    let layers: Vec<Descriptor> = manifest
        .layers
        .unwrap_or_default()
        .into_iter()
        .map(RawDescriptor::into_descriptor)
        .collect();
    let config = config.into_descriptor();
    let config_json = blobs.read_blob(&digest_of(&config.digest)?, MAX_CONFIG)?;
    let summary: ConfigSummary = serde_json::from_slice(&config_json)
        .map_err(|e| Error::InvalidArgument(format!("image config {}: {e}", config.digest)))?;
    let diff_ids = summary.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(Error::InvalidArgument(format!(
            "image config {} lists {} diff IDs for {} layers",
            config.digest,
            diff_ids.len(),
            layers.len()
        )));
    }
    for d in &diff_ids {
        digest_of(d)?;
    }
    for l in &layers {
        digest_of(&l.digest)?;
        if !media::is_layer(&l.media_type) {
            return Err(Error::InvalidArgument(format!(
                "layer {} has media type {:?}, which is not an image layer",
                l.digest, l.media_type
            )));
        }
    }
    Ok(Resolved {
        chain_ids: chain_ids(&diff_ids),
        manifest: manifest_desc,
        config,
        config_json,
        layers,
        diff_ids,
        platforms,
        walked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches(&Platform::parse("linux/arm64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("/amd64").is_err());
    }

    #[test]
    fn ambiguous_and_schema1_documents_are_refused() {
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
        assert!(parse_manifest(both, "", "d").is_err());
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        let err = parse_manifest(v1, "", "d").unwrap_err().to_string();
        assert!(err.contains("schema 1"), "{err}");
        let mismatch = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(parse_manifest(mismatch, media::OCI_MANIFEST, "d").is_err());
    }
}
