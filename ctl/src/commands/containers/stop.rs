//! `stop`, `restart`

use berth_proto::engine::v1::{ContainersRestartRequest, ContainersStopRequest};

use super::{client, each};
use crate::cli::{Global, StopArgs};

/// `stop [-t SECONDS] [-s SIGNAL] CONTAINER...`
pub async fn stop(global: &Global, args: &StopArgs) -> anyhow::Result<()> {
    let c = client(global).await?;
    each(global, &args.containers, |id| {
        let mut c = c.clone();
        async move {
            c.stop(ContainersStopRequest {
                id,
                timeout: args.time,
                signal: args.signal.clone().unwrap_or_default(),
            })
            .await?;
            Ok(())
        }
    })
    .await
}

/// `restart [-t SECONDS] [-s SIGNAL] CONTAINER...`
pub async fn restart(global: &Global, args: &StopArgs) -> anyhow::Result<()> {
    let c = client(global).await?;
    each(global, &args.containers, |id| {
        let mut c = c.clone();
        async move {
            c.restart(ContainersRestartRequest {
                id,
                timeout: args.time,
                signal: args.signal.clone().unwrap_or_default(),
            })
            .await?;
            Ok(())
        }
    })
    .await
}
