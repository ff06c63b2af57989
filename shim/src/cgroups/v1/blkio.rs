//! v1 blkio controller: bytes and operations read and written, from the throttling
//! layer's counters (they count I/O whatever the I/O scheduler, unlike the CFQ/BFQ files).

use std::path::Path;

use crate::cgroups::fs;
use crate::cgroups::BlkioStats;
use crate::error::Result;

/// Reads the counters of the cgroup and its descendants, or of the cgroup alone on a
/// kernel without the `_recursive` files; a missing file counts as no I/O.
pub fn stats(dir: &Path) -> Result<BlkioStats> {
    let (read_bytes, write_bytes) = read_write(dir, "blkio.throttle.io_service_bytes")?;
    let (read_ops, write_ops) = read_write(dir, "blkio.throttle.io_serviced")?;
    Ok(BlkioStats {
        read_bytes,
        write_bytes,
        read_ops,
        write_ops,
    })
}

fn read_write(dir: &Path, file: &str) -> Result<(u64, u64)> {
    let text = match fs::read_opt(dir, &format!("{file}_recursive"))? {
        Some(t) => Some(t),
        None => fs::read_opt(dir, file)?,
    };
    Ok(text.as_deref().map_or((0, 0), sum_read_write))
}

/// Sums the `MAJ:MIN Read N` and `MAJ:MIN Write N` lines over devices (the per-device
/// `Total` lines and the closing `Total N` line would count everything twice).
pub fn sum_read_write(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut write = 0u64;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(_dev), Some(op), Some(v), None) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(v) = v.parse::<u64>() else { continue };
        match op {
            "Read" => read = read.saturating_add(v),
            "Write" => write = write.saturating_add(v),
            _ => {}
        }
    }
    (read, write)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_write_lines_are_summed_over_devices() {
        let text = "\
8:0 Read 4096
8:0 Write 1000
8:0 Sync 5096
8:0 Async 0
8:0 Discard 0
8:0 Total 5096
253:1 Read 10
253:1 Write 20
253:1 Total 30
Total 5126
";
        assert_eq!(sum_read_write(text), (4106, 1020));
        assert_eq!(sum_read_write("Total 0"), (0, 0));
        assert_eq!(sum_read_write(""), (0, 0));
    }
}
