//! Starting and stopping the engine as a whole.

use std::sync::Arc;

use berth_rpc::listen::{create_dir, UnixSocket};
use berth_rpc::pidlock::PidLock;
use berth_rpc::serve::{serve, Listener, ServiceSet, DEFAULT_DRAIN};
use berth_rpc::Address;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::backend::Backend;
use crate::containers::{self, ContainersService, Manager};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::EventLog;
use crate::images::ImagesService;
use crate::settings::{ServerTls, Settings};
use crate::supervisor::START_TIMEOUT;
use crate::system::SystemService;

/// Runs the engine until SIGTERM/SIGINT, then drains calls and stops embedded services.
pub async fn run(settings: Settings) -> Result<()> {
    let started = std::time::Instant::now();
    let shutdown =
        berth_rpc::shutdown::on_signals().map_err(|e| Error::io("install signal handlers", e))?;
    create_dir(&settings.common.root, 0o711)?;
    create_dir(&settings.common.state, 0o711)?;
    // One engine per state directory: this lock is held until the process dies.
    let _lock = PidLock::acquire(&settings.common.state.join("engine.pid"))?;

    let mut warnings = Vec::new();
    let listeners = bind_all(&settings, &mut warnings).await?;

    let db = crate::metadata::open(&settings.common.root)?;
    let id = crate::metadata::engine_id(&db)?;
    let events = EventLog::open(&db, settings.event_retention)?;

    let stop_services = CancellationToken::new();
    let (snapshotter, snap_sup) = Backend::start(
        "snapshotter",
        &settings.snapshotter,
        &settings,
        &events,
        &stop_services,
    )?;
    let (builder, build_sup) = Backend::start(
        "builder",
        &settings.builder,
        &settings,
        &events,
        &stop_services,
    )?;
    let mut supervisors: Vec<_> = [snap_sup, build_sup].into_iter().flatten().collect();

    let ready = async {
        for (sup, name) in supervisors.iter_mut().zip(["snapshotter", "builder"]) {
            sup.wait_healthy(name, START_TIMEOUT).await?;
        }
        Ok::<_, Error>(())
    };
    let ready = tokio::select! {
        r = ready => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    if let Err(e) = ready {
        stop_services.cancel();
        for s in supervisors {
            s.join().await;
        }
        return Err(e);
    }

    let ctx = Arc::new(Context {
        id,
        root: settings.common.root.clone(),
        state: settings.common.state.clone(),
        db: db.clone(),
        events: events.clone(),
        snapshotter,
        builder,
        shim_bin: settings.shim_bin.clone(),
        log_format_json: matches!(
            settings.common.log_format,
            berth_rpc::logging::LogFormat::Json
        ),
        listen: settings.listen.clone(),
        warnings,
        shutdown: shutdown.clone(),
    });
    let containers = Manager::new(ctx.clone())?;
    // Shims outlive the engine: find the running containers' shims again before serving.
    containers::restore::restore(&containers).await?;
    containers::restart_policy::on_boot(&containers)?;
    let set = crate::pending::add_all(
        ServiceSet::new("berth-engine")
            .with(SystemService::server(ctx.clone()))
            .with(ImagesService::server(ctx.clone()))
            .with(ContainersService::server(containers)),
    );

    events.publish(
        "daemon",
        "start",
        &ctx.id,
        [("pid", std::process::id().to_string())],
    );
    tracing::info!(elapsed = ?started.elapsed(), "engine ready");
    let served = serve(set, listeners, shutdown, DEFAULT_DRAIN).await;

    events.publish("daemon", "stop", &ctx.id, []);
    stop_services.cancel();
    for s in supervisors {
        s.join().await;
    }
    let _ = db.flush_async().await;
    tracing::info!("engine stopped");
    Ok(served?)
}

async fn bind_all(settings: &Settings, warnings: &mut Vec<String>) -> Result<Vec<Listener>> {
    let mut out = Vec::new();
    for addr in &settings.listen {
        match addr {
            Address::Unix(path) => out.push(Listener::Unix(UnixSocket::bind_under(
                path,
                settings.socket_group.as_deref(),
            )?)),
            Address::Tcp(hostport) => {
                let listener = tokio::net::TcpListener::bind(hostport)
                    .await
                    .map_err(|e| Error::io(format!("listen on {addr}"), e))?;
                let tls = match &settings.tls {
                    Some(tls) => Some(Box::new(server_tls(tls)?)),
                    None => {
                        let w = format!(
                            "API listening on {addr} without TLS: anyone who can reach it \
                             controls this host"
                        );
                        tracing::warn!("{}", "!".repeat(72));
                        tracing::warn!("{w}");
                        tracing::warn!("{}", "!".repeat(72));
                        warnings.push(w);
                        None
                    }
                };
                out.push(Listener::Tcp { listener, tls });
            }
        }
    }
    Ok(out)
}

fn server_tls(tls: &ServerTls) -> Result<ServerTlsConfig> {
    let read = berth_rpc::connect::read;
    // Setting a client CA makes tonic require a client certificate signed by it.
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
        .client_ca_root(Certificate::from_pem(read(&tls.ca)?)))
}
