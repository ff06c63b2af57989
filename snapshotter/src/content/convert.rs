//! Conversions between `berth.content.v1` messages and the domain types, and between
//! domain errors and gRPC statuses where the content API needs more than the crate's one
//! `From<Error> for Status`.

use std::time::SystemTime;

use berth_proto::content::v1 as pb;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use super::{Info, IngestStatus};
use crate::digest::Digest;
use crate::error::{Error, Result};

/// A required digest.
pub(super) fn digest(s: &str) -> Result<Digest> {
    Digest::parse(s)
}

/// A digest that may be left empty.
pub(super) fn optional_digest(s: &str) -> Result<Option<Digest>> {
    if s.is_empty() {
        Ok(None)
    } else {
        Digest::parse(s).map(Some)
    }
}

/// A size or offset: negative ones are refused.
pub(super) fn unsigned(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} is negative")))
}

/// A size where 0 means "not given".
pub(super) fn optional_size(v: i64, what: &str) -> Result<Option<u64>> {
    unsigned(v, what).map(|v| (v != 0).then_some(v))
}

/// Sizes on the wire are int64; no real blob reaches the limit.
pub(super) fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    t.into()
}

/// A missing or invalid timestamp reads as the epoch: it only informs.
pub(super) fn system_time(t: Option<prost_types::Timestamp>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl From<Info> for pb::ContentInfo {
    fn from(i: Info) -> Self {
        pb::ContentInfo {
            digest: i.digest.to_string(),
            size: signed(i.size),
            created_at: Some(timestamp(i.created_at)),
            updated_at: Some(timestamp(i.updated_at)),
            labels: i.labels.into_iter().collect(),
        }
    }
}

impl TryFrom<pb::ContentInfo> for Info {
    type Error = Error;
    fn try_from(i: pb::ContentInfo) -> Result<Self> {
        Ok(Info {
            digest: digest(&i.digest)?,
            size: unsigned(i.size, "size")?,
            created_at: system_time(i.created_at),
            updated_at: system_time(i.updated_at),
            labels: i.labels.into_iter().collect(),
        })
    }
}

impl From<IngestStatus> for pb::IngestStatus {
    fn from(s: IngestStatus) -> Self {
        pb::IngestStatus {
            r#ref: s.reference,
            offset: signed(s.offset),
            total: s.total.map_or(0, signed),
            expected: s.expected.map(|d| d.to_string()).unwrap_or_default(),
            started_at: Some(timestamp(s.started_at)),
            updated_at: Some(timestamp(s.updated_at)),
        }
    }
}

impl TryFrom<pb::IngestStatus> for IngestStatus {
    type Error = Error;
    fn try_from(s: pb::IngestStatus) -> Result<Self> {
        Ok(IngestStatus {
            reference: s.r#ref,
            offset: unsigned(s.offset, "offset")?,
            total: optional_size(s.total, "total")?,
            expected: optional_digest(&s.expected)?,
            started_at: system_time(s.started_at),
            updated_at: system_time(s.updated_at),
        })
    }
}

/// Metadata keys that carry a commit mismatch across the wire, so the client half can
/// rebuild [`Error::DigestMismatch`] / [`Error::SizeMismatch`] from an InvalidArgument.
const KIND: &str = "berth-content-error";
const EXPECTED: &str = "berth-content-expected";
const ACTUAL: &str = "berth-content-actual";
/// Binary: `what` names the ingest, whose ref may hold any bytes.
const WHAT: &str = "berth-content-what-bin";

/// The status of a failed Write call. `content.proto` makes a refused commit
/// InvalidArgument (the client sent a wrong size or digest), where the crate maps mismatches
/// to DataLoss (data corrupted on our side); everything else maps as usual.
pub(super) fn write_status(e: Error) -> Status {
    let (kind, what, expected, actual) = match &e {
        Error::DigestMismatch {
            what,
            expected,
            actual,
        } => ("digest", what, expected.clone(), actual.clone()),
        Error::SizeMismatch {
            what,
            expected,
            actual,
        } => ("size", what, expected.to_string(), actual.to_string()),
        _ => return e.into(),
    };
    let mut md = MetadataMap::new();
    // Digests and decimal sizes are always valid ASCII metadata.
    if let (Ok(exp), Ok(act)) = (expected.parse(), actual.parse()) {
        md.insert(KIND, MetadataValue::from_static(kind));
        md.insert(EXPECTED, exp);
        md.insert(ACTUAL, act);
        md.insert_bin(WHAT, MetadataValue::from_bytes(what.as_bytes()));
    }
    Status::with_metadata(Code::InvalidArgument, e.to_string(), md)
}

/// The domain error a status stands for, as the server's mapping produced it.
pub(super) fn error(status: Status) -> Error {
    let msg = status.message().to_string();
    match status.code() {
        // The server's message is the whole "<subject> not found"; the variant adds the
        // suffix again.
        Code::NotFound => Error::NotFound(
            msg.strip_suffix(" not found")
                .map_or(msg.clone(), str::to_string),
        ),
        Code::AlreadyExists => Error::AlreadyExists(
            msg.strip_suffix(" already exists")
                .map_or(msg.clone(), str::to_string),
        ),
        Code::InvalidArgument => mismatch(status.metadata()).unwrap_or(Error::InvalidArgument(msg)),
        Code::FailedPrecondition => Error::FailedPrecondition(msg),
        Code::OutOfRange => Error::OutOfRange(msg),
        _ => Error::Remote(status),
    }
}

fn mismatch(md: &MetadataMap) -> Option<Error> {
    let get = |k| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let what = md
        .get_bin(WHAT)
        .and_then(|v| v.to_bytes().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())?;
    let (expected, actual) = (get(EXPECTED)?, get(ACTUAL)?);
    match get(KIND)?.as_str() {
        "digest" => Some(Error::DigestMismatch {
            what,
            expected,
            actual,
        }),
        "size" => Some(Error::SizeMismatch {
            what,
            expected: expected.parse().ok()?,
            actual: actual.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_survive_the_wire() {
        for e in [
            Error::DigestMismatch {
                what: "ingest ü/..".into(),
                expected: Digest::of(b"a").to_string(),
                actual: Digest::of(b"b").to_string(),
            },
            Error::SizeMismatch {
                what: "ingest x".into(),
                expected: 3,
                actual: 4,
            },
        ] {
            let text = e.to_string();
            let status = write_status(e);
            assert_eq!(status.code(), Code::InvalidArgument);
            let back = error(status);
            assert!(
                matches!(
                    back,
                    Error::DigestMismatch { .. } | Error::SizeMismatch { .. }
                ),
                "{back:?}"
            );
            assert_eq!(back.to_string(), text);
        }
    }

    #[test]
    fn classes_round_trip() {
        for e in [
            Error::NotFound("blob x".into()),
            Error::AlreadyExists("blob x".into()),
            Error::InvalidArgument("bad".into()),
            Error::FailedPrecondition("ingest r is locked".into()),
            Error::OutOfRange("past the end".into()),
        ] {
            let text = e.to_string();
            let back = error(e.into());
            assert_eq!(back.to_string(), text);
        }
        assert!(
            matches!(error(Status::unavailable("down")), Error::Remote(s) if s.code() == Code::Unavailable)
        );
    }
}
