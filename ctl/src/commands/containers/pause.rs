//! `pause`, `unpause`

use berth_proto::engine::v1::{ContainersPauseRequest, ContainersUnpauseRequest};

use super::{client, each};
use crate::cli::{ContainersArgs, Global};

/// `pause CONTAINER...`
pub async fn pause(global: &Global, args: &ContainersArgs) -> anyhow::Result<()> {
    let c = client(global).await?;
    each(global, &args.containers, |id| {
        let mut c = c.clone();
        async move {
            c.pause(ContainersPauseRequest { id }).await?;
            Ok(())
        }
    })
    .await
}

/// `unpause CONTAINER...`
pub async fn unpause(global: &Global, args: &ContainersArgs) -> anyhow::Result<()> {
    let c = client(global).await?;
    each(global, &args.containers, |id| {
        let mut c = c.clone();
        async move {
            c.unpause(ContainersUnpauseRequest { id }).await?;
            Ok(())
        }
    })
    .await
}
