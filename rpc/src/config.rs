//! The TOML configuration file shared by every berth service.
//!
//! Top-level keys apply to every service; each service reads its own table (`[engine]`,
//! `[snapshotter]`, `[builder]`). Unknown keys are errors, so a typo is never silently
//! ignored. Command-line flags override the file.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::logging::LogFormat;

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/berth/config.toml";

/// The tables a configuration file may hold.
pub const SECTIONS: [&str; 4] = ["engine", "snapshotter", "builder", "shim"];

/// Settings shared by every service.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Common {
    /// Persistent data directory.
    pub root: Option<PathBuf>,
    /// Runtime state directory.
    pub state: Option<PathBuf>,
    /// Log format.
    pub log_format: Option<LogFormat>,
}

/// Loads the common settings and table `section`. A missing default file is an empty
/// config; a missing file named by `--config` is an error.
pub fn load<S: DeserializeOwned + Default>(
    explicit: Option<&Path>,
    section: &str,
) -> Result<(Common, S)> {
    let path = explicit.unwrap_or(Path::new(DEFAULT_CONFIG));
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(Default::default())
        }
        Err(e) => return Err(Error::io(format!("read config file {}", path.display()), e)),
    };
    parse(&text, section).map_err(|message| Error::Config {
        path: path.to_path_buf(),
        message,
    })
}

fn parse<S: DeserializeOwned + Default>(
    text: &str,
    section: &str,
) -> std::result::Result<(Common, S), String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut sections = toml::Table::new();
    for name in SECTIONS {
        if let Some(v) = table.remove(name) {
            sections.insert(name.to_string(), v);
        }
    }
    let common: Common = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    let own = match sections.remove(section) {
        Some(v) => v
            .try_into()
            .map_err(|e: toml::de::Error| format!("[{section}]: {e}"))?,
        None => S::default(),
    };
    Ok((common, own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Svc {
        socket: Option<String>,
    }

    #[test]
    fn reads_common_keys_and_own_section_only() {
        let (c, s): (Common, Svc) = parse(
            "root = \"/r\"\nlog_format = \"json\"\n[snapshotter]\nsocket = \"/s\"\n[engine]\nother = 1\n",
            "snapshotter",
        )
        .unwrap();
        assert_eq!(c.root.as_deref(), Some(Path::new("/r")));
        assert_eq!(c.log_format, Some(LogFormat::Json));
        assert_eq!(s.socket.as_deref(), Some("/s"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(parse::<Svc>("rooot = \"/r\"\n", "builder").is_err());
        assert!(parse::<Svc>("[builder]\nsockett = 1\n", "builder")
            .unwrap_err()
            .contains("[builder]"));
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        assert!(load::<Svc>(Some(Path::new("/nonexistent/berth.toml")), "builder").is_err());
    }
}
