//! v2 memory controller. OCI's `swap` is memory+swap (the v1 meaning); v2's
//! `memory.swap.max` is swap alone, so the difference is written.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::cgroups::fs;
use crate::cgroups::MemoryStats;
use crate::error::{Error, Result};

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

pub fn apply(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if let Some(limit) = m.limit() {
        fs::write(dir, "memory.max", max_or(limit))?;
    }
    if let Some(swap) = m.swap() {
        let value = match (swap, m.limit()) {
            (s, _) if s < 0 => "max".to_string(),
            (s, Some(l)) if l >= 0 => {
                if s < l {
                    return Err(Error::Cgroup(format!(
                        "memory+swap limit {s} is below the memory limit {l}"
                    )));
                }
                (s - l).to_string()
            }
            _ => {
                return Err(Error::Cgroup(
                    "a memory+swap limit needs a memory limit on cgroup v2".into(),
                ))
            }
        };
        if dir.join("memory.swap.max").exists() {
            fs::write(dir, "memory.swap.max", value)?;
        } else {
            tracing::warn!(dir = %dir.display(), "swap limit requested but memory.swap.max is missing (swap accounting off)");
        }
    }
    if let Some(r) = m.reservation() {
        fs::write(dir, "memory.low", max_or(r))?;
    }
    if m.disable_oom_killer() == Some(true) {
        return Err(Error::Cgroup(
            "disabling the OOM killer is not possible on cgroup v2".into(),
        ));
    }
    Ok(())
}

pub fn stats(dir: &Path) -> Result<MemoryStats> {
    // v2's memory.stat is hierarchical already.
    let stat = fs::read_opt(dir, "memory.stat")?.unwrap_or_default();
    let key = |k: &str| fs::lookup(&stat, k).unwrap_or(0);
    Ok(MemoryStats {
        inactive_file: key("inactive_file"),
        cache: key("file"),
        rss: key("anon"),
        usage: fs::read_u64_opt(dir, "memory.current")?.unwrap_or(0),
        max_usage: fs::read_u64_opt(dir, "memory.peak")?,
        limit: fs::read_u64_opt(dir, "memory.max")?,
        oom_kills: if dir.join("memory.events").exists() {
            fs::keyed(dir, "memory.events", "oom_kill")?.unwrap_or(0)
        } else {
            0
        },
    })
}
