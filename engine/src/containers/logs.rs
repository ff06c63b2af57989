//! Logs: the container's json-lines log (Docker's json-file format, written by the shim),
//! rotated files first, with `--since`, `--until`, `--tail` and `-t`; with `--follow` new
//! lines are streamed as the shim writes them (across rotations) until the container stops.
//!
//! Following polls the file: a few milliseconds after output, backing off to 100 ms when
//! the container is quiet. The stream ends as soon as the exit is announced, after a last
//! read: the shim has written everything by then (the exit is recorded only after the shim
//! deleted the container). A created container is followed from before its start (the log
//! file exists from create on), so `run` opens the stream first and misses nothing, even
//! when `--rm` removes the container (and its log) right after the exit.

use std::collections::VecDeque;
use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::engine::v1::{ContainersLogsRequest, ContainersLogsResponse, LogEntry};
use berth_proto::types::v1::StdioStream;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::Status;

use super::Manager;
use crate::error::{Error, Result};

/// Entries per message at most.
const BATCH: usize = 256;
/// Bytes per message at most (about).
const BATCH_BYTES: usize = 1 << 20;
/// Poll intervals while following.
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(100);
/// Rotated files looked for (`<path>.1` … `<path>.N`).
const MAX_ROTATED: u32 = 100;

#[derive(Deserialize)]
struct JsonLine {
    log: String,
    stream: String,
    #[serde(default)]
    time: String,
}

/// Which entries the request wants and how to send them.
#[derive(Debug, Clone)]
struct Select {
    stdout: bool,
    stderr: bool,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    timestamps: bool,
}

impl Select {
    /// Parses one log line; `None` for a line that is malformed or filtered out.
    fn entry(&self, line: &[u8]) -> Option<LogEntry> {
        let l: JsonLine = serde_json::from_slice(line).ok()?;
        let stream = match l.stream.as_str() {
            "stdout" if self.stdout => StdioStream::Stdout,
            "stderr" if self.stderr => StdioStream::Stderr,
            _ => return None,
        };
        let time = humantime::parse_rfc3339_weak(l.time.trim()).ok();
        if let (Some(since), Some(t)) = (self.since, time) {
            if t < since {
                return None;
            }
        }
        if let (Some(until), Some(t)) = (self.until, time) {
            if t >= until {
                return None;
            }
        }
        let partial = !l.log.ends_with('\n');
        Some(LogEntry {
            stream: stream as i32,
            data: l.log.into_bytes(),
            time: if self.timestamps {
                time.map(Into::into)
            } else {
                None
            },
            partial,
        })
    }
}

/// Collects entries into messages.
struct Batcher {
    tx: mpsc::Sender<Result<ContainersLogsResponse, Status>>,
    buf: Vec<LogEntry>,
    bytes: usize,
}

impl Batcher {
    /// Adds an entry; false when the client is gone.
    async fn push(&mut self, e: LogEntry) -> bool {
        self.bytes += e.data.len();
        self.buf.push(e);
        if self.buf.len() >= BATCH || self.bytes >= BATCH_BYTES {
            return self.flush().await;
        }
        true
    }

    /// Sends what is buffered; false when the client is gone.
    async fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return !self.tx.is_closed();
        }
        self.bytes = 0;
        let entries = std::mem::take(&mut self.buf);
        self.tx
            .send(Ok(ContainersLogsResponse { entries }))
            .await
            .is_ok()
    }
}

/// Rotated files, oldest first.
fn rotated(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in 1..=MAX_ROTATED {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            break;
        }
        out.push(p);
    }
    out.reverse();
    out
}

/// An open log file read line by line; an unfinished last line waits for its end.
struct Tail {
    reader: BufReader<tokio::fs::File>,
    ino: u64,
    pos: u64,
    pending: Vec<u8>,
}

impl Tail {
    async fn open(path: &Path) -> Option<Tail> {
        let f = tokio::fs::File::open(path).await.ok()?;
        let ino = f.metadata().await.ok()?.ino();
        Some(Tail {
            reader: BufReader::new(f),
            ino,
            pos: 0,
            pending: Vec::new(),
        })
    }

    /// The next complete line; `None` at the end of what is written so far (an unfinished
    /// last line is kept for the next call).
    async fn next_line(&mut self) -> Option<Vec<u8>> {
        let mut line = std::mem::take(&mut self.pending);
        let n = self.reader.read_until(b'\n', &mut line).await.ok()?;
        self.pos += n as u64;
        if n == 0 || !line.ends_with(b"\n") {
            self.pending = line;
            return None;
        }
        Some(line)
    }

    /// True when `path` is now another file (rotated) or this one shrank (truncated).
    async fn replaced(&mut self, path: &Path) -> Replaced {
        match tokio::fs::metadata(path).await {
            Ok(m) if m.ino() != self.ino => Replaced::Rotated,
            Ok(m) if m.len() < self.pos => Replaced::Truncated,
            Ok(_) => Replaced::No,
            Err(_) => Replaced::No,
        }
    }
}

enum Replaced {
    No,
    Rotated,
    Truncated,
}

/// `Containers.Logs`
pub async fn logs(
    m: &Arc<Manager>,
    req: ContainersLogsRequest,
) -> Result<BoxStream<ContainersLogsResponse>> {
    let rec = m.resolve(&req.id)?;
    if rec.log_path.is_empty() {
        return Err(Error::FailedPrecondition(
            "configured logging driver does not support reading".into(),
        ));
    }
    let time = |t: Option<prost_types::Timestamp>| t.and_then(|t| SystemTime::try_from(t).ok());
    let both = !req.stdout && !req.stderr;
    let select = Select {
        stdout: req.stdout || both,
        stderr: req.stderr || both,
        since: time(req.since),
        until: time(req.until),
        timestamps: req.timestamps,
    };
    let live = m.live(&rec.id);
    let mut exits = live.exits.subscribe();
    let seen = exits.borrow().count;
    // A created container is followed too: its output starts when it is started, and a
    // client that follows before Start (as `run` does) misses nothing.
    let live_or_pending = m.store.get(&rec.id)?.is_some_and(|r| {
        r.is_running() || r.status() == berth_proto::engine::v1::ContainerStatus::Created
    });
    let follow = req.follow && live_or_pending;
    let path = PathBuf::from(&rec.log_path);
    let (tx, rx) = mpsc::channel(8);
    let shutdown = m.ctx.shutdown.clone();
    tokio::spawn(async move {
        let mut out = Batcher {
            tx,
            buf: Vec::new(),
            bytes: 0,
        };
        // History: rotated files, then the current one (kept open for following).
        let mut tail_keep: Option<VecDeque<LogEntry>> = req
            .tail
            .map(|n| VecDeque::with_capacity(n.min(10_000) as usize));
        let limit = req.tail.unwrap_or(u64::MAX) as usize;
        for file in rotated(&path) {
            let Some(mut t) = Tail::open(&file).await else {
                continue;
            };
            while let Some(line) = t.next_line().await {
                if !deliver(select.entry(&line), &mut out, &mut tail_keep, limit).await {
                    return;
                }
            }
        }
        let mut current = Tail::open(&path).await;
        if let Some(t) = current.as_mut() {
            while let Some(line) = t.next_line().await {
                if !deliver(select.entry(&line), &mut out, &mut tail_keep, limit).await {
                    return;
                }
            }
        }
        if let Some(kept) = tail_keep.take() {
            for e in kept {
                if !out.push(e).await {
                    return;
                }
            }
        }
        if !out.flush().await || !follow {
            return;
        }
        let mut delay = POLL_MIN;
        loop {
            let mut got = false;
            if let Some(t) = current.as_mut() {
                while let Some(line) = t.next_line().await {
                    got = true;
                    if !deliver(select.entry(&line), &mut out, &mut None, 0).await {
                        return;
                    }
                }
                if !out.flush().await {
                    return;
                }
                match t.replaced(&path).await {
                    Replaced::Rotated => current = Tail::open(&path).await,
                    Replaced::Truncated => {
                        t.pos = 0;
                        t.pending.clear();
                        let _ = t.reader.seek(SeekFrom::Start(0)).await;
                    }
                    Replaced::No => {}
                }
            } else {
                current = Tail::open(&path).await;
            }
            if select.until.is_some_and(|u| SystemTime::now() >= u) {
                return;
            }
            delay = if got {
                POLL_MIN
            } else {
                (delay * 2).min(POLL_MAX)
            };
            let exited = tokio::select! {
                () = tokio::time::sleep(delay) => false,
                r = exits.wait_for(|e| e.count > seen || e.removed) => { let _ = r; true }
                () = out.tx.closed() => return,
                () = shutdown.cancelled() => return,
            };
            if exited {
                // Last read: everything the container wrote is in the file by now.
                if let Some(t) = current.as_mut() {
                    while let Some(line) = t.next_line().await {
                        if !deliver(select.entry(&line), &mut out, &mut None, 0).await {
                            return;
                        }
                    }
                }
                let _ = out.flush().await;
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Sends or keeps (for `--tail`) one history entry; false when the client is gone.
async fn deliver(
    e: Option<LogEntry>,
    out: &mut Batcher,
    keep: &mut Option<VecDeque<LogEntry>>,
    limit: usize,
) -> bool {
    let Some(e) = e else { return true };
    match keep {
        Some(k) => {
            if limit == 0 {
                return true;
            }
            if k.len() == limit {
                k.pop_front();
            }
            k.push_back(e);
            true
        }
        None => out.push(e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel() -> Select {
        Select {
            stdout: true,
            stderr: true,
            since: None,
            until: None,
            timestamps: false,
        }
    }

    #[test]
    fn lines_parse_and_filter() {
        let line =
            br#"{"log":"hello\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}"#;
        let e = sel().entry(line).unwrap();
        assert_eq!(e.data, b"hello\n");
        assert_eq!(e.stream, StdioStream::Stdout as i32);
        assert!(!e.partial && e.time.is_none());
        let mut s = sel();
        s.stdout = false;
        assert!(s.entry(line).is_none());
        let mut s = sel();
        s.timestamps = true;
        assert!(s.entry(line).unwrap().time.is_some());
        s.since = humantime::parse_rfc3339("2024-01-02T03:04:06Z").ok();
        assert!(s.entry(line).is_none());
        let mut s = sel();
        s.until = humantime::parse_rfc3339("2024-01-02T03:04:05Z").ok();
        assert!(s.entry(line).is_none());
        let partial = br#"{"log":"abc","stream":"stderr","time":"2024-01-02T03:04:05Z"}"#;
        assert!(sel().entry(partial).unwrap().partial);
        assert!(sel().entry(b"not json").is_none());
    }

    #[tokio::test]
    async fn tail_reads_complete_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        std::fs::write(&p, b"one\ntwo\nthr").unwrap();
        let mut t = Tail::open(&p).await.unwrap();
        let mut lines = Vec::new();
        while let Some(l) = t.next_line().await {
            lines.push(l);
        }
        assert_eq!(lines, [b"one\n".to_vec(), b"two\n".to_vec()]);
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"ee\n")
            .unwrap();
        lines.clear();
        while let Some(l) = t.next_line().await {
            lines.push(l);
        }
        assert_eq!(lines, [b"three\n".to_vec()]);
        std::fs::write(dir.path().join("log.1"), b"").unwrap();
        std::fs::write(dir.path().join("log.2"), b"").unwrap();
        assert_eq!(
            rotated(&p),
            [dir.path().join("log.2"), dir.path().join("log.1")]
        );
    }
}
