use clap::Parser;

/// berth-shim: serves the Task API of one container (spawned by berth-engine).
#[derive(Debug, Parser)]
#[command(name = "berth-shim", version)]
struct Args {
    #[command(flatten)]
    service: berth_rpc::daemon::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    berth_rpc::daemon::main("berth-shim", "shim", args.service, |_| async {
        Ok::<_, std::convert::Infallible>(berth_shim::services())
    })
}
