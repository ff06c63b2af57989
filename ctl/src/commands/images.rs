//! `images` / `image ls`, `image inspect`, `tag`, `rmi`, `history`, `image prune`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};

use berth_proto::engine::v1::images_client::ImagesClient;
use berth_proto::engine::v1::{
    ImageSummary, ImagesHistoryRequest, ImagesInspectRequest, ImagesListRequest,
    ImagesPruneRequest, ImagesRemoveRequest, ImagesTagRequest,
};
use berth_registry_client::Reference;
use serde_json::{json, Value};
use tonic::transport::Channel;

use crate::cli::{
    Format, Global, HistoryArgs, ImageInspectArgs, ImagesArgs, PruneArgs, RmiArgs, TagArgs,
};
use crate::commands::template::{self, ListFormat};
use crate::commands::{human, Reported};
use crate::connection::{call_error, connect};

/// Largest message accepted from the engine.
const MAX_MESSAGE: usize = 64 << 20;

/// A client of the engine's image service.
pub async fn client(global: &Global) -> anyhow::Result<ImagesClient<Channel>> {
    Ok(ImagesClient::new(connect(global).await?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// Prints one failure of several and remembers that the command failed.
fn report(failed: &mut bool, message: &str) {
    eprintln!("berthctl: {message}");
    *failed = true;
}

/// Column titles of `images --format 'table …'` (Docker's).
const HEADERS: &[(&str, &str)] = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

/// Pretty JSON with Docker's four-space indent.
pub fn pretty(v: &Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// One table row of an image: (repository, tag, digest).
pub fn rows(image: &ImageSummary) -> Vec<(String, String, String)> {
    let mut digest_of: BTreeMap<String, String> = BTreeMap::new();
    for d in &image.repo_digests {
        if let Some((repo, digest)) = d.rsplit_once('@') {
            digest_of
                .entry(repo.to_string())
                .or_insert_with(|| digest.to_string());
        }
    }
    let none = || "<none>".to_string();
    let mut out = Vec::new();
    let mut tagged = BTreeSet::new();
    for t in &image.repo_tags {
        let (repo, tag) = match Reference::parse(t) {
            Ok(r) => (
                r.familiar_repository(),
                r.tag().unwrap_or("<none>").to_string(),
            ),
            Err(_) => match t.rsplit_once(':') {
                Some((r, tag)) => (r.to_string(), tag.to_string()),
                None => (t.clone(), none()),
            },
        };
        let digest = digest_of.get(&repo).cloned().unwrap_or_else(none);
        tagged.insert(repo.clone());
        out.push((repo, tag, digest));
    }
    for (repo, digest) in digest_of {
        if !tagged.contains(&repo) {
            out.push((repo, none(), digest));
        }
    }
    if out.is_empty() {
        out.push((none(), none(), none()));
    }
    out
}

/// `images` / `image ls`
pub async fn list(global: &Global, args: &ImagesArgs) -> anyhow::Result<()> {
    let mut filters = args.filters.clone();
    if let Some(r) = &args.repository {
        filters.push(format!("reference={r}"));
    }
    let images = client(global)
        .await?
        .list(ImagesListRequest {
            all: args.all,
            filters,
            digests: args.digests,
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .images;
    if args.quiet {
        let mut seen = BTreeSet::new();
        for i in &images {
            if seen.insert(i.id.clone()) {
                println!("{}", human::image_id(&i.id, args.no_trunc));
            }
        }
        return Ok(());
    }
    if args.format != ListFormat::Table {
        let mut lines = Vec::new();
        for i in &images {
            for (repo, tag, digest) in rows(i) {
                lines.push(json!({
                    "Containers": count(i.containers),
                    "CreatedAt": human::created_at(i.created.as_ref()),
                    "CreatedSince": human::ago(i.created.as_ref()),
                    "Digest": digest,
                    "ID": human::image_id(&i.id, args.no_trunc),
                    "Repository": repo,
                    "SharedSize": shared(i.shared_size),
                    "Size": human::size(i.size),
                    "Tag": tag,
                    "UniqueSize": unique(i),
                    "VirtualSize": human::total(i.size.max(0) as u64),
                }));
            }
        }
        return template::print_list(&args.format, &lines, HEADERS);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
    for i in &images {
        for (repo, tag, digest) in rows(i) {
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(digest);
            }
            row.extend([
                human::image_id(&i.id, args.no_trunc),
                human::ago(i.created.as_ref()),
                human::size(i.size),
            ]);
            table.push(row);
        }
    }
    print!("{}", human::table(&table));
    Ok(())
}

/// A count the engine may not have computed (-1).
pub fn count(n: i64) -> String {
    if n < 0 {
        "N/A".into()
    } else {
        n.to_string()
    }
}

/// Shared size, "N/A" when not computed.
pub fn shared(n: i64) -> String {
    if n < 0 {
        "N/A".into()
    } else {
        human::size(n)
    }
}

/// Unique size (size less shared size), "N/A" when the shared size is not computed.
pub fn unique(i: &ImageSummary) -> String {
    if i.shared_size < 0 {
        "N/A".into()
    } else {
        human::size(i.size - i.shared_size)
    }
}

/// `image inspect` / `inspect`: a JSON array of Docker-compatible objects. Images that do not
/// exist are reported on stderr after the array, and make the exit status 1.
pub async fn inspect(global: &Global, args: &ImageInspectArgs) -> anyhow::Result<()> {
    let template = super::containers::inspect::template_of(args.format.as_deref())?;
    let mut c = client(global).await?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.images {
        match c
            .inspect(ImagesInspectRequest {
                reference: name.clone(),
                platform: None,
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                found.push(serde_json::from_str::<Value>(&r.json).unwrap_or(Value::Null));
            }
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(call_error(global, s)),
            Err(s) => errors.push(s.message().to_string()),
        }
    }
    super::containers::inspect::finish(found, errors, template.as_ref())
}

/// `tag`
pub async fn tag(global: &Global, args: &TagArgs) -> anyhow::Result<()> {
    client(global)
        .await?
        .tag(ImagesTagRequest {
            source: args.source.clone(),
            target: args.target.clone(),
        })
        .await
        .map_err(|s| call_error(global, s))?;
    Ok(())
}

/// `rmi` / `image rm`: every image is tried; the status is 1 when any failed.
pub async fn remove(global: &Global, args: &RmiArgs) -> anyhow::Result<()> {
    let results = client(global)
        .await?
        .remove(ImagesRemoveRequest {
            references: args.images.clone(),
            force: args.force,
            no_prune: args.no_prune,
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .results;
    let mut failed = false;
    for r in results {
        if r.code != 0 || !r.error.is_empty() {
            report(&mut failed, &r.error);
            continue;
        }
        for u in &r.untagged {
            println!("Untagged: {u}");
        }
        for d in &r.deleted {
            println!("Deleted: {d}");
        }
    }
    if failed {
        return Err(Reported.into());
    }
    Ok(())
}

/// `history`
pub async fn history(global: &Global, args: &HistoryArgs) -> anyhow::Result<()> {
    let entries = client(global)
        .await?
        .history(ImagesHistoryRequest {
            reference: args.image.clone(),
            platform: None,
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner()
        .entries;
    let id = |e: &str| {
        if e.starts_with("sha256:") {
            human::image_id(e, args.no_trunc)
        } else {
            e.to_string()
        }
    };
    let created_by = |s: &str| {
        let s = s.replace('\t', " ");
        if args.no_trunc {
            s
        } else {
            human::ellipsis(&s, 45)
        }
    };
    if args.quiet {
        for e in &entries {
            println!("{}", id(&e.id));
        }
        return Ok(());
    }
    match args.format {
        Format::Json => {
            let lines: Vec<Value> = entries
                .iter()
                .map(|e| {
                    json!({
                        "Comment": e.comment,
                        "CreatedAt": human::created_at(e.created.as_ref()),
                        "CreatedBy": created_by(&e.created_by),
                        "CreatedSince": human::ago(e.created.as_ref()),
                        "ID": id(&e.id),
                        "Size": human::size(e.size),
                    })
                })
                .collect();
            template::json_lines(&lines);
        }
        Format::Table => {
            let mut table = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
                .map(String::from)
                .to_vec()];
            for e in &entries {
                table.push(vec![
                    id(&e.id),
                    human::ago(e.created.as_ref()),
                    created_by(&e.created_by),
                    human::size(e.size),
                    e.comment.clone(),
                ]);
            }
            print!("{}", human::table(&table));
        }
    }
    Ok(())
}

/// Asks "Are you sure?" on the terminal. Without a terminal there is nobody to ask: refused.
fn confirm(warning: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to prune without confirmation: standard input is not a terminal to ask \
             on; use -f/--force to prune without asking"
        );
    }
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// `image prune`
pub async fn prune(global: &Global, args: &PruneArgs) -> anyhow::Result<()> {
    if !args.force {
        let warning = if args.all {
            "WARNING! This will remove all images without at least one container associated to them."
        } else {
            "WARNING! This will remove all dangling images."
        };
        if !confirm(warning)? {
            return Ok(());
        }
    }
    let resp = client(global)
        .await?
        .prune(ImagesPruneRequest {
            all: args.all,
            filters: args.filters.clone(),
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    match args.format {
        Format::Json => {
            let mut deleted: Vec<Value> = resp
                .untagged
                .iter()
                .map(|u| json!({ "Untagged": u }))
                .collect();
            deleted.extend(resp.deleted.iter().map(|d| json!({ "Deleted": d })));
            println!(
                "{}",
                pretty(&json!({
                    "ImagesDeleted": deleted,
                    "SpaceReclaimed": resp.reclaimed_bytes,
                }))?
            );
        }
        Format::Table => {
            if !resp.untagged.is_empty() || !resp.deleted.is_empty() {
                println!("Deleted Images:");
                for u in &resp.untagged {
                    println!("untagged: {u}");
                }
                for d in &resp.deleted {
                    println!("deleted: {d}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                human::total(resp.reclaimed_bytes)
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pair_tags_with_digests() {
        let i = ImageSummary {
            repo_tags: vec!["busybox:latest".into(), "localhost:5000/app:v1".into()],
            repo_digests: vec!["busybox@sha256:aa".into(), "other@sha256:bb".into()],
            ..Default::default()
        };
        assert_eq!(
            rows(&i),
            [
                ("busybox".into(), "latest".into(), "sha256:aa".into()),
                ("localhost:5000/app".into(), "v1".into(), "<none>".into()),
                ("other".into(), "<none>".into(), "sha256:bb".into()),
            ]
        );
        let none = "<none>".to_string();
        assert_eq!(
            rows(&ImageSummary::default()),
            [(none.clone(), none.clone(), none)]
        );
    }

    #[test]
    fn json_is_pretty_with_four_spaces() {
        assert_eq!(
            pretty(&json!([{"a": 1}])).unwrap(),
            "[\n    {\n        \"a\": 1\n    }\n]"
        );
    }
}
