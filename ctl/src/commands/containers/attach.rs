//! `attach`, and the attached part of `run -i/-t` and `start -a -i`: the engine's Attach
//! stream joined to this terminal.

use berth_proto::engine::v1::containers_client::ContainersClient;
use berth_proto::engine::v1::{
    containers_attach_request, AttachOptions, ContainerStatus, ContainersAttachRequest,
    ContainersAttachResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use super::session::{self, AttachWire, Local, Outcome};
use super::{client, details, run, terminal};
use crate::cli::{AttachArgs, Global};
use crate::commands::Exit;
use crate::connection::call_error;

/// An attach stream the engine has registered: output produced from now on (or from the
/// container's next start) reaches it.
pub struct Attached {
    responses: Streaming<ContainersAttachResponse>,
    requests: mpsc::Sender<ContainersAttachRequest>,
    local: Local,
}

/// Opens an attach stream to `id`.
pub async fn open(
    global: &Global,
    c: &mut ContainersClient<Channel>,
    id: &str,
    local: Local,
    detach_keys: &str,
) -> anyhow::Result<Attached> {
    let options = AttachOptions {
        id: id.to_string(),
        stdin: local.stdin,
        stdout: true,
        stderr: true,
        logs: false,
        detach_keys: detach_keys.to_string(),
        console_size: if local.tty { terminal::size() } else { None },
    };
    let (tx, rx) = mpsc::channel(64);
    // A new channel has room.
    let _ = tx.try_send(ContainersAttachRequest {
        msg: Some(containers_attach_request::Msg::Options(options)),
    });
    let responses = c
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    Ok(Attached {
        responses,
        requests: tx,
        local,
    })
}

impl Attached {
    /// Runs the session; signals are forwarded meanwhile with `sig_proxy` (not with a
    /// terminal: there ctrl-C is a byte for the container's terminal).
    pub async fn run(
        self,
        global: &Global,
        c: &ContainersClient<Channel>,
        id: &str,
        sig_proxy: bool,
    ) -> anyhow::Result<Outcome> {
        let proxy = async {
            if sig_proxy && !self.local.tty {
                run::proxy_signals(c.clone(), id.to_string()).await;
            }
            std::future::pending::<()>().await
        };
        let pumped = session::pump::<AttachWire>(self.responses, self.requests, self.local);
        let outcome = tokio::select! {
            r = pumped => r,
            () = proxy => unreachable!("the signal proxy never ends"),
        };
        outcome.map_err(|s| call_error(global, s))
    }
}

/// `attach CONTAINER`
pub async fn attach(global: &Global, args: &AttachArgs) -> anyhow::Result<()> {
    let mut c = client(global).await?;
    let details = details(global, &mut c, &args.container).await?;
    let state = details.state.clone().unwrap_or_default();
    match ContainerStatus::try_from(state.status).unwrap_or_default() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused => {
            anyhow::bail!("You cannot attach to a paused container, unpause it first")
        }
        _ => anyhow::bail!("You cannot attach to a stopped container, start it first"),
    }
    let config = details.config.clone().unwrap_or_default();
    let local = Local {
        stdin: !args.no_stdin && config.open_stdin,
        tty: config.tty,
    };
    terminal::check_tty_input(local.tty, local.stdin)?;
    let session = open(global, &mut c, &details.id, local, &args.keys.detach_keys).await?;
    match session.run(global, &c, &details.id, args.sig_proxy).await? {
        Outcome::Exited(s) if s.exit_code != 0 => Err(Exit(s.exit_code.clamp(0, 255) as u8).into()),
        Outcome::Detached => {
            eprintln!("read escape sequence");
            Ok(())
        }
        _ => Ok(()),
    }
}
