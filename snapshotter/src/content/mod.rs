//! The content store: immutable blobs by digest, written through resumable ingests.
