//! berth's gRPC API. The `.proto` files under `berth/` are the reference; this crate holds
//! only the code generated from them and the encoded descriptor set for reflection.

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
