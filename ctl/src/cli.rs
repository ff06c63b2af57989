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
    /// List images
    Images(ImagesArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Log in to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show low-level information on images as JSON
    Inspect(ImageInspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Load images from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
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
    /// Show disk usage
    Df(DfArgs),
}

/// `image …`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Show detailed information on one or more images as JSON
    Inspect(ImageInspectArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove", alias = "rmi")]
    Rm(RmiArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Load images from a tar archive or STDIN
    Load(LoadArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove unused images
    Prune(PruneArgs),
}

/// `images`, `image ls`
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only images of this repository (a pattern, like --filter reference=)
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub repository: Option<String>,
    /// Show all images (berth keeps no intermediate images, so this changes nothing)
    #[arg(short, long)]
    pub all: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter: dangling=true|false, reference=PATTERN, label=KEY[=VALUE], before=IMAGE, since=IMAGE
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format (json: one object per line)
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
}

/// `image inspect`, `inspect`
#[derive(Debug, Args)]
pub struct ImageInspectArgs {
    /// Images: names or ids
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Output format (always a JSON array; accepted for symmetry with other commands)
    #[arg(short, long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// `pull`, `image pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image to pull; without a tag or digest, :latest
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub name: String,
    /// Platform to pull from a multi-platform image, os/arch[/variant] (default: the engine's)
    #[arg(long)]
    pub platform: Option<String>,
    /// Keep every platform of a multi-platform image (only one is unpacked)
    #[arg(long)]
    pub all_platforms: bool,
    /// Suppress verbose output: print only the image's full name
    #[arg(short, long)]
    pub quiet: bool,
}

/// `push`, `image push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image to push; without a tag, :latest
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
    /// Push every local tag of the repository
    #[arg(short, long)]
    pub all_tags: bool,
    /// Push only this platform's manifest of a multi-platform image, os/arch[/variant]
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output: print only the image's full name
    #[arg(short, long)]
    pub quiet: bool,
}

/// `login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry, e.g. registry.example.com:5000 (default: docker.io)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (insecure: visible to other users of the host; prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Take the password from STDIN
    #[arg(long)]
    pub password_stdin: bool,
}

/// `logout`
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry (default: docker.io)
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// `tag`, `image tag`
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image: name or id
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    /// New name
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

/// `rmi`, `image rm`
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Images: names or ids
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Force removal of the image (e.g. an id referenced in several repositories)
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long)]
    pub no_prune: bool,
}

/// `history`, `image history`
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Image: name or id
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format (json: one object per line)
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `load`, `image load`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from a tar archive file instead of STDIN
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Suppress the load progress
    #[arg(short, long)]
    pub quiet: bool,
}

/// `save`, `image save`
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Images: names or ids
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Write to a file instead of STDOUT
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `import`, `image import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Root filesystem tar (uncompressed, gzip or zstd), or - for STDIN
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// Name of the new image
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
    /// Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR)
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message for the imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Platform recorded in the image, os/arch[/variant] (default: the engine's)
    #[arg(long)]
    pub platform: Option<String>,
}

/// `image prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Filter: until=TIME|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE]
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `system df`
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format (json: one object per line; with -v one object)
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
