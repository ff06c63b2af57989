//! The `berth-shim` process: one container's Task API on `<state_dir>/shim.sock`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use berth_rpc::listen::UnixSocket;
use berth_rpc::logging::LogFormat;
use berth_rpc::serve::{serve, Listener, ServiceSet};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::daemon::Ready;
use crate::state;
use crate::task::{reaper, Task, TaskService};

/// Mode of the Task API socket: only the engine's user (root) may reach a container's
/// controls; the rpc crate's 0660 is for services a group may use.
pub const SOCKET_MODE: u32 = 0o600;

/// How long calls may run once the shim is told to exit. Only the Shutdown answer matters
/// by then (a container is gone before Shutdown succeeds, and Wait calls answer when it
/// goes); a client that never acknowledges the connection's close must not keep the shim.
const DRAIN: Duration = Duration::from_secs(3);

/// Events taken from epoll per turn of the runtime.
const IO_EVENTS_PER_TICK: usize = 64;

/// How long a blocking-pool thread waits for more work before it ends.
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_millis(500);

/// What the shim is started with.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    /// Container id (64 hex characters).
    pub id: String,
    /// The container's state directory, created by the engine.
    pub state_dir: PathBuf,
    /// Log format of the shim's own log.
    pub log_format: LogFormat,
}

/// Runs the shim until Shutdown or SIGTERM; reports readiness (or the reason it cannot
/// start) on `ready`.
pub fn run(args: ShimArgs, mut ready: Ready) -> ExitCode {
    berth_rpc::logging::init(args.log_format);
    // Every event of the shim carries the container id. The runtime is current-thread,
    // so everything but blocking work runs on this thread, inside this span.
    let span = tracing::info_span!("shim", container = %args.id);
    let _entered = span.enter();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // A handful of fds are ever ready at once (the socket, a connection or two, the
        // container's pipes); the default buffer is for 1024.
        .max_io_events_per_tick(IO_EVENTS_PER_TICK)
        // Blocking work comes in bursts (create, start, remove): an idle shim keeps no
        // thread, and gives back to the kernel the heap the burst freed.
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .on_thread_stop(release_freed_heap)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let msg = format!("cannot start the async runtime: {e}");
            tracing::error!("{msg}");
            ready.fail(&msg);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_task(&args, &mut ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            tracing::error!(error = %msg, "berth-shim failed");
            ready.fail(&msg);
            ExitCode::FAILURE
        }
    }
}

/// Returns the free pages of the heap to the kernel. glibc trims only the top of the heap
/// by itself; what a burst of work freed below live allocations would otherwise stay
/// resident for the life of the container.
fn release_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes malloc's own locks; it may run on any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn serve_task(args: &ShimArgs, ready: &mut Ready) -> Result<(), String> {
    state::validate_id(&args.id).map_err(|e| e.to_string())?;
    let state_dir = std::path::absolute(&args.state_dir)
        .map_err(|e| format!("state dir {}: {e}", args.state_dir.display()))?;
    if !state_dir.is_dir() {
        return Err(format!(
            "state dir {} is not a directory",
            state_dir.display()
        ));
    }
    // Work from the state dir and bind a relative path: a socket path is limited to 108
    // bytes, and `<state>/containers/<64 hex>/shim.sock` under a test's temporary
    // directory can be longer. (Clients do the same through /proc/self/fd.)
    std::env::set_current_dir(&state_dir)
        .map_err(|e| format!("chdir to {}: {e}", state_dir.display()))?;
    reaper::become_subreaper().map_err(|e| e.to_string())?;

    let socket = Path::new(".").join(state::SOCKET);
    // Takes the pid lock `shim.pid` (a live shim on this dir makes this fail) and
    // removes a stale socket; both files are removed when serving ends.
    let sock = UnixSocket::bind(&socket, None).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| format!("chmod {}: {e}", socket.display()))?;

    let shutdown = CancellationToken::new();
    let task = Task::new(args.id.clone(), state_dir.clone(), shutdown.clone());
    let _reaper = reaper::spawn(task.clone()).map_err(|e| e.to_string())?;
    stop_on_signals(task.clone(), shutdown.clone())?;
    let set = ServiceSet::new("berth-shim").with(TaskService::server(task.clone()));
    tracing::info!(
        pid = std::process::id(),
        state_dir = %state_dir.display(),
        "serving the Task API on {}",
        state_dir.join(state::SOCKET).display()
    );
    ready.ok();
    let served = serve(set, vec![Listener::Unix(sock)], shutdown, DRAIN).await;
    // Whatever way serving ended, nothing of the container may outlive the shim.
    if let Err(e) = task.teardown().await {
        tracing::error!(error = %e, "tearing the container down");
    }
    tracing::info!("exiting");
    served.map_err(|e| e.to_string())
}

/// SIGTERM and SIGINT stop the shim as Shutdown with `now` does: the container is killed
/// and removed first, so a stopped shim never leaves an unsupervised container.
fn stop_on_signals(task: Arc<Task>, shutdown: CancellationToken) -> Result<(), String> {
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("install a SIGTERM handler: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("install a SIGINT handler: {e}"))?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = shutdown.cancelled() => return,
        };
        tracing::info!(signal = name, "stopping the container and the shim");
        if let Err(e) = task.teardown().await {
            tracing::error!(error = %e, "tearing the container down");
        }
        shutdown.cancel();
    });
    Ok(())
}
