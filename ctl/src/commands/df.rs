//! `system df`

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::{DiskUsageEntry, DiskUsageRequest, ImagesListRequest};
use serde_json::{json, Value};

use crate::cli::{DfArgs, Format, Global};
use crate::commands::human;
use crate::commands::images::{client, count, pretty, rows, shared, unique};
use crate::connection::{call_error, connect};

/// The row title of an entry kind, as Docker names it.
fn title(kind: &str) -> &str {
    match kind {
        "images" => "Images",
        "containers" => "Containers",
        "volumes" => "Local Volumes",
        "build-cache" => "Build Cache",
        other => other,
    }
}

/// "1.2MB (50%)"; the build cache and empty kinds without the percentage, as Docker.
fn reclaimable(e: &DiskUsageEntry) -> String {
    let r = human::total(e.reclaimable_bytes);
    if e.kind == "build-cache" || e.size_bytes == 0 {
        r
    } else {
        format!("{r} ({}%)", e.reclaimable_bytes * 100 / e.size_bytes)
    }
}

/// Shows the space images, containers, volumes and the build cache take.
pub async fn run(global: &Global, args: &DfArgs) -> anyhow::Result<()> {
    if args.verbose {
        return verbose(global, args).await;
    }
    let usage = SystemClient::new(connect(global).await?)
        .disk_usage(DiskUsageRequest {})
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    match args.format {
        Format::Json => {
            for e in &usage.entries {
                println!(
                    "{}",
                    json!({
                        "Active": e.active.to_string(),
                        "Reclaimable": reclaimable(e),
                        "Size": human::total(e.size_bytes),
                        "TotalCount": e.total.to_string(),
                        "Type": title(&e.kind),
                    })
                );
            }
        }
        Format::Table => {
            let mut table = vec![["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
                .map(String::from)
                .to_vec()];
            for e in &usage.entries {
                table.push(vec![
                    title(&e.kind).to_string(),
                    e.total.to_string(),
                    e.active.to_string(),
                    human::total(e.size_bytes),
                    reclaimable(e),
                ]);
            }
            print!("{}", human::table(&table));
        }
    }
    Ok(())
}

/// `system df -v`: the images one by one; berth has no containers, volumes or build cache
/// yet, so those sections are empty.
async fn verbose(global: &Global, args: &DfArgs) -> anyhow::Result<()> {
    let images = client(global)
        .await?
        .list(ImagesListRequest::default())
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .images;
    match args.format {
        Format::Json => {
            let mut list = Vec::new();
            for i in &images {
                for (repo, tag, _) in rows(i) {
                    list.push(json!({
                        "Containers": count(i.containers),
                        "CreatedAt": human::created_at(i.created.as_ref()),
                        "CreatedSince": human::ago(i.created.as_ref()),
                        "ID": human::image_id(&i.id, false),
                        "Repository": repo,
                        "SharedSize": shared(i.shared_size),
                        "Size": human::size(i.size),
                        "Tag": tag,
                        "UniqueSize": unique(i),
                    }));
                }
            }
            let out = json!({
                "Images": list,
                "Containers": Value::Array(vec![]),
                "Volumes": Value::Array(vec![]),
                "BuildCache": Value::Array(vec![]),
            });
            println!("{}", pretty(&out)?);
        }
        Format::Table => {
            let mut table = vec![[
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "CREATED",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "CONTAINERS",
            ]
            .map(String::from)
            .to_vec()];
            for i in &images {
                for (repo, tag, _) in rows(i) {
                    table.push(vec![
                        repo,
                        tag,
                        human::image_id(&i.id, false),
                        human::ago(i.created.as_ref()),
                        human::size(i.size),
                        shared(i.shared_size),
                        unique(i),
                        count(i.containers),
                    ]);
                }
            }
            println!("Images space usage:\n");
            print!("{}", human::table(&table));
            let empty =
                |cols: &[&str]| human::table(&[cols.iter().map(|c| c.to_string()).collect()]);
            println!("\nContainers space usage:\n");
            print!(
                "{}",
                empty(&[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "LOCAL VOLUMES",
                    "SIZE",
                    "CREATED",
                    "STATUS",
                    "NAMES"
                ])
            );
            println!("\nLocal Volumes space usage:\n");
            print!("{}", empty(&["VOLUME NAME", "LINKS", "SIZE"]));
            println!("\nBuild cache usage: 0B\n");
            print!(
                "{}",
                empty(&[
                    "CACHE ID",
                    "CACHE TYPE",
                    "SIZE",
                    "CREATED",
                    "LAST USED",
                    "USAGE",
                    "SHARED"
                ])
            );
        }
    }
    Ok(())
}
