//! Stats: samples of a container's cgroup from its shim, with the CPU and memory figures
//! `docker stats` shows computed here (the engine sees the host's CPU time).

use std::sync::Arc;
use std::time::Duration;

use berth_proto::engine::v1::{ContainersStatsRequest, ContainersStatsResponse};
use berth_proto::shim::v1::StatsRequest;
use berth_proto::types::v1::ContainerMetrics;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;

use super::kill::running_shim;
use super::Manager;
use crate::error::{Error, Result};

/// Time between samples.
const INTERVAL: Duration = Duration::from_secs(1);

/// CPU time the host spent, all CPUs together, in nanoseconds (from /proc/stat).
fn host_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|f| f.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks.saturating_mul(1_000_000_000 / hz)
}

fn online_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// A reading: the shim's sample plus the host's CPU time when it was taken.
struct Reading {
    metrics: ContainerMetrics,
    host_ns: u64,
}

/// Docker's figures from two readings.
pub fn figures(
    prev: Option<(u64, u64)>,
    now: (u64, u64),
    cpus: u32,
    usage: u64,
    inactive_file: u64,
    limit: u64,
) -> (f64, u64, f64) {
    let cpu_percent = match prev {
        Some((c0, h0)) if now.1 > h0 && now.0 >= c0 => {
            (now.0 - c0) as f64 / (now.1 - h0) as f64 * f64::from(cpus) * 100.0
        }
        _ => 0.0,
    };
    let mem = usage.saturating_sub(inactive_file);
    let mem_percent = if limit > 0 {
        mem as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    (cpu_percent, mem, mem_percent)
}

/// `Containers.Stats`
pub async fn stats(
    m: &Arc<Manager>,
    req: ContainersStatsRequest,
) -> Result<BoxStream<ContainersStatsResponse>> {
    let (rec, task) = running_shim(m, &req.id).await?;
    let read = move || {
        let mut task = task.clone();
        async move {
            let host_ns = host_cpu_ns();
            let metrics = task
                .stats(StatsRequest {})
                .await
                .ok()?
                .into_inner()
                .metrics?;
            Some(Reading { metrics, host_ns })
        }
    };
    let first = read()
        .await
        .ok_or_else(|| Error::FailedPrecondition(format!("Container {} is not running", rec.id)))?;
    let (tx, rx) = mpsc::channel(4);
    let cpus = online_cpus();
    tokio::spawn(async move {
        let cpu_of = |r: &Reading| r.metrics.cpu.as_ref().map_or(0, |c| c.usage_ns);
        let mut prev = (cpu_of(&first), first.host_ns);
        loop {
            tokio::select! {
                () = tokio::time::sleep(INTERVAL) => {}
                () = tx.closed() => return,
            }
            let Some(r) = read().await else { return };
            let now = (cpu_of(&r), r.host_ns);
            let mem = r.metrics.memory.unwrap_or_default();
            let (cpu_percent, memory_usage_bytes, memory_percent) = figures(
                Some(prev),
                now,
                cpus,
                mem.usage_bytes,
                mem.inactive_file_bytes,
                mem.limit_bytes,
            );
            prev = now;
            let msg = ContainersStatsResponse {
                id: rec.id.clone(),
                name: rec.name.clone(),
                metrics: Some(r.metrics),
                cpu_percent,
                memory_usage_bytes,
                memory_percent,
            };
            if tx.send(Ok(msg)).await.is_err() || !req.stream {
                return;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cpu_and_memory_figures() {
        // Half a CPU-second of the container over one second of two CPUs' time.
        let (cpu, mem, pct) = figures(Some((0, 0)), (500, 2000), 2, 300, 100, 1000);
        assert!((cpu - 50.0).abs() < 1e-9);
        assert_eq!(mem, 200);
        assert!((pct - 20.0).abs() < 1e-9);
        assert_eq!(figures(None, (1, 1), 2, 0, 0, 0).0, 0.0);
    }
}
