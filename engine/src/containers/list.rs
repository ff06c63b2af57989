//! List (`ps`): records filtered and sorted newest first. Reads the store only, never a
//! container lock, so it answers while containers start and stop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::engine::v1::{
    ContainerStatus, ContainerSummary, ContainersListRequest, ContainersListResponse,
};
use berth_proto::images::v1 as snap;
use berth_proto::images::v1::images_client::ImagesClient;
use berth_proto::snapshots::v1::UsageRequest;

use super::record::Record;
use super::Manager;
use crate::error::{Error, Result};
use crate::images::filter::Filters;

/// Filter keys of `List`.
const FILTERS: [&str; 9] = [
    "id", "name", "label", "label!", "status", "ancestor", "exited", "network", "before",
];

/// The status word of Docker's State.Status and the `status` filter.
pub fn status_word(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Unspecified | ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Paused => "paused",
        ContainerStatus::Restarting => "restarting",
        ContainerStatus::Exited => "exited",
        ContainerStatus::Dead => "dead",
    }
}

fn ago(t: Option<&prost_types::Timestamp>) -> String {
    let d = t
        .and_then(|t| SystemTime::try_from(*t).ok())
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    berth_proto::words::duration(d)
}

/// The STATUS column: "Up 3 seconds", "Exited (0) 2 minutes ago", "Created".
pub fn status_text(r: &Record) -> String {
    let s = r.state.clone().unwrap_or_default();
    match r.status() {
        ContainerStatus::Running => format!("Up {}", ago(s.started_at.as_ref())),
        ContainerStatus::Paused => format!("Up {} (Paused)", ago(s.started_at.as_ref())),
        ContainerStatus::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            ago(s.finished_at.as_ref())
        ),
        ContainerStatus::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            ago(s.finished_at.as_ref())
        ),
        ContainerStatus::Dead => "Dead".into(),
        ContainerStatus::Created | ContainerStatus::Unspecified => "Created".into(),
    }
}

/// The command as `ps` shows it: as Docker, an argument holding a space is put in single
/// quotes (`sh -c 'sleep 1; echo'`), without any further escaping.
pub fn command(r: &Record) -> String {
    std::iter::once(r.path.clone())
        .chain(r.args.iter().map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

fn time_key(r: &Record) -> (i64, i32) {
    r.created.map(|t| (t.seconds, t.nanos)).unwrap_or_default()
}

fn matches(r: &Record, f: &Filters, before: Option<(i64, i32)>) -> bool {
    let any = |key: &str, p: &dyn Fn(&str) -> bool| {
        let v = f.get(key);
        v.is_empty() || v.iter().any(|x| p(x))
    };
    let state = r.state.clone().unwrap_or_default();
    any("id", &|v| r.id.starts_with(v))
        && any("name", &|v| r.name.contains(v.trim_start_matches('/')))
        && any("status", &|v| status_word(r.status()) == v)
        && any("exited", &|v| {
            r.status() == ContainerStatus::Exited && v.parse() == Ok(state.exit_code)
        })
        && any("ancestor", &|v| {
            r.image == v
                || r.image_id == v
                || r.image_id
                    .strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(v.trim_start_matches("sha256:")))
        })
        && any("network", &|v| {
            let mode = &r.config().network_mode;
            v == mode || (mode.is_empty() && v == "none")
        })
        && f.labels_match(&r.config().labels)
        && before.is_none_or(|b| time_key(r) < b)
}

/// One row.
pub fn summary(r: &Record) -> ContainerSummary {
    let c = r.config();
    ContainerSummary {
        id: r.id.clone(),
        name: r.name.clone(),
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        command: command(r),
        created: r.created,
        status: r.status() as i32,
        status_text: status_text(r),
        ports: Vec::new(),
        labels: c.labels.clone(),
        size_rw: None,
        size_root_fs: None,
        exit_code: r.state.as_ref().map(|s| s.exit_code).unwrap_or_default(),
        networks: vec![if c.network_mode.is_empty() {
            "none".into()
        } else {
            c.network_mode.clone()
        }],
        mounts: Vec::new(),
    }
}

/// (size of the writable layer, size of the whole root filesystem).
pub async fn sizes(
    m: &Manager,
    r: &Record,
    image_sizes: &mut HashMap<String, i64>,
) -> (Option<i64>, Option<i64>) {
    let rw = m
        .snapshots()
        .usage(UsageRequest { key: r.id.clone() })
        .await
        .ok()
        .map(|u| u.into_inner().size);
    let image = match image_sizes.get(&r.image_id) {
        Some(s) => Some(*s),
        None => {
            let s = ImagesClient::new(m.ctx.snapshotter.channel.clone())
                .max_decoding_message_size(crate::images::MAX_MESSAGE)
                .inspect(snap::InspectRequest {
                    name: r.image_id.clone(),
                    platform: None,
                })
                .await
                .ok()
                .map(|i| i.into_inner().size);
            if let Some(s) = s {
                image_sizes.insert(r.image_id.clone(), s);
            }
            s
        }
    };
    (rw, rw.map(|rw| rw + image.unwrap_or(0)))
}

/// `Containers.List`
pub async fn list(m: &Arc<Manager>, req: ContainersListRequest) -> Result<ContainersListResponse> {
    let filters = Filters::parse(&req.filters, &FILTERS)?;
    for v in filters.get("status") {
        if ![
            "created",
            "running",
            "paused",
            "restarting",
            "exited",
            "dead",
            "removing",
        ]
        .contains(&v.as_str())
        {
            return Err(Error::InvalidArgument(format!(
                "invalid filter 'status={v}'"
            )));
        }
    }
    let before = match filters.get("before").first() {
        Some(b) => Some(time_key(&m.resolve(b)?)),
        None => None,
    };
    let all = req.all || !req.filters.is_empty();
    let mut recs: Vec<Record> = m
        .store
        .all()?
        .into_iter()
        .filter(|r| all || r.is_running())
        .filter(|r| matches(r, &filters, before))
        .collect();
    recs.sort_by(|a, b| time_key(b).cmp(&time_key(a)).then_with(|| a.id.cmp(&b.id)));
    if req.limit > 0 {
        recs.truncate(req.limit as usize);
    }
    let mut out = Vec::with_capacity(recs.len());
    let mut image_sizes = HashMap::new();
    for r in &recs {
        let mut s = summary(r);
        if req.size {
            (s.size_rw, s.size_root_fs) = sizes(m, r, &mut image_sizes).await;
        }
        out.push(s);
    }
    Ok(ContainersListResponse { containers: out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::engine::v1::{ContainerConfig, ContainerState};

    fn rec(status: ContainerStatus, exit: i32) -> Record {
        let ago = SystemTime::now() - std::time::Duration::from_secs(3);
        Record {
            id: "abcdef".repeat(10) + "abcd",
            name: "web".into(),
            image: "busybox".into(),
            image_id: "sha256:1234".into(),
            path: "sh".into(),
            args: vec!["-c".into(), "exit 3".into()],
            config: Some(ContainerConfig {
                labels: [("app".to_string(), "x".to_string())].into(),
                ..Default::default()
            }),
            state: Some(ContainerState {
                status: status as i32,
                exit_code: exit,
                started_at: Some(ago.into()),
                finished_at: Some(ago.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_texts_read_like_docker() {
        assert_eq!(
            status_text(&rec(ContainerStatus::Running, 0)),
            "Up 3 seconds"
        );
        assert_eq!(
            status_text(&rec(ContainerStatus::Exited, 3)),
            "Exited (3) 3 seconds ago"
        );
        assert_eq!(status_text(&rec(ContainerStatus::Created, 0)), "Created");
        assert_eq!(command(&rec(ContainerStatus::Created, 0)), "sh -c 'exit 3'");
    }

    #[test]
    fn filters_combine() {
        let f = |v: &[&str]| {
            Filters::parse(
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                &FILTERS,
            )
            .unwrap()
        };
        let r = rec(ContainerStatus::Exited, 3);
        assert!(matches(&r, &f(&["status=exited", "exited=3"]), None));
        assert!(matches(&r, &f(&["status=running", "status=exited"]), None));
        assert!(!matches(&r, &f(&["status=running"]), None));
        assert!(matches(&r, &f(&["name=we", "id=abc", "label=app=x"]), None));
        assert!(!matches(&r, &f(&["label=app=y"]), None));
        assert!(matches(&r, &f(&["ancestor=busybox"]), None));
        assert!(matches(&r, &f(&["ancestor=12"]), None));
        assert!(!matches(&r, &f(&["ancestor=alpine"]), None));
    }
}
