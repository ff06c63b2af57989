//! The command line's shape: global flags and one struct per command.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::template::ListFormat;

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
    /// Show low-level information on containers or images as JSON
    Inspect(InspectArgs),
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
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Manage the engine as a whole
    #[command(subcommand)]
    System(SystemCommand),
    /// Print a shell completion script (e.g. `berthctl completion bash > /etc/bash_completion.d/berthctl`)
    Completion(CompletionArgs),
}

/// `container …`
#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers
    #[command(visible_alias = "list", alias = "ps")]
    Ls(PsArgs),
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(WaitArgs),
    /// Show detailed information on one or more containers as JSON
    Inspect(ContainerInspectArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Pause all processes within one or more containers
    Pause(ContainersArgs),
    /// Unpause all processes within one or more containers
    Unpause(ContainersArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
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
    /// Output format: table, json (one object per line), a Go template
    /// ('{{.ID}}\t{{.Names}}'), or 'table TEMPLATE'
    #[arg(long, value_parser = ListFormat::parse, default_value = "table")]
    pub format: ListFormat,
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
    /// Format the output with a Go template ('{{.Id}}'); json (the default) prints a JSON
    /// array
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
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

/// When to pull the image (`--pull`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PullWhen {
    /// Pull when the image is not present
    #[default]
    Missing,
    /// Always pull before creating
    Always,
    /// Never pull; a missing image is an error
    Never,
}

/// The options of `create` and `run`: Docker's flags.
#[derive(Debug, Args)]
pub struct ContainerOptions {
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE; KEY alone takes the value from this shell)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image ("" for none)
    #[arg(long, value_name = "COMMAND", allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short = 'm', long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 for unlimited swap
    #[arg(long = "memory-swap", value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long, value_name = "DECIMAL")]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares", value_name = "INT")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "CPUS")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", value_name = "INT", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Security options (no-new-privileges[=false], seccomp=unconfined|PROFILE.json)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Set meta data on a container (KEY=VALUE)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(
        long = "stop-timeout",
        value_name = "SECONDS",
        allow_hyphen_values = true
    )]
    pub stop_timeout: Option<i32>,
    /// Restart policy when the container exits: no, always, unless-stopped,
    /// on-failure[:MAX-RETRIES]
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Ulimit options (e.g. nofile=1024:2048)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Network mode: none (the default) or host
    #[arg(long = "network", alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Logging driver: json-file (the default) or none
    #[arg(long = "log-driver", value_name = "DRIVER")]
    pub log_driver: Option<String>,
    /// Log driver options (max-size=10m, max-file=3)
    #[arg(long = "log-opt", value_name = "OPT")]
    pub log_opts: Vec<String>,
    /// Pull image before creating
    #[arg(long, value_enum, default_value_t)]
    pub pull: PullWhen,
    /// Platform of the image, os/arch[/variant]
    #[arg(long)]
    pub platform: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// The image, then the command and its arguments
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// `run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short, long)]
    pub detach: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub keys: DetachKeys,
    #[command(flatten)]
    pub options: ContainerOptions,
}

/// `create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub options: ContainerOptions,
}

/// `start`
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[command(flatten)]
    pub keys: DetachKeys,
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stop`, `restart`
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container (-1: forever)
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    pub time: Option<i32>,
    /// Signal to send to the container
    #[arg(short, long)]
    pub signal: Option<String>,
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `kill`
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `rm`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short, long)]
    pub volumes: bool,
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `ps`
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Filter: status=, name=, id=, label=, ancestor=, exited=
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// Output format: table, json (one object per line), a Go template
    /// ('{{.ID}}\t{{.Names}}'), or 'table TEMPLATE'
    #[arg(long, value_parser = ListFormat::parse, default_value = "table")]
    pub format: ListFormat,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", value_name = "N")]
    pub last: Option<u32>,
    /// Show the latest created container (includes all states)
    #[arg(short, long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
}

/// `logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// Show logs since a time (RFC 3339) or a duration ago (e.g. 42m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Show logs before a time (RFC 3339) or a duration ago (e.g. 42m)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container: name or id
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `--detach-keys`, for the commands that attach a terminal.
#[derive(Debug, Args)]
pub struct DetachKeys {
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = "")]
    pub detach_keys: String,
}

/// `exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    #[command(flatten)]
    pub keys: DetachKeys,
    /// The container, then the command and its arguments
    #[arg(
        value_name = "CONTAINER COMMAND [ARG...]",
        required = true,
        num_args = 2..,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// `attach`
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub sig_proxy: bool,
    #[command(flatten)]
    pub keys: DetachKeys,
    /// Container: name or id
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `rename`
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// Container: name or id
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Its new name
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

/// `pause`, `unpause`
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `top`
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container: name or id
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// Options for ps (default -ef)
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_args: Vec<String>,
}

/// `stats`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Output format (json: one object per line)
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Containers: names or ids (default: all running)
    #[arg(value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `wait`
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// What `inspect` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectType {
    /// Containers only
    Container,
    /// Images only
    Image,
}

/// `inspect`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only this kind of object (default: containers, then images)
    #[arg(long = "type", value_enum)]
    pub kind: Option<ObjectType>,
    /// Display total file sizes (containers)
    #[arg(short, long)]
    pub size: bool,
    /// Format the output with a Go template ('{{.State.Status}}'); json (the default)
    /// prints a JSON array
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Containers or images: names or ids
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// `container inspect`
#[derive(Debug, Args)]
pub struct ContainerInspectArgs {
    /// Display total file sizes
    #[arg(short, long)]
    pub size: bool,
    /// Format the output with a Go template ('{{.State.Pid}}'); json (the default) prints
    /// a JSON array
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Containers: names or ids
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
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
