//! `berth.engine.v1.System`: versions, host and engine facts, events.

use std::sync::Arc;

use berth_proto::engine::v1::system_server::{System, SystemServer};
use berth_proto::engine::v1::{
    ComponentVersion, DiskUsageRequest, DiskUsageResponse, Event, EventsRequest, InfoRequest,
    InfoResponse, VersionRequest, VersionResponse,
};
use futures::StreamExt;
use tonic::{Request, Response, Status};

use crate::context::Context;
use crate::events::Filter;
use crate::host::{self, CgroupLayout};

/// The System service.
#[derive(Clone)]
pub struct SystemService {
    ctx: Arc<Context>,
}

impl SystemService {
    /// The generated server around it.
    pub fn server(ctx: Arc<Context>) -> SystemServer<Self> {
        SystemServer::new(SystemService { ctx })
    }
}

type Stream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl System for SystemService {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        let own = berth_rpc::version::response("berth-engine");
        let (snapshotter, builder) =
            tokio::join!(self.ctx.snapshotter.version(), self.ctx.builder.version());
        Ok(Response::new(VersionResponse {
            api_version: own.api_version,
            engine: Some(ComponentVersion {
                name: own.component,
                version: own.version,
                git_commit: own.git_commit,
                rust_version: own.rust_version,
                address: self
                    .ctx
                    .listen
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                error: String::new(),
            }),
            snapshotter: Some(snapshotter),
            builder: Some(builder),
            platform: own.platform,
            kernel_version: host::kernel_release(),
        }))
    }

    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ctx = &self.ctx;
        let layout = CgroupLayout::detect(std::path::Path::new("/sys/fs/cgroup"));
        let (snap, build) = tokio::join!(ctx.snapshotter.status(), ctx.builder.status());
        let mut warnings = ctx.warnings.clone();
        let counts = ctx.counts(&mut warnings).await?;
        Ok(Response::new(InfoResponse {
            id: ctx.id.clone(),
            root_dir: ctx.root.display().to_string(),
            state_dir: ctx.state.display().to_string(),
            storage_driver: "overlayfs".into(),
            cgroup_version: layout.map(|l| l.version()).unwrap_or("none").into(),
            cgroup_layout: layout.map(|l| l.name()).unwrap_or("none").into(),
            kernel_version: host::kernel_release(),
            operating_system: host::operating_system(),
            os_type: std::env::consts::OS.into(),
            architecture: host::machine(),
            cpus: host::cpus(),
            memory_bytes: host::memory_bytes(),
            hostname: host::hostname(),
            server_version: berth_rpc::version::VERSION.into(),
            containers: counts.containers,
            containers_running: counts.running,
            containers_paused: counts.paused,
            containers_stopped: counts.containers - counts.running - counts.paused,
            images: counts.images,
            services: vec![snap, build],
            listen_addresses: ctx.listen.iter().map(ToString::to_string).collect(),
            last_event_seq: ctx.events.latest_seq(),
            warnings,
        }))
    }

    async fn disk_usage(
        &self,
        _: Request<DiskUsageRequest>,
    ) -> Result<Response<DiskUsageResponse>, Status> {
        Ok(Response::new(crate::images::disk_usage(&self.ctx).await?))
    }

    async fn events(&self, req: Request<EventsRequest>) -> Result<Response<Stream<Event>>, Status> {
        let req = req.into_inner();
        let filter = Filter::parse(&req.filters)?;
        let stream = self.ctx.events.subscribe(req.since, filter);
        let until = match req.until {
            Some(ts) => Some(
                std::time::SystemTime::try_from(ts)
                    .map_err(|e| Status::invalid_argument(format!("bad until time: {e}")))?,
            ),
            None => None,
        };
        let shutdown = self.ctx.shutdown.clone().cancelled_owned();
        let stream = stream
            .take_while(move |e| {
                let before = match (until, &e.time) {
                    (Some(u), Some(t)) => std::time::SystemTime::try_from(*t)
                        .map(|t| t <= u)
                        .unwrap_or(true),
                    _ => true,
                };
                futures::future::ready(before)
            })
            .take_until(shutdown);
        let stream: Stream<Event> = match until {
            Some(u) => {
                let wait = u
                    .duration_since(std::time::SystemTime::now())
                    .unwrap_or_default();
                Box::pin(stream.take_until(tokio::time::sleep(wait)).map(Ok))
            }
            None => Box::pin(stream.map(Ok)),
        };
        Ok(Response::new(stream))
    }
}
