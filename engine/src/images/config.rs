//! The parts of an OCI image configuration the engine shows, and the views built from it:
//! the typed `ImageDetails`, Docker-compatible inspect JSON, and history entries.

use std::collections::{BTreeMap, HashMap};

use berth_proto::engine::v1::{ImageConfig, ImageDetails, ImageHistoryEntry};
use berth_proto::images::v1::InspectResponse;
use prost_types::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

/// An image configuration (OCI image config / Docker image JSON), as far as berth reads it.
/// Every field is optional: configurations written by other tools omit or null many of them.
#[derive(Debug, Default, Deserialize)]
pub struct ImageConfigJson {
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// Author.
    #[serde(default)]
    pub author: Option<String>,
    /// CPU architecture.
    #[serde(default)]
    pub architecture: Option<String>,
    /// Operating system.
    #[serde(default)]
    pub os: Option<String>,
    /// CPU variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Operating system version.
    #[serde(default, rename = "os.version")]
    pub os_version: Option<String>,
    /// Comment (Docker writes one for imported and committed images).
    #[serde(default)]
    pub comment: Option<String>,
    /// How containers run.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// Build steps, oldest first.
    #[serde(default)]
    pub history: Option<Vec<History>>,
}

/// The `config` object of an image configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// USER
    #[serde(default)]
    pub user: Option<String>,
    /// ENV
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// ENTRYPOINT
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// CMD
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// WORKDIR
    #[serde(default)]
    pub working_dir: Option<String>,
    /// LABEL
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
    /// EXPOSE, as a set ("80/tcp": {}).
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// VOLUME, as a set ("/data": {}).
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// STOPSIGNAL
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// One `history` entry.
#[derive(Debug, Default, Deserialize)]
pub struct History {
    /// When the step ran, RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// The instruction.
    #[serde(default)]
    pub created_by: Option<String>,
    /// Comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default)]
    pub empty_layer: Option<bool>,
}

/// A parsed configuration with its raw JSON (for the parts shown as they are).
#[derive(Debug, Default)]
pub struct Config {
    /// The typed view.
    pub parsed: ImageConfigJson,
    /// The whole document.
    pub raw: Value,
}

impl Config {
    /// Parses configuration JSON. A configuration berth cannot read is shown as empty rather
    /// than failing every listing: the snapshotter checked it when the image was stored.
    pub fn parse(bytes: &[u8], digest: &str) -> Self {
        let raw: Value = match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(config = digest, error = %e, "unreadable image configuration");
                return Config::default();
            }
        };
        let parsed = serde_json::from_value(raw.clone()).unwrap_or_else(|e| {
            tracing::warn!(config = digest, error = %e, "unexpected image configuration");
            ImageConfigJson::default()
        });
        Config { parsed, raw }
    }

    /// Creation time.
    pub fn created(&self) -> Option<Timestamp> {
        parse_time(self.parsed.created.as_deref()?)
    }

    /// Labels of the run configuration.
    pub fn labels(&self) -> HashMap<String, String> {
        self.parsed
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default()
    }

    /// The image's comment: the configuration's own, else that of its newest step.
    pub fn comment(&self) -> String {
        if let Some(c) = self.parsed.comment.as_ref().filter(|c| !c.is_empty()) {
            return c.clone();
        }
        self.parsed
            .history
            .as_ref()
            .and_then(|h| h.last())
            .and_then(|h| h.comment.clone())
            .unwrap_or_default()
    }

    /// The typed run configuration.
    pub fn image_config(&self) -> ImageConfig {
        let Some(c) = &self.parsed.config else {
            return ImageConfig::default();
        };
        ImageConfig {
            user: c.user.clone().unwrap_or_default(),
            env: c.env.clone().unwrap_or_default(),
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            cmd: c.cmd.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            labels: c.labels.clone().unwrap_or_default(),
            exposed_ports: c
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default(),
            volumes: c
                .volumes
                .as_ref()
                .map(|v| v.keys().cloned().collect())
                .unwrap_or_default(),
            stop_signal: c.stop_signal.clone().unwrap_or_default(),
        }
    }
}

/// Parses an RFC 3339 time ("2024-01-02T03:04:05.123Z", "…+02:00").
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.trim().parse().ok()
}

/// Names of an image, short as Docker shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// "repository:tag"
    pub tags: Vec<String>,
    /// "repository@digest"
    pub digests: Vec<String>,
}

/// The typed details of an inspected image.
pub fn details(info: &InspectResponse, names: &Names, config: &Config) -> ImageDetails {
    let p = &config.parsed;
    ImageDetails {
        id: image_id(info),
        repo_tags: names.tags.clone(),
        repo_digests: names.digests.clone(),
        created: config.created(),
        size: info.size,
        os: p.os.clone().unwrap_or_default(),
        architecture: p.architecture.clone().unwrap_or_default(),
        variant: p.variant.clone().unwrap_or_default(),
        author: p.author.clone().unwrap_or_default(),
        comment: config.comment(),
        config: Some(config.image_config()),
        diff_ids: info.diff_ids.clone(),
        target: info.image.as_ref().and_then(|i| i.target.clone()),
    }
}

/// The image id (digest of the configuration) of an inspected image.
pub fn image_id(info: &InspectResponse) -> String {
    info.config
        .as_ref()
        .map(|c| c.digest.clone())
        .unwrap_or_default()
}

/// Docker-compatible inspect JSON for one image.
pub fn docker_json(info: &InspectResponse, names: &Names, config: &Config) -> Value {
    let p = &config.parsed;
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut out = json!({
        "Id": image_id(info),
        "RepoTags": names.tags,
        "RepoDigests": names.digests,
        "Parent": "",
        "Comment": config.comment(),
        "Created": text(&p.created),
        "DockerVersion": config.raw.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": text(&p.author),
        "Config": config.raw.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": text(&p.architecture),
        "Os": text(&p.os),
        "Size": info.size,
        "GraphDriver": {"Data": null, "Name": "overlayfs"},
        "RootFS": {"Type": "layers", "Layers": info.diff_ids},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    });
    if let Some(v) = p.variant.as_ref().filter(|v| !v.is_empty()) {
        out["Variant"] = json!(v);
    }
    if let Some(v) = p.os_version.as_ref().filter(|v| !v.is_empty()) {
        out["OsVersion"] = json!(v);
    }
    if let Some(t) = info.image.as_ref().and_then(|i| i.target.as_ref()) {
        out["Descriptor"] = json!({
            "mediaType": t.media_type,
            "digest": t.digest,
            "size": t.size,
        });
    }
    out
}

/// History entries, newest first. Steps with a layer are matched to the layers in order; the
/// size shown is that of the layer blob (the unpacked size of one layer is not recorded).
pub fn history(info: &InspectResponse, tags: &[String], config: &Config) -> Vec<ImageHistoryEntry> {
    let steps = config.parsed.history.as_deref().unwrap_or_default();
    let mut layers = info.layers.iter();
    let mut out: Vec<ImageHistoryEntry> = if steps.is_empty() {
        // No recorded history: one anonymous step per layer, as Docker shows it.
        info.layers
            .iter()
            .map(|l| ImageHistoryEntry {
                id: "<missing>".into(),
                created: config.created(),
                size: l.size,
                ..Default::default()
            })
            .collect()
    } else {
        steps
            .iter()
            .map(|h| {
                let empty = h.empty_layer.unwrap_or(false);
                let size = if empty {
                    0
                } else {
                    layers.next().map(|l| l.size).unwrap_or(0)
                };
                ImageHistoryEntry {
                    id: "<missing>".into(),
                    created: h.created.as_deref().and_then(parse_time),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    size,
                    comment: h.comment.clone().unwrap_or_default(),
                    tags: Vec::new(),
                    empty_layer: empty,
                }
            })
            .collect()
    };
    out.reverse();
    if let Some(top) = out.first_mut() {
        top.id = image_id(info);
        top.tags = tags.to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::images::v1::Image;
    use berth_proto::types::v1::Descriptor;

    const CONFIG: &str = r#"{
        "created": "2024-05-06T07:08:09.5+02:00",
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": null,
                   "Labels": {"a": "1"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:aa", "sha256:bb"]},
        "history": [
            {"created": "2024-05-06T07:00:00Z", "created_by": "ADD rootfs", "comment": "base"},
            {"created": "2024-05-06T07:01:00Z", "created_by": "ENV PATH=/bin", "empty_layer": true},
            {"created": "2024-05-06T07:02:00Z", "created_by": "RUN x"}
        ]
    }"#;

    fn desc(digest: &str, size: i64) -> Descriptor {
        Descriptor {
            digest: digest.into(),
            size,
            ..Default::default()
        }
    }

    fn info() -> InspectResponse {
        InspectResponse {
            image: Some(Image {
                name: "docker.io/library/x:latest".into(),
                target: Some(desc("sha256:m", 300)),
                ..Default::default()
            }),
            config: Some(desc("sha256:c", 100)),
            layers: vec![desc("sha256:l1", 10), desc("sha256:l2", 20)],
            diff_ids: vec!["sha256:aa".into(), "sha256:bb".into()],
            size: 1234,
            ..Default::default()
        }
    }

    #[test]
    fn details_and_json_follow_the_configuration() {
        let config = Config::parse(CONFIG.as_bytes(), "sha256:c");
        let names = Names {
            tags: vec!["x:latest".into()],
            digests: vec!["x@sha256:m".into()],
        };
        let d = details(&info(), &names, &config);
        assert_eq!(d.id, "sha256:c");
        let c = d.config.unwrap();
        assert_eq!(c.cmd, ["sh"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.exposed_ports, ["80/tcp"]);
        assert_eq!(c.volumes, ["/data"]);
        assert_eq!(d.comment, "");
        // 07:08:09.5 at +02:00 is 05:08:09.5 UTC.
        assert_eq!(d.created.unwrap().to_string(), "2024-05-06T05:08:09.500Z");

        let j = docker_json(&info(), &names, &config);
        assert_eq!(j["Id"], "sha256:c");
        assert_eq!(j["Config"]["Cmd"][0], "sh");
        assert_eq!(j["RootFS"]["Layers"][1], "sha256:bb");
        assert_eq!(j["Descriptor"]["digest"], "sha256:m");
        assert_eq!(j["Size"], 1234);
    }

    #[test]
    fn history_is_newest_first_with_layer_sizes() {
        let config = Config::parse(CONFIG.as_bytes(), "sha256:c");
        let h = history(&info(), &["x:latest".to_string()], &config);
        let rows: Vec<_> = h
            .iter()
            .map(|e| (e.id.as_str(), e.created_by.as_str(), e.size, e.empty_layer))
            .collect();
        assert_eq!(
            rows,
            [
                ("sha256:c", "RUN x", 20, false),
                ("<missing>", "ENV PATH=/bin", 0, true),
                ("<missing>", "ADD rootfs", 10, false),
            ]
        );
        assert_eq!(h[0].tags, ["x:latest"]);
        assert_eq!(h[2].comment, "base");
    }

    #[test]
    fn a_bare_configuration_still_describes() {
        let config = Config::parse(br#"{"config": null, "history": null}"#, "d");
        assert_eq!(config.image_config(), ImageConfig::default());
        assert!(config.created().is_none());
        let h = history(&info(), &[], &config);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].size, 20);
        assert!(Config::parse(b"not json", "d").labels().is_empty());
    }
}
