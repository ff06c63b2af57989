//! `inspect` (containers, then images) and `container inspect`.

use berth_proto::engine::v1::{ContainersInspectRequest, ImagesInspectRequest};
use serde_json::Value;

use super::client;
use crate::cli::{ContainerInspectArgs, Global, InspectArgs, ObjectType};
use crate::commands::images::{self, pretty};
use crate::commands::Reported;
use crate::connection::call_error;

/// Prints the objects found as one JSON array, then the errors; fails when any failed.
fn finish(found: Vec<Value>, errors: Vec<String>) -> anyhow::Result<()> {
    println!("{}", pretty(&Value::Array(found))?);
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
    finish(found, errors)
}

/// `container inspect CONTAINER...`
pub async fn container(global: &Global, args: &ContainerInspectArgs) -> anyhow::Result<()> {
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
    finish(found, errors)
}
