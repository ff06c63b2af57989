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
    // The registry keys of `[snapshotter]`, read (strictly) here; berth-rpc reads the rest.
    let config = args.service.common.config.as_deref();
    let registries = match berth_snapshotter::registry_config::RegistryConfig::load(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth-snapshotter: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    berth_rpc::daemon::main_with_keys(
        "berth-snapshotter",
        "snapshotter",
        berth_snapshotter::registry_config::KEYS,
        args.service,
        |settings| async move { berth_snapshotter::services_with(&settings, registries).await },
    )
}
