//! Turning an overlay upper directory back into an OCI layer tar.
//!
//! The walk is depth-first with the names of each directory sorted bytewise (the order
//! Go's `filepath.Walk` gives Docker), headers carry no user or group names and whole
//! seconds, so the same tree always gives the same bytes and so the same diff ID.
//! Nothing is followed: directories are opened `O_NOFOLLOW` relative to their parent's
//! handle, symlinks are read with `readlinkat`, xattrs are read from descriptors or with
//! the `l*` calls.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use tar::{EntryType, Header};

use super::resolve::{list_dir, proc_fd_path};
use super::whiteout;
use super::xattr::{self, Xattrs};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};

/// Buffer for file data on its way into the tar.
const COPY_BUF: usize = 256 * 1024;
const BLOCK: usize = 512;
/// Largest value a 7-digit octal ustar id field holds; above it a PAX record says it.
const MAX_OCTAL_ID: u64 = 0o7777777;
/// Width of the ustar name and linkname fields.
const NAME_FIELD: usize = 100;

/// What a diff wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// sha256 of the tar written: the layer's diff ID.
    pub diff_id: Digest,
    /// Bytes written.
    pub size: u64,
}

/// Writes the overlayfs upper directory `upper` as an uncompressed OCI layer tar to
/// `writer`, deterministically ordered, and returns its diff ID.
///
/// Overlay whiteouts (char device 0/0) become empty `.wh.<name>` files, opaque
/// directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry after their own,
/// an inode met a second time becomes a hardlink entry, xattrs go out as PAX
/// `SCHILY.xattr.*` (never `trusted.overlay.*` or `user.overlay.*`), long names as PAX
/// `path`/`linkpath`.
/// `upper` itself has no entry (as with Docker and containerd). Sockets are skipped: a
/// tar cannot hold them.
///
/// Refused: a name starting `.wh.` (it would read back as a whiteout), and an upper
/// directory that relies on overlayfs `redirect_dir` or `metacopy` (its files' data or
/// directory contents live in lower layers, so no self-contained layer can be written:
/// mount snapshots with `redirect_dir=off,metacopy=off`).
///
/// The tree must not change while it is walked (the container is stopped or paused);
/// a file that shrinks meanwhile is an error rather than a corrupt tar.
pub fn diff(upper: &Path, writer: impl Write) -> Result<DiffStats> {
    let dir = rfs::open(
        upper,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("opening upper directory {}", upper.display()))?;
    let mut differ = Differ {
        out: HashingWriter::new(writer),
        links: HashMap::new(),
        buf: vec![0; COPY_BUF],
    };
    differ.walk(dir.as_fd(), b"")?;
    differ
        .out
        .write_all(&[0; 2 * BLOCK])
        .context(|| "writing the end of the layer tar".to_string())?;
    let (mut writer, diff_id, size) = differ.out.finish();
    writer
        .flush()
        .context(|| "flushing the layer tar".to_string())?;
    Ok(DiffStats { diff_id, size })
}

struct Differ<W: Write> {
    out: HashingWriter<W>,
    /// (device, inode) → path of its first entry, for inodes with several links.
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
}

/// One tar entry to write.
struct Item<'a> {
    path: &'a [u8],
    kind: EntryType,
    st: &'a Stat,
    mode: u32,
    size: u64,
    link: Option<&'a [u8]>,
    dev: Option<(u32, u32)>,
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

impl<W: Write> Differ<W> {
    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<()> {
        let shown = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        let mut names = list_dir(dir).context(|| format!("listing {:?}", shown(prefix)))?;
        names.sort();
        for name in names {
            let path = [prefix, &name].concat();
            let ctx = |what: &str| format!("{what} {:?}", shown(&path));
            let st = rfs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .context(|| ctx("inspecting"))?;
            let file_type = FileType::from_raw_mode(st.st_mode);
            if whiteout::is_whiteout_spelling(&name) {
                return Err(Error::Layer {
                    entry: shown(&path),
                    reason: "a name starting with `.wh.` would read back as a whiteout".into(),
                });
            }
            if whiteout::is_overlay_whiteout(&st) {
                let wh = [prefix, &whiteout::layer_name(&name)].concat();
                self.emit(
                    &Item::plain(&wh, EntryType::Regular, &st, 0o600),
                    io::empty(),
                )?;
                continue;
            }
            if file_type != FileType::Directory && st.st_nlink > 1 {
                let key = (st.st_dev, st.st_ino);
                if let Some(first) = self.links.get(&key).cloned() {
                    let mut item = Item::plain(&path, EntryType::Link, &st, perm(&st));
                    item.link = Some(&first);
                    self.emit(&item, io::empty())?;
                    continue;
                }
                self.links.insert(key, path.clone());
            }
            match file_type {
                FileType::Directory => {
                    let fd = rfs::openat(
                        dir,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .context(|| ctx("opening"))?;
                    let st = rfs::fstat(&fd).context(|| ctx("inspecting"))?;
                    let all = xattr::list_fd(fd.as_fd()).context(|| ctx("reading xattrs of"))?;
                    let (opaque, xattrs) = layer_xattrs(&path, all)?;
                    let dpath = [&path[..], b"/"].concat();
                    let mut item = Item::plain(&dpath, EntryType::Directory, &st, perm(&st));
                    item.xattrs = &xattrs;
                    self.emit(&item, io::empty())?;
                    if opaque {
                        let marker = [&dpath[..], whiteout::OPAQUE_MARKER].concat();
                        self.emit(
                            &Item::plain(&marker, EntryType::Regular, &st, perm(&st)),
                            io::empty(),
                        )?;
                    }
                    self.walk(fd.as_fd(), &dpath)?;
                }
                FileType::RegularFile => {
                    let fd = rfs::openat(
                        dir,
                        name.as_slice(),
                        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .context(|| ctx("opening"))?;
                    // The header describes what was opened, not what was named earlier.
                    let st = rfs::fstat(&fd).context(|| ctx("inspecting"))?;
                    let all = xattr::list_fd(fd.as_fd()).context(|| ctx("reading xattrs of"))?;
                    let (_, xattrs) = layer_xattrs(&path, all)?;
                    let size = u64::try_from(st.st_size).unwrap_or(0);
                    let mut item = Item::plain(&path, EntryType::Regular, &st, perm(&st));
                    item.size = size;
                    item.xattrs = &xattrs;
                    self.emit(&item, File::from(fd))?;
                }
                FileType::Symlink => {
                    let target = rfs::readlinkat(dir, name.as_slice(), Vec::new())
                        .context(|| ctx("reading symlink"))?;
                    let xattrs = self.xattrs_nofollow(dir, &name, &path)?;
                    let mut item = Item::plain(&path, EntryType::Symlink, &st, perm(&st));
                    item.link = Some(target.as_bytes());
                    item.xattrs = &xattrs;
                    self.emit(&item, io::empty())?;
                }
                FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                    let kind = match file_type {
                        FileType::CharacterDevice => EntryType::Char,
                        FileType::BlockDevice => EntryType::Block,
                        _ => EntryType::Fifo,
                    };
                    let xattrs = self.xattrs_nofollow(dir, &name, &path)?;
                    let mut item = Item::plain(&path, kind, &st, perm(&st));
                    if file_type != FileType::Fifo {
                        item.dev = Some((rfs::major(st.st_rdev), rfs::minor(st.st_rdev)));
                    }
                    item.xattrs = &xattrs;
                    self.emit(&item, io::empty())?;
                }
                FileType::Socket => {
                    tracing::debug!(path = %shown(&path), "skipping socket: a layer cannot hold one");
                }
                FileType::Unknown => {
                    return Err(Error::Layer {
                        entry: shown(&path),
                        reason: "unknown file type".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Xattrs of a symlink or special file (which cannot be opened to read them).
    fn xattrs_nofollow(&self, dir: BorrowedFd<'_>, name: &[u8], path: &[u8]) -> Result<Xattrs> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        let proc =
            proc_fd_path(dir, Some(name)).context(|| format!("naming {:?} in /proc", shown()))?;
        let all =
            xattr::list_nofollow(&proc).context(|| format!("reading xattrs of {:?}", shown()))?;
        Ok(layer_xattrs(path, all)?.1)
    }

    /// Writes one entry: a PAX header when needed, the ustar header, then exactly
    /// `item.size` bytes of `data` and padding.
    fn emit(&mut self, item: &Item<'_>, data: impl Read) -> Result<()> {
        let shown = || String::from_utf8_lossy(item.path).into_owned();
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut h = Header::new_ustar();
        h.set_entry_type(item.kind);
        set_name(&mut h.as_old_mut().name, item.path, b"path", &mut pax);
        if let Some(link) = item.link {
            set_name(&mut h.as_old_mut().linkname, link, b"linkpath", &mut pax);
        }
        h.set_mode(item.mode);
        for (id, key) in [(item.st.st_uid, &b"uid"[..]), (item.st.st_gid, b"gid")] {
            if u64::from(id) > MAX_OCTAL_ID {
                pax.push((key.to_vec(), id.to_string().into_bytes()));
            }
        }
        h.set_uid(u64::from(item.st.st_uid));
        h.set_gid(u64::from(item.st.st_gid));
        // Whole seconds, as Docker writes them: sub-second times make layers of the same
        // files differ for no reason.
        match u64::try_from(item.st.st_mtime) {
            Ok(t) => h.set_mtime(t),
            Err(_) => {
                h.set_mtime(0);
                pax.push((b"mtime".to_vec(), item.st.st_mtime.to_string().into_bytes()));
            }
        }
        h.set_size(item.size);
        if let Some((major, minor)) = item.dev {
            h.set_device_major(major)
                .and_then(|()| h.set_device_minor(minor))
                .context(|| format!("encoding device numbers of {:?}", shown()))?;
        }
        for (name, value) in item.xattrs {
            pax.push(([&b"SCHILY.xattr."[..], name].concat(), value.clone()));
        }
        h.set_cksum();

        let write = |e: io::Error| Error::io(format!("writing layer entry {:?}", shown()), e);
        if !pax.is_empty() {
            let records = pax_records(&pax);
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            set_name(
                &mut ph.as_old_mut().name,
                b"././@PaxHeader",
                b"",
                &mut Vec::new(),
            );
            ph.set_mode(0o644);
            ph.set_mtime(0);
            ph.set_size(records.len() as u64);
            ph.set_cksum();
            self.out.write_all(ph.as_bytes()).map_err(write)?;
            self.out.write_all(&records).map_err(write)?;
            self.pad(records.len() as u64).map_err(write)?;
        }
        self.out.write_all(h.as_bytes()).map_err(write)?;
        self.copy_exact(data, item.size)
            .map_err(|e| Error::io(format!("copying {:?} into the layer", shown()), e))?;
        self.pad(item.size).map_err(write)
    }

    /// Copies exactly `size` bytes: a file that grew is cut at the size in its header, one
    /// that shrank is an error (the header is already written).
    fn copy_exact(&mut self, mut data: impl Read, size: u64) -> io::Result<()> {
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.buf.len(), |l| l.min(self.buf.len()));
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while it was being read",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

impl<'a> Item<'a> {
    fn plain(path: &'a [u8], kind: EntryType, st: &'a Stat, mode: u32) -> Self {
        Item {
            path,
            kind,
            st,
            mode,
            size: 0,
            link: None,
            dev: None,
            xattrs: &[],
        }
    }
}

/// Permission bits with setuid, setgid and sticky.
fn perm(st: &Stat) -> u32 {
    st.st_mode & 0o7777
}

/// Puts a name into a ustar field, or, when it does not fit, into a PAX record (with as
/// much as fits left in the field for readers without PAX).
fn set_name(field: &mut [u8], name: &[u8], key: &[u8], pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let n = name.len().min(NAME_FIELD).min(field.len());
    field[..n].copy_from_slice(&name[..n]);
    if name.len() > field.len() {
        pax.push((key.to_vec(), name.to_vec()));
    }
}

/// PAX records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record,
/// its own digits included.
fn pax_records(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut digits = 1;
        while (rest + digits).to_string().len() != digits {
            digits += 1;
        }
        out.extend_from_slice((rest + digits).to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Splits overlayfs' own xattrs off: whether the directory is opaque, and the rest, which
/// go into the layer. Refuses redirects and metacopy (see [`diff`]).
fn layer_xattrs(path: &[u8], all: Xattrs) -> Result<(bool, Xattrs)> {
    let mut opaque = false;
    let mut keep = Vec::with_capacity(all.len());
    for (name, value) in all {
        if name.starts_with(xattr::USER_OVERLAY_PREFIX) {
            // overlayfs state of a `userxattr` mount; apply would drop it anyway.
            continue;
        }
        let Some(ovl) = name.strip_prefix(xattr::OVERLAY_PREFIX) else {
            keep.push((name, value));
            continue;
        };
        match ovl {
            b"opaque" => opaque = value == whiteout::OPAQUE_VALUE,
            b"redirect" | b"metacopy" => {
                return Err(Error::FailedPrecondition(format!(
                    "{:?} in the upper directory uses overlayfs {}; a layer cannot express it \
                     (mount snapshots with redirect_dir=off,metacopy=off)",
                    String::from_utf8_lossy(path),
                    String::from_utf8_lossy(ovl)
                )));
            }
            // origin, impure, nlink, upper, uuid...: overlayfs bookkeeping.
            _ => {}
        }
    }
    Ok((opaque, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let out = pax_records(&[(b"path".to_vec(), vec![b'a'; 3])]);
        assert_eq!(out, b"12 path=aaa\n");
        assert_eq!(
            pax_records(&[(b"path".to_vec(), b"a".to_vec())]),
            b"9 path=a\n"
        );
        // 98 bytes without the length: two digits would make 100, which needs three.
        let out = pax_records(&[(b"k".to_vec(), vec![b'v'; 94])]);
        assert_eq!(out.len(), 101);
        assert!(out.starts_with(b"101 k="));
    }
}
