//! `logs`

use std::time::{Duration, SystemTime};

use berth_proto::engine::v1::ContainersLogsRequest;

use super::{client, run};
use crate::cli::{Global, LogsArgs};
use crate::connection::call_error;

/// `--since`/`--until`: an RFC 3339 time, Unix seconds, or a duration ago ("42m").
pub fn parse_time(s: &str) -> anyhow::Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    let d = humantime::parse_duration(s).map_err(|_| {
        anyhow::anyhow!(
            "invalid time {s:?}: use an RFC 3339 time, Unix seconds, or a duration like 10m"
        )
    })?;
    Ok(SystemTime::now() - d)
}

/// `logs [-f] [--tail N] [--since T] [--until T] [-t] CONTAINER`
pub async fn logs(global: &Global, args: &LogsArgs) -> anyhow::Result<()> {
    let tail = match args.tail.as_str() {
        "all" | "" => None,
        n => Some(
            n.parse::<i64>()
                .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number or \"all\""))?
                .max(0) as u64,
        ),
    };
    let ts = |s: &Option<String>| -> anyhow::Result<Option<prost_types::Timestamp>> {
        Ok(s.as_deref().map(parse_time).transpose()?.map(Into::into))
    };
    let stream = client(global)
        .await?
        .logs(ContainersLogsRequest {
            id: args.container.clone(),
            follow: args.follow,
            since: ts(&args.since)?,
            until: ts(&args.until)?,
            tail,
            timestamps: args.timestamps,
            stdout: true,
            stderr: true,
        })
        .await
        .map_err(|s| call_error(global, s))?
        .into_inner();
    run::print_logs(stream, args.timestamps)
        .await
        .map_err(|s| call_error(global, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("1700000000").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(parse_time("2024-01-02T03:04:05Z").is_ok());
        let t = parse_time("10m").unwrap();
        let ago = SystemTime::now().duration_since(t).unwrap();
        assert!(ago >= Duration::from_secs(599) && ago < Duration::from_secs(700));
        assert!(parse_time("yesterday-ish").is_err());
    }
}
