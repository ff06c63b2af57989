//! `berthctl version`

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::{ComponentVersion, VersionRequest, VersionResponse};
use serde_json::json;

use crate::cli::{Format, FormatArgs, Global};
use crate::connection::{call_error, connect};

fn component_json(c: &Option<ComponentVersion>) -> serde_json::Value {
    let c = c.clone().unwrap_or_default();
    json!({
        "Name": c.name,
        "Version": c.version,
        "GitCommit": c.git_commit,
        "RustVersion": c.rust_version,
        "Address": c.address,
        "Error": c.error,
    })
}

fn client_json() -> serde_json::Value {
    json!({
        "Version": berth_rpc::version::VERSION,
        "ApiVersion": berth_rpc::version::API_VERSION,
        "GitCommit": berth_rpc::version::GIT_COMMIT,
        "RustVersion": berth_rpc::version::RUST_VERSION,
        "Os": std::env::consts::OS,
        "Arch": berth_rpc::version::platform(),
    })
}

fn print_client() {
    println!("Client:");
    println!(" Version:      {}", berth_rpc::version::VERSION);
    println!(" API version:  {}", berth_rpc::version::API_VERSION);
    println!(" Git commit:   {}", berth_rpc::version::GIT_COMMIT);
    println!(" Rust version: {}", berth_rpc::version::RUST_VERSION);
    println!(" OS/Arch:      {}", berth_rpc::version::platform());
}

fn print_component(title: &str, c: &Option<ComponentVersion>) {
    let Some(c) = c else { return };
    println!(" {title}:");
    if !c.error.is_empty() {
        println!("  Error:        {}", c.error);
    }
    if !c.version.is_empty() {
        println!("  Version:      {}", c.version);
        println!("  Git commit:   {}", c.git_commit);
        println!("  Rust version: {}", c.rust_version);
    }
    println!("  Address:      {}", c.address);
}

fn print_server(v: &VersionResponse) {
    println!();
    println!("Server: berth");
    print_component("Engine", &v.engine);
    println!("  API version:  {}", v.api_version);
    println!("  OS/Arch:      {}", v.platform);
    println!("  Kernel:       {}", v.kernel_version);
    print_component("Snapshotter", &v.snapshotter);
    print_component("Builder", &v.builder);
}

/// Prints the client's version, then the server's (or why it could not be reached).
pub async fn run(global: &Global, args: &FormatArgs) -> anyhow::Result<()> {
    if args.format == Format::Table {
        print_client();
    }
    let server = async {
        let mut client = SystemClient::new(connect(global).await?);
        client
            .version(VersionRequest {})
            .await
            .map(|r| r.into_inner())
            .map_err(|s| call_error(global, s))
    }
    .await;
    match args.format {
        Format::Table => {
            let v = server?;
            print_server(&v);
        }
        Format::Json => {
            let server_json = server.as_ref().ok().map(|v| {
                json!({
                    "ApiVersion": v.api_version,
                    "Platform": v.platform,
                    "KernelVersion": v.kernel_version,
                    "Engine": component_json(&v.engine),
                    "Snapshotter": component_json(&v.snapshotter),
                    "Builder": component_json(&v.builder),
                })
            });
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"Client": client_json(), "Server": server_json})
                )?
            );
            server?;
        }
    }
    Ok(())
}
