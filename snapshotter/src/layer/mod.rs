//! Layers: a layer archive (tar, tar+gzip, tar+zstd) applied to a directory as overlayfs
//! expects it, and an overlay upper directory turned back into a layer.
