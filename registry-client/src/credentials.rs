//! Docker `config.json` compatibility, for the client side (`berthctl login/logout` and
//! pulls): berth's own file first, then Docker's; `auths` entries, and `credHelpers` /
//! `credsStore` through `docker-credential-<helper> get`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::Credentials;

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// `$BERTH_CONFIG/config.json`, else `$HOME/.config/berth/config.json`.
pub fn berth_config_path() -> PathBuf {
    match std::env::var_os("BERTH_CONFIG").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => home().join(".config/berth/config.json"),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json` (`None` without a home).
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The registry an `auths` key or host names: scheme and path dropped, lower-cased, Docker
/// Hub's aliases folded into `docker.io`.
fn normalize(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// The server URL credential helpers and `auths` use for `host`.
fn server_key(host: &str) -> String {
    if normalize(host) == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        host.to_string()
    }
}

fn read_config(path: &Path) -> Result<Option<Map<String, Value>>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice::<Value>(&data) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Error::Config(format!(
            "{} is not a JSON object",
            path.display()
        ))),
        Err(e) => Err(Error::Config(format!(
            "{} is not valid JSON: {e}",
            path.display()
        ))),
    }
}

/// Credentials for `registry_host` (`docker.io`, `ghcr.io`, `localhost:5000`): berth's
/// config first, then Docker's. In each file, as Docker: `credHelpers`, then `credsStore`,
/// then `auths`.
pub fn lookup(registry_host: &str) -> Result<Option<Credentials>> {
    let mut files = vec![berth_config_path()];
    files.extend(docker_config_path());
    for path in files {
        let Some(config) = read_config(&path)? else {
            continue;
        };
        if let Some(c) = lookup_in(&config, registry_host, &path)? {
            tracing::debug!(registry = registry_host, file = %path.display(), "found credentials");
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn lookup_in(config: &Map<String, Value>, host: &str, path: &Path) -> Result<Option<Credentials>> {
    let want = normalize(host);
    let helper = config
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalize(k) == want)
                .and_then(|(_, v)| v.as_str())
        });
    if let Some(helper) = helper {
        return run_helper(helper, host, path);
    }
    if let Some(store) = config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        if let Some(c) = run_helper(store, host, path)? {
            return Ok(Some(c));
        }
    }
    let Some(auths) = config.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    // An exact key wins over a folded one.
    let entry = auths.get(host).or_else(|| {
        auths
            .iter()
            .find(|(k, _)| normalize(k) == want)
            .map(|(_, v)| v)
    });
    let Some(entry) = entry.and_then(Value::as_object) else {
        return Ok(None);
    };
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut creds = Credentials {
        username: field("username"),
        password: field("password"),
        identity_token: field("identitytoken"),
        registry_token: field("registrytoken"),
    };
    let auth = field("auth");
    if !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: the \"auth\" of {host} is not base64 of user:password",
                    path.display()
                ))
            })?;
        let (user, pass) = decoded.split_once(':').ok_or_else(|| {
            Error::Config(format!(
                "{}: the \"auth\" of {host} is not base64 of user:password",
                path.display()
            ))
        })?;
        creds.username = user.to_string();
        creds.password = pass.to_string();
    }
    Ok((!creds.is_empty()).then_some(creds))
}

/// `docker-credential-<helper> get` with the server URL on stdin.
fn run_helper(helper: &str, host: &str, config: &Path) -> Result<Option<Credentials>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Config(format!(
                "credential helper {program} (named in {}) cannot run: {e}",
                config.display()
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading gets EPIPE: not our error.
        let _ = stdin.write_all(server_key(host).as_bytes());
    }
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let text = format!("{stdout} {}", String::from_utf8_lossy(&out.stderr));
        if text.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::Config(format!(
            "credential helper {program} failed for {host}: {}",
            text.trim()
        )));
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_str(stdout.trim()).map_err(|e| {
        Error::Config(format!(
            "credential helper {program} answered for {host} with invalid JSON: {e}"
        ))
    })?;
    if a.username.is_empty() && a.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if a.username == "<token>" {
        Credentials {
            identity_token: a.secret,
            ..Default::default()
        }
    } else {
        Credentials::basic(&a.username, &a.secret)
    }))
}

/// Stores `creds` for `registry_host` in berth's config.json, in Docker's format (the
/// file is created with mode 0600 in a 0700 directory; other keys are kept).
pub fn store(registry_host: &str, creds: &crate::Credentials) -> Result<()> {
    let path = berth_config_path();
    let mut config = read_config(&path)?.unwrap_or_default();
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let Value::Object(auths) = auths else {
        unreachable!("made an object above")
    };
    let want = normalize(registry_host);
    auths.retain(|k, _| normalize(k) != want);
    let mut entry = Map::new();
    if !creds.username.is_empty() || !creds.password.is_empty() {
        let raw = format!("{}:{}", creds.username, creds.password);
        entry.insert(
            "auth".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
        );
    }
    if !creds.identity_token.is_empty() {
        entry.insert(
            "identitytoken".into(),
            Value::String(creds.identity_token.clone()),
        );
    }
    if !creds.registry_token.is_empty() {
        entry.insert(
            "registrytoken".into(),
            Value::String(creds.registry_token.clone()),
        );
    }
    auths.insert(server_key(registry_host), Value::Object(entry));
    write_config(&path, &config)
}

/// Removes `registry_host`'s credentials from berth's config.json; `false` when there
/// were none.
pub fn erase(registry_host: &str) -> Result<bool> {
    let path = berth_config_path();
    let Some(mut config) = read_config(&path)? else {
        return Ok(false);
    };
    let want = normalize(registry_host);
    let removed = match config.get_mut("auths").and_then(Value::as_object_mut) {
        Some(auths) => {
            let before = auths.len();
            auths.retain(|k, _| normalize(k) != want);
            auths.len() != before
        }
        None => false,
    };
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}

/// Writes the config atomically (temp file, then rename), 0600 in a 0700 directory.
fn write_config(path: &Path, config: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = path
        .parent()
        .ok_or_else(|| Error::Config(format!("{} has no directory", path.display())))?;
    let ctx = |e: std::io::Error, what: &Path| {
        Error::Config(format!("cannot write {}: {e}", what.display()))
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| ctx(e, dir))?;
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".config.json.{}.{seq}.tmp", std::process::id()));
    let mut data = serde_json::to_vec_pretty(&Value::Object(config.clone()))
        .map_err(|e| Error::Config(e.to_string()))?;
    data.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        ctx(e, path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_like_docker() {
        for k in [
            "https://index.docker.io/v1/",
            "index.docker.io",
            "docker.io",
            "registry-1.docker.io",
        ] {
            assert_eq!(normalize(k), "docker.io", "{k}");
        }
        assert_eq!(normalize("https://ghcr.io"), "ghcr.io");
        assert_eq!(normalize("localhost:5000"), "localhost:5000");
        assert_eq!(normalize("http://Reg.Example:5000/v2/"), "reg.example:5000");
        assert_eq!(server_key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(server_key("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn reads_auths_entries() {
        let config: Map<String, Value> = serde_json::from_str(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"YmVydGg6czNjcmV0"},
                "ghcr.io":{"username":"u","password":"p"},
                "tok.example":{"auth":"","identitytoken":"refresh"},
                "empty.example":{}
            }}"#,
        )
        .unwrap();
        let p = Path::new("config.json");
        let c = lookup_in(&config, "docker.io", p).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("berth", "s3cret")
        );
        let c = lookup_in(&config, "ghcr.io", p).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let c = lookup_in(&config, "tok.example", p).unwrap().unwrap();
        assert_eq!(c.identity_token, "refresh");
        assert!(lookup_in(&config, "empty.example", p).unwrap().is_none());
        assert!(lookup_in(&config, "quay.io", p).unwrap().is_none());
        let bad: Map<String, Value> =
            serde_json::from_str(r#"{"auths":{"x.example":{"auth":"!!!"}}}"#).unwrap();
        assert!(lookup_in(&bad, "x.example", p).is_err());
    }
}
