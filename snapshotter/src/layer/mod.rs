//! Layers: a layer archive (tar, tar+gzip, tar+zstd) applied to a directory as overlayfs
//! expects it, and an overlay upper directory turned back into a layer.
//!
//! - [`apply`] unpacks a layer into the empty upper directory of a new snapshot. It is
//!   the one place where data from outside (a pulled or loaded image) becomes files on
//!   the host, so every path is resolved inside the root by the kernel (`openat2` with
//!   `RESOLVE_IN_ROOT`, no symlinks followed) and hostile entries are refused with an
//!   error naming them; see [`apply`] for the list.
//! - [`diff`] writes an upper directory as a deterministic OCI layer tar.
//! - [`decompress`] and [`Compressor`] handle the blob's compression.
//!
//! Both directions are blocking and streaming (never the whole layer in memory): call
//! them from a blocking thread.

mod apply;
mod compression;
mod diff;
mod header;
mod path;
mod resolve;
mod whiteout;
mod xattr;

#[cfg(test)]
mod tests;

pub use apply::{apply, ApplyStats};
pub use compression::{decompress, Compression, Compressor};
pub use diff::{diff, DiffStats};
