//! v1 cpu controller: shares, CFS quota/period (Docker's `--cpus`), realtime, idle.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::fs;
use crate::error::Result;

pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares() {
        if s != 0 {
            fs::write(dir, "cpu.shares", s)?;
        }
    }
    // The period first: a quota is checked against the current period.
    if let Some(p) = c.period() {
        if p != 0 {
            fs::write(dir, "cpu.cfs_period_us", p)?;
        }
    }
    if let Some(q) = c.quota() {
        if q != 0 {
            fs::write(dir, "cpu.cfs_quota_us", if q < 0 { -1 } else { q })?;
        }
    }
    if let Some(p) = c.realtime_period() {
        if p != 0 {
            fs::write(dir, "cpu.rt_period_us", p)?;
        }
    }
    if let Some(r) = c.realtime_runtime() {
        if r != 0 {
            fs::write(dir, "cpu.rt_runtime_us", r)?;
        }
    }
    if let Some(i) = c.idle() {
        fs::write(dir, "cpu.idle", i)?;
    }
    Ok(())
}
