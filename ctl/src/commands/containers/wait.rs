//! `wait`

use berth_proto::engine::v1::{ContainersWaitRequest, WaitCondition};

use super::client;
use crate::cli::{Global, WaitArgs};
use crate::commands::Reported;
use crate::connection::call_error;

/// `wait CONTAINER...`: prints each exit code, one per line.
pub async fn wait(global: &Global, args: &WaitArgs) -> anyhow::Result<()> {
    let mut c = client(global).await?;
    let mut failed = false;
    for id in &args.containers {
        match c
            .wait(ContainersWaitRequest {
                id: id.clone(),
                condition: WaitCondition::NotRunning as i32,
            })
            .await
        {
            Ok(r) => println!("{}", r.into_inner().status.unwrap_or_default().exit_code),
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(call_error(global, s)),
            Err(s) => {
                eprintln!("berthctl: {}", s.message());
                failed = true;
            }
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}
