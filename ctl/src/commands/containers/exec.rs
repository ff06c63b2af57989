//! `exec`: a command in a running container, attached (`-i`, `-t`) or detached (`-d`).

use berth_proto::engine::v1::{containers_exec_request, ContainersExecRequest, ExecOptions};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::options::{env_entry, read_env_file};
use super::session::{self, Event, ExecWire, Local, Outcome, Wire};
use super::{client, terminal};
use crate::cli::{ExecArgs, Global};
use crate::commands::Exit;
use crate::connection::call_error;

/// `exec [OPTIONS] CONTAINER COMMAND [ARG...]`
pub async fn exec(global: &Global, args: &ExecArgs) -> anyhow::Result<()> {
    terminal::check_tty_input(args.tty, args.interactive && !args.detach)?;
    let mut env = Vec::new();
    for f in &args.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(args.env.iter().map(|e| env_entry(e)));
    let options = ExecOptions {
        id: args.args[0].clone(),
        cmd: args.args[1..].to_vec(),
        env,
        working_dir: args.workdir.clone().unwrap_or_default(),
        user: args.user.clone().unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive && !args.detach,
        detach: args.detach,
        privileged: args.privileged,
        console_size: if args.tty { terminal::size() } else { None },
        detach_keys: args.keys.detach_keys.clone(),
    };
    let mut c = client(global).await?;
    let (tx, rx) = mpsc::channel(64);
    let first = ContainersExecRequest {
        msg: Some(containers_exec_request::Msg::Options(options)),
    };
    // A new channel has room.
    let _ = tx.try_send(first);
    let mut responses = c
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    let outcome = if args.detach {
        // Only whether it started matters.
        let mut outcome = Outcome::Ended;
        while let Some(r) = responses
            .message()
            .await
            .map_err(|s| call_error(global, s))?
        {
            match ExecWire::event(r) {
                Some(Event::Started) => break,
                Some(Event::Exit(s)) => {
                    outcome = Outcome::Exited(s);
                    break;
                }
                _ => {}
            }
        }
        outcome
    } else {
        let local = Local {
            stdin: args.interactive,
            tty: args.tty,
        };
        session::pump::<ExecWire>(responses, tx, local)
            .await
            .map_err(|s| call_error(global, s))?
    };
    match outcome {
        Outcome::Exited(s) => {
            if !s.error.is_empty() {
                eprintln!("berthctl: {}", s.error);
            }
            if s.exit_code != 0 {
                return Err(Exit(s.exit_code.clamp(0, 255) as u8).into());
            }
            Ok(())
        }
        Outcome::Detached => {
            eprintln!("read escape sequence");
            Ok(())
        }
        Outcome::Ended => Ok(()),
    }
}
