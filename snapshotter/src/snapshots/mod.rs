//! Snapshots: overlayfs layers as parent chains of directories.
