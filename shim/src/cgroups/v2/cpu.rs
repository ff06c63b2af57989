//! v2 cpu controller: `cpu.weight` (converted from v1 shares) and `cpu.max`.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::cgroups::fs;
use crate::error::Result;

/// v1 shares [2, 262144] → v2 weight [1, 10000], the conversion runc and crun use, so a
/// container gets the same weight from either runtime.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

pub fn apply(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares() {
        if s != 0 {
            fs::write(dir, "cpu.weight", shares_to_weight(s))?;
        }
    }
    let quota = c.quota().filter(|q| *q != 0);
    let period = c.period().filter(|p| *p != 0);
    if quota.is_some() || period.is_some() {
        // cpu.max is "QUOTA PERIOD"; keep the current period when only the quota changes.
        let period = match period {
            Some(p) => p,
            None => fs::read(dir, "cpu.max")?
                .split(' ')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(100_000),
        };
        let quota = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        fs::write(dir, "cpu.max", format!("{quota} {period}"))?;
    }
    if let Some(i) = c.idle() {
        fs::write(dir, "cpu.idle", i)?;
    }
    Ok(())
}
