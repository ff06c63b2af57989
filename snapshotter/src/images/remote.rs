//! The registry side of pull, push and login: [`Registries`] holds the registry client
//! built from the `[snapshotter]` configuration, and [`Remote`] adapts one of its
//! repositories to [`Source`] and [`Sink`].

use berth_proto::types::v1::RegistryAuth;
use berth_registry_client::{Client, Credentials, Reference, Repository};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use crate::content::ByteStream;
use crate::error::{Error, Result};
use crate::images::pull::{Fetched, Source};
use crate::images::push::Sink;
use crate::images::record::Descriptor;
use crate::registry_config::RegistryConfig;

/// Docker Hub's names for itself, all meaning `docker.io`.
const DOCKER_HUB_ALIASES: [&str; 4] = [
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
];

/// The registry client and the settings it was built from.
pub struct Registries {
    client: Client,
    config: RegistryConfig,
}

impl std::fmt::Debug for Registries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registries")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registries {
    /// Builds the client (reading the certificates directory).
    pub fn new(config: RegistryConfig) -> Result<Self> {
        config.validate()?;
        let client = Client::new(config.client_config())?;
        Ok(Registries { client, config })
    }

    /// The settings.
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The repository of `reference`, with the request's credentials when they are for
    /// its registry.
    pub fn open(
        &self,
        reference: &Reference,
        auth: Option<RegistryAuth>,
        insecure: bool,
    ) -> Result<Remote> {
        let credentials = credentials_for(reference.domain(), auth);
        let repo = self.client.repository(reference, credentials, insecure)?;
        Ok(Remote { repo })
    }

    /// Checks the credentials against their registry (`docker.io` when none is named).
    pub async fn login(&self, auth: RegistryAuth, insecure: bool) -> Result<()> {
        let host = registry_host(&auth.server_address);
        // Any repository of the registry: ping only talks to its `/v2/`.
        let reference = Reference::parse(&format!("{host}/library/berth-login"))?;
        let credentials = credentials_from(&auth);
        if credentials.is_none() {
            return Err(Error::InvalidArgument(
                "login needs a user name and password, or a token".into(),
            ));
        }
        let repo = self.client.repository(&reference, credentials, insecure)?;
        tracing::info!(registry = %host, user = %auth.username, "checking credentials");
        repo.ping().await?;
        Ok(())
    }
}

/// The registry host a `server_address` names: scheme and path dropped, Docker Hub's
/// aliases (and its v1 URL) folded to `docker.io`; empty means `docker.io`.
pub fn registry_host(server_address: &str) -> String {
    let s = server_address.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or("").to_ascii_lowercase();
    if host.is_empty() || DOCKER_HUB_ALIASES.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

fn credentials_from(auth: &RegistryAuth) -> Option<Credentials> {
    let c = Credentials {
        username: auth.username.clone(),
        password: auth.password.clone(),
        identity_token: auth.identity_token.clone(),
        registry_token: auth.registry_token.clone(),
    };
    (!c.is_empty()).then_some(c)
}

/// The credentials of `auth` when they are for `domain` (or name no registry); credentials
/// for another registry are never sent.
fn credentials_for(domain: &str, auth: Option<RegistryAuth>) -> Option<Credentials> {
    let auth = auth?;
    if !auth.server_address.is_empty()
        && registry_host(&auth.server_address) != registry_host(domain)
    {
        tracing::warn!(
            registry = %domain,
            credentials_for = %auth.server_address,
            "ignoring credentials meant for another registry"
        );
        return None;
    }
    credentials_from(&auth)
}

/// One repository of a registry, as a pull's source or a push's sink.
#[derive(Clone)]
pub struct Remote {
    repo: Repository,
}

fn fetched(m: berth_registry_client::Manifest) -> Fetched {
    Fetched {
        descriptor: Descriptor {
            media_type: m.descriptor.media_type,
            digest: m.descriptor.digest,
            size: i64::try_from(m.descriptor.size).unwrap_or(i64::MAX),
            annotations: Default::default(),
        },
        bytes: m.bytes,
    }
}

impl Source for Remote {
    fn reference(&self) -> &Reference {
        self.repo.reference()
    }

    async fn resolve(&self) -> Result<Fetched> {
        Ok(fetched(self.repo.resolve().await?))
    }

    async fn fetch_manifest(&self, digest: &str) -> Result<Fetched> {
        Ok(fetched(self.repo.fetch_manifest(digest).await?))
    }

    async fn fetch_blob(&self, digest: &str, size: u64, offset: u64) -> Result<ByteStream> {
        let stream = self.repo.fetch_blob(digest, size, offset).await?;
        Ok(Box::pin(stream.map_err(Error::from)))
    }
}

impl Sink for Remote {
    fn reference(&self) -> &Reference {
        self.repo.reference()
    }

    async fn blob_exists(&self, digest: &str) -> Result<Option<u64>> {
        Ok(self.repo.blob_exists(digest).await?)
    }

    async fn mount_blob(&self, digest: &str, from: &str) -> Result<bool> {
        Ok(self.repo.mount_blob(digest, from).await?)
    }

    async fn push_blob(&self, digest: &str, size: u64, data: ByteStream) -> Result<()> {
        let data = data.map(|chunk| {
            chunk.map_err(|e| {
                berth_registry_client::Error::Io(std::io::Error::other(format!(
                    "read from the content store: {e}"
                )))
            })
        });
        Ok(self.repo.push_blob(digest, size, Box::pin(data)).await?)
    }

    async fn push_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String> {
        Ok(self
            .repo
            .push_manifest(tag_or_digest, media_type, bytes)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_name_registries() {
        assert_eq!(registry_host(""), "docker.io");
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_host("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("GHCR.io"), "ghcr.io");
    }

    #[test]
    fn credentials_only_go_to_their_registry() {
        let auth = |server: &str| RegistryAuth {
            server_address: server.into(),
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert!(credentials_for("127.0.0.1:5000", Some(auth("127.0.0.1:5000"))).is_some());
        assert!(credentials_for("127.0.0.1:5000", Some(auth(""))).is_some());
        assert!(credentials_for("docker.io", Some(auth("https://index.docker.io/v1/"))).is_some());
        assert!(credentials_for("ghcr.io", Some(auth("docker.io"))).is_none());
        assert!(credentials_for("ghcr.io", Some(RegistryAuth::default())).is_none());
        assert!(credentials_for("ghcr.io", None).is_none());
    }
}
