//! Inspect: the typed details, and Docker-compatible inspect JSON.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::engine::v1::{
    ContainerDetails, ContainerStatus, ContainersInspectRequest, ContainersInspectResponse,
    NetworkSettings,
};
use prost_types::Timestamp;
use serde_json::{json, Value};

use super::list::{sizes, status_word};
use super::record::Record;
use super::Manager;
use crate::error::Result;

/// RFC 3339 with nanoseconds; Go's zero time when unset, as Docker prints it.
fn time(t: Option<&Timestamp>) -> String {
    match t.and_then(|t| SystemTime::try_from(*t).ok()) {
        Some(t) => humantime::format_rfc3339_nanos(t).to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn network_mode(r: &Record) -> String {
    match r.config().network_mode.as_str() {
        "" => "none".into(),
        m => m.into(),
    }
}

/// Docker's inspect object.
pub fn docker_json(m: &Manager, r: &Record, details: &ContainerDetails) -> Value {
    let c = r.config();
    let s = r.state.clone().unwrap_or_default();
    let status = r.status();
    let dir = m.state_dir(&r.id);
    let file = |n: &str| dir.join(n).display().to_string();
    let log = c.log_config.clone().unwrap_or_default();
    let mut log_opts = serde_json::Map::new();
    if log.max_size_bytes != 0 {
        log_opts.insert("max-size".into(), json!(log.max_size_bytes.to_string()));
    }
    if log.max_files != 0 {
        log_opts.insert("max-file".into(), json!(log.max_files.to_string()));
    }
    let ulimits: Vec<Value> = c
        .ulimits
        .iter()
        .map(|u| json!({"Name": u.name, "Soft": u.soft, "Hard": u.hard}))
        .collect();
    let mut config = json!({
        "Hostname": c.hostname,
        "Domainname": "",
        "User": c.user,
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "Tty": c.tty,
        "OpenStdin": c.open_stdin,
        "StdinOnce": c.stdin_once,
        "Env": c.env,
        "Cmd": if c.cmd.is_empty() { Value::Null } else { json!(c.cmd) },
        "Image": r.image,
        "Volumes": Value::Null,
        "WorkingDir": c.working_dir,
        "Entrypoint": match &c.entrypoint {
            Some(e) if !e.values.is_empty() => json!(e.values),
            _ => Value::Null,
        },
        "OnBuild": Value::Null,
        "Labels": c.labels,
    });
    if !c.stop_signal.is_empty() {
        config["StopSignal"] = json!(c.stop_signal);
    }
    if let Some(t) = c.stop_timeout {
        config["StopTimeout"] = json!(t);
    }
    let mut out = json!({
        "Id": r.id,
        "Created": time(r.created.as_ref()),
        "Path": r.path,
        "Args": r.args,
        "State": {
            "Status": status_word(status),
            "Running": r.is_running(),
            "Paused": status == ContainerStatus::Paused,
            "Restarting": status == ContainerStatus::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": status == ContainerStatus::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": time(s.started_at.as_ref()),
            "FinishedAt": time(s.finished_at.as_ref()),
        },
        "Image": r.image_id,
        "ResolvConfPath": file("resolv.conf"),
        "HostnamePath": file("hostname"),
        "HostsPath": file("hosts"),
        "LogPath": r.log_path,
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": "overlayfs",
        "Platform": r.platform.as_ref().map(|p| p.os.clone()).unwrap_or_else(|| "linux".into()),
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "LogConfig": {
                "Type": if log.driver.is_empty() { "json-file".to_string() } else { log.driver.clone() },
                "Config": log_opts,
            },
            "NetworkMode": network_mode(r),
            "RestartPolicy": super::restart_policy::inspect_json(c.restart_policy.as_ref()),
            "AutoRemove": c.auto_remove,
            "CapAdd": c.cap_add,
            "CapDrop": c.cap_drop,
            "Dns": c.dns,
            "DnsSearch": c.dns_search,
            "ExtraHosts": c.extra_hosts,
            "GroupAdd": c.group_add,
            "Privileged": c.privileged,
            "ReadonlyRootfs": c.read_only,
            "SecurityOpt": c.security_opt,
            "Memory": c.memory,
            "MemorySwap": c.memory_swap,
            "NanoCpus": c.nano_cpus,
            "CpuShares": c.cpu_shares,
            "CpusetCpus": c.cpuset_cpus,
            "PidsLimit": c.pids_limit,
            "Ulimits": ulimits,
        },
        "Mounts": [],
        "Config": config,
        "NetworkSettings": {
            "SandboxKey": details.network_settings.as_ref().map(|n| n.sandbox_key.clone()).unwrap_or_default(),
            "Ports": {},
            "IPAddress": "",
            "Networks": {},
        },
    });
    if let Some(rw) = details.size_rw {
        out["SizeRw"] = json!(rw);
    }
    if let Some(rootfs) = details.size_root_fs {
        out["SizeRootFs"] = json!(rootfs);
    }
    out
}

/// The typed details.
pub fn details(r: &Record) -> ContainerDetails {
    let pid = r.state.as_ref().map(|s| s.pid).unwrap_or(0);
    ContainerDetails {
        id: r.id.clone(),
        name: r.name.clone(),
        created: r.created,
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        config: r.config.clone(),
        state: r.state.clone(),
        restart_count: r.restart_count,
        mounts: Vec::new(),
        network_settings: Some(NetworkSettings {
            network_mode: network_mode(r),
            sandbox_key: if r.is_running() && pid > 0 {
                format!("/proc/{pid}/ns/net")
            } else {
                String::new()
            },
            ..Default::default()
        }),
        log_path: r.log_path.clone(),
        path: r.path.clone(),
        args: r.args.clone(),
        size_rw: None,
        size_root_fs: None,
        platform: r.platform.clone(),
    }
}

/// `Containers.Inspect`
pub async fn inspect(
    m: &Arc<Manager>,
    req: ContainersInspectRequest,
) -> Result<ContainersInspectResponse> {
    let r = m.resolve(&req.id)?;
    let mut d = details(&r);
    if req.size {
        (d.size_rw, d.size_root_fs) = sizes(m, &r, &mut HashMap::new()).await;
    }
    let json = docker_json(m, &r, &d).to_string();
    Ok(ContainersInspectResponse {
        container: Some(d),
        json,
    })
}
