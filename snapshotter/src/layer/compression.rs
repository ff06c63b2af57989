//! Layer compression: detected on the way in by magic bytes, chosen on the way out.

use std::io::{self, Cursor, Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use crate::error::{Error, IoContext, Result};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Recognised only to refuse them with a clear message: OCI layers are never xz or bzip2.
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";
/// Enough bytes to tell every magic above apart.
const MAGIC_LEN: usize = 6;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`tar+gzip`, Docker's `tar.gzip`).
    Gzip,
    /// zstd (`tar+zstd`).
    Zstd,
}

impl Compression {
    /// Detects compression from the first bytes of a blob: gzip `1f 8b`, zstd
    /// `28 b5 2f fd`, anything else is taken as a plain tar.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The compression a layer media type names (OCI or Docker), `None` when the type is
    /// not a layer type this crate can apply.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Some(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `r` in the decoder its first bytes call for (see [`Compression::detect`]).
/// The peeked bytes are replayed, so nothing is lost; nothing is buffered beyond the
/// decoders' own small buffers. gzip streams of several members (as `pigz` and some
/// registries produce) are read to the end, and so are zstd streams of several frames.
pub fn decompress<'a, R: Read + 'a>(mut r: R) -> Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; MAGIC_LEN];
    let mut len = 0;
    while len < head.len() {
        match r.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading the start of a layer", e)),
        }
    }
    let head = &head[..len];
    if head.starts_with(XZ_MAGIC) || head.starts_with(BZIP2_MAGIC) {
        return Err(Error::InvalidArgument(
            "layer is compressed with xz or bzip2; only tar, tar+gzip and tar+zstd are supported"
                .into(),
        ));
    }
    let stream = Cursor::new(head.to_vec()).chain(r);
    Ok(match Compression::detect(head) {
        Compression::None => Box::new(stream),
        Compression::Gzip => Box::new(MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(stream)
                .context(|| "starting the zstd decoder".to_string())?,
        ),
    })
}

/// A streaming compressor for a layer being stored: write the tar through it, then
/// [`finish`](Compressor::finish) to write the trailer and get the writer back.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    None(W),
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    /// gzip at `level` (0–9; 1–3 are much faster than the default 6 at a small cost in
    /// size, which matters because compression is the slow side of commit and push).
    pub fn gzip(writer: W, level: u32) -> Self {
        Compressor {
            inner: Inner::Gzip(GzEncoder::new(
                writer,
                flate2::Compression::new(level.min(9)),
            )),
        }
    }

    /// A compressor of any kind; `level` is gzip's 0–9 or zstd's 1–22 (0 = default).
    pub fn new(writer: W, compression: Compression, level: i32) -> Result<Self> {
        let inner = match compression {
            Compression::None => Inner::None(writer),
            Compression::Gzip => return Ok(Self::gzip(writer, level.clamp(0, 9) as u32)),
            Compression::Zstd => Inner::Zstd(
                zstd::stream::write::Encoder::new(writer, level)
                    .context(|| "starting the zstd encoder".to_string())?,
            ),
        };
        Ok(Compressor { inner })
    }

    /// Writes the trailer, flushes, and returns the writer.
    pub fn finish(self) -> Result<W> {
        let mut w = match self.inner {
            Inner::None(w) => w,
            Inner::Gzip(e) => e.finish().context(|| "finishing gzip stream".to_string())?,
            Inner::Zstd(e) => e.finish().context(|| "finishing zstd stream".to_string())?,
        };
        w.flush()
            .context(|| "flushing compressed layer".to_string())?;
        Ok(w)
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(w) => w.write(buf),
            Inner::Gzip(e) => e.write(buf),
            Inner::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::None(w) => w.flush(),
            Inner::Gzip(e) => e.flush(),
            Inner::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut comp = Compressor::new(Vec::new(), c, 3).unwrap();
        comp.write_all(data).unwrap();
        let blob = comp.finish().unwrap();
        assert_eq!(Compression::detect(&blob), c);
        let mut out = Vec::new();
        decompress(&blob[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_every_kind() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(roundtrip(c, &data), data, "{c:?}");
        }
        // Shorter than any magic.
        assert_eq!(roundtrip(Compression::None, b"x"), b"x");
        assert_eq!(roundtrip(Compression::None, b""), b"");
    }

    #[test]
    fn reads_multi_member_gzip() {
        let mut blob = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut c = Compressor::gzip(Vec::new(), 6);
            c.write_all(part).unwrap();
            blob.extend(c.finish().unwrap());
        }
        let mut out = String::new();
        decompress(&blob[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn refuses_xz_and_knows_media_types() {
        assert!(decompress(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2][..]).is_err());
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_media_type("application/json"), None);
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(Compression::from_media_type(c.oci_media_type()), Some(c));
        }
    }
}
