//! Proto ↔ domain conversions for the Task API, kept out of the handlers.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_proto::shim::v1 as pb;
use berth_proto::types::v1 as types;

use super::create::CreateSpec;
use super::exec::ExecSpec;
use super::io::StdioSpec;
use super::netdev::InterfaceStats;
use super::query::{ProcessState, Sample};
use super::Status;
use crate::error::{Error, Result};
use crate::logs::{LogConfig, Stream};
use crate::rootfs::MountSpec;
use crate::state::{self, ExitRecord};

/// A rootfs mount; its target must be the root itself (the shim mounts at `root.path`).
pub fn mount(m: types::Mount) -> Result<MountSpec> {
    if !(m.target.is_empty() || m.target == "/") {
        return Err(Error::InvalidArgument(format!(
            "rootfs mount {} ({}) has target {:?}: rootfs mounts are mounted at the root",
            m.source, m.r#type, m.target
        )));
    }
    if m.r#type.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "rootfs mount {} has no type",
            m.source
        )));
    }
    Ok(MountSpec {
        fs_type: m.r#type,
        source: m.source,
        options: m.options,
    })
}

/// Stdio options. With no `log` message at all the log goes to `<state_dir>/container.log`
/// (so a bare CreateRequest still logs, as the engine's `logs` expects); a `log` with an
/// empty path means no log file, as the proto says.
pub fn stdio(opts: Option<pb::StdioOptions>, state_dir: &Path) -> Result<StdioSpec> {
    let opts = opts.unwrap_or_default();
    let log = match opts.log {
        None => Some(LogConfig::new(state::path(state_dir, state::CONTAINER_LOG))),
        Some(l) if l.path.is_empty() => None,
        Some(l) => Some(LogConfig::from_options(
            PathBuf::from(l.path),
            l.max_size_bytes,
            l.max_files,
        )?),
    };
    Ok(StdioSpec {
        stdin: opts.stdin,
        stdin_once: opts.stdin_once,
        log,
    })
}

/// Stdio options of an exec process: as [`stdio`], except that without a log path
/// nothing is logged (exec output goes to attached clients only, as Docker does).
pub fn exec_stdio(opts: Option<pb::StdioOptions>) -> Result<StdioSpec> {
    let opts = opts.unwrap_or_default();
    let log = match opts.log {
        Some(l) if !l.path.is_empty() => Some(LogConfig::from_options(
            PathBuf::from(l.path),
            l.max_size_bytes,
            l.max_files,
        )?),
        _ => None,
    };
    Ok(StdioSpec {
        stdin: opts.stdin,
        stdin_once: opts.stdin_once,
        log,
    })
}

/// A terminal size; none when either dimension is 0 (the terminal keeps its own).
pub fn console_size(size: Option<types::ConsoleSize>) -> Option<(u32, u32)> {
    size.filter(|s| s.width > 0 && s.height > 0)
        .map(|s| (s.width, s.height))
}

/// A CreateRequest.
pub fn create(req: pb::CreateRequest, state_dir: &Path) -> Result<CreateSpec> {
    Ok(CreateSpec {
        id: req.id,
        bundle: PathBuf::from(req.bundle),
        rootfs: req.rootfs.into_iter().map(mount).collect::<Result<_>>()?,
        terminal: req.terminal,
        stdio: stdio(req.stdio, state_dir)?,
        console_size: console_size(req.console_size),
    })
}

/// An ExecRequest.
pub fn exec(req: pb::ExecRequest) -> Result<ExecSpec> {
    Ok(ExecSpec {
        exec_id: req.exec_id,
        spec: req.spec,
        terminal: req.terminal,
        stdio: exec_stdio(req.stdio)?,
        console_size: console_size(req.console_size),
    })
}

/// A process status.
pub fn status(s: Status) -> pb::ProcessStatus {
    match s {
        Status::Created => pb::ProcessStatus::Created,
        Status::Running => pb::ProcessStatus::Running,
        Status::Paused => pb::ProcessStatus::Paused,
        Status::Stopped => pb::ProcessStatus::Stopped,
    }
}

/// A timestamp.
pub fn time(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

/// A StateResponse.
pub fn state(id: &str, s: ProcessState) -> pb::StateResponse {
    pb::StateResponse {
        id: id.to_string(),
        exec_id: s.exec_id,
        bundle: s.bundle.to_string_lossy().into_owned(),
        pid: s.pid,
        status: status(s.status) as i32,
        terminal: s.terminal,
        stdin_open: s.stdin_open,
        exit_status: s.exit.as_ref().map_or(0, |e| e.exit_status),
        exited_at: s.exit.as_ref().map(|e| time(e.exited_at)),
        oom_killed: s.exit.as_ref().is_some_and(|e| e.oom_killed),
        started_at: s.started_at.map(time),
    }
}

/// A WaitResponse.
pub fn wait(e: &ExitRecord) -> pb::WaitResponse {
    pb::WaitResponse {
        exit_status: e.exit_status,
        exited_at: Some(time(e.exited_at)),
        oom_killed: e.oom_killed,
    }
}

/// A DeleteResponse.
pub fn delete(e: &ExitRecord) -> pb::DeleteResponse {
    pb::DeleteResponse {
        pid: e.pid,
        exit_status: e.exit_status,
        exited_at: Some(time(e.exited_at)),
    }
}

/// An output stream.
pub fn stream(s: Stream) -> types::StdioStream {
    match s {
        Stream::Stdout => types::StdioStream::Stdout,
        Stream::Stderr => types::StdioStream::Stderr,
    }
}

fn host_memory() -> u64 {
    // SAFETY: sysinfo fills the zeroed struct it is given.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid out-pointer.
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return 0;
    }
    (info.totalram as u64).saturating_mul(info.mem_unit as u64)
}

/// A metrics sample.
pub fn metrics(sample: Sample, read_at: SystemTime) -> types::ContainerMetrics {
    let s = sample.cgroup;
    types::ContainerMetrics {
        read_at: Some(time(read_at)),
        cpu: Some(types::CpuMetrics {
            usage_ns: s.cpu.usage_ns,
            ..Default::default()
        }),
        memory: Some(types::MemoryMetrics {
            usage_bytes: s.memory.usage,
            // The proto's convention: the host's memory when the container has no limit.
            limit_bytes: s.memory.limit.unwrap_or_else(host_memory),
            max_usage_bytes: s.memory.max_usage.unwrap_or(0),
            inactive_file_bytes: s.memory.inactive_file,
            cache_bytes: s.memory.cache,
            rss_bytes: s.memory.rss,
            oom_kills: s.memory.oom_kills,
            ..Default::default()
        }),
        pids: Some(types::PidsMetrics {
            current: s.pids.current,
            limit: s.pids.limit.unwrap_or(0),
        }),
        block_io: Some(types::BlockIoMetrics {
            read_bytes: s.blkio.read_bytes,
            write_bytes: s.blkio.write_bytes,
            read_ops: s.blkio.read_ops,
            write_ops: s.blkio.write_ops,
        }),
        networks: sample.networks.into_iter().map(network).collect(),
    }
}

fn network(i: InterfaceStats) -> types::NetworkMetrics {
    types::NetworkMetrics {
        interface: i.name,
        rx_bytes: i.rx_bytes,
        rx_packets: i.rx_packets,
        rx_errors: i.rx_errors,
        rx_dropped: i.rx_dropped,
        tx_bytes: i.tx_bytes,
        tx_packets: i.tx_packets,
        tx_errors: i.tx_errors,
        tx_dropped: i.tx_dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_defaults_follow_the_proto() {
        let dir = Path::new("/run/berth/containers/x");
        let s = stdio(None, dir).unwrap();
        assert_eq!(s.log.unwrap().path, dir.join("container.log"));
        let none = pb::StdioOptions {
            log: Some(pb::LogOptions::default()),
            ..Default::default()
        };
        assert!(stdio(Some(none), dir).unwrap().log.is_none());
        let custom = pb::StdioOptions {
            stdin: true,
            log: Some(pb::LogOptions {
                path: "/var/lib/berth/containers/x/x-json.log".into(),
                max_size_bytes: 1000,
                max_files: 5,
            }),
            ..Default::default()
        };
        let s = stdio(Some(custom), dir).unwrap();
        let log = s.log.unwrap();
        assert!(s.stdin);
        assert_eq!((log.max_size, log.max_files), (Some(1000), 5));
    }

    #[test]
    fn exec_output_is_logged_only_when_asked() {
        assert!(exec_stdio(None).unwrap().log.is_none());
        let asked = pb::StdioOptions {
            log: Some(pb::LogOptions {
                path: "/var/log/x.log".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(exec_stdio(Some(asked)).unwrap().log.is_some());
        let size = |width, height| console_size(Some(types::ConsoleSize { width, height }));
        assert_eq!(size(80, 24), Some((80, 24)));
        assert_eq!(size(0, 24), None);
    }

    #[test]
    fn metrics_carry_block_io_network_and_inactive_file() {
        let mut cgroup = crate::cgroups::Stats::default();
        cgroup.memory.inactive_file = 7;
        cgroup.blkio.read_bytes = 10;
        cgroup.blkio.write_ops = 3;
        let sample = Sample {
            cgroup,
            networks: vec![InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 5,
                tx_dropped: 1,
                ..Default::default()
            }],
        };
        let m = metrics(sample, SystemTime::UNIX_EPOCH);
        assert_eq!(m.memory.unwrap().inactive_file_bytes, 7);
        let io = m.block_io.unwrap();
        assert_eq!((io.read_bytes, io.write_ops), (10, 3));
        assert_eq!(m.networks.len(), 1);
        assert_eq!(m.networks[0].interface, "eth0");
        assert_eq!((m.networks[0].rx_bytes, m.networks[0].tx_dropped), (5, 1));
    }

    #[test]
    fn rootfs_mounts_go_at_the_root() {
        let m = types::Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec!["lowerdir=/a".into()],
        };
        assert_eq!(mount(m.clone()).unwrap().fs_type, "overlay");
        let elsewhere = types::Mount {
            target: "/x".into(),
            ..m
        };
        assert!(mount(elsewhere).is_err());
    }
}
