use std::path::PathBuf;
use std::process::ExitCode;

use berth_rpc::logging::LogFormat;
use berth_shim::daemon::{self, Ready, Role};
use berth_shim::server::{self, ShimArgs};
use clap::Parser;

/// berth-shim: serves the Task API of one container (spawned by berth-engine). It
/// detaches at once; the Task API is on <state-dir>/shim.sock, its log in
/// <state-dir>/shim.log.
#[derive(Debug, Parser)]
#[command(name = "berth-shim", version)]
struct Args {
    /// Container id: 64 lowercase hex characters
    #[arg(long)]
    id: String,
    /// The container's state directory, created by the engine
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// Log format; filter with RUST_LOG (e.g. RUST_LOG=debug)
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Do not detach (for debugging): stay in the caller's session, log to stderr
    #[arg(long)]
    foreground: bool,
}

fn main() -> ExitCode {
    berth_rpc::fds::cloexec_inherited();
    tune_malloc();
    let args = Args::parse();
    let ready = if args.foreground {
        Ready::none()
    } else {
        match daemon::daemonize(&args.state_dir) {
            Role::Launcher(code) => return code,
            Role::Daemon(ready) => ready,
        }
    };
    server::run(
        ShimArgs {
            id: args.id,
            state_dir: args.state_dir,
            log_format: args.log_format,
        },
        ready,
    )
}

/// glibc's malloc gives each thread that allocates an arena of its own and keeps what
/// the thread freed. Besides its runtime thread the shim has only short-lived blocking
/// threads (creating, starting, removing the container): one arena serves them all, where
/// their own would each stay, ~100 KiB dirty, for the life of the container. Runs before
/// any thread exists.
#[cfg(target_env = "gnu")]
fn tune_malloc() {
    // SAFETY: sets a malloc parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(target_env = "gnu"))]
fn tune_malloc() {}
