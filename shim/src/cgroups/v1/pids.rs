//! pids controller (same files on v1 and v2).

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::cgroups::fs;
use crate::cgroups::PidsStats;
use crate::error::Result;

/// OCI: a limit of 0 or below means no limit.
pub fn apply(dir: &Path, p: &LinuxPids) -> Result<()> {
    if p.limit() > 0 {
        fs::write(dir, "pids.max", p.limit())
    } else {
        fs::write(dir, "pids.max", "max")
    }
}

pub fn stats(dir: &Path) -> Result<PidsStats> {
    Ok(PidsStats {
        current: fs::read_u64_opt(dir, "pids.current")?.unwrap_or(0),
        limit: if dir.join("pids.max").exists() {
            fs::read_u64(dir, "pids.max")?
        } else {
            None
        },
    })
}
