//! Image records and descriptors between their domain and proto forms.

use berth_proto::images::v1 as pb;
use berth_proto::types::v1 as types;

use crate::error::{Error, Result};
use crate::images::record::{Descriptor, ImageRecord};
use crate::images::resolve::Platform;

fn timestamp((seconds, nanos): (i64, u32)) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds,
        nanos: nanos as i32,
    }
}

/// Domain → proto descriptor.
pub fn descriptor(d: &Descriptor) -> types::Descriptor {
    types::Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: d.annotations.clone().into_iter().collect(),
        platform: None,
    }
}

/// Proto → domain descriptor, validating the digest.
pub fn from_descriptor(d: types::Descriptor) -> Result<Descriptor> {
    crate::digest::Digest::parse(&d.digest)?;
    if d.size < 0 {
        return Err(Error::InvalidArgument(format!(
            "negative size for {}",
            d.digest
        )));
    }
    Ok(Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
        annotations: d.annotations.into_iter().collect(),
    })
}

/// Domain → proto record.
pub fn image(r: &ImageRecord) -> pb::Image {
    pb::Image {
        name: r.name.clone(),
        labels: r.labels.clone().into_iter().collect(),
        target: Some(descriptor(&r.target)),
        created_at: Some(timestamp(r.created)),
        updated_at: Some(timestamp(r.updated)),
    }
}

/// Domain → proto platform.
pub fn platform(p: &Platform) -> types::Platform {
    types::Platform {
        os: p.os.clone(),
        architecture: p.architecture.clone(),
        variant: p.variant.clone(),
        ..Default::default()
    }
}

/// Proto → domain platform; `None` for an unset or empty one.
pub fn from_platform(p: Option<types::Platform>) -> Result<Option<Platform>> {
    match p {
        Some(p) if !p.os.is_empty() || !p.architecture.is_empty() => {
            if p.os.is_empty() || p.architecture.is_empty() {
                return Err(Error::InvalidArgument(
                    "a platform needs both os and architecture".into(),
                ));
            }
            Ok(Some(Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant,
            }))
        }
        _ => Ok(None),
    }
}
