//! Manifest media types and the checks every fetched manifest goes through: size cap,
//! digest, Docker schema 1 refused, manifest-or-index unambiguous, header and body agree.

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Media types of manifests and indexes.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list (multi-platform).
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker schema 1 (refused).
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1, signed (refused).
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// OCI image configuration.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Docker image configuration.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

    /// True for the manifest types berth pulls.
    pub fn is_manifest(t: &str) -> bool {
        t == OCI_MANIFEST || t == DOCKER_MANIFEST
    }

    /// True for the index types berth pulls.
    pub fn is_index(t: &str) -> bool {
        t == OCI_INDEX || t == DOCKER_MANIFEST_LIST
    }
}

/// Largest manifest or index accepted.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// The `Accept` header of manifest requests.
pub(crate) fn accept_header() -> String {
    [
        media_type::OCI_INDEX,
        media_type::OCI_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_MANIFEST,
    ]
    .join(", ")
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Checks that `digest` is a sha256 digest we can verify.
pub(crate) fn check_digest(digest: &str) -> Result<()> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else if digest.contains(':') && !digest.starts_with("sha256:") {
        Err(Error::Unsupported(format!(
            "digest algorithm of {digest:?}: only sha256 is supported"
        )))
    } else {
        Err(Error::InvalidReference {
            reference: digest.to_string(),
            reason: "not a sha256 digest (sha256: and 64 lowercase hex digits)".into(),
        })
    }
}

/// The fields of a manifest or index that tell which one it is.
#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<serde_json::Value>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
    #[serde(rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

/// The media type without parameters (`; charset=utf-8`), lower-cased.
pub(crate) fn bare_media_type(header: &str) -> String {
    header
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Content types servers send when they know nothing better; they do not contradict a
/// manifest's own `mediaType`.
fn is_generic(t: &str) -> bool {
    matches!(
        t,
        "" | "application/json" | "text/plain" | "application/octet-stream"
    )
}

/// Classifies a manifest document, returning its media type, or refuses it: Docker
/// schema 1, a document that is both manifest and index, a header that disagrees with the
/// body's `mediaType`, types berth does not pull. `what` names it in messages.
pub fn classify(bytes: &[u8], header_type: Option<&str>, what: &str) -> Result<String> {
    let header = header_type.map(bare_media_type).unwrap_or_default();
    let schema1 = || {
        Error::Unsupported(format!(
            "{what} is a Docker image manifest schema 1, which is deprecated and not supported; \
             push the image again with a current client (or `skopeo copy --format v2s2`)"
        ))
    };
    if header == media_type::DOCKER_SCHEMA1 || header == media_type::DOCKER_SCHEMA1_SIGNED {
        return Err(schema1());
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| Error::Unsupported(format!("{what}: the manifest is not valid JSON ({e})")))?;
    if probe.schema_version.as_ref().and_then(|v| v.as_i64()) == Some(1)
        || probe.fs_layers.is_some()
    {
        return Err(schema1());
    }
    let has_index_fields = probe.manifests.is_some();
    let has_manifest_fields = probe.layers.is_some() || probe.config.is_some();
    if has_index_fields && has_manifest_fields {
        return Err(Error::Unsupported(format!(
            "{what} is ambiguous: it has both \"manifests\" (an index) and \"layers\"/\"config\" (a manifest)"
        )));
    }
    let body = probe.media_type.as_deref().map(bare_media_type);
    if let Some(b) = &body {
        if b == media_type::DOCKER_SCHEMA1 || b == media_type::DOCKER_SCHEMA1_SIGNED {
            return Err(schema1());
        }
        if !is_generic(&header) && *b != header {
            return Err(Error::Unsupported(format!(
                "{what}: the registry says the media type is {header} but the manifest says {b}"
            )));
        }
    }
    let media_type = match body {
        Some(b) => b,
        None if !is_generic(&header) => header,
        // No type anywhere: infer it from the structure, as containerd does.
        None if has_index_fields => media_type::OCI_INDEX.to_string(),
        None if has_manifest_fields => media_type::OCI_MANIFEST.to_string(),
        None => {
            return Err(Error::Unsupported(format!(
                "{what}: the document is neither an image manifest nor an index"
            )))
        }
    };
    let fits = (media_type::is_index(&media_type) && !has_manifest_fields)
        || (media_type::is_manifest(&media_type) && !has_index_fields);
    if media_type::is_index(&media_type) || media_type::is_manifest(&media_type) {
        if !fits {
            return Err(Error::Unsupported(format!(
                "{what} is ambiguous: its media type is {media_type} but its fields are those of {}",
                if has_index_fields { "an index" } else { "a manifest" }
            )));
        }
        return Ok(media_type);
    }
    Err(Error::Unsupported(format!(
        "{what} has media type {media_type}, which is not an OCI or Docker image manifest or index"
    )))
}

#[cfg(test)]
mod tests {
    use super::media_type::*;
    use super::*;

    fn kind(body: &str, header: Option<&str>) -> Result<String> {
        classify(body.as_bytes(), header, "localhost:5000/x:v1")
    }

    #[test]
    fn accepts_manifests_and_indexes() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(kind(m, Some(OCI_MANIFEST)).unwrap(), OCI_MANIFEST);
        assert_eq!(
            kind(
                m,
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            )
            .unwrap(),
            OCI_MANIFEST
        );
        assert_eq!(kind(m, Some("application/json")).unwrap(), OCI_MANIFEST);
        assert_eq!(kind(m, None).unwrap(), OCI_MANIFEST);
        // No mediaType in the body (allowed by OCI): the header or the structure decides.
        let m = r#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(kind(m, Some(DOCKER_MANIFEST)).unwrap(), DOCKER_MANIFEST);
        assert_eq!(kind(m, None).unwrap(), OCI_MANIFEST);
        let i = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(kind(i, None).unwrap(), OCI_INDEX);
        assert_eq!(
            kind(i, Some(DOCKER_MANIFEST_LIST)).unwrap(),
            DOCKER_MANIFEST_LIST
        );
    }

    #[test]
    fn refuses_schema1() {
        let s1 = r#"{"schemaVersion":1,"name":"x","tag":"v1","fsLayers":[],"history":[]}"#;
        for header in [None, Some(DOCKER_SCHEMA1_SIGNED), Some("application/json")] {
            let e = kind(s1, header).unwrap_err();
            assert!(matches!(e, Error::Unsupported(_)), "{e}");
            assert!(e.to_string().contains("schema 1"), "{e}");
            assert!(e.to_string().contains("localhost:5000/x:v1"), "{e}");
        }
        // The header alone is enough, whatever the body.
        assert!(kind("not json", Some(DOCKER_SCHEMA1)).is_err());
    }

    #[test]
    fn refuses_ambiguous_documents() {
        let both = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"layers":[]}"#;
        let e = kind(both, None).unwrap_err();
        assert!(e.to_string().contains("ambiguous"), "{e}");
        let both = r#"{"schemaVersion":2,"manifests":[],"config":{}}"#;
        assert!(kind(both, None).is_err());
        // Declared index but shaped like a manifest.
        let m = r#"{"schemaVersion":2,"layers":[],"config":{}}"#;
        assert!(kind(m, Some(OCI_INDEX)).is_err());
    }

    #[test]
    fn refuses_disagreeing_and_unknown_types() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        let e = kind(m, Some(DOCKER_MANIFEST)).unwrap_err();
        assert!(e.to_string().contains("says"), "{e}");
        let a = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.artifact.manifest.v1+json","blobs":[]}"#;
        assert!(matches!(kind(a, None), Err(Error::Unsupported(_))));
        assert!(matches!(kind("{}", None), Err(Error::Unsupported(_))));
        assert!(matches!(kind("[1,2", None), Err(Error::Unsupported(_))));
    }

    #[test]
    fn digests() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(check_digest(&sha256_digest(b"x")).is_ok());
        assert!(matches!(
            check_digest(&format!("sha512:{}", "a".repeat(128))),
            Err(Error::Unsupported(_))
        ));
        assert!(check_digest("sha256:abc").is_err());
        assert!(check_digest("../../etc/passwd").is_err());
    }
}
