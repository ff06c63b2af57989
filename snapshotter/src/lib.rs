//! berth-snapshotter: owns image data — blobs by digest (content), layers as overlayfs
//! snapshots, and image records — and pulls and pushes them through `registry-client`.

pub mod archive;
pub mod content;
pub mod digest;
pub mod error;
pub mod gc;
pub mod images;
pub mod layer;
pub mod metadata;
pub mod mount;
pub mod registry_config;
pub mod snapshots;
pub mod store;

pub use error::{Error, Result};

use berth_rpc::cli::Settings;
use berth_rpc::serve::ServiceSet;

/// Opens the snapshotter's state under the root, sweeps what a crash left behind, and
/// returns its gRPC services: content, snapshots and images (registries configured with
/// the defaults).
pub async fn services(settings: &Settings) -> Result<ServiceSet> {
    services_with(settings, registry_config::RegistryConfig::default()).await
}

/// [`services`] with the registry settings of the configuration file.
pub async fn services_with(
    settings: &Settings,
    registries: registry_config::RegistryConfig,
) -> Result<ServiceSet> {
    let registries = std::sync::Arc::new(images::remote::Registries::new(registries)?);
    let store = store::Store::open(&settings.root).await?;
    let content = store.content.clone();
    tokio::task::spawn_blocking(move || content.sweep(content::DEFAULT_INGEST_MAX_AGE))
        .await
        .map_err(|e| Error::io("sweep the content store", std::io::Error::other(e)))??;
    Ok(ServiceSet::new("berth-snapshotter")
        .with(content::service(store.content.clone()))
        .with(snapshots::store_service(store.clone()))
        .with(images::service::service(store, registries)))
}
