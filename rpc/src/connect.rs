//! Reaching a berth service: unix sockets, plain TCP, or TCP with mutual TLS.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::address::Address;
use crate::error::{Error, IoContext, Result};

/// Client-side TLS files, as Docker names them (`--tlscacert`, `--tlscert`, `--tlskey`).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// CA that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the server.
    pub cert: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// True when no TLS file was given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    fn config(&self, host: &str) -> Result<ClientTlsConfig> {
        let mut cfg = ClientTlsConfig::new().domain_name(host.to_string());
        if let Some(ca) = &self.ca {
            cfg = cfg.ca_certificate(Certificate::from_pem(read(ca)?));
        } else {
            cfg = cfg.with_native_roots();
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                cfg = cfg.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => {
                return Err(Error::Tls(
                    "a client certificate needs both --tlscert and --tlskey".into(),
                ))
            }
        }
        Ok(cfg)
    }
}

/// Reads a PEM file with the path in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).context(|| format!("read {}", path.display()))
}

fn endpoint(addr: &Address, tls: Option<&ClientTls>) -> Result<Endpoint> {
    let tls = tls.filter(|t| !t.is_empty());
    let uri = match (addr, tls) {
        // The authority is unused for unix sockets, but grpc needs one.
        (Address::Unix(_), _) => "http://localhost".to_string(),
        (Address::Tcp(hp), None) => format!("http://{hp}"),
        (Address::Tcp(hp), Some(_)) => format!("https://{hp}"),
    };
    let mut ep = Endpoint::from_shared(uri).map_err(|e| Error::InvalidAddress {
        addr: addr.to_string(),
        reason: e.to_string(),
    })?;
    if let (Some(tls), Some(host)) = (tls, addr.tcp_host()) {
        ep = ep
            .tls_config(tls.config(host)?)
            .map_err(|e| Error::Transport {
                context: "configure TLS".into(),
                source: e,
            })?;
    }
    Ok(ep)
}

fn unix_connector(
    path: PathBuf,
) -> impl tower::Service<
    http::Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_: http::Uri| {
        let path = path.clone();
        async move { Ok(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    })
}

/// Connects now, so an unreachable server is reported at once.
pub async fn connect(addr: &Address, tls: Option<&ClientTls>) -> Result<Channel> {
    let ep = endpoint(addr, tls)?;
    let res = match addr {
        Address::Unix(path) => {
            ep.connect_with_connector(unix_connector(path.clone()))
                .await
        }
        Address::Tcp(_) => ep.connect().await,
    };
    res.map_err(|e| Error::Transport {
        context: format!("connect to {addr}"),
        source: e,
    })
}

/// A channel that connects on first use and reconnects after failures: for long-lived
/// clients of services that may restart.
pub fn connect_lazy(addr: &Address, tls: Option<&ClientTls>) -> Result<Channel> {
    let ep = endpoint(addr, tls)?;
    Ok(match addr {
        Address::Unix(path) => ep.connect_with_connector_lazy(unix_connector(path.clone())),
        Address::Tcp(_) => ep.connect_lazy(),
    })
}
