//! `berth.engine.v1.Containers`: container records, and their lifecycle through one
//! `berth-shim` per running container.
//!
//! The [`Manager`] holds what the operations share: the record store (sled), a per-container
//! [`Live`] entry with the lock that serialises its lifecycle operations, the client of its
//! shim while it runs and the channel its exits are announced on. There is no global lock:
//! `ps`, `inspect` and `logs` read the store while a container is being stopped. Each
//! operation lives in its own file; [`ContainersService`] is the thin gRPC adapter.

mod attach;
mod bundle;
mod create;
mod detach_keys;
mod exec;
mod inspect;
mod kill;
mod list;
mod logs;
mod monitor;
mod names;
mod options;
mod pause;
mod record;
mod remove;
pub mod restart_policy;
pub mod restore;
mod seccomp;
mod signal;
mod start;
mod stats;
mod stop;
mod top;
mod user;
mod wait;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_proto::engine::v1::containers_server::{Containers, ContainersServer};
use berth_proto::engine::v1::{
    ContainersAttachRequest, ContainersAttachResponse, ContainersExecRequest,
    ContainersExecResponse, ContainersPauseRequest, ContainersPauseResponse,
    ContainersStatsRequest, ContainersStatsResponse, ContainersTopRequest, ContainersTopResponse,
    ContainersUnpauseRequest, ContainersUnpauseResponse,
};
use berth_proto::engine::v1::{
    ContainersCreateRequest, ContainersCreateResponse, ContainersInspectRequest,
    ContainersInspectResponse, ContainersKillRequest, ContainersKillResponse,
    ContainersListRequest, ContainersListResponse, ContainersLogsRequest, ContainersLogsResponse,
    ContainersRemoveRequest, ContainersRemoveResponse, ContainersRenameRequest,
    ContainersRenameResponse, ContainersRestartRequest, ContainersRestartResponse,
    ContainersStartRequest, ContainersStartResponse, ContainersStopRequest, ContainersStopResponse,
    ContainersWaitRequest, ContainersWaitResponse, ExitStatus,
};
use berth_proto::shim::v1::task_client::TaskClient;
use berth_proto::snapshots::v1::snapshots_client::SnapshotsClient;
use tokio::sync::watch;
use tonic::codegen::BoxStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::context::Context;
use crate::error::{Error, Result};
pub use record::{Record, Store};

/// How long the exit status of a removed container is kept for late `Wait` calls (a
/// `run --rm` whose container ended and was removed before its Wait arrived).
const GRAVEYARD_TTL: Duration = Duration::from_secs(60);

/// Exits of one container, as announced to waiters.
#[derive(Debug, Clone, Default)]
pub struct Exits {
    /// Runs that ended since the engine started.
    pub count: u64,
    /// Status of the last one.
    pub last: Option<ExitStatus>,
    /// The container was removed.
    pub removed: bool,
}

/// What the engine holds in memory for one container.
pub struct Live {
    /// Serialises create/start/stop/restart/remove of this container.
    pub op: tokio::sync::Mutex<()>,
    /// The Task API of its shim, while one runs.
    shim: Mutex<Option<TaskClient<Channel>>>,
    /// Exit announcements.
    pub exits: watch::Sender<Exits>,
    /// Clients attached before the container's next start, joined by Start.
    pending: Mutex<Vec<attach::PendingAttach>>,
    /// The restart policy's last back-off.
    pub restart_delay: Mutex<Option<Duration>>,
}

impl Live {
    fn new() -> Self {
        Live {
            op: tokio::sync::Mutex::new(()),
            shim: Mutex::new(None),
            exits: watch::Sender::new(Exits::default()),
            pending: Mutex::new(Vec::new()),
            restart_delay: Mutex::new(None),
        }
    }

    /// The shim's client, if a shim runs.
    pub fn shim(&self) -> Option<TaskClient<Channel>> {
        self.shim.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_shim(&self, shim: Option<TaskClient<Channel>>) {
        *self.shim.lock().unwrap_or_else(|p| p.into_inner()) = shim;
    }
}

/// Shared state of the container operations.
pub struct Manager {
    /// The engine's context.
    pub ctx: Arc<Context>,
    /// Container records.
    pub store: Store,
    live: Mutex<HashMap<String, Arc<Live>>>,
    graveyard: Mutex<HashMap<String, (ExitStatus, Instant)>>,
    host: bundle::Host,
    /// Wakes the flusher.
    flush: Arc<tokio::sync::Notify>,
}

/// Writes the database to disk whenever asked, one flush at a time: requests made during
/// a flush are served by the next one. (Concurrent sled flushes each occupy a thread of
/// sled's I/O pool while waiting for a buffer that only a pool thread can write: enough
/// of them at once deadlock the database.)
fn spawn_flusher(db: sled::Db, wake: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            let db = db.clone();
            match tokio::task::spawn_blocking(move || db.flush()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "flushing the metadata database"),
                Err(e) => tracing::warn!(error = %e, "the database flush did not finish"),
            }
        }
    });
}

impl Manager {
    /// Opens the records in the engine's database.
    pub fn new(ctx: Arc<Context>) -> Result<Arc<Self>> {
        let store = Store::open(&ctx.db)?;
        berth_rpc::listen::create_dir(&ctx.state.join("containers"), 0o711)?;
        berth_rpc::listen::create_dir(&ctx.root.join("containers"), 0o711)?;
        let flush = Arc::new(tokio::sync::Notify::new());
        spawn_flusher(ctx.db.clone(), flush.clone());
        Ok(Arc::new(Manager {
            flush,
            ctx,
            store,
            live: Mutex::new(HashMap::new()),
            graveyard: Mutex::new(HashMap::new()),
            host: bundle::Host::detect(),
        }))
    }

    /// The bundle and shim directory: `<state>/containers/<id>`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.ctx.state.join("containers").join(id)
    }

    /// The persistent directory: `<root>/containers/<id>` (log files, a copy of the bundle
    /// to rebuild the state directory from after a reboot).
    pub fn root_dir(&self, id: &str) -> PathBuf {
        self.ctx.root.join("containers").join(id)
    }

    /// A client of the snapshotter's snapshots service.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.ctx.snapshotter.channel.clone())
    }

    /// The mounts of the container's root filesystem (its snapshot).
    pub async fn rootfs_mounts(&self, id: &str) -> Result<Vec<berth_proto::types::v1::Mount>> {
        Ok(self
            .snapshots()
            .mounts(berth_proto::snapshots::v1::MountsRequest {
                key: id.to_string(),
            })
            .await
            .map_err(|s| Error::downstream("snapshotter", s))?
            .into_inner()
            .mounts)
    }

    /// The in-memory entry of `id`, made on first use.
    pub fn live(&self, id: &str) -> Arc<Live> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Live::new()))
            .clone()
    }

    fn forget(&self, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Remembers the last exit status of a removed container for a while.
    fn bury(&self, id: &str, status: ExitStatus) {
        let mut g = self.graveyard.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|_, (_, at)| at.elapsed() < GRAVEYARD_TTL);
        g.insert(id.to_string(), (status, Instant::now()));
    }

    /// The last exit status of a recently removed container, by full id.
    fn buried(&self, id: &str) -> Option<ExitStatus> {
        let g = self.graveyard.lock().unwrap_or_else(|p| p.into_inner());
        g.get(id)
            .filter(|(_, at)| at.elapsed() < GRAVEYARD_TTL)
            .map(|(s, _)| s.clone())
    }

    /// The container `given` names: a full id, a name (with or without Docker's "/"), or
    /// a unique id prefix.
    pub fn resolve(&self, given: &str) -> Result<Record> {
        let given = given.trim();
        if given.is_empty() {
            return Err(Error::InvalidArgument("no container given".into()));
        }
        if given.len() == 64 {
            if let Some(r) = self.store.get(given)? {
                return Ok(r);
            }
        }
        let name = given.strip_prefix('/').unwrap_or(given);
        if let Some(id) = self.store.id_of_name(name)? {
            if let Some(r) = self.store.get(&id)? {
                return Ok(r);
            }
        }
        if given.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids = self.store.ids_with_prefix(&given.to_ascii_lowercase(), 2)?;
            match ids.as_slice() {
                [one] => {
                    if let Some(r) = self.store.get(one)? {
                        return Ok(r);
                    }
                }
                [] => {}
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "Multiple IDs found with provided prefix: {given}"
                    )))
                }
            }
        }
        Err(record::no_such_container(given))
    }

    /// Asks for the database to be written to disk soon: the state changes of containers
    /// (created, running, exited, removed) reach the disk within milliseconds instead of
    /// sled's periodic flush. A crash in between is covered by live restore, which trusts
    /// the shims over the records.
    pub fn persist(&self) {
        self.flush.notify_one();
    }

    /// Publishes a container event with its name and image.
    pub fn publish<'a>(
        &self,
        action: &str,
        rec: &Record,
        extra: impl IntoIterator<Item = (&'a str, String)>,
    ) {
        let attrs = [("name", rec.name.clone()), ("image", rec.image.clone())]
            .into_iter()
            .chain(extra);
        self.ctx.events.publish("container", action, &rec.id, attrs);
    }
}

/// The containers created from the image `image_id` ("sha256:…").
pub fn image_users(ctx: &Context, image_id: &str) -> Result<Vec<Record>> {
    Ok(Store::open(&ctx.db)?
        .all()?
        .into_iter()
        .filter(|r| r.image_id == image_id)
        .collect())
}

/// `system df`'s containers entry: how many, how many run, the bytes of their writable
/// layers (reclaimable: those of stopped ones).
pub async fn disk_usage(ctx: &Context) -> Result<berth_proto::engine::v1::DiskUsageEntry> {
    let recs = Store::open(&ctx.db)?.all()?;
    let mut snapshots = SnapshotsClient::new(ctx.snapshotter.channel.clone());
    let mut out = berth_proto::engine::v1::DiskUsageEntry {
        kind: "containers".into(),
        total: recs.len() as u64,
        ..Default::default()
    };
    for r in &recs {
        let size = snapshots
            .usage(berth_proto::snapshots::v1::UsageRequest { key: r.id.clone() })
            .await
            .map(|u| u.into_inner().size.max(0) as u64)
            .unwrap_or(0);
        out.size_bytes += size;
        if r.is_running() {
            out.active += 1;
        } else {
            out.reclaimable_bytes += size;
        }
    }
    Ok(out)
}

/// The Containers service.
#[derive(Clone)]
pub struct ContainersService {
    m: Arc<Manager>,
}

impl ContainersService {
    /// The generated server around it.
    pub fn server(m: Arc<Manager>) -> ContainersServer<Self> {
        ContainersServer::new(ContainersService { m })
    }
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn create(
        &self,
        req: Request<ContainersCreateRequest>,
    ) -> Result<Response<ContainersCreateResponse>, Status> {
        Ok(Response::new(
            create::create(&self.m, req.into_inner()).await?,
        ))
    }

    async fn start(
        &self,
        req: Request<ContainersStartRequest>,
    ) -> Result<Response<ContainersStartResponse>, Status> {
        start::start(&self.m, &req.into_inner().id).await?;
        Ok(Response::new(ContainersStartResponse {}))
    }

    async fn stop(
        &self,
        req: Request<ContainersStopRequest>,
    ) -> Result<Response<ContainersStopResponse>, Status> {
        let req = req.into_inner();
        stop::stop(&self.m, &req.id, req.timeout, &req.signal).await?;
        Ok(Response::new(ContainersStopResponse {}))
    }

    async fn kill(
        &self,
        req: Request<ContainersKillRequest>,
    ) -> Result<Response<ContainersKillResponse>, Status> {
        let req = req.into_inner();
        kill::kill(&self.m, &req.id, &req.signal).await?;
        Ok(Response::new(ContainersKillResponse {}))
    }

    async fn restart(
        &self,
        req: Request<ContainersRestartRequest>,
    ) -> Result<Response<ContainersRestartResponse>, Status> {
        let req = req.into_inner();
        stop::restart(&self.m, &req.id, req.timeout, &req.signal).await?;
        Ok(Response::new(ContainersRestartResponse {}))
    }

    async fn wait(
        &self,
        req: Request<ContainersWaitRequest>,
    ) -> Result<Response<ContainersWaitResponse>, Status> {
        let req = req.into_inner();
        let status = wait::wait(&self.m, &req.id, req.condition()).await?;
        Ok(Response::new(ContainersWaitResponse {
            status: Some(status),
        }))
    }

    async fn remove(
        &self,
        req: Request<ContainersRemoveRequest>,
    ) -> Result<Response<ContainersRemoveResponse>, Status> {
        let req = req.into_inner();
        remove::remove(&self.m, &req.id, req.force).await?;
        Ok(Response::new(ContainersRemoveResponse {}))
    }

    async fn rename(
        &self,
        req: Request<ContainersRenameRequest>,
    ) -> Result<Response<ContainersRenameResponse>, Status> {
        let req = req.into_inner();
        let new_name = req.new_name.strip_prefix('/').unwrap_or(&req.new_name);
        if !names::valid_name(new_name) {
            return Err(Error::InvalidArgument(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            ))
            .into());
        }
        let rec = self.m.resolve(&req.id)?;
        let old = rec.name.clone();
        let rec = self.m.store.rename(&rec.id, new_name)?;
        self.m.persist();
        self.m
            .publish("rename", &rec, [("oldName", format!("/{old}"))]);
        Ok(Response::new(ContainersRenameResponse {}))
    }

    async fn list(
        &self,
        req: Request<ContainersListRequest>,
    ) -> Result<Response<ContainersListResponse>, Status> {
        Ok(Response::new(list::list(&self.m, req.into_inner()).await?))
    }

    async fn inspect(
        &self,
        req: Request<ContainersInspectRequest>,
    ) -> Result<Response<ContainersInspectResponse>, Status> {
        Ok(Response::new(
            inspect::inspect(&self.m, req.into_inner()).await?,
        ))
    }

    async fn logs(
        &self,
        req: Request<ContainersLogsRequest>,
    ) -> Result<Response<BoxStream<ContainersLogsResponse>>, Status> {
        Ok(Response::new(logs::logs(&self.m, req.into_inner()).await?))
    }

    async fn attach(
        &self,
        req: Request<tonic::Streaming<ContainersAttachRequest>>,
    ) -> Result<Response<BoxStream<ContainersAttachResponse>>, Status> {
        Ok(Response::new(
            attach::attach(&self.m, req.into_inner()).await?,
        ))
    }

    async fn exec(
        &self,
        req: Request<tonic::Streaming<ContainersExecRequest>>,
    ) -> Result<Response<BoxStream<ContainersExecResponse>>, Status> {
        Ok(Response::new(exec::exec(&self.m, req.into_inner()).await?))
    }

    async fn pause(
        &self,
        req: Request<ContainersPauseRequest>,
    ) -> Result<Response<ContainersPauseResponse>, Status> {
        pause::pause(&self.m, &req.into_inner().id).await?;
        Ok(Response::new(ContainersPauseResponse {}))
    }

    async fn unpause(
        &self,
        req: Request<ContainersUnpauseRequest>,
    ) -> Result<Response<ContainersUnpauseResponse>, Status> {
        pause::unpause(&self.m, &req.into_inner().id).await?;
        Ok(Response::new(ContainersUnpauseResponse {}))
    }

    async fn top(
        &self,
        req: Request<ContainersTopRequest>,
    ) -> Result<Response<ContainersTopResponse>, Status> {
        Ok(Response::new(top::top(&self.m, req.into_inner()).await?))
    }

    async fn stats(
        &self,
        req: Request<ContainersStatsRequest>,
    ) -> Result<Response<BoxStream<ContainersStatsResponse>>, Status> {
        Ok(Response::new(
            stats::stats(&self.m, req.into_inner()).await?,
        ))
    }
}
