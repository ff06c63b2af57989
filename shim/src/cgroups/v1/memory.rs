//! v1 memory controller: limit, memory+swap, soft limit, swappiness, OOM killer; usage
//! and the OOM-kill counter.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::cgroups::fs;
use crate::cgroups::MemoryStats;
use crate::error::Result;

const LIMIT: &str = "memory.limit_in_bytes";
const MEMSW: &str = "memory.memsw.limit_in_bytes";

pub fn apply(dir: &Path, m: &LinuxMemory) -> Result<()> {
    if let (Some(limit), Some(swap)) = (m.limit(), m.swap()) {
        if swap != -1 && limit > 0 && swap < limit {
            return Err(crate::error::Error::Cgroup(format!(
                "memory+swap limit {swap} is below the memory limit {limit}"
            )));
        }
    }
    match (m.limit(), m.swap()) {
        (Some(limit), Some(swap)) => {
            if !dir.join(MEMSW).exists() {
                // Swap accounting is off on this kernel: the limit still applies.
                tracing::warn!(dir = %dir.display(), "swap limit requested but swap accounting is disabled; only the memory limit applies");
                fs::write(dir, LIMIT, limit)?;
            } else {
                // The kernel keeps memory <= memory+swap at every step: raise memsw first
                // when growing, lower the memory limit first when shrinking.
                let growing =
                    swap == -1 || fs::read_u64(dir, MEMSW)?.is_some_and(|cur| (swap as u64) > cur);
                if growing {
                    fs::write(dir, MEMSW, swap)?;
                    fs::write(dir, LIMIT, limit)?;
                } else {
                    fs::write(dir, LIMIT, limit)?;
                    fs::write(dir, MEMSW, swap)?;
                }
            }
        }
        (Some(limit), None) => fs::write(dir, LIMIT, limit)?,
        (None, Some(swap)) => {
            if dir.join(MEMSW).exists() {
                fs::write(dir, MEMSW, swap)?
            }
        }
        (None, None) => {}
    }
    if let Some(r) = m.reservation() {
        fs::write(dir, "memory.soft_limit_in_bytes", r)?;
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(crate::error::Error::Cgroup(format!(
                "swappiness {s} is above 100"
            )));
        }
        fs::write(dir, "memory.swappiness", s)?;
    }
    if m.disable_oom_killer() == Some(true) {
        fs::write(dir, "memory.oom_control", 1)?;
    }
    Ok(())
}

pub fn stats(dir: &Path) -> Result<MemoryStats> {
    // The `total_` figures include the cgroup's descendants, as usage_in_bytes does.
    let stat = fs::read_opt(dir, "memory.stat")?.unwrap_or_default();
    let key = |k: &str| fs::lookup(&stat, k).unwrap_or(0);
    Ok(MemoryStats {
        inactive_file: key("total_inactive_file"),
        cache: key("total_cache"),
        rss: key("total_rss"),
        usage: fs::read_u64_opt(dir, "memory.usage_in_bytes")?.unwrap_or(0),
        max_usage: fs::read_u64_opt(dir, "memory.max_usage_in_bytes")?,
        limit: fs::read_u64_opt(dir, LIMIT)?,
        // `oom_kill` in memory.oom_control (kernel 4.13+) counts kills in this cgroup.
        oom_kills: if dir.join("memory.oom_control").exists() {
            fs::keyed(dir, "memory.oom_control", "oom_kill")?.unwrap_or(0)
        } else {
            0
        },
    })
}
