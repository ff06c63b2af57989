//! `stats`: resource usage of containers, as `docker stats` shows it.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use berth_proto::engine::v1::{
    ContainerStatus, ContainersListRequest, ContainersStatsRequest, ContainersStatsResponse,
};
use berth_proto::types::v1::ContainerMetrics;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::client;
use crate::cli::{Format, Global, StatsArgs};
use crate::commands::human;
use crate::connection::call_error;

/// Docker's "read / written" pair in decimal units ("1.2kB / 3.4kB").
fn io_pair(a: u64, b: u64) -> String {
    format!(
        "{} / {}",
        human::size_with_precision(a as f64, 3),
        human::size_with_precision(b as f64, 3)
    )
}

/// NET I/O: received / sent, summed over the container's interfaces.
fn net_io(m: &ContainerMetrics) -> String {
    let (rx, tx) = m.networks.iter().fold((0u64, 0u64), |(rx, tx), n| {
        (rx.saturating_add(n.rx_bytes), tx.saturating_add(n.tx_bytes))
    });
    io_pair(rx, tx)
}

/// BLOCK I/O: read / written.
fn block_io(m: &ContainerMetrics) -> String {
    let b = m.block_io.unwrap_or_default();
    io_pair(b.read_bytes, b.write_bytes)
}

fn row(s: &ContainersStatsResponse) -> Vec<String> {
    let m = s.metrics.clone().unwrap_or_default();
    let mem = m.memory.unwrap_or_default();
    let pids = m.pids.unwrap_or_default();
    vec![
        s.id.chars().take(12).collect(),
        s.name.clone(),
        format!("{:.2}%", s.cpu_percent),
        format!(
            "{} / {}",
            human::binary_size(s.memory_usage_bytes),
            human::binary_size(mem.limit_bytes)
        ),
        format!("{:.2}%", s.memory_percent),
        net_io(&m),
        block_io(&m),
        pids.current.to_string(),
    ]
}

fn json(s: &ContainersStatsResponse) -> serde_json::Value {
    // The table's cells under Docker's keys (all strings, as Docker writes them).
    let [id, name, cpu, mem, mem_pct, net, block, pids]: [String; 8] = match row(s).try_into() {
        Ok(cells) => cells,
        Err(_) => return serde_json::Value::Null,
    };
    serde_json::json!({
        "BlockIO": block,
        "CPUPerc": cpu,
        "Container": name,
        "ID": id,
        "MemPerc": mem_pct,
        "MemUsage": mem,
        "Name": name,
        "NetIO": net,
        "PIDs": pids,
    })
}

/// `stats [--no-stream] [CONTAINER...]`
pub async fn stats(global: &Global, args: &StatsArgs) -> anyhow::Result<()> {
    let mut c = client(global).await?;
    let ids: Vec<String> = if args.containers.is_empty() {
        c.list(ContainersListRequest {
            all: false,
            ..Default::default()
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .containers
        .into_iter()
        .filter(|s| s.status == ContainerStatus::Running as i32)
        .map(|s| s.id)
        .collect()
    } else {
        args.containers.clone()
    };
    let (tx, mut rx) = mpsc::channel::<(usize, Result<ContainersStatsResponse, tonic::Status>)>(16);
    for (i, id) in ids.iter().enumerate() {
        let mut c = c.clone();
        let tx = tx.clone();
        let req = ContainersStatsRequest {
            id: id.clone(),
            stream: !args.no_stream,
        };
        tokio::spawn(async move {
            match c.stats(req).await {
                Err(s) => {
                    let _ = tx.send((i, Err(s))).await;
                }
                Ok(r) => {
                    let mut s = r.into_inner();
                    while let Some(m) = s.next().await {
                        if tx.send((i, m)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(tx);
    let clear = !args.no_stream && std::io::stdout().is_terminal();
    let mut latest: BTreeMap<usize, ContainersStatsResponse> = BTreeMap::new();
    let mut failed = false;
    let print = |latest: &BTreeMap<usize, ContainersStatsResponse>| {
        let mut out = std::io::stdout().lock();
        if args.format == Format::Json {
            for s in latest.values() {
                let _ = writeln!(out, "{}", json(s));
            }
        } else {
            let mut rows = vec![[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ]
            .map(String::from)
            .to_vec()];
            rows.extend(latest.values().map(row));
            if clear {
                let _ = write!(out, "\x1b[2J\x1b[H");
            }
            let _ = write!(out, "{}", human::table(&rows));
        }
        let _ = out.flush();
    };
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some((i, Ok(s))) => {
                    latest.insert(i, s);
                }
                Some((i, Err(s))) => {
                    if s.code() == tonic::Code::Unavailable {
                        return Err(call_error(global, s));
                    }
                    eprintln!("berthctl: {}: {}", ids[i], s.message());
                    failed = true;
                }
                None => break,
            },
            _ = tick.tick(), if !args.no_stream => {
                if !latest.is_empty() {
                    print(&latest);
                }
            }
        }
    }
    if args.no_stream || latest.is_empty() {
        print(&latest);
    }
    if failed {
        return Err(crate::commands::Reported.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::types::v1::{BlockIoMetrics, NetworkMetrics};

    #[test]
    fn net_and_block_io_read_like_docker() {
        let iface = |rx_bytes, tx_bytes| NetworkMetrics {
            rx_bytes,
            tx_bytes,
            ..Default::default()
        };
        let m = ContainerMetrics {
            networks: vec![iface(1000, 3000), iface(234, 456)],
            block_io: Some(BlockIoMetrics {
                read_bytes: 4_260_000,
                write_bytes: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(net_io(&m), "1.23kB / 3.46kB");
        assert_eq!(block_io(&m), "4.26MB / 0B");
        assert_eq!(net_io(&ContainerMetrics::default()), "0B / 0B");
        assert_eq!(block_io(&ContainerMetrics::default()), "0B / 0B");
    }
}
