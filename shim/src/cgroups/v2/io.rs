//! v2 io controller statistics: `io.stat`, one line of `key=value` counters per device.

use std::path::Path;

use crate::cgroups::fs;
use crate::cgroups::BlkioStats;
use crate::error::Result;

/// Reads `io.stat`; without the io controller (no file) there is no I/O to report.
pub fn stats(dir: &Path) -> Result<BlkioStats> {
    Ok(fs::read_opt(dir, "io.stat")?
        .as_deref()
        .map(parse_stat)
        .unwrap_or_default())
}

/// Sums rbytes, wbytes, rios and wios over the devices of an `io.stat` text.
pub fn parse_stat(text: &str) -> BlkioStats {
    let mut s = BlkioStats::default();
    for line in text.lines() {
        // The first field is the device (MAJ:MIN); the rest are counters.
        for kv in line.split_whitespace().skip(1) {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            let field = match k {
                "rbytes" => &mut s.read_bytes,
                "wbytes" => &mut s.write_bytes,
                "rios" => &mut s.read_ops,
                "wios" => &mut s.write_ops,
                _ => continue,
            };
            *field = field.saturating_add(v);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_over_devices() {
        let text = "\
8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0
8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=7 dios=1
";
        let s = parse_stat(text);
        assert_eq!(s.read_bytes, 1_459_300);
        assert_eq!(s.write_bytes, 314_773_704);
        assert_eq!(s.read_ops, 193);
        assert_eq!(s.write_ops, 355);
        assert_eq!(parse_stat(""), BlkioStats::default());
    }
}
