//! Container commands: `run`, `create`, `start`, `stop`, `restart`, `kill`, `rm`, `ps`,
//! `logs`, `wait`, `inspect`, `exec`, `attach`, `rename`, `pause`, `unpause`, `top`, `stats`.

pub mod attach;
pub mod exec;
pub mod inspect;
pub mod kill;
pub mod logs;
pub mod options;
pub mod pause;
pub mod ps;
pub mod rename;
pub mod rm;
pub mod run;
pub mod session;
pub mod start;
pub mod stats;
pub mod stop;
pub mod terminal;
pub mod top;
pub mod wait;

use berth_proto::engine::v1::containers_client::ContainersClient;
use tonic::transport::Channel;

use crate::cli::Global;
use crate::connection::connect;

/// Largest message accepted from the engine.
const MAX_MESSAGE: usize = 64 << 20;

/// A client of the engine's container service.
pub async fn client(global: &Global) -> anyhow::Result<ContainersClient<Channel>> {
    Ok(ContainersClient::new(connect(global).await?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// What the engine knows of the container `given` (a name, an id or a prefix).
pub async fn details(
    global: &Global,
    c: &mut ContainersClient<Channel>,
    given: &str,
) -> anyhow::Result<berth_proto::engine::v1::ContainerDetails> {
    Ok(
        c.inspect(berth_proto::engine::v1::ContainersInspectRequest {
            id: given.to_string(),
            size: false,
        })
        .await
        .map_err(|s| crate::connection::call_error(global, s))?
        .into_inner()
        .container
        .unwrap_or_default(),
    )
}

/// Runs `f` for every container at once (as Docker's multi-container commands do), then
/// prints the names that succeeded and the errors in the order given; the command fails
/// after all were tried if any failed. A lost engine ends it at once.
pub async fn each<F, Fut>(global: &Global, names: &[String], f: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let results = futures::future::join_all(names.iter().cloned().map(f)).await;
    let mut failed = false;
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok(()) => println!("{name}"),
            Err(s) if s.code() == tonic::Code::Unavailable => {
                return Err(crate::connection::call_error(global, s))
            }
            Err(s) => {
                eprintln!("berthctl: {}", s.message());
                failed = true;
            }
        }
    }
    if failed {
        return Err(crate::commands::Reported.into());
    }
    Ok(())
}
