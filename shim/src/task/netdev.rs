//! Network traffic of a container, read from the host: `/proc/<pid>/net/dev` shows the
//! interfaces of the network namespace `pid` lives in, so no setns is needed.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Counters of one interface, as `/proc/net/dev` has them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name inside the container.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Outgoing packets dropped.
    pub tx_dropped: u64,
}

/// The interfaces of `pid`'s network namespace, loopback left out. Empty when `pid` shares
/// the shim's (the host's) namespace: the host's traffic is not the container's.
pub fn read(pid: u32) -> Result<Vec<InterfaceStats>> {
    let proc = Path::new("/proc").join(pid.to_string());
    if same_netns(&proc.join("ns/net"), Path::new("/proc/self/ns/net"))? {
        return Ok(Vec::new());
    }
    let path = proc.join("net/dev");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    Ok(parse(&text))
}

fn same_netns(a: &Path, b: &Path) -> Result<bool> {
    let meta =
        |p: &Path| std::fs::metadata(p).map_err(|e| Error::io(format!("stat {}", p.display()), e));
    let (a, b) = (meta(a)?, meta(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Parses a `/proc/net/dev` text: two header lines, then `name: 8 receive counters
/// 8 transmit counters`.
pub fn parse(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .filter_map(|line| {
            // Old kernels print no space between the colon and the first counter.
            let (name, counters) = line.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let v: Vec<u64> = counters
                .split_whitespace()
                .map(str::parse)
                .collect::<std::result::Result<_, _>>()
                .ok()?;
            if v.len() < 12 {
                return None;
            }
            Some(InterfaceStats {
                name: name.to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     560       8    0    0    0     0          0         0      560       8    0    0    0     0       0          0
  eth0:    1296      14    1    2    0     0          0         0      726       9    3    4    0     0       0          0
  eth1:12 1 0 0 0 0 0 0 34 2 0 0 0 0 0 0
";

    #[test]
    fn interfaces_are_parsed_without_loopback() {
        let v = parse(NET_DEV);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 1296,
                rx_packets: 14,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 726,
                tx_packets: 9,
                tx_errors: 3,
                tx_dropped: 4,
            }
        );
        assert_eq!(
            (v[1].name.as_str(), v[1].rx_bytes, v[1].tx_bytes),
            ("eth1", 12, 34)
        );
    }

    #[test]
    fn the_shims_own_namespace_reports_nothing() {
        assert!(read(std::process::id()).unwrap().is_empty());
        assert!(read(u32::MAX).is_err());
    }
}
