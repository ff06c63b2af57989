//! The engine's connections to the services behind it (snapshotter, builder), whether it
//! runs them itself or something else does.

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::engine::v1::{ComponentVersion, ServiceStatus};
use berth_proto::version::v1::{version_client::VersionClient, VersionRequest};
use berth_rpc::Address;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::events::EventLog;
use crate::settings::{Backend as Source, Settings};
use crate::supervisor::{self, ChildState, Supervised};

/// One backing service.
#[derive(Clone)]
pub struct Backend {
    /// "snapshotter" or "builder".
    pub name: &'static str,
    /// Where it listens.
    pub address: Address,
    /// A channel that reconnects by itself after the service restarts.
    pub channel: Channel,
    /// Set when the engine runs the service.
    pub child: Option<Arc<Mutex<ChildState>>>,
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Backend {
    /// Connects to an external service, or starts and supervises an embedded one until
    /// `stop` is cancelled. The returned supervisor must be awaited on shutdown.
    pub fn start(
        name: &'static str,
        source: &Source,
        settings: &Settings,
        events: &EventLog,
        stop: &CancellationToken,
    ) -> Result<(Self, Option<Supervised>)> {
        let (address, supervised) = match source {
            Source::External(addr) => (addr.clone(), None),
            Source::Embedded(bin) => {
                if !is_executable(bin) {
                    return Err(Error::Unavailable {
                        service: name,
                        message: format!(
                            "{} is not an executable file; install berth-{name} beside \
                             berth-engine, or name it with --{name}-bin, or use a running \
                             one with --{name}-addr",
                            bin.display()
                        ),
                    });
                }
                let socket = settings.common.state.join(format!("{name}.sock"));
                let mut args: Vec<OsString> = vec![
                    "--root".into(),
                    settings.common.root.clone().into(),
                    "--state".into(),
                    settings.common.state.clone().into(),
                    "--socket".into(),
                    socket.clone().into(),
                    "--log-format".into(),
                    match settings.common.log_format {
                        berth_rpc::logging::LogFormat::Text => "text".into(),
                        berth_rpc::logging::LogFormat::Json => "json".into(),
                    },
                ];
                if let Some(cfg) = &settings.config_file {
                    args.extend(["--config".into(), cfg.clone().into()]);
                }
                let spec = supervisor::Spec {
                    name,
                    bin: bin.clone(),
                    args,
                    socket: socket.clone(),
                };
                let sup = supervisor::start(spec, events.clone(), stop.child_token());
                (Address::Unix(socket), Some(sup))
            }
        };
        let channel = berth_rpc::connect::connect_lazy(&address, None)?;
        let backend = Backend {
            name,
            address,
            channel,
            child: supervised.as_ref().map(|s| s.state.clone()),
        };
        Ok((backend, supervised))
    }

    /// Health and process facts for `Info`.
    pub async fn status(&self) -> ServiceStatus {
        let health = match supervisor::health(&self.address).await {
            Some(s) => s.as_str_name().to_string(),
            None => "UNREACHABLE".to_string(),
        };
        let child = self
            .child
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).clone());
        ServiceStatus {
            name: self.name.to_string(),
            address: self.address.to_string(),
            health,
            embedded: child.is_some(),
            pid: child
                .as_ref()
                .and_then(|c| c.pid)
                .map(i64::from)
                .unwrap_or(0),
            restarts: child.map(|c| c.restarts).unwrap_or(0),
        }
    }

    /// The service's own `Version`, or why it could not be asked.
    pub async fn version(&self) -> ComponentVersion {
        let mut out = ComponentVersion {
            name: format!("berth-{}", self.name),
            address: self.address.to_string(),
            ..Default::default()
        };
        let mut client = VersionClient::new(self.channel.clone());
        let ask = client.version(VersionRequest {});
        match tokio::time::timeout(Duration::from_secs(2), ask).await {
            Ok(Ok(v)) => {
                let v = v.into_inner();
                out.version = v.version;
                out.git_commit = v.git_commit;
                out.rust_version = v.rust_version;
            }
            Ok(Err(status)) => out.error = status.message().to_string(),
            Err(_) => out.error = "no answer within 2s".to_string(),
        }
        out
    }
}
