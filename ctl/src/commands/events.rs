//! `berthctl system events`

use std::time::{Duration, SystemTime};

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::{Event, EventsRequest};
use serde_json::json;

use crate::cli::{EventsArgs, Format, Global};
use crate::connection::{call_error, connect};

/// Parses `--until`: an RFC 3339 time, or a duration from now.
fn until(s: &str) -> anyhow::Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let d: Duration = humantime::parse_duration(s).map_err(|_| {
        anyhow::anyhow!("invalid --until {s:?}: use an RFC 3339 time or a duration like 10s")
    })?;
    Ok(SystemTime::now() + d)
}

fn time_of(e: &Event) -> String {
    e.time
        .and_then(|t| SystemTime::try_from(t).ok())
        .map(|t| humantime::format_rfc3339_nanos(t).to_string())
        .unwrap_or_default()
}

fn line(e: &Event) -> String {
    let mut attrs: Vec<_> = e.attributes.iter().collect();
    attrs.sort();
    let attrs = attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!("{} [{}] {} {}", time_of(e), e.seq, e.r#type, e.action);
    if !e.id.is_empty() {
        out.push(' ');
        out.push_str(&e.id);
    }
    if !attrs.is_empty() {
        out.push_str(&format!(" ({attrs})"));
    }
    out
}

/// Streams events until the engine ends the stream or `--until` passes.
pub async fn run(global: &Global, args: &EventsArgs) -> anyhow::Result<()> {
    let until = args
        .until
        .as_deref()
        .map(until)
        .transpose()?
        .map(prost_types::Timestamp::from);
    let mut client = SystemClient::new(connect(global).await?);
    let mut stream = client
        .events(EventsRequest {
            since: args.since,
            until,
            filters: args.filters.clone(),
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    while let Some(e) = stream.message().await.map_err(|s| call_error(global, s))? {
        match args.format {
            Format::Table => println!("{}", line(&e)),
            Format::Json => println!(
                "{}",
                json!({
                    "seq": e.seq,
                    "time": time_of(&e),
                    "type": e.r#type,
                    "action": e.action,
                    "id": e.id,
                    "attributes": e.attributes,
                })
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_takes_times_and_durations() {
        assert!(until("2026-01-02T15:04:05Z").is_ok());
        assert!(until("10s").unwrap() > SystemTime::now());
        assert!(until("yesterday-ish").is_err());
    }
}
