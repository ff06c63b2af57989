//! Serving a set of gRPC services the berth way: health, reflection, `Version`, a span per
//! request, named `UNIMPLEMENTED` answers, and a bounded graceful drain.

use std::convert::Infallible;
use std::future::Ready;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;

use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::util::Oneshot;
use tower::ServiceExt;

use crate::error::{Error, Result};
use crate::listen::UnixSocket;
use crate::unimplemented::NameUnimplementedLayer;
use crate::version::VersionService;

/// How long in-flight calls may run after a shutdown signal before the server stops anyway.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);

const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";
const HEALTH: &str = "grpc.health.v1.Health";

/// The services one process serves, plus the standard ones every berth process adds.
pub struct ServiceSet {
    routes: RoutesBuilder,
    names: Vec<String>,
    health: HealthReporter,
}

impl ServiceSet {
    /// Starts a set for `component` (e.g. `berth-builder`), already holding health and
    /// `berth.version.v1.Version`.
    pub fn new(component: &'static str) -> Self {
        let (health, health_server) = tonic_health::server::health_reporter();
        let mut set = ServiceSet {
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            health,
        };
        set.routes.add_service(health_server);
        set.with(VersionService::server(component))
    }

    /// Adds a generated tonic server; it is reported SERVING once listening starts.
    pub fn with<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.routes.add_service(svc);
        self.names.push(S::NAME.to_string());
        self
    }

    /// The health reporter, to flip a service's status while running.
    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    /// Every fully qualified service name served, standard ones included.
    pub fn service_names(&self) -> Vec<String> {
        let mut all = self.names.clone();
        all.extend([HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA].map(String::from));
        all
    }
}

/// Reflection over every berth proto and the standard ones, naming `services`.
fn reflection(services: &[String]) -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false);
    for name in services {
        b = b.with_service_name(name.clone());
    }
    b
}

type BuildResult<S> = std::result::Result<S, String>;

/// A service built on its first call. Reflection keeps its own copy of every descriptor
/// and a map of every symbol, over 1 MiB for berth's protos and reflection version: a
/// process nobody asks about its API (one shim among hundreds) never pays for it.
struct Lazy<S> {
    inner: Arc<LazyInner<S>>,
}

struct LazyInner<S> {
    built: OnceLock<BuildResult<S>>,
    build: Box<dyn Fn() -> BuildResult<S> + Send + Sync>,
}

impl<S> Lazy<S> {
    fn new(build: impl Fn() -> BuildResult<S> + Send + Sync + 'static) -> Self {
        Lazy {
            inner: Arc::new(LazyInner {
                built: OnceLock::new(),
                build: Box::new(build),
            }),
        }
    }
}

impl<S> Clone for Lazy<S> {
    fn clone(&self) -> Self {
        Lazy {
            inner: self.inner.clone(),
        }
    }
}

impl<S: NamedService> NamedService for Lazy<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for Lazy<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<
        Oneshot<S, http::Request<tonic::body::Body>>,
        Ready<std::result::Result<Self::Response, Infallible>>,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        match self.inner.built.get_or_init(|| (self.inner.build)()) {
            Ok(svc) => Either::Left(svc.clone().oneshot(req)),
            Err(e) => Either::Right(std::future::ready(Ok(tonic::Status::internal(format!(
                "proto descriptor set: {e}"
            ))
            .into_http()))),
        }
    }
}

/// One place to accept connections.
pub enum Listener {
    /// A bound unix socket (removed when serving ends).
    Unix(UnixSocket),
    /// A TCP listener, with TLS when configured.
    Tcp {
        /// The bound listener.
        listener: tokio::net::TcpListener,
        /// Server TLS (identity and client CA); `None` is plain TCP.
        tls: Option<Box<ServerTlsConfig>>,
    },
}

/// Serves `set` on every listener until `shutdown` is cancelled, then drains for at most
/// `drain`. Unix sockets are removed before this returns.
pub async fn serve(
    set: ServiceSet,
    listeners: Vec<Listener>,
    shutdown: CancellationToken,
    drain: Duration,
) -> Result<()> {
    let mut routes = set.routes.clone();
    let names = set.service_names();
    routes.add_service(Lazy::new(move || {
        reflection(&names).build_v1().map_err(|e| e.to_string())
    }));
    let names = set.service_names();
    routes.add_service(Lazy::new(move || {
        reflection(&names)
            .build_v1alpha()
            .map_err(|e| e.to_string())
    }));
    let routes = routes.routes();

    set.health
        .set_service_status("", ServingStatus::Serving)
        .await;
    for name in &set.names {
        set.health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let layer = NameUnimplementedLayer::new(set.service_names());

    let mut tasks = tokio::task::JoinSet::new();
    let mut sockets = Vec::new();
    for listener in listeners {
        let builder = Server::builder()
            .trace_fn(|req| tracing::info_span!("rpc", method = %req.uri().path()));
        let signal = shutdown.clone().cancelled_owned();
        let routes = routes.clone();
        let layer = layer.clone();
        match listener {
            Listener::Unix(mut sock) => {
                let Some(l) = sock.take_listener() else {
                    continue;
                };
                tracing::info!(socket = %sock.path().display(), "listening");
                sockets.push(sock);
                let incoming = UnixListenerStream::new(l);
                tasks.spawn(async move {
                    builder
                        .layer(layer)
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming, signal)
                        .await
                });
            }
            Listener::Tcp { listener, tls } => {
                let local = listener.local_addr().ok();
                let mut builder = builder;
                if let Some(tls) = tls {
                    builder = builder.tls_config(*tls).map_err(|e| Error::Transport {
                        context: "configure TLS".into(),
                        source: e,
                    })?;
                }
                tracing::info!(address = ?local, "listening on TCP");
                let incoming = TcpListenerStream::new(listener);
                tasks.spawn(async move {
                    builder
                        .layer(layer)
                        .add_routes(routes)
                        .serve_with_incoming_shutdown(incoming, signal)
                        .await
                });
            }
        }
    }

    let drained = async {
        while let Some(res) = tasks.join_next().await {
            match res {
                Ok(Err(e)) => {
                    return Err(Error::Transport {
                        context: "serve".into(),
                        source: e,
                    })
                }
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => {}
            }
        }
        Ok(())
    };
    tokio::pin!(drained);
    let result = tokio::select! {
        r = &mut drained => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!(?drain, "calls still running after the drain period; stopping anyway");
            Ok(())
        }
    };
    drop(sockets);
    result
}
