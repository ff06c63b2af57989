use clap::Parser;

/// berth-snapshotter: content store, overlayfs snapshots and image records.
#[derive(Debug, Parser)]
#[command(name = "berth-snapshotter", version)]
struct Args {
    #[command(flatten)]
    service: berth_rpc::daemon::ServiceArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    berth_rpc::daemon::main(
        "berth-snapshotter",
        "snapshotter",
        args.service,
        |settings| async move { berth_snapshotter::services(&settings).await },
    )
}
