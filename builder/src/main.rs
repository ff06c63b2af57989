use clap::Parser;

/// berth-builder: builds images from Dockerfiles.
#[derive(Debug, Parser)]
#[command(name = "berth-builder", version)]
struct Args {
    #[command(flatten)]
    service: berth_rpc::daemon::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    berth_rpc::daemon::main(
        "berth-builder",
        "builder",
        args.service,
        |settings| async move { Ok::<_, std::convert::Infallible>(berth_builder::services(&settings)) },
    )
}
