//! Reaching the engine, and saying plainly when it cannot be reached.

use std::path::PathBuf;

use berth_rpc::connect::ClientTls;
use berth_rpc::Address;
use tonic::transport::Channel;

use crate::cli::Global;

/// An error meant for the user as one line.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// TLS files from flags, else from `$BERTH_CERT_PATH/{ca,cert,key}.pem` as Docker does.
fn tls(global: &Global) -> ClientTls {
    let mut tls = ClientTls {
        ca: global.tlscacert.clone(),
        cert: global.tlscert.clone(),
        key: global.tlskey.clone(),
    };
    if tls.is_empty() {
        if let Some(dir) = std::env::var_os("BERTH_CERT_PATH").map(PathBuf::from) {
            let file = |n: &str| Some(dir.join(n)).filter(|p| p.exists());
            tls = ClientTls {
                ca: file("ca.pem"),
                cert: file("cert.pem"),
                key: file("key.pem"),
            };
        }
    }
    tls
}

/// Connects to the engine named by `-H`.
pub async fn connect(global: &Global) -> anyhow::Result<Channel> {
    let addr = Address::parse(&global.host)?;
    let tls = tls(global);
    berth_rpc::connect::connect(&addr, Some(&tls))
        .await
        .map_err(|e| Unreachable(explain(&addr, &e)).into())
}

/// One line on why `addr` could not be reached and what to do.
fn explain(addr: &Address, err: &(dyn std::error::Error + 'static)) -> String {
    let mut io_kind = None;
    let mut cause = err.to_string();
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        cause = e.to_string();
        source = e.source();
    }
    use std::io::ErrorKind::*;
    let what = match (addr, io_kind) {
        (Address::Unix(_), Some(NotFound)) => "no such socket".to_string(),
        (_, Some(ConnectionRefused)) => "connection refused".to_string(),
        (_, Some(PermissionDenied)) => {
            return format!(
                "cannot connect to the berth engine at {addr}: permission denied. \
                 Run as root, or as a member of the socket's group (berth-engine --socket-group)."
            )
        }
        _ => cause,
    };
    format!(
        "cannot connect to the berth engine at {addr}: {what}. Is berth-engine running? \
         Start it (`berth-engine &` or `systemctl start berth-engine`), or point -H / BERTH_HOST at it."
    )
}

/// Turns a failed call into a user-facing error; a lost connection becomes [`Unreachable`].
/// An UNAVAILABLE the engine itself answered (a registry it could not reach, say) is its
/// message: tonic gives a source only to errors of the connection.
pub fn call_error(global: &Global, status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unavailable && std::error::Error::source(&status).is_some() {
        return Unreachable(format!(
            "the berth engine at {} is unavailable: {}",
            global.host,
            status.message()
        ))
        .into();
    }
    anyhow::anyhow!("{}", status.message())
}
