//! `berthctl completion SHELL`

use clap::CommandFactory;

use crate::cli::{Cli, CompletionArgs};

/// Writes the completion script for the chosen shell to stdout.
pub fn run(args: &CompletionArgs) {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "berthctl",
        &mut std::io::stdout(),
    );
}
