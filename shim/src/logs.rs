//! The container's log file in Docker's json-file format, written by the shim so that
//! logging goes on while the engine is down.
//!
//! One JSON object per line: `{"log":"text\n","stream":"stdout","time":"<RFC 3339 nano>"}`.
//! Output is split at newlines; a line longer than [`MAX_RECORD`] is cut into records
//! without the trailing `\n` (Docker's partial messages), so one endless line cannot make
//! the shim buffer without bound. Files rotate by size (`container.log`, `.1`, `.2`, newest
//! first): Docker's own default is unbounded and fills disks, ours is 10 MiB × 3.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// Rotate at this size unless told otherwise.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Files kept (the current one included) unless told otherwise.
pub const DEFAULT_MAX_FILES: u32 = 3;
/// Longest record: Docker's copier buffer, 16 KiB.
pub const MAX_RECORD: usize = 16 * 1024;

/// A standard output stream of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    /// The name in a log record.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Where and how much to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The current file; rotated ones are `<path>.1`, `<path>.2`, ...
    pub path: PathBuf,
    /// Rotate when the file would grow past this; `None`: never rotate.
    pub max_size: Option<u64>,
    /// Files kept, the current one included (1: the file is truncated instead).
    pub max_files: u32,
}

impl LogConfig {
    /// A config with the defaults (10 MiB × 3).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LogConfig {
            path: path.into(),
            max_size: Some(DEFAULT_MAX_SIZE),
            max_files: DEFAULT_MAX_FILES,
        }
    }

    /// From the Task API's `LogOptions` numbers: size 0 is the default, -1 is "never
    /// rotate"; files 0 is the default.
    pub fn from_options(path: PathBuf, max_size_bytes: i64, max_files: u32) -> Result<Self> {
        if !path.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "log path {} is not absolute",
                path.display()
            )));
        }
        let max_size = match max_size_bytes {
            0 => Some(DEFAULT_MAX_SIZE),
            -1 => None,
            n if n > 0 => Some(n as u64),
            n => {
                return Err(Error::InvalidArgument(format!(
                    "log max_size_bytes {n}: use a positive size, 0 for the default or -1 for no rotation"
                )))
            }
        };
        let max_files = if max_files == 0 {
            DEFAULT_MAX_FILES
        } else {
            max_files
        };
        Ok(LogConfig {
            path,
            max_size,
            max_files,
        })
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// Appends records to the log file and rotates it.
#[derive(Debug)]
pub struct JsonFileWriter {
    cfg: LogConfig,
    file: File,
    size: u64,
}

impl JsonFileWriter {
    /// Opens (appends to) the log file, creating its directory if needed.
    pub fn open(cfg: LogConfig) -> Result<Self> {
        if let Some(parent) = cfg.path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
        }
        let file = open_append(&cfg.path)
            .map_err(|e| Error::io(format!("open log {}", cfg.path.display()), e))?;
        // A restarted container appends to its log, as Docker does.
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("stat log {}", cfg.path.display()), e))?
            .len();
        Ok(JsonFileWriter { cfg, file, size })
    }

    /// The configuration.
    pub fn config(&self) -> &LogConfig {
        &self.cfg
    }

    /// Writes one record (`line` is at most one line, with its `\n` if it had one).
    pub fn write(&mut self, stream: Stream, line: &[u8], time: SystemTime) -> std::io::Result<()> {
        let record = encode_record(stream, line, time);
        if let Some(max) = self.cfg.max_size {
            // Rotate before a record would cross the limit, so files stay below it
            // (unless one record alone is larger).
            if self.size > 0 && self.size + record.len() as u64 > max {
                self.rotate()?;
            }
        }
        // One write of a whole record on an O_APPEND file: a reader never sees half a line
        // from a concurrent writer.
        self.file.write_all(&record)?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.cfg.max_files <= 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.cfg.max_files - 1).rev() {
            match std::fs::rename(self.cfg.numbered(n), self.cfg.numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.cfg.path, self.cfg.numbered(1))?;
        self.file = open_append(&self.cfg.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One json-file record, newline-terminated.
pub fn encode_record(stream: Stream, line: &[u8], time: SystemTime) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 64);
    out.extend_from_slice(b"{\"log\":\"");
    escape_json(&String::from_utf8_lossy(line), &mut out);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.name().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(rfc3339_nano(time).as_bytes());
    out.extend_from_slice(b"\"}\n");
    out
}

/// JSON string escaping as Go's encoding/json does it (Docker writes these files with
/// it): HTML-sensitive `<`, `>`, `&` and the JS line separators are escaped too, so our
/// files are byte-for-byte what tools that grep Docker's files expect.
fn escape_json(s: &str, out: &mut Vec<u8>) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Go's `time.RFC3339Nano` in UTC: trailing zeros of the fraction dropped, as Docker
/// writes `time`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(t).to_string();
    let Some(body) = full.strip_suffix('Z') else {
        return full;
    };
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// Cuts a byte stream into log records: whole lines, or [`MAX_RECORD`]-byte pieces of a
/// longer line, or what is left at the end.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds `data`; calls `emit` for every complete record.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_RECORD - self.pending.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let (line, rest) = data.split_at(i + 1);
                    if self.pending.is_empty() {
                        emit(line);
                    } else {
                        self.pending.extend_from_slice(line);
                        emit(&self.pending);
                        self.pending.clear();
                    }
                    data = rest;
                }
                None if window.len() == room => {
                    self.pending.extend_from_slice(window);
                    emit(&self.pending);
                    self.pending.clear();
                    data = &data[room..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    data = &[];
                }
            }
        }
    }

    /// Emits what is left (a last line without `\n`).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 120_000_000)
    }

    #[test]
    fn records_are_docker_json_file_lines() {
        let r = encode_record(Stream::Stderr, b"a \"q\" <b>\t\x01\n", t0());
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "{\"log\":\"a \\\"q\\\" \\u003cb\\u003e\\t\\u0001\\n\",\"stream\":\"stderr\",\"time\":\"2023-11-14T22:13:20.12Z\"}\n"
        );
        let v: serde_json::Value =
            serde_json::from_slice(&encode_record(Stream::Stdout, b"\xffx\n", t0())).unwrap();
        assert_eq!(v["log"], "\u{fffd}x\n");
        assert_eq!(v["stream"], "stdout");
        assert_eq!(
            rfc3339_nano(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1)),
            "1970-01-01T00:00:01Z"
        );
    }

    #[test]
    fn lines_are_split_and_long_ones_cut() {
        let mut s = LineSplitter::default();
        let mut out: Vec<Vec<u8>> = Vec::new();
        s.push(b"one\ntw", |l| out.push(l.to_vec()));
        s.push(b"o\nthree", |l| out.push(l.to_vec()));
        assert_eq!(out, [b"one\n".to_vec(), b"two\n".to_vec()]);
        let long = vec![b'x'; MAX_RECORD * 2 + 10];
        s.push(&long, |l| out.push(l.to_vec()));
        s.push(b"\n", |l| out.push(l.to_vec()));
        s.finish(|l| out.push(l.to_vec()));
        let lens: Vec<usize> = out.iter().map(Vec::len).collect();
        // "three" + x's fill the first 16 KiB record; the rest ends with the newline.
        assert_eq!(
            lens,
            [4, 4, MAX_RECORD, MAX_RECORD, 5 + 10 + 1],
            "record sizes"
        );
        assert!(out[2].starts_with(b"threexx"));
        assert_eq!(out[4].last(), Some(&b'\n'));
        let mut s = LineSplitter::default();
        s.push(b"tail", |_| panic!("no newline yet"));
        let mut last = Vec::new();
        s.finish(|l| last = l.to_vec());
        assert_eq!(last, b"tail");
    }

    #[test]
    fn files_rotate_by_size_and_keep_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/container.log");
        let cfg = LogConfig::from_options(path.clone(), 300, 3).unwrap();
        let mut w = JsonFileWriter::open(cfg).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), t0())
                .unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let cur = read(&path);
        let one = read(&dir.path().join("logs/container.log.1"));
        let two = read(&dir.path().join("logs/container.log.2"));
        assert!(!dir.path().join("logs/container.log.3").exists());
        for f in [&cur, &one, &two] {
            assert!(f.len() <= 300, "{} bytes", f.len());
            for line in f.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
        assert!(cur.contains("line 39\\n"));
        // Newest first: .1 holds the records just before the current file's.
        let first_cur: serde_json::Value =
            serde_json::from_str(cur.lines().next().unwrap()).unwrap();
        let last_one: serde_json::Value =
            serde_json::from_str(one.lines().last().unwrap()).unwrap();
        let n = |v: &serde_json::Value| -> u32 {
            v["log"].as_str().unwrap()[5..].trim().parse().unwrap()
        };
        assert_eq!(n(&last_one) + 1, n(&first_cur));

        // One file: truncated in place.
        let p1 = dir.path().join("single.log");
        let mut w =
            JsonFileWriter::open(LogConfig::from_options(p1.clone(), 200, 1).unwrap()).unwrap();
        for i in 0..20 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes(), t0())
                .unwrap();
        }
        assert!(std::fs::metadata(&p1).unwrap().len() <= 200);
        assert!(!dir.path().join("single.log.1").exists());
        // No rotation at all.
        let p2 = dir.path().join("unbounded.log");
        let mut w =
            JsonFileWriter::open(LogConfig::from_options(p2.clone(), -1, 0).unwrap()).unwrap();
        for _ in 0..50 {
            w.write(Stream::Stdout, b"0123456789\n", t0()).unwrap();
        }
        assert_eq!(read(&p2).lines().count(), 50);
        assert!(LogConfig::from_options("rel.log".into(), 0, 0).is_err());
        assert!(LogConfig::from_options(p2, -2, 0).is_err());
    }
}
