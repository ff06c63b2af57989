//! `rm`

use berth_proto::engine::v1::ContainersRemoveRequest;

use super::{client, each};
use crate::cli::{Global, RmArgs};

/// `rm [-f] [-v] CONTAINER...`
pub async fn rm(global: &Global, args: &RmArgs) -> anyhow::Result<()> {
    let c = client(global).await?;
    each(global, &args.containers, |id| {
        let mut c = c.clone();
        async move {
            c.remove(ContainersRemoveRequest {
                id,
                force: args.force,
                volumes: args.volumes,
            })
            .await?;
            Ok(())
        }
    })
    .await
}
