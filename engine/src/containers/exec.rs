//! Exec: an extra process in a running container (`docker exec`), created by its shim in
//! the container's namespaces and cgroup from an OCI "process" built here: the container's
//! own process (hardening, environment, user) with the request's command, environment,
//! working directory, user and terminal over it.

use std::sync::Arc;

use berth_proto::engine::v1::{
    containers_exec_request, containers_exec_response, ContainerStatus, ContainersExecRequest,
    ContainersExecResponse, ExecOptions, ExecStarted, ExitStatus,
};
use berth_proto::shim::v1 as shim;
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::types::v1::StdioFrame;
use futures::{Stream, StreamExt};
use oci_spec::runtime::{Capabilities, LinuxCapabilitiesBuilder, Process, Spec, UserBuilder};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::attach::{self, ClientMsg, End, Pump};
use super::detach_keys::DetachKeys;
use super::record::Record;
use super::{bundle, kill, names, options, user, Manager};
use crate::error::{Error, Result};

/// Docker's exit code for an exec whose process could not be started.
const EXIT_CANNOT_START: i32 = 126;

fn msg(m: containers_exec_response::Msg) -> ContainersExecResponse {
    ContainersExecResponse { msg: Some(m) }
}

fn exec_msgs(
    inbound: Streaming<ContainersExecRequest>,
) -> impl Stream<Item = std::result::Result<ClientMsg, Status>> + Unpin {
    inbound.filter_map(|m| futures::future::ready(client_msg(m)))
}

fn client_msg(
    m: std::result::Result<ContainersExecRequest, Status>,
) -> Option<std::result::Result<ClientMsg, Status>> {
    use containers_exec_request::Msg;
    match m {
        Err(s) => Some(Err(s)),
        Ok(ContainersExecRequest { msg }) => match msg? {
            Msg::Stdin(d) => Some(Ok(ClientMsg::Stdin(d))),
            Msg::Resize(s) => Some(Ok(ClientMsg::Resize(s))),
            Msg::CloseStdin(_) => Some(Ok(ClientMsg::CloseStdin)),
            Msg::Options(_) => None,
        },
    }
}

/// The process to run: the container's, with the request's settings over it.
async fn process_json(m: &Manager, rec: &Record, o: &ExecOptions) -> Result<Vec<u8>> {
    let path = m.state_dir(&rec.id).join("config.json");
    let spec = tokio::task::spawn_blocking(move || Spec::load(&path))
        .await
        .map_err(|e| Error::io("read the bundle", std::io::Error::other(e)))?
        .map_err(|e| Error::FailedPrecondition(format!("the container's bundle: {e}")))?;
    let mut p: Process = spec
        .process()
        .clone()
        .ok_or_else(|| Error::FailedPrecondition("the container's bundle has no process".into()))?;
    p.set_args(Some(o.cmd.clone()));
    p.set_terminal(Some(o.tty));
    p.set_console_size(None);
    let env = p.env().clone().unwrap_or_default();
    p.set_env(Some(options::merge_env(&env, &o.env)));
    if !o.working_dir.is_empty() {
        p.set_cwd(options::clean_workdir(&o.working_dir)?.into());
    }
    if !o.user.is_empty() {
        let mounts = m.rootfs_mounts(&rec.id).await?;
        let layers = user::layer_dirs(&mounts);
        let (name, groups) = (o.user.clone(), rec.config().group_add.clone());
        let who = tokio::task::spawn_blocking(move || user::resolve(&name, &groups, &layers))
            .await
            .map_err(|e| Error::io("resolve the user", std::io::Error::other(e)))??;
        let u = UserBuilder::default()
            .uid(who.uid)
            .gid(who.gid)
            .additional_gids(who.additional_gids)
            .umask(p.user().umask().unwrap_or(0o022))
            .build()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        p.set_user(u);
    }
    if o.privileged {
        let all = bundle::capabilities(true, &[], &[])?;
        let caps = LinuxCapabilitiesBuilder::default()
            .bounding(all.clone())
            .effective(all.clone())
            .permitted(all)
            .inheritable(Capabilities::new())
            .ambient(Capabilities::new())
            .build()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        p.set_capabilities(Some(caps));
    }
    serde_json::to_vec(&p).map_err(|e| Error::InvalidArgument(format!("exec process: {e}")))
}

/// Waits for an exec process, removes it from the shim and reports its end.
async fn reap(
    m: &Manager,
    rec: &Record,
    task: &mut TaskClient<Channel>,
    exec_id: &str,
) -> ExitStatus {
    let status = match task
        .wait(shim::WaitRequest {
            exec_id: exec_id.to_string(),
        })
        .await
    {
        Ok(w) => {
            let w = w.into_inner();
            ExitStatus {
                exit_code: w.exit_status as i32,
                oom_killed: w.oom_killed,
                finished_at: w.exited_at,
                error: String::new(),
            }
        }
        Err(s) => ExitStatus {
            exit_code: 255,
            error: format!("waiting for the exec process: {}", s.message()),
            ..Default::default()
        },
    };
    let _ = task
        .delete(shim::DeleteRequest {
            exec_id: exec_id.to_string(),
        })
        .await;
    m.publish(
        "exec_die",
        rec,
        [
            ("execID", exec_id.to_string()),
            ("exitCode", status.exit_code.to_string()),
        ],
    );
    status
}

/// `Containers.Exec`
pub async fn exec(
    m: &Arc<Manager>,
    mut inbound: Streaming<ContainersExecRequest>,
) -> Result<BoxStream<ContainersExecResponse>> {
    let o: ExecOptions = match inbound.message().await {
        Ok(Some(ContainersExecRequest {
            msg: Some(containers_exec_request::Msg::Options(o)),
        })) => o,
        Ok(_) => {
            return Err(Error::InvalidArgument(
                "the first Exec message must carry the options".into(),
            ))
        }
        Err(s) => {
            return Err(Error::InvalidArgument(format!(
                "reading the request: {}",
                s.message()
            )))
        }
    };
    if o.cmd.is_empty() || o.cmd[0].is_empty() {
        return Err(Error::InvalidArgument("no command given to exec".into()));
    }
    let keys = DetachKeys::parse(&o.detach_keys)?;
    let rec = m.resolve(&o.id)?;
    match rec.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Restarting => return Err(kill::restarting(&rec.id)),
        ContainerStatus::Paused => {
            return Err(Error::FailedPrecondition(format!(
                "Container {} is paused, unpause the container before exec",
                rec.id
            )))
        }
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "Container {} is not running",
                rec.id
            )))
        }
    }
    let live = m.live(&rec.id);
    let mut task = kill::shim_of(m, &live, &rec.id).await?;
    let spec = match process_json(m, &rec, &o).await {
        Ok(s) => s,
        // The process cannot be made as asked (no such user, a bad working directory): like
        // a process that fails to start, as Docker reports it (126), not a failed call.
        Err(e @ (Error::InvalidArgument(_) | Error::FailedPrecondition(_))) => {
            let status = ExitStatus {
                exit_code: EXIT_CANNOT_START,
                error: e.to_string(),
                ..Default::default()
            };
            let end = msg(containers_exec_response::Msg::Exit(status));
            return Ok(Box::pin(futures::stream::iter([Ok(end)])));
        }
        Err(e) => return Err(e),
    };
    let exec_id = names::new_id()?;
    let command = o.cmd.join(" ");
    let attached = !o.detach;
    task.exec(shim::ExecRequest {
        exec_id: exec_id.clone(),
        spec,
        terminal: o.tty,
        stdio: Some(shim::StdioOptions {
            stdin: o.stdin && attached,
            stdin_once: false,
            log: None,
        }),
        console_size: o.console_size,
    })
    .await
    .map_err(|s| Error::downstream("shim", s))?;
    m.publish(
        "exec_create",
        &rec,
        [
            ("execID", exec_id.clone()),
            ("commandLine", command.clone()),
        ],
    );
    // Attach before starting: the process's first output is not lost.
    let (output, stdin_tx) = if attached {
        let (requests, stdin_tx) = attach::shim_requests(shim::AttachOptions {
            exec_id: exec_id.clone(),
            stdin: o.stdin,
            stdout: false,
            stderr: false,
        });
        match task.attach(requests).await {
            Ok(r) => (Some(r.into_inner()), Some(stdin_tx)),
            Err(s) => {
                let _ = task
                    .delete(shim::DeleteRequest {
                        exec_id: exec_id.clone(),
                    })
                    .await;
                return Err(Error::downstream("shim", s));
            }
        }
    } else {
        (None, None)
    };
    let (tx, rx) = mpsc::channel(64);
    let m = m.clone();
    tokio::spawn(async move {
        let started = task
            .start(shim::StartRequest {
                exec_id: exec_id.clone(),
            })
            .await;
        let pid = match started {
            Ok(r) => r.into_inner().pid,
            Err(s) => {
                tracing::info!(container = %rec.id, exec = %exec_id, error = %s.message(), "exec failed to start");
                let _ = task
                    .delete(shim::DeleteRequest {
                        exec_id: exec_id.clone(),
                    })
                    .await;
                let status = ExitStatus {
                    exit_code: EXIT_CANNOT_START,
                    error: s.message().to_string(),
                    ..Default::default()
                };
                let _ = tx
                    .send(Ok(msg(containers_exec_response::Msg::Exit(status))))
                    .await;
                return;
            }
        };
        m.publish(
            "exec_start",
            &rec,
            [("execID", exec_id.clone()), ("commandLine", command)],
        );
        let _ = tx
            .send(Ok(msg(containers_exec_response::Msg::Started(
                ExecStarted {
                    exec_id: exec_id.clone(),
                    pid: pid as i64,
                },
            ))))
            .await;
        let Some(output) = output else {
            // Detached: the stream ends; the process is reaped when it exits.
            drop(tx);
            reap(&m, &rec, &mut task, &exec_id).await;
            return;
        };
        let pump = Pump {
            task: task.clone(),
            exec_id: exec_id.clone(),
            output,
            stdin: stdin_tx.filter(|_| o.stdin),
            keys,
            close_io_on_eof: true,
        };
        let wrap = |f: StdioFrame| msg(containers_exec_response::Msg::Output(f));
        let end = pump.run(exec_msgs(inbound), &tx, wrap).await;
        let last = match end {
            End::Detached => containers_exec_response::Msg::Detached(true),
            End::Exited | End::ClientGone => {
                containers_exec_response::Msg::Exit(reap(&m, &rec, &mut task, &exec_id).await)
            }
        };
        if end != End::ClientGone {
            let _ = tx.send(Ok(msg(last))).await;
        } else {
            tracing::debug!(container = %rec.id, exec = %exec_id, "exec client left; the process was waited for");
        }
        if end == End::Detached {
            reap(&m, &rec, &mut task, &exec_id).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}
