//! `rename`

use berth_proto::engine::v1::ContainersRenameRequest;

use super::client;
use crate::cli::{Global, RenameArgs};
use crate::connection::call_error;

/// `rename CONTAINER NEW_NAME`
pub async fn rename(global: &Global, args: &RenameArgs) -> anyhow::Result<()> {
    let mut c = client(global).await?;
    c.rename(ContainersRenameRequest {
        id: args.container.clone(),
        new_name: args.new_name.clone(),
    })
    .await
    .map_err(|s| call_error(global, s))?;
    Ok(())
}
