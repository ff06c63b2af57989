//! The registry settings of the `[snapshotter]` table of the configuration file:
//!
//! ```toml
//! [snapshotter]
//! insecure_registries = ["registry.lan:5000"]          # plain HTTP / unverified TLS
//! mirrors = { "docker.io" = ["http://127.0.0.1:5001"] } # tried in order, then the origin
//! certs_dir = "/etc/berth/certs.d"                      # <host[:port]>/ca.crt, client.cert
//! max_concurrent_downloads = 3                          # per pull, unless the request says
//! max_concurrent_uploads = 3                            # per push, unless the request says
//! stall_timeout_secs = 30                               # no bytes for this long: retry
//! ```
//!
//! `socket` and `socket_group` belong to the same table and are read by `berth-rpc`; this
//! module reads the rest, strictly (an unknown key is an error naming it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The keys this module reads, which `berth-rpc`'s daemon must let through.
pub const KEYS: &[&str] = &[
    "insecure_registries",
    "mirrors",
    "certs_dir",
    "max_concurrent_downloads",
    "max_concurrent_uploads",
    "stall_timeout_secs",
];

/// Where Docker-style per-registry certificates are looked for by default.
pub const DEFAULT_CERTS_DIR: &str = "/etc/berth/certs.d";
/// Blobs downloaded at once by one pull, as Docker does.
pub const DEFAULT_CONCURRENCY: usize = 3;
/// Most transfers one request may run at once.
pub const MAX_CONCURRENCY: usize = 64;
/// Seconds without a byte before a transfer is retried.
pub const DEFAULT_STALL_TIMEOUT_SECS: u64 = 30;

/// The `[snapshotter]` table as this module sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Read by `berth-rpc`; listed so that the table parses strictly here.
    pub socket: Option<PathBuf>,
    /// Read by `berth-rpc`.
    pub socket_group: Option<String>,
    /// Registries reached over plain HTTP or TLS without verification (`host[:port]`),
    /// besides localhost and 127.0.0.0/8, which always are.
    pub insecure_registries: Vec<String>,
    /// Mirrors by registry host: base URLs tried in order before the registry itself.
    pub mirrors: HashMap<String, Vec<String>>,
    /// Directory of `<host[:port]>/{ca.crt,client.cert,client.key}`.
    pub certs_dir: PathBuf,
    /// Default download concurrency of a pull.
    pub max_concurrent_downloads: usize,
    /// Default upload concurrency of a push.
    pub max_concurrent_uploads: usize,
    /// Seconds without a byte before a transfer is retried, then failed.
    pub stall_timeout_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            socket: None,
            socket_group: None,
            insecure_registries: Vec::new(),
            mirrors: HashMap::new(),
            certs_dir: PathBuf::from(DEFAULT_CERTS_DIR),
            max_concurrent_downloads: DEFAULT_CONCURRENCY,
            max_concurrent_uploads: DEFAULT_CONCURRENCY,
            stall_timeout_secs: DEFAULT_STALL_TIMEOUT_SECS,
        }
    }
}

impl RegistryConfig {
    /// Reads the `[snapshotter]` table of the configuration file (`explicit`, or the default
    /// file when it exists) and validates it.
    pub fn load(explicit: Option<&Path>) -> Result<Self> {
        let (_, config): (_, RegistryConfig) = berth_rpc::config::load(explicit, "snapshotter")?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values the registry client could not use.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("[snapshotter] {what}")));
        for (key, n) in [
            ("max_concurrent_downloads", self.max_concurrent_downloads),
            ("max_concurrent_uploads", self.max_concurrent_uploads),
        ] {
            if n == 0 || n > MAX_CONCURRENCY {
                return bad(format!("{key} = {n}: expected 1 to {MAX_CONCURRENCY}"));
            }
        }
        if self.stall_timeout_secs == 0 {
            return bad("stall_timeout_secs must be at least 1".into());
        }
        for host in &self.insecure_registries {
            if host.is_empty() || host.contains("://") || (host.contains('/') && !is_cidr(host)) {
                return bad(format!(
                    "insecure_registries: {host:?} is not a host[:port] or a CIDR range"
                ));
            }
        }
        for (host, urls) in &self.mirrors {
            if host.is_empty() || host.contains('/') {
                return bad(format!("mirrors: {host:?} is not a registry host"));
            }
            for url in urls {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"));
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                    return bad(format!(
                        "mirrors.{host:?}: {url:?} is not an http:// or https:// URL"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The registry client's settings.
    pub fn client_config(&self) -> berth_registry_client::ClientConfig {
        berth_registry_client::ClientConfig {
            insecure_registries: self.insecure_registries.clone(),
            mirrors: self.mirrors.clone(),
            certs_dir: Some(self.certs_dir.clone()),
            stall_timeout: Duration::from_secs(self.stall_timeout_secs),
            user_agent: format!("berth/{}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        }
    }
}

fn is_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((ip, bits)) => ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<RegistryConfig, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        RegistryConfig::load(Some(&path)).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_key() {
        let c = parse(
            r#"
            root = "/r"
            [snapshotter]
            socket = "/s.sock"
            insecure_registries = ["registry.lan:5000", "10.0.0.0/8"]
            mirrors = { "docker.io" = ["http://127.0.0.1:5001", "https://mirror.lan"] }
            certs_dir = "/c"
            max_concurrent_downloads = 5
            max_concurrent_uploads = 2
            stall_timeout_secs = 7
            [engine]
            whatever = 1
            "#,
        )
        .unwrap();
        assert_eq!(c.max_concurrent_downloads, 5);
        assert_eq!(c.mirrors["docker.io"].len(), 2);
        let client = c.client_config();
        assert_eq!(client.stall_timeout, Duration::from_secs(7));
        assert_eq!(client.certs_dir.as_deref(), Some(Path::new("/c")));
        for key in KEYS {
            assert!(
                !key.is_empty() && !["socket", "socket_group"].contains(key),
                "{key}"
            );
        }
    }

    #[test]
    fn the_shipped_config_documents_valid_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let section = text
            .split("\n[snapshotter]\n")
            .nth(1)
            .and_then(|s| s.split("\n[").next())
            .unwrap();
        // Every documented key, uncommented, as the shipped example sets it.
        let keys: String = section
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| {
                l.split(" = ")
                    .next()
                    .is_some_and(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = parse(&format!("[snapshotter]\n{keys}")).unwrap();
        for key in KEYS {
            assert!(
                keys.contains(&format!("{key} = ")),
                "{key} is not documented"
            );
        }
        assert_eq!(c.max_concurrent_downloads, DEFAULT_CONCURRENCY);
        assert_eq!(c.stall_timeout_secs, DEFAULT_STALL_TIMEOUT_SECS);
    }

    #[test]
    fn defaults_without_a_table() {
        assert_eq!(parse("").unwrap(), RegistryConfig::default());
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        let e = parse("[snapshotter]\nmax_concurent_downloads = 3\n").unwrap_err();
        assert!(e.contains("max_concurent_downloads"), "{e}");
        for bad in [
            "max_concurrent_downloads = 0",
            "stall_timeout_secs = 0",
            "insecure_registries = [\"http://x\"]",
            "mirrors = { \"docker.io\" = [\"127.0.0.1:5001\"] }",
        ] {
            assert!(parse(&format!("[snapshotter]\n{bad}\n")).is_err(), "{bad}");
        }
    }
}
