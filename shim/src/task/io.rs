//! A process's stdio as the shim holds it (the init's, or an exec's): a stdin pipe (or
//! `/dev/null`), stdout and stderr pipes read by copier tasks that write the json-file
//! log and broadcast the bytes to attached clients. With a terminal, the pty master
//! stands for all three: its output is stdout (Docker logs TTY output as stdout, `\r\n`
//! and all), and stdin is written into it. CloseIO and Attach.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, watch, Mutex};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::tty::{Master, EOF_CHAR};
use super::{Status, Task};
use crate::error::{Error, Result};
use crate::logs::{JsonFileWriter, LineSplitter, LogConfig, Stream};
use crate::process::Stdio;

/// Frames buffered per attached client before it starts losing output (it lags; the log
/// file still gets everything, and the container is never slowed by a slow client).
const ATTACH_BUFFER: usize = 256;
/// Bytes read from a pipe at once, at most: the read buffer starts at [`FIRST_CHUNK`] and
/// grows to this when a read fills it.
const READ_CHUNK: usize = 32 * 1024;
/// The read buffer's first size. It is allocated at the first output: most containers
/// write little or nothing once started, and there are two copiers per container.
const FIRST_CHUNK: usize = 4 * 1024;

/// How a process's stdio is set up.
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

type SharedLog = Arc<std::sync::Mutex<JsonFileWriter>>;

/// Where stdin goes.
enum Sink {
    Pipe(pipe::Sender),
    /// The terminal's master, published once the process has one (an exec gets it at
    /// Start); writers wait for it.
    Tty(watch::Receiver<Option<Arc<Master>>>),
}

type StdinSlot = Arc<Mutex<Option<Sink>>>;

/// The shim's ends of a process's stdio.
pub(super) struct Io {
    stdin: StdinSlot,
    stdin_once: bool,
    /// Attached clients' output; the copiers are its producers, so it closes (and
    /// attached streams end) exactly when every output reached EOF.
    output: Arc<Fanout>,
    /// With a terminal, the producer until the master arrives and its copier takes it
    /// (attached clients wait meanwhile).
    pending_output: Option<Producer>,
    log: Option<SharedLog>,
    terminal: bool,
    /// Publishes the master to stdin writers.
    master_tx: Option<watch::Sender<Option<Arc<Master>>>>,
    master: Option<Arc<Master>>,
    /// The copiers; closed once all are spawned, so `wait` means "all output is in".
    copiers: TaskTracker,
    handles: Vec<JoinHandle<()>>,
    id: String,
}

fn pipe_pair(what: &str) -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys(format!("create the {what} pipe"), e))
}

fn dev_null() -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open /dev/null", e))
}

impl Io {
    /// Opens the log and the pipes and starts the copiers; returns the process's ends.
    /// With `terminal` there are no pipes: the process gets `/dev/null` until it opens
    /// its terminal, and [`Io::set_console`] takes the master.
    pub(super) fn open(spec: &StdioSpec, id: &str, terminal: bool) -> Result<(Io, Stdio)> {
        let log = spec
            .log
            .clone()
            .map(JsonFileWriter::open)
            .transpose()?
            .map(|w| Arc::new(std::sync::Mutex::new(w)));
        let output = Arc::new(Fanout::default());
        let mut io = Io {
            stdin: Arc::new(Mutex::new(None)),
            stdin_once: spec.stdin_once,
            output: output.clone(),
            pending_output: None,
            log,
            terminal,
            master_tx: None,
            master: None,
            copiers: TaskTracker::new(),
            handles: Vec::new(),
            id: id.to_string(),
        };
        if terminal {
            let (master_tx, master_rx) = watch::channel(None);
            if spec.stdin {
                io.stdin = Arc::new(Mutex::new(Some(Sink::Tty(master_rx))));
            }
            io.master_tx = Some(master_tx);
            io.pending_output = Some(Producer::new(&output));
            let stdio = Stdio {
                stdin: Some(dev_null()?),
                stdout: Some(dev_null()?),
                stderr: Some(dev_null()?),
            };
            return Ok((io, stdio));
        }
        let stdin_fd = if spec.stdin {
            let (r, w) = pipe_pair("stdin")?;
            let sender = pipe::Sender::from_owned_fd(w)
                .map_err(|e| Error::io("register the stdin pipe", e))?;
            io.stdin = Arc::new(Mutex::new(Some(Sink::Pipe(sender))));
            r
        } else {
            dev_null()?
        };
        let (out_r, out_w) = pipe_pair("stdout")?;
        let (err_r, err_w) = pipe_pair("stderr")?;
        for (stream, fd) in [(Stream::Stdout, out_r), (Stream::Stderr, err_r)] {
            let rx = pipe::Receiver::from_owned_fd(fd)
                .map_err(|e| Error::io(format!("register the {} pipe", stream.name()), e))?;
            io.spawn_copier(stream, Source::Pipe(rx), Producer::new(&output));
        }
        io.copiers.close();
        let stdio = Stdio {
            stdin: Some(stdin_fd),
            stdout: Some(out_w),
            stderr: Some(err_w),
        };
        Ok((io, stdio))
    }

    fn spawn_copier(&mut self, stream: Stream, source: Source, tx: Producer) {
        let h = self
            .copiers
            .spawn(copy(stream, source, self.log.clone(), tx, self.id.clone()));
        self.handles.push(h);
    }

    /// Takes the master of the process's terminal: sets its size, starts copying its
    /// output, and lets stdin writers at it.
    pub(super) fn set_console(&mut self, fd: OwnedFd, size: Option<(u16, u16)>) -> Result<()> {
        let master = Arc::new(Master::new(fd)?);
        if let Some((w, h)) = size {
            master.set_size(w, h)?;
        }
        if let Some(tx) = self.pending_output.take() {
            self.spawn_copier(Stream::Stdout, Source::Tty(master.clone()), tx);
        }
        self.copiers.close();
        if let Some(tx) = &self.master_tx {
            tx.send_replace(Some(master.clone()));
        }
        self.master = Some(master);
        Ok(())
    }

    /// The process will never get its terminal (it failed to start): attached streams
    /// end, stdin writers fail.
    pub(super) fn abandon(&mut self) {
        self.pending_output = None;
        self.master_tx = None;
        self.copiers.close();
    }

    /// Whether the process has a terminal.
    pub(super) fn terminal(&self) -> bool {
        self.terminal
    }

    /// Sets the terminal size; false when the process has no terminal yet.
    pub(super) fn resize(&self, width: u16, height: u16) -> Result<bool> {
        match &self.master {
            Some(m) => m.set_size(width, height).map(|()| true),
            None => Ok(false),
        }
    }

    /// Resolves when every output reached EOF and is logged.
    pub(super) fn copiers(&self) -> TaskTracker {
        self.copiers.clone()
    }

    /// Waits (at most `timeout`) until every output reached EOF and is logged, so that
    /// whoever learns of the exit finds the whole output in the log. The timeout covers a
    /// process outside the container that still holds a copy of the pipe.
    pub(super) async fn drain(&self, timeout: Duration, id: &str) {
        drain(self.copiers(), timeout, id).await
    }

    /// Whether stdin is open.
    pub(super) fn stdin_open(&self) -> bool {
        match self.stdin.try_lock() {
            Ok(s) => s.is_some(),
            // A writer holds it: open.
            Err(_) => true,
        }
    }

    /// Closes stdin: the pipe's reader gets EOF; a terminal gets its EOF character.
    pub(super) async fn close_stdin(&self) {
        close(&self.stdin).await
    }

    /// Attaches a client (`stopped`: the process has exited, so no output will come).
    pub(super) fn attach(&self, opts: AttachOptions, stopped: bool) -> Result<Attachment> {
        let stdin = if opts.stdin {
            if !self.stdin_open() {
                return Err(Error::FailedPrecondition(
                    "the process has no open stdin (create it with stdio.stdin)".into(),
                ));
            }
            Some(StdinWriter {
                slot: self.stdin.clone(),
                once: self.stdin_once,
            })
        } else {
            None
        };
        let streams = match (opts.stdout, opts.stderr) {
            (false, false) | (true, true) => vec![Stream::Stdout, Stream::Stderr],
            (true, false) => vec![Stream::Stdout],
            (false, true) => vec![Stream::Stderr],
        };
        let output = if stopped {
            None
        } else {
            self.output.subscribe()
        };
        Ok(Attachment {
            output,
            streams,
            stdin,
        })
    }
}

/// [`Io::drain`] on a tracker taken out of the task's lock.
pub(super) async fn drain(copiers: TaskTracker, timeout: Duration, id: &str) {
    if tokio::time::timeout(timeout, copiers.wait()).await.is_err() {
        tracing::warn!(container = %id, "output still open after the process exited; reporting the exit anyway");
    }
}

async fn close(slot: &StdinSlot) {
    let sink = slot.lock().await.take();
    if let Some(Sink::Tty(rx)) = sink {
        let master = rx.borrow().clone();
        if let Some(m) = master {
            if let Err(e) = m.write_all(&[EOF_CHAR]).await {
                tracing::debug!(error = %e, "writing EOF to the terminal");
            }
        }
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// The channel that broadcasts output to attached clients. Nobody attached is the normal
/// case: the channel (its [`ATTACH_BUFFER`] slots) exists only while someone is, and is
/// made again for the next client (who, as with one channel, sees only what comes after
/// it attached).
#[derive(Default)]
struct Fanout {
    state: std::sync::Mutex<FanoutState>,
}

#[derive(Default)]
struct FanoutState {
    /// Live [`Producer`]s; at 0 the output is over.
    producers: usize,
    tx: Option<broadcast::Sender<Frame>>,
}

impl Fanout {
    fn state(&self) -> std::sync::MutexGuard<'_, FanoutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client's receiver; `None` once the output is over.
    fn subscribe(&self) -> Option<broadcast::Receiver<Frame>> {
        let mut s = self.state();
        if s.producers == 0 {
            return None;
        }
        let tx =
            s.tx.get_or_insert_with(|| broadcast::channel(ATTACH_BUFFER).0);
        Some(tx.subscribe())
    }
}

/// A source of output for a [`Fanout`]: when the last one is dropped, attached clients'
/// streams end (after what was sent before).
struct Producer(Arc<Fanout>);

impl Producer {
    fn new(fanout: &Arc<Fanout>) -> Producer {
        fanout.state().producers += 1;
        Producer(fanout.clone())
    }

    /// Sends a frame (made only if someone is attached); the channel goes once its last
    /// client has.
    fn send(&self, frame: impl FnOnce() -> Frame) {
        let mut s = self.0.state();
        match &s.tx {
            Some(tx) if tx.receiver_count() > 0 => {
                let _ = tx.send(frame());
            }
            Some(_) => s.tx = None,
            None => {}
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.producers -= 1;
        if s.producers == 0 {
            // Receivers still get what is buffered, then the end.
            s.tx = None;
        }
    }
}

/// What a copier reads.
enum Source {
    Pipe(pipe::Receiver),
    Tty(Arc<Master>),
}

impl Source {
    /// Waits until a read would not block (output or the end is there).
    async fn readable(&self) -> io::Result<()> {
        match self {
            Source::Pipe(p) => p.readable().await,
            Source::Tty(m) => m.readable().await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Pipe(p) => p.read(buf).await,
            Source::Tty(m) => m.read(buf).await,
        }
    }
}

async fn copy(
    stream: Stream,
    mut rx: Source,
    log: Option<SharedLog>,
    frames: Producer,
    id: String,
) {
    let mut buf = Vec::new();
    let mut split = LineSplitter::default();
    let mut failing = false;
    loop {
        if buf.is_empty() {
            match rx.readable().await {
                Ok(()) => buf = vec![0u8; FIRST_CHUNK],
                Err(e) => {
                    tracing::warn!(container = %id, stream = stream.name(), error = %e, "reading container output");
                    break;
                }
            }
        }
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
        frames.send(|| Frame {
            stream,
            data: Bytes::copy_from_slice(&buf[..n]),
        });
        if let Some(log) = &log {
            let mut w = log.lock().unwrap_or_else(|p| p.into_inner());
            split.push(&buf[..n], |line| {
                record(&mut w, stream, line, now, &mut failing, &id)
            });
        }
        if n == buf.len() && n < READ_CHUNK {
            // A full buffer: more is coming; read it in fewer, larger pieces.
            buf.resize(READ_CHUNK, 0);
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

/// Writes an attached client's stdin into the process.
pub struct StdinWriter {
    slot: StdinSlot,
    once: bool,
}

fn stdin_closed() -> Error {
    Error::FailedPrecondition("stdin is closed".into())
}

impl StdinWriter {
    /// Writes `data`; fails once stdin is closed. Into a terminal that does not exist yet
    /// (an exec not started), it waits for the process to get one.
    pub async fn write(&self, data: &[u8]) -> Result<()> {
        let write_err = |e: io::Error| Error::io("write to the process's stdin", e);
        loop {
            let mut pending = {
                let mut guard = self.slot.lock().await;
                match guard.as_mut() {
                    None => return Err(stdin_closed()),
                    Some(Sink::Pipe(p)) => return p.write_all(data).await.map_err(write_err),
                    Some(Sink::Tty(rx)) => {
                        let master = rx.borrow().clone();
                        match master {
                            Some(m) => return m.write_all(data).await.map_err(write_err),
                            None => rx.clone(),
                        }
                    }
                }
            };
            pending.wait_for(Option::is_some).await.map_err(|_| {
                Error::FailedPrecondition("the process did not start: it has no terminal".into())
            })?;
        }
    }

    /// Closes stdin (a pipe) or sends EOF (a terminal), as CloseIO does, in order after
    /// the bytes written before.
    pub async fn close(self) {
        close(&self.slot).await
    }

    /// The client detached: with `stdin_once`, a stdin pipe closes (the process reads
    /// EOF). A terminal stays as it is, as with Docker: leaving a terminal session (the
    /// detach keys) must not end the shell in it; CloseIO still sends its EOF.
    pub async fn detach(self) {
        if !self.once {
            return;
        }
        let mut slot = self.slot.lock().await;
        if matches!(slot.as_ref(), Some(Sink::Pipe(_))) {
            slot.take();
        }
    }
}

impl Task {
    /// Closes the stdin of the init or of an exec process.
    pub async fn close_io(&self, exec_id: &str, stdin: bool) -> Result<()> {
        let inner = self.inner.lock().await;
        let io = self.process_io(&inner, exec_id)?;
        if let (true, Some(io)) = (stdin, io) {
            io.close_stdin().await;
        }
        Ok(())
    }

    /// Attaches to the stdio of the init or of an exec process.
    pub async fn attach(&self, exec_id: &str, opts: AttachOptions) -> Result<Attachment> {
        let inner = self.inner.lock().await;
        let io = self
            .process_io(&inner, exec_id)?
            .ok_or_else(|| self.not_created())?;
        let stopped = self.process_status(&inner, exec_id)? == Status::Stopped;
        io.attach(opts, stopped)
    }

    /// Sets the terminal size of the init or of an exec process.
    pub async fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let (w, h) = (clamp_cells(width), clamp_cells(height));
        let mut inner = self.inner.lock().await;
        if !exec_id.is_empty() {
            return self.exec_resize(&mut inner, exec_id, w, h);
        }
        let io = self
            .process_io(&inner, exec_id)?
            .ok_or_else(|| self.not_created())?;
        if !io.terminal() {
            return Err(Error::FailedPrecondition(format!(
                "container {} has no terminal",
                self.id
            )));
        }
        io.resize(w, h).map(drop)
    }
}

/// A terminal dimension as the kernel takes it.
pub(super) fn clamp_cells(n: u32) -> u16 {
    n.min(u16::MAX as u32) as u16
}
