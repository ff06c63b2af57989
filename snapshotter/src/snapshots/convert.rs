//! Conversions between `berth.snapshots.v1` messages and the domain types, in both
//! directions (the server uses one, the gRPC client the other).

use std::time::SystemTime;

use berth_proto::snapshots::v1 as pb;
use berth_proto::types::v1 as types;

use super::{Info, Kind, Mount, Usage};
use crate::error::{Error, Result};

pub(super) fn kind_to_proto(k: Kind) -> pb::SnapshotKind {
    match k {
        Kind::Active => pb::SnapshotKind::Active,
        Kind::View => pb::SnapshotKind::View,
        Kind::Committed => pb::SnapshotKind::Committed,
    }
}

pub(super) fn kind_from_proto(k: i32) -> Result<Kind> {
    match pb::SnapshotKind::try_from(k) {
        Ok(pb::SnapshotKind::Active) => Ok(Kind::Active),
        Ok(pb::SnapshotKind::View) => Ok(Kind::View),
        Ok(pb::SnapshotKind::Committed) => Ok(Kind::Committed),
        _ => Err(Error::InvalidArgument(format!("unknown snapshot kind {k}"))),
    }
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn time(t: Option<prost_types::Timestamp>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

pub(super) fn info_to_proto(i: Info) -> pb::SnapshotInfo {
    pb::SnapshotInfo {
        name: i.name,
        parent: i.parent,
        kind: kind_to_proto(i.kind) as i32,
        created_at: Some(timestamp(i.created)),
        updated_at: Some(timestamp(i.updated)),
        labels: i.labels,
    }
}

/// A snapshot's metadata from a server. An unset kind is refused.
pub(super) fn info_from_proto(i: pb::SnapshotInfo) -> Result<Info> {
    Ok(Info {
        kind: kind_from_proto(i.kind)?,
        name: i.name,
        parent: i.parent,
        created: time(i.created_at),
        updated: time(i.updated_at),
        labels: i.labels,
    })
}

/// The snapshot named in an update request. Only its name and labels are used, so the
/// other fields need not be set.
pub(super) fn update_info_from_proto(i: pb::SnapshotInfo) -> Info {
    Info {
        name: i.name,
        parent: i.parent,
        kind: kind_from_proto(i.kind).unwrap_or(Kind::Committed),
        created: time(i.created_at),
        updated: time(i.updated_at),
        labels: i.labels,
    }
}

pub(super) fn mounts_to_proto(m: Vec<Mount>) -> Vec<types::Mount> {
    m.into_iter().map(Into::into).collect()
}

pub(super) fn mounts_from_proto(m: Vec<types::Mount>) -> Vec<Mount> {
    m.into_iter().map(Into::into).collect()
}

/// Sizes are `int64` on the wire; a usage beyond `i64::MAX` is reported as the maximum.
pub(super) fn usage_to_proto(u: Usage) -> pb::UsageResponse {
    pb::UsageResponse {
        size: i64::try_from(u.size).unwrap_or(i64::MAX),
        inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
    }
}

pub(super) fn usage_from_proto(u: pb::UsageResponse) -> Usage {
    Usage {
        size: u64::try_from(u.size).unwrap_or_default(),
        inodes: u64::try_from(u.inodes).unwrap_or_default(),
    }
}

/// Turns a server's status back into the error class it was made from, so callers of a
/// remote snapshotter can match on the same variants as for a local one.
pub(super) fn error_from_status(s: tonic::Status) -> Error {
    let msg = s.message();
    match s.code() {
        // The server's message is the error's Display, which already appended these words.
        tonic::Code::NotFound => {
            Error::NotFound(msg.strip_suffix(" not found").unwrap_or(msg).to_string())
        }
        tonic::Code::AlreadyExists => Error::AlreadyExists(
            msg.strip_suffix(" already exists")
                .unwrap_or(msg)
                .to_string(),
        ),
        tonic::Code::InvalidArgument => Error::InvalidArgument(msg.to_string()),
        tonic::Code::FailedPrecondition => Error::FailedPrecondition(msg.to_string()),
        _ => Error::Remote(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trip() {
        let info = Info {
            name: "k".into(),
            parent: "p".into(),
            kind: Kind::View,
            created: SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(1_500_000_007),
            updated: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(9),
            labels: [("a".to_string(), "b".to_string())].into(),
        };
        assert_eq!(info_from_proto(info_to_proto(info.clone())).unwrap(), info);
        let top = Info {
            parent: String::new(),
            ..info
        };
        assert_eq!(info_to_proto(top.clone()).parent, "");
        assert_eq!(info_from_proto(info_to_proto(top.clone())).unwrap(), top);
        let unset = pb::SnapshotInfo::default();
        assert!(info_from_proto(unset).is_err());
    }

    #[test]
    fn statuses_map_back_to_error_classes() {
        let round = |e: Error| error_from_status(tonic::Status::from(e));
        match round(Error::NotFound("snapshot \"x\"".into())) {
            Error::NotFound(m) => assert_eq!(m, "snapshot \"x\""),
            e => panic!("{e:?}"),
        }
        match round(Error::AlreadyExists("snapshot \"x\"".into())) {
            Error::AlreadyExists(m) => assert_eq!(m, "snapshot \"x\""),
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            round(Error::FailedPrecondition("busy".into())),
            Error::FailedPrecondition(_)
        ));
        assert!(matches!(
            error_from_status(tonic::Status::unavailable("down")),
            Error::Remote(s) if s.code() == tonic::Code::Unavailable
        ));
    }

    #[test]
    fn usage_saturates() {
        let u = Usage {
            size: u64::MAX,
            inodes: 3,
        };
        let p = usage_to_proto(u);
        assert_eq!((p.size, p.inodes), (i64::MAX, 3));
        assert_eq!(usage_from_proto(p).inodes, 3);
    }
}
