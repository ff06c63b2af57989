//! An attached session with the engine — `Containers.Attach` or `Containers.Exec`, which
//! carry the same things in different messages: output frames and the end of the process
//! one way; stdin, its end and terminal resizes the other.

use berth_proto::engine::v1::{
    containers_attach_request, containers_attach_response, containers_exec_request,
    containers_exec_response, ContainersAttachRequest, ContainersAttachResponse,
    ContainersExecRequest, ContainersExecResponse, ExitStatus,
};
use berth_proto::types::v1::StdioFrame;
use tokio::sync::mpsc;
use tonic::Streaming;

use super::terminal::{self, Input, RawMode};

/// What the engine says during a session.
pub enum Event {
    /// The exec process started.
    Started,
    /// Output.
    Output(StdioFrame),
    /// The process ended.
    Exit(ExitStatus),
    /// The detach keys were typed.
    Detached,
}

/// The messages of one kind of session.
pub trait Wire {
    /// Client → engine.
    type Request: Send + 'static;
    /// Engine → client.
    type Response: Send + 'static;
    /// The request for a local input.
    fn request(input: Input) -> Self::Request;
    /// The event of a response.
    fn event(resp: Self::Response) -> Option<Event>;
}

/// `Containers.Attach`
pub struct AttachWire;

impl Wire for AttachWire {
    type Request = ContainersAttachRequest;
    type Response = ContainersAttachResponse;
    fn request(input: Input) -> ContainersAttachRequest {
        use containers_attach_request::Msg;
        let msg = match input {
            Input::Stdin(d) => Msg::Stdin(d),
            Input::Eof => Msg::CloseStdin(true),
            Input::Resize(s) => Msg::Resize(s),
        };
        ContainersAttachRequest { msg: Some(msg) }
    }
    fn event(resp: ContainersAttachResponse) -> Option<Event> {
        use containers_attach_response::Msg;
        Some(match resp.msg? {
            Msg::Output(f) => Event::Output(f),
            Msg::Exit(s) => Event::Exit(s),
            Msg::Detached(_) => Event::Detached,
        })
    }
}

/// `Containers.Exec`
pub struct ExecWire;

impl Wire for ExecWire {
    type Request = ContainersExecRequest;
    type Response = ContainersExecResponse;
    fn request(input: Input) -> ContainersExecRequest {
        use containers_exec_request::Msg;
        let msg = match input {
            Input::Stdin(d) => Msg::Stdin(d),
            Input::Eof => Msg::CloseStdin(true),
            Input::Resize(s) => Msg::Resize(s),
        };
        ContainersExecRequest { msg: Some(msg) }
    }
    fn event(resp: ContainersExecResponse) -> Option<Event> {
        use containers_exec_response::Msg;
        Some(match resp.msg? {
            Msg::Started(_) => Event::Started,
            Msg::Output(f) => Event::Output(f),
            Msg::Exit(s) => Event::Exit(s),
            Msg::Detached(_) => Event::Detached,
        })
    }
}

/// How a session ended.
pub enum Outcome {
    /// The process ended with this status.
    Exited(ExitStatus),
    /// The user detached.
    Detached,
    /// The stream ended without a status (the container was removed, or the output was not
    /// followed to the end).
    Ended,
}

/// What the session does locally.
#[derive(Debug, Clone, Copy)]
pub struct Local {
    /// Send this terminal's stdin.
    pub stdin: bool,
    /// The process has a terminal: raw mode and resizes.
    pub tty: bool,
}

/// Runs a session until the process ends or the user detaches.
pub async fn pump<W: Wire>(
    mut responses: Streaming<W::Response>,
    requests: mpsc::Sender<W::Request>,
    local: Local,
) -> Result<Outcome, tonic::Status> {
    let _raw = (local.tty && local.stdin).then(RawMode::enter);
    let mut inputs = terminal::inputs(local.stdin, local.tty);
    if local.tty {
        if let Some(s) = terminal::size() {
            let _ = requests.send(W::request(Input::Resize(s))).await;
        }
    }
    let mut inputs_open = true;
    loop {
        tokio::select! {
            r = responses.message() => match r? {
                None => return Ok(Outcome::Ended),
                Some(resp) => match W::event(resp) {
                    Some(Event::Output(f)) => terminal::write_frame(&f),
                    Some(Event::Exit(s)) => return Ok(Outcome::Exited(s)),
                    Some(Event::Detached) => return Ok(Outcome::Detached),
                    Some(Event::Started) | None => {}
                },
            },
            i = inputs.recv(), if inputs_open => match i {
                Some(i) => {
                    let _ = requests.send(W::request(i)).await;
                }
                None => inputs_open = false,
            },
        }
    }
}
