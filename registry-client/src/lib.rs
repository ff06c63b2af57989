//! OCI distribution client: image references, auth, manifests, blob transfer.
//!
//! ```no_run
//! # async fn f() -> berth_registry_client::Result<()> {
//! use berth_registry_client::{Client, ClientConfig, Reference};
//! let client = Client::new(ClientConfig::default())?;
//! let repo = client.repository(&Reference::parse("localhost:5000/app:v1")?, None, false)?;
//! let manifest = repo.resolve().await?;
//! println!("{} {}", manifest.descriptor.media_type, manifest.descriptor.digest);
//! # Ok(()) }
//! ```
//!
//! - [`Client`] holds the configuration (insecure registries, mirrors, `certs.d`, stall
//!   timeout, retries), one connection pool per registry host and the token cache.
//! - [`Repository`] does the protocol: [`Repository::ping`] (login), [`Repository::resolve`],
//!   [`Repository::fetch_manifest`], [`Repository::fetch_blob`] (streamed, resumed),
//!   [`Repository::blob_exists`], [`Repository::mount_blob`], [`Repository::push_blob`],
//!   [`Repository::push_manifest`].
//! - [`credentials`] reads and writes Docker-format `config.json` files.

pub mod auth;
pub mod blob;
mod client;
pub mod credentials;
pub mod error;
pub mod manifest;
pub mod reference;
mod repository;
mod tls;

pub use client::{is_loopback, Client, ClientConfig, Credentials, DOCKER_HUB_REGISTRY};
pub use error::{Error, Result};
pub use manifest::{media_type, sha256_digest, MAX_MANIFEST_SIZE};
pub use reference::Reference;
pub use repository::Repository;

/// A content descriptor: what a manifest or index points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type, e.g. `application/vnd.oci.image.manifest.v1+json`.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

/// A manifest or index as fetched: its descriptor (media type checked, digest computed)
/// and its exact bytes.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Media type, digest and size of `bytes`.
    pub descriptor: Descriptor,
    /// The document as the registry sent it.
    pub bytes: bytes::Bytes,
}

impl Manifest {
    /// True for an image index or Docker manifest list.
    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.descriptor.media_type)
    }
}

/// A blob's bytes, in order.
pub type BlobStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<bytes::Bytes>> + Send>>;
