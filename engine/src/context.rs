//! What every engine handler shares: directories, metadata, events, backing services.

use std::path::PathBuf;

use berth_rpc::Address;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::images::v1::ListRequest;

use crate::error::Result;
use crate::events::EventLog;

/// Shared state of a running engine.
pub struct Context {
    /// Id of this installation, stable across restarts.
    pub id: String,
    /// Persistent data directory.
    pub root: PathBuf,
    /// Runtime state directory.
    pub state: PathBuf,
    /// The engine's metadata database.
    pub db: sled::Db,
    /// The event log.
    pub events: EventLog,
    /// The snapshotter service.
    pub snapshotter: Backend,
    /// The builder service.
    pub builder: Backend,
    /// The berth-shim executable spawned for each container.
    pub shim_bin: PathBuf,
    /// Whether shims log JSON lines (as the engine does).
    pub log_format_json: bool,
    /// Addresses the API is served on.
    pub listen: Vec<Address>,
    /// Warnings to show in `Info`.
    pub warnings: Vec<String>,
    /// Cancelled when the engine begins to shut down; ends long streams.
    pub shutdown: CancellationToken,
}

/// Object counts for `Info`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Containers in any state.
    pub containers: u64,
    /// Running containers.
    pub running: u64,
    /// Paused containers.
    pub paused: u64,
    /// Image records.
    pub images: u64,
}

impl Context {
    /// Counts containers (engine records) and images (snapshotter records).
    pub async fn counts(&self, warnings: &mut Vec<String>) -> Result<Counts> {
        let store = crate::containers::Store::open(&self.db)?;
        let (mut containers, mut running, mut paused) = (0, 0, 0);
        for r in store.all()? {
            containers += 1;
            match r.status() {
                berth_proto::engine::v1::ContainerStatus::Paused => paused += 1,
                s if r.is_running() && s != berth_proto::engine::v1::ContainerStatus::Paused => {
                    running += 1
                }
                _ => {}
            }
        }
        let mut images = ImagesClient::new(self.snapshotter.channel.clone());
        let images = match images.list(ListRequest::default()).await {
            Ok(list) => list.into_inner().images.len() as u64,
            // A snapshotter without image records yet has none to count.
            Err(s) if s.code() == tonic::Code::Unimplemented => 0,
            // Info must still answer while the snapshotter restarts; say why it is 0.
            Err(s) => {
                warnings.push(format!("image count unavailable: {}", s.message()));
                0
            }
        };
        Ok(Counts {
            containers,
            running,
            paused,
            images,
        })
    }
}
