//! The engine's flags and its `[engine]` table in the configuration file.

use std::path::PathBuf;

use berth_rpc::cli::{CommonArgs, Settings as Common};
use berth_rpc::Address;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::events::DEFAULT_RETENTION;

/// berth-engine: the public API of berth. With no service addresses it starts and
/// supervises berth-snapshotter and berth-builder itself.
#[derive(Debug, clap::Parser)]
#[command(name = "berth-engine", version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Address to serve the API on: unix:///path or tcp://HOST:PORT (repeatable)
    /// [default: unix://<state>/engine.sock]
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// CA certificate that client certificates must be signed by (TCP mutual TLS)
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Server certificate (PEM) for TCP listeners
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Server key (PEM) for TCP listeners
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Allow TCP listeners without TLS: anyone who can reach the port controls the host
    #[arg(long)]
    pub insecure_tcp: bool,
    /// Use a snapshotter run elsewhere instead of starting one (unix:///path or tcp://)
    #[arg(long, value_name = "ADDR")]
    pub snapshotter_addr: Option<String>,
    /// Use a builder run elsewhere instead of starting one (unix:///path or tcp://)
    #[arg(long, value_name = "ADDR")]
    pub builder_addr: Option<String>,
    /// berth-snapshotter executable to start [default: beside berth-engine]
    #[arg(long, value_name = "FILE")]
    pub snapshotter_bin: Option<PathBuf>,
    /// berth-builder executable to start [default: beside berth-engine]
    #[arg(long, value_name = "FILE")]
    pub builder_bin: Option<PathBuf>,
    /// berth-shim executable spawned for each container [default: beside berth-engine]
    #[arg(long, value_name = "FILE")]
    pub shim_bin: Option<PathBuf>,
    /// Group owning the API's unix socket (name or gid), e.g. to let a "berth" group in
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
}

/// The `[engine]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<Vec<String>>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    insecure_tcp: Option<bool>,
    snapshotter_addr: Option<String>,
    builder_addr: Option<String>,
    snapshotter_bin: Option<PathBuf>,
    builder_bin: Option<PathBuf>,
    shim_bin: Option<PathBuf>,
    socket_group: Option<String>,
    event_retention: Option<u64>,
}

/// Server TLS files.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// CA for client certificates.
    pub ca: PathBuf,
    /// Server certificate.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
}

/// Where a backing service comes from.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Started by the engine from this executable.
    Embedded(PathBuf),
    /// Run by something else at this address.
    External(Address),
}

/// Everything the engine runs with, after flags, file and defaults are merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Root, state, log format.
    pub common: Common,
    /// The config file given with `--config`, passed on to embedded services.
    pub config_file: Option<PathBuf>,
    /// API listeners.
    pub listen: Vec<Address>,
    /// TLS for TCP listeners.
    pub tls: Option<ServerTls>,
    /// TCP without TLS was allowed explicitly.
    pub insecure_tcp: bool,
    /// The snapshotter.
    pub snapshotter: Backend,
    /// The builder.
    pub builder: Backend,
    /// The berth-shim executable.
    pub shim_bin: PathBuf,
    /// Group of the API socket.
    pub socket_group: Option<String>,
    /// Events kept for replay.
    pub event_retention: u64,
}

impl Settings {
    /// Merges `args` over the configuration file and checks the result.
    pub fn load(args: Args) -> Result<Self> {
        let (common, file): (Common, FileConfig) = args.common.load("engine")?;
        let listen = if !args.listen.is_empty() {
            args.listen
        } else if let Some(l) = file.listen.filter(|l| !l.is_empty()) {
            l
        } else {
            vec![format!(
                "unix://{}",
                common.state.join("engine.sock").display()
            )]
        };
        let listen = listen
            .iter()
            .map(|a| Address::parse(a))
            .collect::<berth_rpc::Result<Vec<_>>>()?;
        let tls = match (
            args.tlscacert.or(file.tlscacert),
            args.tlscert.or(file.tlscert),
            args.tlskey.or(file.tlskey),
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(ServerTls { ca, cert, key }),
            (None, None, None) => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "mutual TLS needs all of --tlscacert, --tlscert and --tlskey".into(),
                ))
            }
        };
        let insecure_tcp = args.insecure_tcp || file.insecure_tcp.unwrap_or(false);
        let has_tcp = listen.iter().any(|a| matches!(a, Address::Tcp(_)));
        if has_tcp && tls.is_none() && !insecure_tcp {
            return Err(Error::InvalidArgument(
                "refusing to serve the API on TCP without TLS: anyone who can reach the port \
                 would control this host. Give --tlscacert, --tlscert and --tlskey (clients \
                 must present a certificate signed by the CA), or --insecure-tcp if you \
                 really mean it"
                    .into(),
            ));
        }
        let backend = |addr: Option<String>, bin: Option<PathBuf>, name: &str| -> Result<Backend> {
            if let Some(addr) = addr {
                return Ok(Backend::External(Address::parse(&addr)?));
            }
            let bin = match bin {
                Some(b) => b,
                None => std::env::current_exe()
                    .map_err(|e| Error::io("locate berth-engine's own executable", e))?
                    .with_file_name(name),
            };
            Ok(Backend::Embedded(bin))
        };
        let shim_bin = match args.shim_bin.or(file.shim_bin) {
            Some(b) => b,
            None => std::env::current_exe()
                .map_err(|e| Error::io("locate berth-engine's own executable", e))?
                .with_file_name("berth-shim"),
        };
        Ok(Settings {
            shim_bin,
            snapshotter: backend(
                args.snapshotter_addr.or(file.snapshotter_addr),
                args.snapshotter_bin.or(file.snapshotter_bin),
                "berth-snapshotter",
            )?,
            builder: backend(
                args.builder_addr.or(file.builder_addr),
                args.builder_bin.or(file.builder_bin),
                "berth-builder",
            )?,
            common,
            config_file: args.common.config,
            listen,
            tls,
            insecure_tcp,
            socket_group: args.socket_group.or(file.socket_group),
            event_retention: file.event_retention.unwrap_or(DEFAULT_RETENTION),
        })
    }
}
