//! Flags every berth service takes, and how they merge with the configuration file.

use std::path::PathBuf;

use crate::config::{self, Common};
use crate::error::Result;
use crate::logging::LogFormat;

/// Default persistent data directory.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";
/// Default runtime state directory.
pub const DEFAULT_STATE: &str = "/run/berth";

/// `--root`, `--state`, `--config`, `--log-format`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Persistent data directory [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Runtime state directory, for sockets and per-container state [default: /run/berth]
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Configuration file [default: /etc/berth/config.toml, if it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format; filter with RUST_LOG (e.g. RUST_LOG=debug) [default: text]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// Common settings after flags, file and defaults are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Persistent data directory.
    pub root: PathBuf,
    /// Runtime state directory.
    pub state: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
}

impl CommonArgs {
    /// Loads the configuration file and merges it under the flags; returns the common
    /// settings and the service's own table `section`.
    pub fn load<S>(&self, section: &str) -> Result<(Settings, S)>
    where
        S: serde::de::DeserializeOwned + Default,
    {
        let (file, own): (Common, S) = config::load(self.config.as_deref(), section)?;
        let settings = Settings {
            root: absolute(self.root.clone().or(file.root), DEFAULT_ROOT)?,
            state: absolute(self.state.clone().or(file.state), DEFAULT_STATE)?,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
        };
        Ok((settings, own))
    }
}

fn absolute(dir: Option<PathBuf>, default: &str) -> Result<PathBuf> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(default));
    std::path::absolute(&dir).map_err(|e| crate::Error::io(format!("resolve {}", dir.display()), e))
}
