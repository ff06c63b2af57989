//! `run`, `create`, and attaching to a container's output (`run`, `start -a`): the log
//! stream followed live, signals forwarded (sig-proxy), the exit code returned.

use std::io::Write;

use berth_proto::engine::v1::containers_client::ContainersClient;
use berth_proto::engine::v1::{
    ContainersCreateRequest, ContainersInspectRequest, ContainersKillRequest,
    ContainersLogsRequest, ContainersLogsResponse, ContainersRemoveRequest, ContainersStartRequest,
    ContainersWaitRequest, ContainersWaitResponse, PullPolicy, WaitCondition,
};
use berth_proto::types::v1::StdioStream;
use berth_registry_client::Reference;
use tokio::signal::unix::{signal, SignalKind};
use tonic::transport::Channel;
use tonic::Streaming;

use super::session::{Local, Outcome};
use super::{client, options, terminal};
use crate::cli::{ContainerOptions, CreateArgs, Global, PullWhen, RunArgs};
use crate::commands::progress::{Direction, Progress};
use crate::commands::pull;
use crate::commands::Exit;
use crate::connection::call_error;

/// Docker's exit code when the container could not be created or started.
const EXIT_CANNOT_RUN: u8 = 125;

/// Signals forwarded to an attached container.
const PROXIED: [(SignalKind, u32); 6] = [
    (SignalKind::interrupt(), 2),
    (SignalKind::terminate(), 15),
    (SignalKind::hangup(), 1),
    (SignalKind::quit(), 3),
    (SignalKind::user_defined1(), 10),
    (SignalKind::user_defined2(), 12),
];

/// Writes log entries to stdout and stderr until the stream ends.
pub async fn print_logs(
    mut stream: Streaming<ContainersLogsResponse>,
    timestamps: bool,
) -> Result<(), tonic::Status> {
    while let Some(msg) = stream.message().await? {
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        for e in msg.entries {
            let w: &mut dyn Write = if e.stream == StdioStream::Stderr as i32 {
                &mut err
            } else {
                &mut out
            };
            if timestamps {
                if let Some(t) = e.time.and_then(|t| std::time::SystemTime::try_from(t).ok()) {
                    let _ = write!(w, "{} ", humantime::format_rfc3339_nanos(t));
                }
            }
            let _ = w.write_all(&e.data);
        }
        let _ = out.flush();
        let _ = err.flush();
    }
    Ok(())
}

/// Forwards the signals berthctl receives to the container, until dropped.
pub async fn proxy_signals(mut c: ContainersClient<Channel>, id: String) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<u32>(8);
    let mut tasks = Vec::new();
    for (kind, num) in PROXIED {
        let Ok(mut s) = signal(kind) else { continue };
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(num).await.is_err() {
                    return;
                }
            }
        }));
    }
    drop(tx);
    let _guard = AbortOnDrop(tasks);
    while let Some(num) = rx.recv().await {
        let _ = c
            .kill(ContainersKillRequest {
                id: id.clone(),
                signal: num.to_string(),
            })
            .await;
    }
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Opens the live log stream of `id` (from `since` on).
pub async fn open_logs(
    global: &Global,
    c: &mut ContainersClient<Channel>,
    id: &str,
    since: Option<prost_types::Timestamp>,
) -> anyhow::Result<Streaming<ContainersLogsResponse>> {
    Ok(c.logs(ContainersLogsRequest {
        id: id.to_string(),
        follow: true,
        since,
        stdout: true,
        stderr: true,
        ..Default::default()
    })
    .await
    .map_err(|s| call_error(global, s))?
    .into_inner())
}

/// Prints the output of a started container until it ends and returns its exit code,
/// forwarding signals meanwhile when `sig_proxy` is set.
pub async fn attach(
    global: &Global,
    c: &mut ContainersClient<Channel>,
    id: &str,
    logs: Streaming<ContainersLogsResponse>,
    condition: WaitCondition,
    sig_proxy: bool,
) -> anyhow::Result<i32> {
    let printer = print_logs(logs, false);
    let mut wc = c.clone();
    let waiter = wc.wait(ContainersWaitRequest {
        id: id.to_string(),
        condition: condition as i32,
    });
    let proxy = async {
        if sig_proxy {
            proxy_signals(c.clone(), id.to_string()).await;
        }
        std::future::pending::<()>().await
    };
    let both = async { tokio::join!(printer, waiter) };
    let (printed, waited) = tokio::select! {
        r = both => r,
        () = proxy => unreachable!("the signal proxy never ends"),
    };
    if let Err(s) = printed {
        if s.code() == tonic::Code::Unavailable {
            return Err(call_error(global, s));
        }
    }
    exit_code(global, waited)
}

/// The exit code a Wait call reports; its error, if any, printed.
fn exit_code(
    global: &Global,
    waited: Result<tonic::Response<ContainersWaitResponse>, tonic::Status>,
) -> anyhow::Result<i32> {
    let status = waited
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .status
        .unwrap_or_default();
    if !status.error.is_empty() {
        eprintln!("berthctl: {}", status.error);
    }
    Ok(status.exit_code)
}

/// Creates the container; prints the engine's warnings. As Docker's `run` and `create`, an
/// image that is not here (any, with `--pull always`) is pulled by berthctl, its progress
/// on standard error, so the user sees the download happen. The create is tried first, so
/// a present image costs no extra call.
async fn create_container(
    global: &Global,
    c: &mut ContainersClient<Channel>,
    mut req: ContainersCreateRequest,
    o: &ContainerOptions,
) -> anyhow::Result<(String, String)> {
    let image = req
        .config
        .as_ref()
        .map(|c| c.image.clone())
        .unwrap_or_default();
    if o.pull == PullWhen::Always {
        pull_image(global, &image, o).await?;
    }
    if o.pull != PullWhen::Never {
        req.pull = PullPolicy::Never as i32;
    }
    let resp = match c.create(req.clone()).await {
        Err(s)
            if o.pull == PullWhen::Missing
                && s.code() == tonic::Code::NotFound
                && s.message().starts_with("No such image") =>
        {
            let shown = Reference::parse(&image).map_or(image.clone(), |r| r.familiar());
            eprintln!("Unable to find image '{shown}' locally");
            pull_image(global, &image, o).await?;
            c.create(req).await
        }
        r => r,
    }
    .map_err(|s| call_error(global, s))?
    .into_inner();
    for w in &resp.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok((resp.id, resp.name))
}

async fn pull_image(global: &Global, image: &str, o: &ContainerOptions) -> anyhow::Result<()> {
    let progress = Progress::on_stderr(Direction::Pull);
    pull::pull_with(global, image, o.platform.as_deref(), false, progress).await?;
    Ok(())
}

/// An error that ends `run` before the container ran: printed, exit status 125 as Docker.
fn cannot_run(e: anyhow::Error) -> anyhow::Error {
    if e.is::<crate::connection::Unreachable>() {
        return e;
    }
    eprintln!("berthctl: {e}");
    Exit(EXIT_CANNOT_RUN).into()
}

/// The exit code of a container whose start failed (127: command not found, 126: not
/// executable), from its state.
async fn failed_start_code(c: &mut ContainersClient<Channel>, id: &str) -> u8 {
    let code = c
        .inspect(ContainersInspectRequest {
            id: id.to_string(),
            size: false,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().container)
        .and_then(|d| d.state)
        .map(|s| s.exit_code)
        .unwrap_or(0);
    match code {
        126 | 127 => code as u8,
        _ => EXIT_CANNOT_RUN,
    }
}

/// `create`
pub async fn create(global: &Global, args: &CreateArgs) -> anyhow::Result<()> {
    let req = options::request(&args.options)?;
    let mut c = client(global).await?;
    let (id, _) = create_container(global, &mut c, req, &args.options).await?;
    println!("{id}");
    Ok(())
}

/// `run`
pub async fn run(global: &Global, args: &RunArgs) -> anyhow::Result<()> {
    let o = &args.options;
    // With -i or -t (or no log to follow) the terminal is joined to the container through
    // Attach; otherwise its output is followed through the log, which loses nothing however
    // fast it comes.
    let unlogged = o.log_driver.as_deref() == Some("none");
    let attach_mode = !args.detach && (o.interactive || o.tty || unlogged);
    if attach_mode {
        terminal::check_tty_input(o.tty, o.interactive).map_err(cannot_run)?;
    }
    let mut req = options::request(o).map_err(cannot_run)?;
    if let Some(config) = req.config.as_mut() {
        // As Docker: an attached stdin closes the container's when it ends.
        config.stdin_once = o.interactive && !args.detach;
    }
    let mut c = client(global).await?;
    let (id, _) = create_container(global, &mut c, req, o)
        .await
        .map_err(cannot_run)?;
    let local = Local {
        stdin: o.interactive,
        tty: o.tty,
    };
    // Join the output before starting: nothing is missed, even when --rm removes the
    // container right after it ends.
    let (logs, session) = if args.detach {
        (None, None)
    } else if attach_mode {
        let s = super::attach::open(global, &mut c, &id, local, &args.keys.detach_keys).await?;
        (None, Some(s))
    } else {
        (Some(open_logs(global, &mut c, &id, None).await?), None)
    };
    if let Err(s) = c.start(ContainersStartRequest { id: id.clone() }).await {
        if s.code() == tonic::Code::Unavailable {
            return Err(call_error(global, s));
        }
        eprintln!("berthctl: {}", s.message());
        let code = failed_start_code(&mut c, &id).await;
        if o.rm {
            let _ = c
                .remove(ContainersRemoveRequest {
                    id: id.clone(),
                    force: true,
                    volumes: true,
                })
                .await;
        }
        return Err(Exit(code).into());
    }
    let condition = if o.rm {
        WaitCondition::Removed
    } else {
        WaitCondition::NotRunning
    };
    let code = if let Some(session) = session {
        if let Outcome::Detached = session.run(global, &c, &id, args.sig_proxy).await? {
            eprintln!("read escape sequence");
            return Ok(());
        }
        let waited = c
            .wait(ContainersWaitRequest {
                id: id.clone(),
                condition: condition as i32,
            })
            .await;
        exit_code(global, waited)?
    } else if let Some(logs) = logs {
        attach(global, &mut c, &id, logs, condition, args.sig_proxy).await?
    } else {
        println!("{id}");
        return Ok(());
    };
    if code != 0 {
        return Err(Exit(code.clamp(0, 255) as u8).into());
    }
    Ok(())
}
