use clap::Parser;

use berth_engine::settings::{Args, Settings};

fn main() -> std::process::ExitCode {
    berth_rpc::fds::cloexec_inherited();
    let args = Args::parse();
    let settings = match Settings::load(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth-engine: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    berth_rpc::logging::init(settings.common.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-engine: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(berth_engine::server::run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "berth-engine failed");
            eprintln!("berth-engine: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
