//! `inspect` (containers, then images) and `container inspect`.

use berth_proto::engine::v1::{ContainersInspectRequest, ImagesInspectRequest};
use serde_json::Value;

use super::client;
use crate::cli::{ContainerInspectArgs, Global, InspectArgs, ObjectType};
use crate::commands::images::{self, pretty};
use crate::commands::template::GoTemplate;
use crate::commands::Reported;
use crate::connection::call_error;

/// The template of `-f/--format`, checked before any call; `None` for the JSON array.
pub fn template_of(format: Option<&str>) -> anyhow::Result<Option<GoTemplate>> {
    match format.map(str::trim) {
        None | Some("") | Some("json") => Ok(None),
        Some(t) => GoTemplate::parse(t).map(Some).map_err(anyhow::Error::msg),
    }
}

/// Prints the objects found, as one JSON array or each through the template, then the
/// errors; fails when any failed.
pub fn finish(
    found: Vec<Value>,
    errors: Vec<String>,
    template: Option<&GoTemplate>,
) -> anyhow::Result<()> {
    match template {
        None => println!("{}", pretty(&Value::Array(found))?),
        Some(t) => {
            for object in &found {
                println!("{}", t.render(object)?);
            }
        }
    }
    for e in &errors {
        eprintln!("berthctl: {e}");
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Reported.into())
    }
}

/// `inspect [--type container|image] NAME...`: each name is looked up as a container,
/// then as an image.
pub async fn inspect(global: &Global, args: &InspectArgs) -> anyhow::Result<()> {
    let template = template_of(args.format.as_deref())?;
    let mut containers = client(global).await?;
    let mut imgs = images::client(global).await?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.names {
        if args.kind != Some(ObjectType::Image) {
            match containers
                .inspect(ContainersInspectRequest {
                    id: name.clone(),
                    size: args.size,
                })
                .await
            {
                Ok(r) => {
                    found.push(serde_json::from_str(&r.into_inner().json).unwrap_or(Value::Null));
                    continue;
                }
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    return Err(call_error(global, s))
                }
                Err(s) if s.code() != tonic::Code::NotFound => {
                    errors.push(s.message().to_string());
                    continue;
                }
                Err(s) if args.kind == Some(ObjectType::Container) => {
                    errors.push(s.message().to_string());
                    continue;
                }
                Err(_) => {}
            }
        }
        match imgs
            .inspect(ImagesInspectRequest {
                reference: name.clone(),
                platform: None,
            })
            .await
        {
            Ok(r) => found.push(serde_json::from_str(&r.into_inner().json).unwrap_or(Value::Null)),
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(call_error(global, s)),
            Err(s) if args.kind == Some(ObjectType::Image) => errors.push(s.message().to_string()),
            Err(s) if s.code() == tonic::Code::NotFound => {
                errors.push(format!("No such object: {name}"))
            }
            Err(s) => errors.push(s.message().to_string()),
        }
    }
    finish(found, errors, template.as_ref())
}

/// `container inspect CONTAINER...`
pub async fn container(global: &Global, args: &ContainerInspectArgs) -> anyhow::Result<()> {
    let template = template_of(args.format.as_deref())?;
    let mut c = client(global).await?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &args.containers {
        match c
            .inspect(ContainersInspectRequest {
                id: name.clone(),
                size: args.size,
            })
            .await
        {
            Ok(r) => found.push(serde_json::from_str(&r.into_inner().json).unwrap_or(Value::Null)),
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(call_error(global, s)),
            Err(s) => errors.push(s.message().to_string()),
        }
    }
    finish(found, errors, template.as_ref())
}
