//! `berth.shim.v1.Task` over gRPC: each handler unpacks the request, calls the domain
//! [`Task`], converts the answer; errors map to status codes in one place
//! (`From<Error> for tonic::Status`).

use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::shim::v1 as pb;
use berth_proto::shim::v1::task_server;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::io::{AttachOptions, Attachment};
use super::{convert, Task};

/// The gRPC face of a [`Task`].
#[derive(Clone)]
pub struct TaskService {
    task: Arc<Task>,
}

impl TaskService {
    /// Serves `task`.
    pub fn new(task: Arc<Task>) -> Self {
        TaskService { task }
    }

    /// The generated tonic server around this service.
    pub fn server(task: Arc<Task>) -> task_server::TaskServer<TaskService> {
        task_server::TaskServer::new(TaskService::new(task))
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl task_server::Task for TaskService {
    async fn create(&self, req: Request<pb::CreateRequest>) -> Reply<pb::CreateResponse> {
        let spec = convert::create(req.into_inner(), self.task.state_dir())?;
        let pid = self.task.create(spec).await?;
        Ok(Response::new(pb::CreateResponse { pid }))
    }

    async fn start(&self, req: Request<pb::StartRequest>) -> Reply<pb::StartResponse> {
        let pid = self.task.start(&req.get_ref().exec_id).await?;
        Ok(Response::new(pb::StartResponse { pid }))
    }

    async fn state(&self, req: Request<pb::StateRequest>) -> Reply<pb::StateResponse> {
        let s = self.task.state(&req.get_ref().exec_id).await?;
        Ok(Response::new(convert::state(self.task.id(), s)))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Reply<pb::KillResponse> {
        let req = req.into_inner();
        self.task.kill(&req.exec_id, req.signal, req.all).await?;
        Ok(Response::new(pb::KillResponse {}))
    }

    async fn exec(&self, req: Request<pb::ExecRequest>) -> Reply<pb::ExecResponse> {
        let spec = convert::exec(req.into_inner())?;
        self.task.exec(spec).await?;
        Ok(Response::new(pb::ExecResponse {}))
    }

    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Reply<pb::ResizePtyResponse> {
        let req = req.into_inner();
        self.task
            .resize_pty(&req.exec_id, req.width, req.height)
            .await?;
        Ok(Response::new(pb::ResizePtyResponse {}))
    }

    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Reply<pb::CloseIoResponse> {
        let req = req.into_inner();
        self.task.close_io(&req.exec_id, req.stdin).await?;
        Ok(Response::new(pb::CloseIoResponse {}))
    }

    async fn attach(
        &self,
        req: Request<tonic::Streaming<pb::AttachRequest>>,
    ) -> Reply<BoxStream<pb::AttachResponse>> {
        let mut inbound = req.into_inner();
        let opts = match inbound.message().await? {
            Some(pb::AttachRequest {
                msg: Some(pb::attach_request::Msg::Options(o)),
            }) => o,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Attach message must carry the options",
                ))
            }
        };
        let attachment = self
            .task
            .attach(
                &opts.exec_id,
                AttachOptions {
                    stdin: opts.stdin,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                },
            )
            .await?;
        Ok(Response::new(attach_streams(attachment, inbound)))
    }

    async fn pids(&self, _: Request<pb::PidsRequest>) -> Reply<pb::PidsResponse> {
        let processes = self
            .task
            .pids()
            .await?
            .into_iter()
            .map(|(pid, exec_id)| pb::ProcessInfo { pid, exec_id })
            .collect();
        Ok(Response::new(pb::PidsResponse { processes }))
    }

    async fn wait(&self, req: Request<pb::WaitRequest>) -> Reply<pb::WaitResponse> {
        let exit = self.task.wait(&req.get_ref().exec_id).await?;
        Ok(Response::new(convert::wait(&exit)))
    }

    async fn stats(&self, _: Request<pb::StatsRequest>) -> Reply<pb::StatsResponse> {
        let stats = self.task.stats().await?;
        let metrics = convert::metrics(stats, SystemTime::now());
        Ok(Response::new(pb::StatsResponse {
            metrics: Some(metrics),
        }))
    }

    async fn pause(&self, _: Request<pb::PauseRequest>) -> Reply<pb::PauseResponse> {
        self.task.pause().await?;
        Ok(Response::new(pb::PauseResponse {}))
    }

    async fn resume(&self, _: Request<pb::ResumeRequest>) -> Reply<pb::ResumeResponse> {
        self.task.resume().await?;
        Ok(Response::new(pb::ResumeResponse {}))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Reply<pb::DeleteResponse> {
        let exit = self.task.delete(&req.get_ref().exec_id).await?;
        Ok(Response::new(convert::delete(&exit)))
    }

    async fn shutdown(&self, req: Request<pb::ShutdownRequest>) -> Reply<pb::ShutdownResponse> {
        self.task.shutdown(req.get_ref().now).await?;
        Ok(Response::new(pb::ShutdownResponse {}))
    }

    async fn info(&self, _: Request<pb::InfoRequest>) -> Reply<pb::InfoResponse> {
        let info = self.task.info().await;
        Ok(Response::new(pb::InfoResponse {
            shim_pid: info.shim_pid,
            task_pid: info.task_pid,
            version: berth_rpc::version::VERSION.to_string(),
            id: self.task.id().to_string(),
            bundle: info.bundle.to_string_lossy().into_owned(),
        }))
    }
}

/// Wires an attachment to the call: output frames out (until the output closes or the
/// client leaves), stdin messages in.
fn attach_streams(
    attachment: Attachment,
    mut inbound: tonic::Streaming<pb::AttachRequest>,
) -> BoxStream<pb::AttachResponse> {
    let (tx, rx) = mpsc::channel::<Result<pb::AttachResponse, Status>>(64);
    let Attachment {
        output,
        streams,
        mut stdin,
    } = attachment;
    if let Some(mut output) = output {
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    f = output.recv() => f,
                    () = tx.closed() => return,
                };
                match frame {
                    Ok(f) if streams.contains(&f.stream) => {
                        let msg = pb::AttachResponse {
                            output: Some(berth_proto::types::v1::StdioFrame {
                                stream: convert::stream(f.stream) as i32,
                                data: f.data.to_vec(),
                            }),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            frames = n,
                            "an attached client is too slow; it missed output (the log has it)"
                        );
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Ok(Some(msg)) = inbound.message().await {
            match (msg.msg, &stdin) {
                (Some(pb::attach_request::Msg::Stdin(data)), Some(w)) => {
                    if let Err(e) = w.write(&data).await {
                        tracing::debug!(error = %e, "attached stdin");
                        break;
                    }
                }
                (Some(pb::attach_request::Msg::CloseStdin(true)), Some(_)) => {
                    if let Some(w) = stdin.take() {
                        w.close().await;
                    }
                    break;
                }
                _ => {}
            }
        }
        if let Some(w) = stdin {
            w.detach().await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
