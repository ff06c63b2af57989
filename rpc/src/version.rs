//! Build information and the `berth.version.v1.Version` service every process serves.

use berth_proto::version::v1::{version_server, VersionRequest, VersionResponse};

/// Version of the berth binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Git commit they were built from.
pub const GIT_COMMIT: &str = env!("BERTH_GIT_COMMIT");
/// The compiler that built them.
pub const RUST_VERSION: &str = env!("BERTH_RUSTC_VERSION");
/// Version of the gRPC API.
pub const API_VERSION: &str = "v1";

/// The host platform in OCI spelling, e.g. `linux/amd64`.
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// This process's answer to `Version`.
pub fn response(component: &str) -> VersionResponse {
    VersionResponse {
        component: component.to_string(),
        version: VERSION.to_string(),
        git_commit: GIT_COMMIT.to_string(),
        rust_version: RUST_VERSION.to_string(),
        api_version: API_VERSION.to_string(),
        platform: platform(),
    }
}

/// Serves `Version` for one component.
#[derive(Debug, Clone)]
pub struct VersionService {
    component: &'static str,
}

impl VersionService {
    /// A server for the named component, e.g. `berth-snapshotter`.
    pub fn server(component: &'static str) -> version_server::VersionServer<Self> {
        version_server::VersionServer::new(VersionService { component })
    }
}

#[tonic::async_trait]
impl version_server::Version for VersionService {
    async fn version(
        &self,
        _: tonic::Request<VersionRequest>,
    ) -> Result<tonic::Response<VersionResponse>, tonic::Status> {
        Ok(tonic::Response::new(response(self.component)))
    }
}
