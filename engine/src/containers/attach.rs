//! Attach: a client joined to the stdio of a container's process through its shim, and the
//! [`Pump`] that Attach and Exec share: output frames out; stdin in, watched for the detach
//! keys; terminal resizes; the client's end of stdin.
//!
//! A client may attach to a container that is not running yet (`run -a`, `start -a`): it is
//! kept as a [`PendingAttach`] on the container and joined by Start between the shim's Create
//! and Start, so it receives the container's output from the first byte.

use std::sync::Arc;

use berth_proto::engine::v1::{
    containers_attach_request, containers_attach_response, AttachOptions, ContainerStatus,
    ContainersAttachRequest, ContainersAttachResponse, ContainersLogsRequest, WaitCondition,
};
use berth_proto::shim::v1 as shim;
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::types::v1::{ConsoleSize, StdioFrame};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::detach_keys::{DetachKeys, Fed};
use super::{kill, logs, record, wait, Live, Manager};
use crate::error::{Error, Result};

/// Messages buffered towards a client or a shim.
const BUFFER: usize = 64;

type ShimRequests = ReceiverStream<shim::AttachRequest>;
type Joined = std::result::Result<(Streaming<shim::AttachResponse>, TaskClient<Channel>), Status>;

/// A client waiting for the container's next start.
pub struct PendingAttach {
    requests: ShimRequests,
    reply: oneshot::Sender<Joined>,
    /// The client's terminal size (TTY containers only).
    console_size: Option<ConsoleSize>,
}

/// The terminal size the container's pty starts with: that of the last client waiting for
/// this start. A resize after Start would race the process's first look at its terminal.
pub fn pending_console_size(live: &Live) -> Option<ConsoleSize> {
    let pending = live.pending.lock().unwrap_or_else(|p| p.into_inner());
    pending
        .iter()
        .rev()
        .filter(|p| !p.reply.is_closed())
        .find_map(|p| p.console_size)
}

/// Joins the clients waiting for this start to the shim's stdio; called by Start once the
/// shim created the container and before its process runs.
pub async fn join_pending(live: &Live, task: &TaskClient<Channel>) {
    for p in take_pending(live) {
        if p.reply.is_closed() {
            continue;
        }
        let joined = task
            .clone()
            .attach(p.requests)
            .await
            .map(|r| (r.into_inner(), task.clone()));
        let _ = p.reply.send(joined);
    }
}

fn take_pending(live: &Live) -> Vec<PendingAttach> {
    std::mem::take(&mut *live.pending.lock().unwrap_or_else(|p| p.into_inner()))
}

fn add_pending(live: &Live, p: PendingAttach) {
    live.pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(p);
}

/// What a client sends, whether attached or exec'ing.
#[derive(Debug)]
pub enum ClientMsg {
    /// Bytes for stdin.
    Stdin(Vec<u8>),
    /// The client's terminal size changed.
    Resize(ConsoleSize),
    /// The client's stdin ended.
    CloseStdin,
}

/// How a pumped stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The process's output closed: it exited.
    Exited,
    /// The client typed the detach keys.
    Detached,
    /// The client left.
    ClientGone,
}

/// One process's stdio, joined to one client.
pub struct Pump {
    /// The shim of the container.
    pub task: TaskClient<Channel>,
    /// The process: empty for the container's init.
    pub exec_id: String,
    /// Output of the process, from the shim.
    pub output: Streaming<shim::AttachResponse>,
    /// Stdin towards the shim; `None` when the client's stdin is not attached.
    pub stdin: Option<mpsc::Sender<shim::AttachRequest>>,
    /// Watched for on stdin.
    pub keys: DetachKeys,
    /// Close the process's stdin when the client's stdin ends (not when it detaches or
    /// leaves).
    pub close_io_on_eof: bool,
}

impl Pump {
    /// Moves bytes both ways until the process's output closes, the client detaches or
    /// leaves. `wrap` makes a client message of an output frame.
    pub async fn run<R: Send + 'static>(
        self,
        mut client: impl Stream<Item = std::result::Result<ClientMsg, Status>> + Unpin,
        out: &mpsc::Sender<std::result::Result<R, Status>>,
        wrap: impl Fn(StdioFrame) -> R,
    ) -> End {
        let Pump {
            mut task,
            exec_id,
            mut output,
            mut stdin,
            keys,
            close_io_on_eof,
        } = self;
        let mut matcher = keys.matcher();
        let mut client_open = true;
        loop {
            tokio::select! {
                m = output.message() => match m {
                    Ok(Some(r)) => {
                        if let Some(frame) = r.output {
                            if out.send(Ok(wrap(frame))).await.is_err() {
                                return End::ClientGone;
                            }
                        }
                    }
                    Ok(None) => return End::Exited,
                    Err(s) => {
                        tracing::debug!(exec = %exec_id, error = %s.message(), "output stream from the shim ended");
                        return End::Exited;
                    }
                },
                m = client.next(), if client_open => match m {
                    Some(Ok(ClientMsg::Stdin(data))) => {
                        let Some(tx) = &stdin else { continue };
                        let (pass, detach) = match matcher.feed(&data) {
                            Fed::Pass(p) => (p, false),
                            Fed::Detach(p) => (p, true),
                        };
                        if !pass.is_empty() {
                            let msg = shim::AttachRequest {
                                msg: Some(shim::attach_request::Msg::Stdin(pass)),
                            };
                            if tx.send(msg).await.is_err() {
                                stdin = None;
                            }
                        }
                        if detach {
                            return End::Detached;
                        }
                    }
                    Some(Ok(ClientMsg::Resize(size))) => {
                        resize(&mut task, &exec_id, size).await;
                    }
                    Some(Ok(ClientMsg::CloseStdin)) | None => {
                        client_open = false;
                        // On the stdin stream itself: a CloseIO call could reach the shim
                        // before the last bytes, and the process would read EOF early.
                        if let (Some(tx), true) = (stdin.take(), close_io_on_eof) {
                            let msg = shim::AttachRequest {
                                msg: Some(shim::attach_request::Msg::CloseStdin(true)),
                            };
                            let _ = tx.send(msg).await;
                        }
                    }
                    Some(Err(_)) => return End::ClientGone,
                },
                () = out.closed() => return End::ClientGone,
            }
        }
    }
}

/// Sets a process's terminal size; a process without a terminal ignores it.
pub async fn resize(task: &mut TaskClient<Channel>, exec_id: &str, size: ConsoleSize) {
    if size.width == 0 || size.height == 0 {
        return;
    }
    if let Err(s) = task
        .resize_pty(shim::ResizePtyRequest {
            exec_id: exec_id.to_string(),
            width: size.width,
            height: size.height,
        })
        .await
    {
        tracing::debug!(exec = %exec_id, error = %s.message(), "resize not applied");
    }
}

/// The shim-bound request stream of an attachment: its options, then stdin.
pub fn shim_requests(
    options: shim::AttachOptions,
) -> (ShimRequests, mpsc::Sender<shim::AttachRequest>) {
    let (tx, rx) = mpsc::channel(BUFFER);
    let first = shim::AttachRequest {
        msg: Some(shim::attach_request::Msg::Options(options)),
    };
    // A new channel has room: this cannot fail.
    let _ = tx.try_send(first);
    (ReceiverStream::new(rx), tx)
}

fn attach_msgs(
    inbound: Streaming<ContainersAttachRequest>,
) -> impl Stream<Item = std::result::Result<ClientMsg, Status>> + Unpin {
    inbound.filter_map(|m| futures::future::ready(client_msg(m)))
}

fn client_msg(
    m: std::result::Result<ContainersAttachRequest, Status>,
) -> Option<std::result::Result<ClientMsg, Status>> {
    use containers_attach_request::Msg;
    match m {
        Err(s) => Some(Err(s)),
        Ok(ContainersAttachRequest { msg }) => match msg? {
            Msg::Stdin(d) => Some(Ok(ClientMsg::Stdin(d))),
            Msg::Resize(s) => Some(Ok(ClientMsg::Resize(s))),
            Msg::CloseStdin(_) => Some(Ok(ClientMsg::CloseStdin)),
            Msg::Options(_) => None,
        },
    }
}

fn output(frame: StdioFrame) -> ContainersAttachResponse {
    ContainersAttachResponse {
        msg: Some(containers_attach_response::Msg::Output(frame)),
    }
}

/// Where the attachment's output comes from.
enum Source {
    Now(Box<(Streaming<shim::AttachResponse>, TaskClient<Channel>)>),
    AtStart(oneshot::Receiver<Joined>),
}

/// `Containers.Attach`
pub async fn attach(
    m: &Arc<Manager>,
    mut inbound: Streaming<ContainersAttachRequest>,
) -> Result<BoxStream<ContainersAttachResponse>> {
    let opts: AttachOptions = match inbound.message().await {
        Ok(Some(ContainersAttachRequest {
            msg: Some(containers_attach_request::Msg::Options(o)),
        })) => o,
        Ok(_) => {
            return Err(Error::InvalidArgument(
                "the first Attach message must carry the options".into(),
            ))
        }
        Err(s) => {
            return Err(Error::InvalidArgument(format!(
                "reading the request: {}",
                s.message()
            )))
        }
    };
    let keys = DetachKeys::parse(&opts.detach_keys)?;
    let rec = m.resolve(&opts.id)?;
    let config = rec.config().clone();
    if rec.status() == ContainerStatus::Restarting {
        return Err(Error::FailedPrecondition(
            "You cannot attach to a restarting container, wait until it is running".into(),
        ));
    }
    // As Docker: stdin of a container created without -i is simply not attached.
    let with_stdin = opts.stdin && config.open_stdin;
    let shim_opts = shim::AttachOptions {
        exec_id: String::new(),
        stdin: with_stdin,
        stdout: opts.stdout,
        stderr: opts.stderr,
    };
    let (requests, stdin_tx) = shim_requests(shim_opts);
    let live = m.live(&rec.id);
    let source = if rec.is_running() {
        now(m, &live, &rec.id, requests).await?
    } else {
        let _op = live.op.lock().await;
        let rec = m
            .store
            .get(&rec.id)?
            .ok_or_else(|| record::no_such_container(&opts.id))?;
        match rec.status() {
            s if rec.is_running() && s != ContainerStatus::Restarting => {
                now(m, &live, &rec.id, requests).await?
            }
            ContainerStatus::Dead => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is being removed",
                    rec.id
                )))
            }
            _ => {
                let (reply, rx) = oneshot::channel();
                let console_size = opts.console_size.filter(|_| config.tty);
                add_pending(
                    &live,
                    PendingAttach {
                        requests,
                        reply,
                        console_size,
                    },
                );
                Source::AtStart(rx)
            }
        }
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let (m, id) = (m.clone(), rec.id.clone());
    tokio::spawn(async move {
        // A client joined at start gave its size to the shim's Create already.
        let resize_now = matches!(source, Source::Now(_));
        let (output_stream, mut task) = match source {
            Source::Now(pair) => *pair,
            Source::AtStart(joined) => {
                let joined = tokio::select! {
                    j = joined => j,
                    () = tx.closed() => return,
                };
                match joined {
                    Ok(Ok(pair)) => pair,
                    Ok(Err(s)) => {
                        let _ = tx.send(Err(s)).await;
                        return;
                    }
                    // The container was removed before it started.
                    Err(_) => return,
                }
            }
        };
        if let (true, true, Some(size)) = (resize_now, config.tty, opts.console_size) {
            resize(&mut task, "", size).await;
        }
        if opts.logs && replay_logs(&m, &id, &opts, &tx).await.is_err() {
            return;
        }
        let pump = Pump {
            task,
            exec_id: String::new(),
            output: output_stream,
            stdin: with_stdin.then_some(stdin_tx),
            keys,
            // As Docker: stdin_once closes the container's stdin when the client's ends, not
            // when it detaches; a terminal's stdin stays open.
            close_io_on_eof: config.stdin_once && !config.tty,
        };
        let msg = match pump.run(attach_msgs(inbound), &tx, output).await {
            End::ClientGone => return,
            End::Detached => containers_attach_response::Msg::Detached(true),
            End::Exited => {
                match wait::wait(&m, &id, WaitCondition::NotRunning).await {
                    Ok(status) => containers_attach_response::Msg::Exit(status),
                    // Removed meanwhile (`--rm`): the stream just ends.
                    Err(_) => return,
                }
            }
        };
        let _ = tx
            .send(Ok(ContainersAttachResponse { msg: Some(msg) }))
            .await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

async fn now(m: &Manager, live: &Live, id: &str, requests: ShimRequests) -> Result<Source> {
    let mut task = kill::shim_of(m, live, id).await?;
    let output = task
        .attach(requests)
        .await
        .map_err(|s| Error::downstream("shim", s))?
        .into_inner();
    Ok(Source::Now(Box::new((output, task))))
}

/// Sends the stored log before the live output (`logs`).
async fn replay_logs(
    m: &Arc<Manager>,
    id: &str,
    opts: &AttachOptions,
    tx: &mpsc::Sender<std::result::Result<ContainersAttachResponse, Status>>,
) -> std::result::Result<(), ()> {
    let req = ContainersLogsRequest {
        id: id.to_string(),
        stdout: opts.stdout,
        stderr: opts.stderr,
        ..Default::default()
    };
    let Ok(mut entries) = logs::logs(m, req).await else {
        return Ok(());
    };
    while let Some(Ok(batch)) = entries.next().await {
        for e in batch.entries {
            let frame = StdioFrame {
                stream: e.stream,
                data: e.data,
            };
            tx.send(Ok(output(frame))).await.map_err(|_| ())?;
        }
    }
    Ok(())
}
