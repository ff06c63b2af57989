//! `start`

use std::time::SystemTime;

use berth_proto::engine::v1::{ContainersInspectRequest, ContainersStartRequest, WaitCondition};

use super::{client, each, run};
use crate::cli::{Global, StartArgs};
use crate::commands::Exit;
use crate::connection::call_error;

/// `start [-a] CONTAINER...`
pub async fn start(global: &Global, args: &StartArgs) -> anyhow::Result<()> {
    let mut c = client(global).await?;
    if !args.attach {
        return each(global, &args.containers, |id| {
            let mut c = c.clone();
            async move {
                c.start(ContainersStartRequest { id }).await?;
                Ok(())
            }
        })
        .await;
    }
    if args.containers.len() > 1 {
        anyhow::bail!("you cannot start and attach multiple containers at once");
    }
    let given = &args.containers[0];
    // The full id, so that the attach follows this container even if renamed meanwhile.
    let id = c
        .inspect(ContainersInspectRequest {
            id: given.clone(),
            size: false,
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .container
        .map(|d| d.id)
        .unwrap_or_else(|| given.clone());
    // Only this run's output, as Docker's attach shows it.
    let since = Some(SystemTime::now().into());
    let logs = run::open_logs(global, &mut c, &id, since).await?;
    c.start(ContainersStartRequest { id: id.clone() })
        .await
        .map_err(|s| call_error(global, s))?;
    let code = run::attach(global, &mut c, &id, logs, WaitCondition::NotRunning, true).await?;
    if code != 0 {
        return Err(Exit(code.clamp(0, 255) as u8).into());
    }
    Ok(())
}
