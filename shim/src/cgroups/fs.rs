//! Reading and writing cgroupfs files, with the file and value in every error.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Writes `value` to `dir/file`. The file is never created: on a real cgroupfs a missing
/// file means a controller is not enabled, and that must be an error, not a new file.
pub fn write(dir: &Path, file: &str, value: impl Display) -> Result<()> {
    let path = dir.join(file);
    let value = value.to_string();
    let r = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    r.map_err(|e| Error::Cgroup(format!("write {value:?} to {}: {e}", path.display())))
}

/// Reads `dir/file`, trimmed.
pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::Cgroup(format!("read {}: {e}", path.display())))
}

/// Reads a number; `max` (v2) and v1's "unlimited" sentinel read as `None`.
pub fn read_u64(dir: &Path, file: &str) -> Result<Option<u64>> {
    let s = read(dir, file)?;
    if s == "max" {
        return Ok(None);
    }
    let v: u64 = s.parse().map_err(|_| {
        Error::Cgroup(format!(
            "{}: {s:?} is not a number",
            dir.join(file).display()
        ))
    })?;
    // v1 reports "no limit" as the largest page-aligned i64.
    Ok((v < 0x7FFF_FFFF_FFFF_F000).then_some(v))
}

/// Reads a number when the file exists.
pub fn read_u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    if !dir.join(file).exists() {
        return Ok(None);
    }
    read_u64(dir, file)
}

/// Reads `dir/file`, trimmed; `None` when the file does not exist (a controller or a
/// statistic this kernel does not have).
pub fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Cgroup(format!("read {}: {e}", path.display()))),
    }
}

/// The value of `key` in a flat-keyed text (`oom_kill 3` lines).
pub fn lookup(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The value of `key` in a flat-keyed file.
pub fn keyed(dir: &Path, file: &str, key: &str) -> Result<Option<u64>> {
    Ok(lookup(&read(dir, file)?, key))
}

/// Pids listed in `cgroup.procs`.
pub fn procs(dir: &Path) -> Result<Vec<i32>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(read(dir, "cgroup.procs")?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect())
}

/// Removes `dir` and any sub-cgroups the container made, deepest first. rmdir of a
/// cgroup whose last task is still exiting fails with EBUSY for a moment: retry briefly.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let mut subdirs: Vec<PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                subdirs.push(e.path());
            }
        }
    }
    for s in subdirs {
        remove_tree(&s)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(Error::Cgroup(format!("remove {}: {e}", dir.display())));
            }
        }
    }
}

/// Waits until `cgroup.procs` of `dir` is empty.
pub fn wait_empty(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if procs(dir)?.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Cgroup(format!(
                "{} still has processes after {timeout:?}",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
