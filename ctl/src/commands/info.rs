//! `berthctl info` / `berthctl system info`

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::{InfoRequest, InfoResponse};
use serde_json::json;

use crate::cli::{Format, FormatArgs, Global};
use crate::connection::{call_error, connect};

/// Asks the engine for `Info` and prints it.
pub async fn run(global: &Global, args: &FormatArgs) -> anyhow::Result<()> {
    let mut client = SystemClient::new(connect(global).await?);
    let info = client
        .info(InfoRequest {})
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&info))?),
        Format::Table => print!("{}", table(global, &info)),
    }
    Ok(())
}

fn to_json(i: &InfoResponse) -> serde_json::Value {
    let services: Vec<_> = i
        .services
        .iter()
        .map(|s| {
            json!({
                "Name": s.name,
                "Address": s.address,
                "Health": s.health,
                "Embedded": s.embedded,
                "Pid": s.pid,
                "Restarts": s.restarts,
            })
        })
        .collect();
    json!({
        "ID": i.id,
        "ServerVersion": i.server_version,
        "Containers": i.containers,
        "ContainersRunning": i.containers_running,
        "ContainersPaused": i.containers_paused,
        "ContainersStopped": i.containers_stopped,
        "Images": i.images,
        "Driver": i.storage_driver,
        "CgroupVersion": i.cgroup_version,
        "CgroupLayout": i.cgroup_layout,
        "KernelVersion": i.kernel_version,
        "OperatingSystem": i.operating_system,
        "OSType": i.os_type,
        "Architecture": i.architecture,
        "NCPU": i.cpus,
        "MemTotal": i.memory_bytes,
        "Name": i.hostname,
        "RootDir": i.root_dir,
        "StateDir": i.state_dir,
        "Services": services,
        "ListenAddresses": i.listen_addresses,
        "LastEventSeq": i.last_event_seq,
        "Warnings": i.warnings,
    })
}

fn table(global: &Global, i: &InfoResponse) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "Client:");
    let _ = writeln!(s, " Version:    {}", berth_rpc::version::VERSION);
    let _ = writeln!(s, " Host:       {}", global.host);
    let _ = writeln!(s);
    let _ = writeln!(s, "Server:");
    let _ = writeln!(s, " Server Version: {}", i.server_version);
    let _ = writeln!(s, " ID: {}", i.id);
    let _ = writeln!(s, " Containers: {}", i.containers);
    let _ = writeln!(s, "  Running: {}", i.containers_running);
    let _ = writeln!(s, "  Paused: {}", i.containers_paused);
    let _ = writeln!(s, "  Stopped: {}", i.containers_stopped);
    let _ = writeln!(s, " Images: {}", i.images);
    let _ = writeln!(s, " Storage Driver: {}", i.storage_driver);
    let _ = writeln!(
        s,
        " Cgroup Version: {} ({})",
        i.cgroup_version, i.cgroup_layout
    );
    let _ = writeln!(s, " Services:");
    for svc in &i.services {
        let how = if svc.embedded {
            format!("embedded, pid {}, restarts {}", svc.pid, svc.restarts)
        } else {
            "external".to_string()
        };
        let _ = writeln!(s, "  {}: {} ({how}) {}", svc.name, svc.health, svc.address);
    }
    let _ = writeln!(s, " Kernel Version: {}", i.kernel_version);
    let _ = writeln!(s, " Operating System: {}", i.operating_system);
    let _ = writeln!(s, " OSType: {}", i.os_type);
    let _ = writeln!(s, " Architecture: {}", i.architecture);
    let _ = writeln!(s, " CPUs: {}", i.cpus);
    let _ = writeln!(
        s,
        " Total Memory: {}",
        bytesize::ByteSize::b(i.memory_bytes).display().iec()
    );
    let _ = writeln!(s, " Name: {}", i.hostname);
    let _ = writeln!(s, " Root Dir: {}", i.root_dir);
    let _ = writeln!(s, " State Dir: {}", i.state_dir);
    let _ = writeln!(s, " Listening On: {}", i.listen_addresses.join(", "));
    let _ = writeln!(s, " Last Event: {}", i.last_event_seq);
    for w in &i.warnings {
        let _ = writeln!(s, "WARNING: {w}");
    }
    s
}
