//! The container's stdio as the shim holds it: a stdin pipe (or `/dev/null`), stdout and
//! stderr pipes read by copier tasks that write the json-file log and broadcast the bytes
//! to attached clients. CloseIO and Attach.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, Mutex};
use tokio::task::JoinHandle;

use super::{Phase, Status, Task};
use crate::error::{Error, Result};
use crate::logs::{JsonFileWriter, LineSplitter, LogConfig, Stream};
use crate::process::Stdio;

/// Frames buffered per attached client before it starts losing output (it lags; the log
/// file still gets everything, and the container is never slowed by a slow client).
const ATTACH_BUFFER: usize = 256;
/// Bytes read from a pipe at once.
const READ_CHUNK: usize = 32 * 1024;

/// How the init's stdio is set up.
#[derive(Debug, Clone, Default)]
pub struct StdioSpec {
    /// A stdin pipe kept open until CloseIO; false: `/dev/null`.
    pub stdin: bool,
    /// Close stdin when the first attached client that sent stdin detaches.
    pub stdin_once: bool,
    /// The log file; `None`: output goes only to attached clients.
    pub log: Option<LogConfig>,
}

/// A chunk of output, as the container wrote it.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Which stream.
    pub stream: Stream,
    /// The bytes.
    pub data: Bytes,
}

type StdinPipe = Arc<Mutex<Option<pipe::Sender>>>;

/// The shim's ends of the container's stdio.
pub(super) struct Io {
    stdin: StdinPipe,
    stdin_once: bool,
    /// Weak: the copiers hold the only strong senders, so the channel closes (and attached
    /// streams end) exactly when both outputs reach EOF.
    output: broadcast::WeakSender<Frame>,
    copiers: Vec<JoinHandle<()>>,
}

fn pipe_pair(what: &str) -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys(format!("create the {what} pipe"), e))
}

impl Io {
    /// Opens the log and the pipes and starts the copiers; returns the container's ends.
    pub(super) fn open(spec: &StdioSpec, id: &str) -> Result<(Io, Stdio)> {
        let log = spec
            .log
            .clone()
            .map(JsonFileWriter::open)
            .transpose()?
            .map(|w| Arc::new(std::sync::Mutex::new(w)));
        let (stdin_fd, stdin_tx) = if spec.stdin {
            let (r, w) = pipe_pair("stdin")?;
            let tx = pipe::Sender::from_owned_fd(w)
                .map_err(|e| Error::io("register the stdin pipe", e))?;
            (r, Some(tx))
        } else {
            let null = std::fs::File::open("/dev/null")
                .map_err(|e| Error::io("open /dev/null for stdin", e))?;
            (OwnedFd::from(null), None)
        };
        let (out_r, out_w) = pipe_pair("stdout")?;
        let (err_r, err_w) = pipe_pair("stderr")?;
        let (tx, _) = broadcast::channel(ATTACH_BUFFER);
        let mut copiers = Vec::new();
        for (stream, fd) in [(Stream::Stdout, out_r), (Stream::Stderr, err_r)] {
            let rx = pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| Error::io(format!("register the {} pipe", stream.name()), e))?;
            copiers.push(tokio::spawn(copy(
                stream,
                rx,
                log.clone(),
                tx.clone(),
                id.to_string(),
            )));
        }
        let io = Io {
            stdin: Arc::new(Mutex::new(stdin_tx)),
            stdin_once: spec.stdin_once,
            output: tx.downgrade(),
            copiers,
        };
        let stdio = Stdio {
            stdin: Some(stdin_fd),
            stdout: Some(out_w),
            stderr: Some(err_w),
        };
        Ok((io, stdio))
    }

    /// Waits (at most `timeout`) until both outputs reached EOF and are logged, so that
    /// whoever learns of the exit finds the whole output in the log. The timeout covers a
    /// process outside the container that still holds a copy of the pipe.
    pub(super) async fn drain(&mut self, timeout: Duration, id: &str) {
        let deadline = tokio::time::Instant::now() + timeout;
        for h in &mut self.copiers {
            if h.is_finished() {
                continue;
            }
            if tokio::time::timeout_at(deadline, h).await.is_err() {
                tracing::warn!(container = %id, "output still open after the init exited; reporting the exit anyway");
                return;
            }
        }
    }

    /// Whether stdin is an open pipe.
    pub(super) fn stdin_open(&self) -> bool {
        match self.stdin.try_lock() {
            Ok(s) => s.is_some(),
            // A writer holds it: open.
            Err(_) => true,
        }
    }

    pub(super) async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        for h in &self.copiers {
            h.abort();
        }
    }
}

async fn copy(
    stream: Stream,
    mut rx: pipe::Receiver,
    log: Option<Arc<std::sync::Mutex<JsonFileWriter>>>,
    frames: broadcast::Sender<Frame>,
    id: String,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut split = LineSplitter::default();
    let mut failing = false;
    loop {
        let n = match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(container = %id, stream = stream.name(), error = %e, "reading container output");
                break;
            }
        };
        let now = SystemTime::now();
        // Nobody attached is the normal case: no copy then.
        if frames.receiver_count() > 0 {
            let _ = frames.send(Frame {
                stream,
                data: Bytes::copy_from_slice(&buf[..n]),
            });
        }
        if let Some(log) = &log {
            let mut w = log.lock().unwrap_or_else(|p| p.into_inner());
            split.push(&buf[..n], |line| {
                record(&mut w, stream, line, now, &mut failing, &id)
            });
        }
    }
    if let Some(log) = &log {
        let mut w = log.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        split.finish(|line| record(&mut w, stream, line, now, &mut failing, &id));
    }
}

/// Writes a record; a failing disk is reported once, not per line, and the container
/// keeps running (its output is dropped until writing works again).
fn record(
    w: &mut JsonFileWriter,
    stream: Stream,
    line: &[u8],
    now: SystemTime,
    failing: &mut bool,
    id: &str,
) {
    match w.write(stream, line, now) {
        Ok(()) if *failing => {
            *failing = false;
            tracing::info!(container = %id, "the container log is writable again");
        }
        Ok(()) => {}
        Err(e) if !*failing => {
            *failing = true;
            tracing::warn!(container = %id, path = %w.config().path.display(), error = %e,
                "cannot write the container log; output is dropped until it works again");
        }
        Err(_) => {}
    }
}

/// What an Attach call wants.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    /// Send stdin.
    pub stdin: bool,
    /// Receive stdout.
    pub stdout: bool,
    /// Receive stderr.
    pub stderr: bool,
}

/// An attached client's handles.
pub struct Attachment {
    /// Output frames; `None` when the output is already closed (the stream ends at once).
    pub output: Option<broadcast::Receiver<Frame>>,
    /// Streams the client wants.
    pub streams: Vec<Stream>,
    /// Stdin, when asked for.
    pub stdin: Option<StdinWriter>,
}

/// Writes an attached client's stdin into the container.
pub struct StdinWriter {
    pipe: StdinPipe,
    once: bool,
}

impl StdinWriter {
    /// Writes `data`; fails once stdin is closed.
    pub async fn write(&self, data: &[u8]) -> Result<()> {
        let mut guard = self.pipe.lock().await;
        let pipe = guard
            .as_mut()
            .ok_or_else(|| Error::FailedPrecondition("stdin is closed".into()))?;
        pipe.write_all(data)
            .await
            .map_err(|e| Error::io("write to the container's stdin", e))
    }

    /// The client detached: with `stdin_once`, stdin closes (the process reads EOF).
    pub async fn detach(self) {
        if self.once {
            self.pipe.lock().await.take();
        }
    }
}

impl Task {
    /// Closes the init's stdin.
    pub async fn close_io(&self, stdin: bool) -> Result<()> {
        let inner = self.inner.lock().await;
        if matches!(inner.phase, Phase::Empty | Phase::Deleted) {
            return Err(self.not_created());
        }
        if let (true, Some(io)) = (stdin, &inner.io) {
            io.close_stdin().await;
        }
        Ok(())
    }

    /// Attaches to the init's stdio.
    pub async fn attach(&self, opts: AttachOptions) -> Result<Attachment> {
        let inner = self.inner.lock().await;
        if matches!(inner.phase, Phase::Empty | Phase::Deleted) {
            return Err(self.not_created());
        }
        let io = inner.io.as_ref().ok_or_else(|| self.not_created())?;
        let stdin = if opts.stdin {
            if !io.stdin_open() {
                return Err(Error::FailedPrecondition(format!(
                    "container {} has no open stdin (create it with stdio.stdin)",
                    self.id
                )));
            }
            Some(StdinWriter {
                pipe: io.stdin.clone(),
                once: io.stdin_once,
            })
        } else {
            None
        };
        let streams = match (opts.stdout, opts.stderr) {
            (false, false) | (true, true) => vec![Stream::Stdout, Stream::Stderr],
            (true, false) => vec![Stream::Stdout],
            (false, true) => vec![Stream::Stderr],
        };
        let output = match inner.status() {
            Some(Status::Stopped) => None,
            _ => io.output.upgrade().map(|tx| tx.subscribe()),
        };
        Ok(Attachment {
            output,
            streams,
            stdin,
        })
    }
}
