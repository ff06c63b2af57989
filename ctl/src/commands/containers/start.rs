//! `start`

use std::time::SystemTime;

use berth_proto::engine::v1::{ContainersStartRequest, WaitCondition};

use super::session::{Local, Outcome};
use super::{attach, client, details, each, run, terminal};
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
    let details = details(global, &mut c, given).await?;
    let id = if details.id.is_empty() {
        given.clone()
    } else {
        details.id.clone()
    };
    let config = details.config.unwrap_or_default();
    let local = Local {
        stdin: args.interactive && config.open_stdin,
        tty: config.tty,
    };
    let unlogged = config
        .log_config
        .as_ref()
        .is_some_and(|l| l.driver == "none");
    let code = if local.stdin || local.tty || unlogged {
        terminal::check_tty_input(local.tty, local.stdin)?;
        let session = attach::open(global, &mut c, &id, local, &args.keys.detach_keys).await?;
        c.start(ContainersStartRequest { id: id.clone() })
            .await
            .map_err(|s| call_error(global, s))?;
        match session.run(global, &c, &id, true).await? {
            Outcome::Exited(s) => s.exit_code,
            Outcome::Detached => {
                eprintln!("read escape sequence");
                return Ok(());
            }
            Outcome::Ended => 0,
        }
    } else {
        // Only this run's output, as Docker's attach shows it.
        let since = Some(SystemTime::now().into());
        let logs = run::open_logs(global, &mut c, &id, since).await?;
        c.start(ContainersStartRequest { id: id.clone() })
            .await
            .map_err(|s| call_error(global, s))?;
        run::attach(global, &mut c, &id, logs, WaitCondition::NotRunning, true).await?
    };
    if code != 0 {
        return Err(Exit(code.clamp(0, 255) as u8).into());
    }
    Ok(())
}
