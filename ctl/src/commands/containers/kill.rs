//! `kill`

use berth_proto::engine::v1::ContainersKillRequest;

use super::{client, each};
use crate::cli::{Global, KillArgs};

/// `kill [-s SIGNAL] CONTAINER...`
pub async fn kill(global: &Global, args: &KillArgs) -> anyhow::Result<()> {
    let c = client(global).await?;
    each(global, &args.containers, |id| {
        let mut c = c.clone();
        async move {
            c.kill(ContainersKillRequest {
                id,
                signal: args.signal.clone(),
            })
            .await?;
            Ok(())
        }
    })
    .await
}
