//! The life of a simple berth service: merge flags and config, bind its socket, serve until
//! a signal, clean up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{CommonArgs, Settings};
use crate::error::{IoContext, Result};
use crate::listen::UnixSocket;
use crate::serve::{serve, Listener, ServiceSet, DEFAULT_DRAIN};

/// Flags of a service that listens on one unix socket.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Unix socket to serve on [default: <state>/<service>.sock]
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Group owning the socket (name or gid)
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
}

/// The service's table in the configuration file.
#[derive(Debug, Default, serde::Deserialize)]
struct FileConfig {
    socket: Option<PathBuf>,
    socket_group: Option<String>,
    /// Keys the service reads (and validates) itself; see [`main_with_keys`]. Any other key
    /// is an error, as with `deny_unknown_fields`.
    #[serde(flatten)]
    extra: toml::Table,
}

/// Serves `set` on the unix socket `socket` until SIGTERM or SIGINT, then drains and
/// removes the socket.
pub async fn serve_on_socket(set: ServiceSet, socket: &Path, group: Option<&str>) -> Result<()> {
    let sock = UnixSocket::bind(socket, group)?;
    let shutdown = crate::shutdown::on_signals().context(|| "install signal handlers".into())?;
    serve(set, vec![Listener::Unix(sock)], shutdown, DEFAULT_DRAIN).await
}

/// A whole service `main`: `section` names both the config table and the default socket
/// (`<state>/<section>.sock`); `build` makes the services once settings are known (opening
/// whatever state they keep).
pub fn main<F, Fut, E>(
    component: &'static str,
    section: &str,
    args: ServiceArgs,
    build: F,
) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<ServiceSet, E>>,
    E: std::fmt::Display,
{
    main_with_keys(component, section, &[], args, build)
}

/// [`main`] for a service whose table holds more keys than `socket` and `socket_group`:
/// `own_keys` are accepted here and left to the service to read and validate (e.g. with
/// [`crate::config::load`] on its own `deny_unknown_fields` struct).
pub fn main_with_keys<F, Fut, E>(
    component: &'static str,
    section: &str,
    own_keys: &[&str],
    args: ServiceArgs,
    build: F,
) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<ServiceSet, E>>,
    E: std::fmt::Display,
{
    crate::fds::cloexec_inherited();
    let (settings, file): (Settings, FileConfig) = match args.common.load(section) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{component}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(key) = file.extra.keys().find(|k| !own_keys.contains(&k.as_str())) {
        let path = args.common.config.as_deref();
        let path = path.unwrap_or(std::path::Path::new(crate::config::DEFAULT_CONFIG));
        eprintln!(
            "{component}: config file {}: [{section}]: unknown field `{key}`",
            path.display()
        );
        return ExitCode::from(2);
    }
    crate::logging::init(settings.log_format);
    let socket = args
        .socket
        .or(file.socket)
        .unwrap_or_else(|| settings.state.join(format!("{section}.sock")));
    let group = args.socket_group.or(file.socket_group);
    let run = async {
        crate::listen::create_dir(&settings.root, 0o711).map_err(|e| e.to_string())?;
        let set = build(settings.clone()).await.map_err(|e| e.to_string())?;
        tracing::info!(component, socket = %socket.display(), "starting");
        serve_on_socket(set, &socket, group.as_deref())
            .await
            .map_err(|e| e.to_string())
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match runtime.map(|rt| rt.block_on(run)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "{component} failed");
            eprintln!("{component}: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{component}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
