//! `top`

use berth_proto::engine::v1::ContainersTopRequest;

use super::client;
use crate::cli::{Global, TopArgs};
use crate::commands::human;
use crate::connection::call_error;

/// `top CONTAINER [ps OPTIONS]`
pub async fn top(global: &Global, args: &TopArgs) -> anyhow::Result<()> {
    let mut c = client(global).await?;
    let resp = c
        .top(ContainersTopRequest {
            id: args.container.clone(),
            ps_args: args.ps_args.join(" "),
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    let mut rows = vec![resp.titles];
    rows.extend(resp.processes.into_iter().map(|p| p.fields));
    print!("{}", human::table(&rows));
    Ok(())
}
