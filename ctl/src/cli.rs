//! The command line's shape: global flags and one struct per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Default engine address.
pub const DEFAULT_HOST: &str = "unix:///run/berth/engine.sock";

/// berthctl: the command line of berth, a container engine.
#[derive(Debug, Parser)]
#[command(name = "berthctl", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Engine address: unix:///path or tcp://HOST:PORT
    #[arg(short = 'H', long, env = "BERTH_HOST", default_value = DEFAULT_HOST, global = true)]
    pub host: String,
    /// CA certificate the engine's certificate is signed by (TCP)
    #[arg(long, value_name = "FILE", env = "BERTH_TLSCACERT", global = true)]
    pub tlscacert: Option<PathBuf>,
    /// Client certificate to present to the engine (TCP)
    #[arg(long, value_name = "FILE", env = "BERTH_TLSCERT", global = true)]
    pub tlscert: Option<PathBuf>,
    /// Key of the client certificate (TCP)
    #[arg(long, value_name = "FILE", env = "BERTH_TLSKEY", global = true)]
    pub tlskey: Option<PathBuf>,
}

/// Output format of commands with structured output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the versions of berthctl, the engine and its services
    Version(FormatArgs),
    /// Show information about the engine and the host
    Info(FormatArgs),
    /// Manage the engine as a whole
    #[command(subcommand)]
    System(SystemCommand),
    /// Print a shell completion script (e.g. `berthctl completion bash > /etc/bash_completion.d/berthctl`)
    Completion(CompletionArgs),
}

/// `system …`
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Stream events from the engine
    Events(EventsArgs),
    /// Show information about the engine and the host (same as `info`)
    Info(FormatArgs),
}

/// `--format`
#[derive(Debug, Args)]
pub struct FormatArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t)]
    pub format: Format,
}

/// `system events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Replay retained events after this sequence number, then follow live ones
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
    /// Stop at this time: RFC 3339 (2026-01-02T15:04:05Z) or a duration from now (10s, 5m)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Filter: type=, action=, id= (repeatable; same key = any of, different keys = all of)
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format (json: one object per line)
    #[arg(short, long, value_enum, default_value_t)]
    pub format: Format,
}

/// `completion`
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// Shell to generate for
    pub shell: clap_complete::Shell,
}
