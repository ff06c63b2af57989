//! Applying a layer archive to the (empty) upper directory of a new overlay snapshot.
//!
//! The archive is streamed: `tar` parses headers and hands out each entry's data, which
//! goes straight to disk through a fixed buffer. `tar` is used only as a parser — never
//! its `unpack`, which resolves paths by joining strings. Every path is resolved inside
//! the root by handle ([`super::resolve`]); every metadata change is made on a
//! descriptor or with a no-follow `*at` call.
//!
//! On error, `root` may hold part of the layer; the caller removes the snapshot. Nothing
//! outside `root` is ever written, changed or deleted.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::compression::decompress;
use super::header::{read_meta, Meta, Pax};
use super::path::RelPath;
use super::resolve::{proc_fd_path, remove_entry, Root};
use super::whiteout::{self, Name};
use super::xattr;
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};

/// Buffer for file data on its way from the archive to disk.
const COPY_BUF: usize = 256 * 1024;

/// Most bytes `tar` may read between two entries: headers, padding, and the PAX and GNU
/// long-name records, which it keeps in memory. Real layers need a few KiB; the cap keeps
/// a hostile one from making apply hold gigabytes of "file name".
const METADATA_BUDGET: u64 = 1 << 20;

/// What applying a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// sha256 of the uncompressed tar stream, end-of-archive blocks and padding included:
    /// the layer's diff ID.
    pub diff_id: Digest,
    /// Bytes of the uncompressed stream.
    pub size: u64,
    /// Archive entries applied (whiteouts included, global PAX headers not).
    pub entries: u64,
}

/// Unpacks a layer (tar, tar+gzip or tar+zstd; detected) streamed from `reader` into the
/// directory `root`, the initially empty upper directory of a new overlayfs snapshot.
///
/// OCI whiteouts become overlay whiteouts (`.wh.name` → char device 0/0 `name`,
/// `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory). Owners, modes (with
/// setuid/setgid/sticky), mtimes and atimes, `SCHILY.xattr.*` xattrs, hardlinks,
/// symlinks, devices and fifos are kept. Parents the archive does not list are created
/// (0755, owned by the caller); directory times are set once everything is written.
///
/// Refused, with an error naming the entry: absolute names and `..` that climbs out;
/// any entry (or whiteout) reached through a symlink; hardlinks to anything but an
/// earlier non-directory entry of this root; malformed whiteouts; unsupported entry
/// types (sparse files, volume labels, …); a corrupt or truncated stream, including a
/// tar that ends without its end-of-archive block. `trusted.overlay.*` xattrs from the
/// archive are dropped. The whole stream is read, so the digest covers all of it.
///
/// Needs root (chown, mknod, `trusted.*` xattrs). Blocking: call it from a blocking
/// thread. On error `root` is left partly written and the caller removes it; nothing
/// outside `root` is touched.
pub fn apply(root: &Path, reader: impl Read) -> Result<ApplyStats> {
    let dir = Root::open(root).context(|| format!("opening layer root {}", root.display()))?;
    let budget = Rc::new(Cell::new(None));
    let stream = Stream {
        inner: HashingReader::new(decompress(reader)?),
        eof: false,
        budget: Rc::clone(&budget),
    };
    let mut archive = tar::Archive::new(stream);
    archive.set_ignore_zeros(false);
    let mut applier = Applier {
        root: &dir,
        dirs: HashMap::new(),
        buf: vec![0; COPY_BUF],
    };
    let mut count = 0u64;
    let mut last: Option<String> = None;
    // A block: `entries` borrows the archive until the stream is taken back below.
    {
        let mut entries = archive.entries().map_err(|e| corrupt(&last, e))?;
        loop {
            budget.set(Some(METADATA_BUDGET));
            let next = entries.next();
            budget.set(None);
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| corrupt(&last, e))?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            // Global PAX records (git archive's commit id, say) describe the archive, not a
            // file; Docker ignores them too.
            if entry.header().entry_type() != EntryType::XGlobalHeader {
                count += 1;
                applier.entry(&mut entry, &name).map_err(|f| f.at(&name))?;
            }
            // Read what is left of the entry's data (a link's or directory's, which nothing
            // uses) here rather than in `next`, where it would count against the budget.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| Fail::Stream(e).at(&name))?;
            last = Some(name);
        }
    }

    let mut stream = archive.into_inner();
    if stream.eof {
        // `tar` stops quietly at end of input; a real archive ends with zero blocks.
        // Without them the stream was cut, possibly right between two entries.
        return Err(Error::Layer {
            entry: after(&last),
            reason: "corrupt or truncated archive: it ends without its end-of-archive block".into(),
        });
    }
    // Read to the real end: the diff ID covers the trailing blocks too, and a compressed
    // stream is only known good once its trailer (gzip CRC) has been checked.
    io::copy(&mut stream, &mut io::sink()).map_err(|e| Error::Layer {
        entry: after(&last),
        reason: format!("corrupt or truncated stream after the end of the archive: {e}"),
    })?;
    let (diff_id, size) = stream.inner.finish();
    applier.fix_dir_times()?;
    Ok(ApplyStats {
        diff_id,
        size,
        entries: count,
    })
}

/// The decompressed stream, hashed, remembering whether it ran dry, and holding `tar`
/// to a byte budget while it reads headers (see [`METADATA_BUDGET`]).
struct Stream<R> {
    inner: HashingReader<R>,
    eof: bool,
    budget: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.get();
        // One byte past the budget is enough to know it is exceeded.
        let cap = left.map_or(buf.len(), |l| {
            usize::try_from(l.saturating_add(1)).map_or(buf.len(), |l| l.min(buf.len()))
        });
        let n = self.inner.read(&mut buf[..cap])?;
        if n == 0 && cap != 0 {
            self.eof = true;
        }
        if let Some(left) = left {
            let left = left.checked_sub(n as u64).ok_or_else(|| {
                io::Error::other(format!(
                    "more than {METADATA_BUDGET} bytes of headers (PAX or long-name records) for one entry"
                ))
            })?;
            self.budget.set(Some(left));
        }
        Ok(n)
    }
}

fn after(last: &Option<String>) -> String {
    match last {
        Some(name) => format!("after {name}"),
        None => "first entry".into(),
    }
}

fn corrupt(last: &Option<String>, e: io::Error) -> Error {
    Error::Layer {
        entry: after(last),
        reason: format!("corrupt or truncated archive: {e}"),
    }
}

/// Why one entry failed, before the entry's name is attached.
#[derive(Debug)]
pub(super) enum Fail {
    /// The archive asks for something that is refused.
    Refused(String),
    /// Reading the archive failed: a corrupt or truncated stream.
    Stream(io::Error),
    /// The filesystem failed (full disk, say): what was being done, and the error.
    Os(String, io::Error),
}

impl Fail {
    fn at(self, entry: &str) -> Error {
        match self {
            Fail::Refused(reason) => Error::Layer {
                entry: entry.into(),
                reason,
            },
            Fail::Stream(e) => Error::Layer {
                entry: entry.into(),
                reason: format!("corrupt or truncated archive: {e}"),
            },
            Fail::Os(what, source) => Error::Io {
                context: format!("layer entry {entry:?}: {what}"),
                source,
            },
        }
    }
}

/// Attaches what was being done to an OS error.
trait Os<T> {
    fn os(self, what: &str) -> Result<T, Fail>;
}

impl<T> Os<T> for Result<T, Errno> {
    fn os(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Os(what.into(), e.into()))
    }
}

impl<T> Os<T> for io::Result<T> {
    fn os(self, what: &str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Os(what.into(), e))
    }
}

/// Reads a failed lookup inside the root: a symlink, a non-directory or a mount point on
/// the way is the archive's doing, so it is a refusal.
fn resolving(what: &'static str) -> impl FnOnce(Errno) -> Fail {
    move |e| match e {
        Errno::LOOP => Fail::Refused(format!("{what} goes through a symlink")),
        Errno::NOTDIR => Fail::Refused(format!("{what} goes through a non-directory")),
        Errno::XDEV => Fail::Refused(format!("{what} crosses a mount point")),
        e => Fail::Os(format!("resolving {what}"), e.into()),
    }
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Times of a directory, set at the end (writing into it changes its mtime).
struct DirTimes {
    /// The inode it was, so a directory replaced later in the stream is left alone.
    ino: u64,
    times: Timestamps,
}

struct Applier<'r> {
    root: &'r Root,
    /// By cleaned path: an archive that lists a directory many times costs one record.
    dirs: HashMap<Vec<u8>, DirTimes>,
    buf: Vec<u8>,
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<(), Fail> {
        let pax = Pax::read(entry)?;
        let raw = entry.path_bytes().into_owned();
        let path = RelPath::parse(&raw).map_err(Fail::Refused)?;
        let header = entry.header();
        let kind = header.entry_type();
        match kind {
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {}
            EntryType::GNUSparse => {
                return Err(Fail::Refused("GNU sparse files are not supported".into()));
            }
            other => {
                return Err(Fail::Refused(format!(
                    "unsupported entry type {:?}",
                    char::from(other.as_byte())
                )));
            }
        }
        // Old tars mark a directory as a regular file (type NUL) with a trailing slash.
        let old_style_dir = header.as_bytes()[156] == 0 && raw.ends_with(b"/");
        let dev = if matches!(kind, EntryType::Char | EntryType::Block) {
            let major = header.device_major();
            let minor = header.device_minor();
            match (major, minor) {
                (Ok(Some(major)), Ok(Some(minor))) => Some((major, minor)),
                _ => {
                    return Err(Fail::Refused(
                        "device entry without valid device numbers".into(),
                    ))
                }
            }
        } else {
            None
        };
        let meta = read_meta(header, pax, name)?;

        if let Some(comp) = path
            .components()
            .iter()
            .rev()
            .skip(1)
            .find(|c| whiteout::is_whiteout_spelling(c))
        {
            return Err(Fail::Refused(format!(
                "malformed whiteout: directory component {:?} is spelled like a whiteout",
                lossy(comp)
            )));
        }
        if let Some((parent, last)) = path.split_last() {
            match whiteout::classify(last).map_err(Fail::Refused)? {
                Name::Plain => {}
                Name::Opaque => return self.opaque(parent),
                Name::Remove(target) => return self.whiteout(parent, target, &meta),
            }
        }

        match kind {
            // Docker and containerd skip the root entry: the snapshot's own root (0755,
            // root-owned) stays, whatever the directory a layer was tarred from.
            EntryType::Directory if path.is_root() => Ok(()),
            EntryType::Regular if old_style_dir && path.is_root() => Ok(()),
            EntryType::Directory => self.dir(&path, &meta),
            EntryType::Regular if old_style_dir => self.dir(&path, &meta),
            _ if path.is_root() => Err(Fail::Refused(
                "only a directory entry may stand for the layer root".into(),
            )),
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.size();
                self.file(&path, &meta, entry, size)
            }
            EntryType::Symlink => {
                let target = link_name(entry)?;
                self.symlink(&path, &meta, &target)
            }
            EntryType::Link => {
                let target = link_name(entry)?;
                self.hardlink(&path, &target)
            }
            EntryType::Char => self.node(&path, FileType::CharacterDevice, dev, &meta),
            EntryType::Block => self.node(&path, FileType::BlockDevice, dev, &meta),
            EntryType::Fifo => self.node(&path, FileType::Fifo, None, &meta),
            // Refused above.
            other => Err(Fail::Refused(format!(
                "unsupported entry type {:?}",
                char::from(other.as_byte())
            ))),
        }
    }

    /// Resolves (creating) the parent directory of an entry.
    fn parent(&self, comps: &[Vec<u8>]) -> Result<OwnedFd, Fail> {
        self.root
            .dir(comps, true)
            .map_err(resolving("parent directory"))
    }

    fn file(
        &mut self,
        path: &RelPath,
        meta: &Meta,
        data: &mut impl Read,
        size: u64,
    ) -> Result<(), Fail> {
        let (parent, name) = split(path)?;
        let dir = self.parent(parent)?;
        remove_entry(dir.as_fd(), name).os("removing the previous entry")?;
        // O_EXCL: the name was just cleared, and a symlink planted there since must not
        // be followed (O_CREAT|O_EXCL never follows one).
        let fd = rfs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .os("creating the file")?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fail::Stream(e)),
            };
            file.write_all(&self.buf[..n]).os("writing the file")?;
            written += n as u64;
        }
        if written != size {
            // `tar` hands out what the stream has; a header that promises more than the
            // stream holds is a truncated (or lying) archive.
            return Err(Fail::Refused(format!(
                "corrupt or truncated archive: entry data ends after {written} of {size} bytes"
            )));
        }
        set_fd_meta(file.as_fd(), meta)?;
        rfs::futimens(&file, &meta.times()).os("setting times")
    }

    fn dir(&mut self, path: &RelPath, meta: &Meta) -> Result<(), Fail> {
        let fd = match path.split_last() {
            None => self.root.open_dir(&[]).os("opening the layer root")?,
            Some((parent, name)) => {
                let dir = self.parent(parent)?;
                match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    // An existing directory is merged: only its metadata changes.
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_entry(dir.as_fd(), name).os("removing the previous entry")?;
                        rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                            .os("creating the directory")?;
                    }
                    Err(Errno::NOENT) => rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                        .os("creating the directory")?,
                    Err(e) => {
                        return Err(Fail::Os("inspecting the previous entry".into(), e.into()))
                    }
                }
                rfs::openat(
                    &dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .os("opening the directory")?
            }
        };
        set_fd_meta(fd.as_fd(), meta)?;
        let ino = rfs::fstat(&fd).os("inspecting the directory")?.st_ino;
        self.dirs.insert(
            path.to_bytes(),
            DirTimes {
                ino,
                times: meta.times(),
            },
        );
        Ok(())
    }

    fn symlink(&mut self, path: &RelPath, meta: &Meta, target: &[u8]) -> Result<(), Fail> {
        // The target is only text: absolute or `..` targets are fine, since nothing here
        // ever follows a link, and in the container they resolve inside its root.
        if target.is_empty() || target.contains(&0) {
            return Err(Fail::Refused("invalid symlink target".into()));
        }
        let (parent, name) = split(path)?;
        let dir = self.parent(parent)?;
        remove_entry(dir.as_fd(), name).os("removing the previous entry")?;
        rfs::symlinkat(target, &dir, name).os("creating the symlink")?;
        // No chmod: a symlink's mode means nothing, and chmod would follow it.
        chown_at(dir.as_fd(), name, meta)?;
        xattrs_at(dir.as_fd(), name, meta)?;
        times_at(dir.as_fd(), name, meta)
    }

    fn hardlink(&mut self, path: &RelPath, target_raw: &[u8]) -> Result<(), Fail> {
        let refuse =
            |why: &str| Fail::Refused(format!("hardlink to {:?}: {why}", lossy(target_raw)));
        let target = RelPath::parse(target_raw).map_err(|r| refuse(&r))?;
        let Some((tparent, tname)) = target.split_last() else {
            return Err(refuse("target is the layer root"));
        };
        if &target == path {
            return Err(refuse("target is the entry itself"));
        }
        let tdir = self.root.dir(tparent, false).map_err(|e| match e {
            Errno::NOENT => refuse("target is not in this layer"),
            e => resolving("hardlink target")(e),
        })?;
        match rfs::statat(&tdir, tname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(refuse("target is a directory"));
            }
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(refuse("target is not in this layer")),
            Err(e) => return Err(Fail::Os("inspecting the hardlink target".into(), e.into())),
        }
        let (parent, name) = split(path)?;
        let dir = self.parent(parent)?;
        remove_entry(dir.as_fd(), name).os("removing the previous entry")?;
        // No AT_SYMLINK_FOLLOW: a target that is a symlink is linked as the symlink.
        rfs::linkat(&tdir, tname, &dir, name, AtFlags::empty()).map_err(|e| match e {
            // Clearing the entry's own name removed the target (it was inside it).
            Errno::NOENT => refuse("target is not in this layer"),
            e => Fail::Os("creating the hardlink".into(), e.into()),
        })
    }

    fn node(
        &mut self,
        path: &RelPath,
        file_type: FileType,
        dev: Option<(u32, u32)>,
        meta: &Meta,
    ) -> Result<(), Fail> {
        let (parent, name) = split(path)?;
        let dir = self.parent(parent)?;
        remove_entry(dir.as_fd(), name).os("removing the previous entry")?;
        let (major, minor) = dev.unwrap_or((0, 0));
        rfs::mknodat(
            &dir,
            name,
            file_type,
            Mode::from_raw_mode(0o600),
            rfs::makedev(major, minor),
        )
        .os("creating the node")?;
        chown_at(dir.as_fd(), name, meta)?;
        // There is no fchmodat that refuses symlinks on every kernel, and opening a device
        // or fifo for real has effects; so chmod the inode through an O_PATH handle on it.
        let node = rfs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .os("opening the node")?;
        let st = rfs::fstat(&node).os("inspecting the node")?;
        if FileType::from_raw_mode(st.st_mode) != file_type {
            return Err(Fail::Refused(
                "node was replaced while being created".into(),
            ));
        }
        let proc = proc_fd_path(node.as_fd(), None).os("naming the node in /proc")?;
        rfs::chmod(proc.as_c_str(), Mode::from_raw_mode(meta.mode)).os("setting the mode")?;
        xattrs_at(dir.as_fd(), name, meta)?;
        times_at(dir.as_fd(), name, meta)
    }

    fn whiteout(&mut self, parent: &[Vec<u8>], name: &[u8], meta: &Meta) -> Result<(), Fail> {
        let dir = self.parent(parent)?;
        remove_entry(dir.as_fd(), name).os("removing the whited-out entry")?;
        // Mode 0 and 0/0, as overlayfs makes its own whiteouts.
        rfs::mknodat(
            &dir,
            name,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
        .os("creating the whiteout")?;
        chown_at(dir.as_fd(), name, meta)?;
        times_at(dir.as_fd(), name, meta)
    }

    fn opaque(&mut self, dir: &[Vec<u8>]) -> Result<(), Fail> {
        self.parent(dir)?;
        let fd = self
            .root
            .open_dir(dir)
            .map_err(resolving("opaque directory"))?;
        xattr::set_fd(fd.as_fd(), xattr::OPAQUE.to_bytes(), whiteout::OPAQUE_VALUE)
            .os("marking the directory opaque")
    }

    /// Sets directory times last, once nothing more is written into them.
    fn fix_dir_times(&self) -> Result<()> {
        for (key, d) in &self.dirs {
            let fail = |f: Fail| f.at(&lossy(key));
            // Keys were made by `to_bytes` of a clean path, so they parse back to it.
            let path = RelPath::parse(key).map_err(|r| fail(Fail::Refused(r)))?;
            let fd = match self.root.open_dir(path.components()) {
                Ok(fd) => fd,
                // Replaced later in the stream by something else.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(fail(Fail::Os("reopening the directory".into(), e.into()))),
            };
            let st = rfs::fstat(&fd)
                .os("inspecting the directory")
                .map_err(fail)?;
            if st.st_ino == d.ino {
                rfs::futimens(&fd, &d.times)
                    .os("setting times")
                    .map_err(fail)?;
            }
        }
        Ok(())
    }
}

fn split(path: &RelPath) -> Result<(&[Vec<u8>], &[u8]), Fail> {
    path.split_last()
        .ok_or_else(|| Fail::Refused("only a directory entry may stand for the layer root".into()))
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Vec<u8>, Fail> {
    entry
        .link_name_bytes()
        .map(|l| l.into_owned())
        .ok_or_else(|| Fail::Refused("link without a target".into()))
}

/// Owner, mode and xattrs through a descriptor (files and directories). Owner first:
/// chown clears setuid/setgid and file capabilities, which come after.
fn set_fd_meta(fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), Fail> {
    rfs::fchown(fd, Some(meta.uid), Some(meta.gid)).os("setting the owner")?;
    rfs::fchmod(fd, Mode::from_raw_mode(meta.mode)).os("setting the mode")?;
    for (name, value) in &meta.xattrs {
        xattr::set_fd(fd, name, value).os(&format!("setting xattr {}", lossy(name)))?;
    }
    Ok(())
}

fn chown_at(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), Fail> {
    rfs::chownat(
        dir,
        name,
        Some(meta.uid),
        Some(meta.gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .os("setting the owner")
}

fn times_at(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), Fail> {
    rfs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW).os("setting times")
}

/// Xattrs of a symlink or special file, which cannot be opened for `fsetxattr`.
fn xattrs_at(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> Result<(), Fail> {
    if meta.xattrs.is_empty() {
        return Ok(());
    }
    let path = proc_fd_path(dir, Some(name)).os("naming the entry in /proc")?;
    for (xname, value) in &meta.xattrs {
        match xattr::set_nofollow(&path, xname, value) {
            Ok(()) => {}
            // The kernel allows user.* only on files and directories; such an xattr
            // cannot exist here, so there is nothing to keep.
            Err(Errno::PERM) if xname.starts_with(b"user.") => {
                tracing::warn!(xattr = %lossy(xname), "dropping user xattr of a symlink or special file");
            }
            Err(e) => {
                return Err(Fail::Os(
                    format!("setting xattr {}", lossy(xname)),
                    e.into(),
                ));
            }
        }
    }
    Ok(())
}
