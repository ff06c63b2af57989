//! `ps` / `container ls`

use berth_proto::engine::v1::{ContainerStatus, ContainerSummary, ContainersListRequest};
use serde_json::json;

use super::client;
use crate::cli::{Global, PsArgs};
use crate::commands::human;
use crate::commands::template::{self, ListFormat};
use crate::connection::call_error;

/// Twelve characters of a container id, or all of it.
fn short(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

/// The IMAGE column: the reference as given; an image id shortened.
fn image(c: &ContainerSummary, no_trunc: bool) -> String {
    match c.image.strip_prefix("sha256:") {
        Some(hex) if !no_trunc => hex.chars().take(12).collect(),
        _ => c.image.clone(),
    }
}

/// The COMMAND column: cut at 20 characters, then quoted as Go's strconv.Quote does
/// (inner `"` and `\` escaped).
fn command(c: &ContainerSummary, no_trunc: bool) -> String {
    let cmd = if no_trunc {
        c.command.clone()
    } else {
        human::ellipsis(&c.command, 20)
    };
    serde_json::Value::String(cmd).to_string()
}

fn size(c: &ContainerSummary) -> String {
    match (c.size_rw, c.size_root_fs) {
        (Some(rw), Some(total)) => format!("{} (virtual {})", human::size(rw), human::size(total)),
        (Some(rw), None) => human::size(rw),
        _ => "N/A".into(),
    }
}

fn state(c: &ContainerSummary) -> &'static str {
    match ContainerStatus::try_from(c.status).unwrap_or_default() {
        ContainerStatus::Unspecified | ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Restarting => "restarting",
        ContainerStatus::Exited => "exited",
        ContainerStatus::Dead => "dead",
    }
}

/// Column titles of `--format 'table …'` (Docker's).
const HEADERS: &[(&str, &str)] = &[
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Labels", "LABELS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Mounts", "MOUNTS"),
    ("Names", "NAMES"),
    ("Networks", "NETWORKS"),
    ("Ports", "PORTS"),
    ("RunningFor", "CREATED"),
    ("Size", "SIZE"),
    ("State", "STATE"),
    ("Status", "STATUS"),
];

/// `ps [-a] [-q] [--filter K=V] [--format json] [--no-trunc] [-n N] [-l] [-s]`
pub async fn ps(global: &Global, args: &PsArgs) -> anyhow::Result<()> {
    let limit = if args.latest {
        1
    } else {
        args.last.unwrap_or(0)
    };
    let containers = client(global)
        .await?
        .list(ContainersListRequest {
            all: args.all || limit > 0,
            filters: args.filters.clone(),
            limit,
            size: args.size,
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .containers;
    if args.quiet {
        for c in &containers {
            println!("{}", short(&c.id, args.no_trunc));
        }
        return Ok(());
    }
    if args.format != ListFormat::Table {
        let rows: Vec<_> = containers
            .iter()
            .map(|c| {
                let mut labels: Vec<String> =
                    c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                labels.sort();
                json!({
                    "Command": command(c, args.no_trunc),
                    "CreatedAt": human::created_at(c.created.as_ref()),
                    "ID": short(&c.id, args.no_trunc),
                    "Image": image(c, args.no_trunc),
                    "Labels": labels.join(","),
                    "LocalVolumes": "0",
                    "Mounts": c.mounts.join(","),
                    "Names": c.name,
                    "Networks": c.networks.join(","),
                    "Ports": "",
                    "RunningFor": human::ago(c.created.as_ref()),
                    "Size": if args.size { size(c) } else { "0B".into() },
                    "State": state(c),
                    "Status": c.status_text,
                })
            })
            .collect();
        return template::print_list(&args.format, &rows, HEADERS);
    }
    let mut header = vec![
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ];
    if args.size {
        header.push("SIZE");
    }
    let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for c in &containers {
        let mut row = vec![
            short(&c.id, args.no_trunc),
            image(c, args.no_trunc),
            command(c, args.no_trunc),
            human::ago(c.created.as_ref()),
            c.status_text.clone(),
            String::new(),
            c.name.clone(),
        ];
        if args.size {
            row.push(size(c));
        }
        table.push(row);
    }
    print!("{}", human::table(&table));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_like_docker() {
        let c = ContainerSummary {
            id: "ab".repeat(32),
            image: format!("sha256:{}", "cd".repeat(32)),
            command: "sh -c 'sleep 1000; echo done'".into(),
            size_rw: Some(0),
            size_root_fs: Some(4_260_000),
            ..Default::default()
        };
        assert_eq!(short(&c.id, false), "abababababab");
        assert_eq!(image(&c, false), "cdcdcdcdcdcd");
        assert_eq!(command(&c, false), "\"sh -c 'sleep 1000; …\"");
        assert_eq!(size(&c), "0B (virtual 4.26MB)");
    }
}
