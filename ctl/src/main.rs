//! berthctl: the command line of berth.

mod cli;
mod commands;
mod connection;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ContainerCommand, ImageCommand, SystemCommand};

async fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Version(a) => commands::version::run(g, a).await,
        Command::Info(a) | Command::System(SystemCommand::Info(a)) => {
            commands::info::run(g, a).await
        }
        Command::System(SystemCommand::Events(a)) => commands::events::run(g, a).await,
        Command::System(SystemCommand::Df(a)) => commands::df::run(g, a).await,
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => {
            commands::images::list(g, a).await
        }
        Command::Inspect(a) => commands::containers::inspect::inspect(g, a).await,
        Command::Image(ImageCommand::Inspect(a)) => commands::images::inspect(g, a).await,
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            commands::containers::run::run(g, a).await
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            commands::containers::run::create(g, a).await
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            commands::containers::start::start(g, a).await
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            commands::containers::stop::stop(g, a).await
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            commands::containers::stop::restart(g, a).await
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            commands::containers::kill::kill(g, a).await
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => {
            commands::containers::rm::rm(g, a).await
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => {
            commands::containers::ps::ps(g, a).await
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            commands::containers::logs::logs(g, a).await
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            commands::containers::wait::wait(g, a).await
        }
        Command::Container(ContainerCommand::Inspect(a)) => {
            commands::containers::inspect::container(g, a).await
        }
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            commands::containers::exec::exec(g, a).await
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            commands::containers::attach::attach(g, a).await
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            commands::containers::rename::rename(g, a).await
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            commands::containers::pause::pause(g, a).await
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            commands::containers::pause::unpause(g, a).await
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => {
            commands::containers::top::top(g, a).await
        }
        Command::Stats(a) | Command::Container(ContainerCommand::Stats(a)) => {
            commands::containers::stats::stats(g, a).await
        }
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => commands::pull::run(g, a).await,
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => commands::push::run(g, a).await,
        Command::Login(a) => commands::login::login(g, a).await,
        Command::Logout(a) => commands::login::logout(a),
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => commands::images::tag(g, a).await,
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => {
            commands::images::remove(g, a).await
        }
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            commands::images::history(g, a).await
        }
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => {
            commands::transfer::load(g, a).await
        }
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => {
            commands::transfer::save(g, a).await
        }
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => {
            commands::transfer::import(g, a).await
        }
        Command::Image(ImageCommand::Prune(a)) => commands::images::prune(g, a).await,
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
        // Already reported, item by item.
        Err(e) if e.is::<commands::Reported>() => ExitCode::FAILURE,
        Err(e) if e.is::<commands::Exit>() => {
            ExitCode::from(e.downcast_ref::<commands::Exit>().map_or(1, |x| x.0))
        }
        Err(e) => {
            eprintln!("berthctl: {e}");
            ExitCode::FAILURE
        }
    }
}
