//! berthctl: the command line of berth.

mod cli;
mod commands;
mod connection;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, SystemCommand};

async fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Version(a) => commands::version::run(g, a).await,
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => {
            commands::info::run(g, a).await
        }
        Command::System(SystemCommand::Events(a)) => commands::events::run(g, a).await,
        Command::Completion(a) => {
            commands::completion::run(a);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Like cat or docker: a closed stdout (`berthctl … | head`) ends us quietly instead of
    // a panic on the next write.
    // SAFETY: no other thread exists yet, and SIG_DFL is always a valid disposition.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthctl: {e}");
            ExitCode::FAILURE
        }
    }
}
