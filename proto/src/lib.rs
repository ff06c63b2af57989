//! berth's gRPC API. The `.proto` files under `berth/` are the reference; this crate holds
//! the code generated from them, the encoded descriptor set for reflection, and [`words`]:
//! how the engine and berthctl both word API values for people.

// The doc comments below are generated from the .proto comments, which write placeholders
// such as "sha256:<hex>" and "<root>/volumes/<name>" for readers in every language.
#![allow(rustdoc::invalid_html_tags)]
// Stream oneofs pair a large first message (options, results) with small data chunks; boxing
// the large variant would only make every caller write Box::new.
#![allow(clippy::large_enum_variant)]

pub mod words;

/// Encoded `FileDescriptorSet` of every berth `.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/berth_descriptor.bin"));

/// Messages shared by several services.
pub mod types {
    /// `berth.types.v1`
    pub mod v1 {
        tonic::include_proto!("berth.types.v1");
    }
}

/// The `Version` service every berth process serves.
pub mod version {
    /// `berth.version.v1`
    pub mod v1 {
        tonic::include_proto!("berth.version.v1");
    }
}

/// The engine's public API.
pub mod engine {
    /// `berth.engine.v1`
    pub mod v1 {
        tonic::include_proto!("berth.engine.v1");
    }
}

/// The content store: blobs by digest (served by berth-snapshotter).
pub mod content {
    /// `berth.content.v1`
    pub mod v1 {
        tonic::include_proto!("berth.content.v1");
    }
}

/// Snapshots: overlayfs layers, layer diff and apply (served by berth-snapshotter).
pub mod snapshots {
    /// `berth.snapshots.v1`
    pub mod v1 {
        tonic::include_proto!("berth.snapshots.v1");
    }
}

/// Image records, pull, push, load, save and import (served by berth-snapshotter).
pub mod images {
    /// `berth.images.v1`
    pub mod v1 {
        tonic::include_proto!("berth.images.v1");
    }
}

/// Dockerfile builds (served by berth-builder).
pub mod builder {
    /// `berth.builder.v1`
    pub mod v1 {
        tonic::include_proto!("berth.builder.v1");
    }
}

/// The Task API of one container's shim (served by berth-shim).
pub mod shim {
    /// `berth.shim.v1`
    pub mod v1 {
        tonic::include_proto!("berth.shim.v1");
    }
}
