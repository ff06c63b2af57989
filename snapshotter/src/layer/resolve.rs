//! Paths inside a layer root, resolved by the kernel through directory handles.
//!
//! Nothing here joins strings onto the root's path. The root is held open as an
//! `O_PATH` handle and every lookup below it is an `openat2` with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`:
//! the kernel keeps `..` from climbing out, and refuses (`ELOOP`) to follow any symlink,
//! so an entry can never be written through a link — not one pointing outside (the
//! classic `evil -> /etc` then `evil/passwd`), and not one pointing inside either, which a
//! layer produced by a diff never needs. The final component of an entry is then handled
//! by the `*at` syscalls relative to the resolved parent, never following a symlink.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// The resolution every lookup inside a root uses (see the module doc).
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Mode of directories created because an entry needs them but the layer does not list
/// them (Docker and containerd use the same).
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// A directory the layer is confined to, held open by handle.
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` (which the caller chose, so it may itself pass through symlinks).
    pub(crate) fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Resolves the directory at `comps` to an `O_PATH` handle. With `create`, missing
    /// components are made one at a time with `mkdirat` relative to the handle of the
    /// component before (mode 0755, owned by the caller).
    ///
    /// Errors the caller should read as a refusal of the archive: `ELOOP` (a component
    /// is a symlink), `ENOTDIR` (a component is not a directory), `EXDEV` (a component
    /// is a mount point).
    pub(crate) fn dir(&self, comps: &[Vec<u8>], create: bool) -> Result<OwnedFd, Errno> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if comps.is_empty() {
            return rfs::openat(&self.fd, c".", flags, Mode::empty());
        }
        match resolve(&self.fd, &comps.join(&b'/'), flags) {
            Err(Errno::NOENT) if create => {}
            other => return other,
        }
        // Slow path: walk from the root, creating what is missing. Each step resolves a
        // single component with the same flags, so this is as strict as the fast path.
        let mut cur = rfs::openat(&self.fd, c".", flags, Mode::empty())?;
        for comp in comps {
            cur = match resolve(&cur, comp, flags) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let created = match rfs::mkdirat(&cur, comp.as_slice(), Mode::from(0o700)) {
                        Ok(()) => true,
                        // Something is there after all (a dangling symlink, say): the
                        // lookup below reports what it is.
                        Err(Errno::EXIST) => false,
                        Err(e) => return Err(e),
                    };
                    let dir = resolve(
                        &cur,
                        comp,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    )?;
                    if created {
                        // Set after creation, so the umask cannot narrow it.
                        rfs::fchmod(&dir, Mode::from(IMPLICIT_DIR_MODE))?;
                    }
                    dir
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }

    /// Opens the existing directory at `comps` for reading and for metadata changes
    /// (`fchown`, `fchmod`, `fsetxattr`, `futimens` need a real descriptor, not `O_PATH`).
    pub(crate) fn open_dir(&self, comps: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if comps.is_empty() {
            return rfs::openat(&self.fd, c".", flags, Mode::empty());
        }
        resolve(&self.fd, &comps.join(&b'/'), flags)
    }
}

/// `openat2` below `dir` with [`RESOLVE`], retried on `EAGAIN` (which the kernel returns
/// when a concurrent rename might have let a `..` escape; it never does here, but the
/// contract says retry).
fn resolve(dir: impl AsFd, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let mut attempts = 0;
    loop {
        // No O_NOFOLLOW: with it a final symlink would be opened (O_PATH) or reported as
        // ENOTDIR; without it RESOLVE_NO_SYMLINKS refuses it with ELOOP like any other.
        match rfs::openat2(dir.as_fd(), path, flags, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) if attempts < 16 => attempts += 1,
            other => return other,
        }
    }
}

/// Removes whatever `name` in `parent` is (a whole tree for a directory), never
/// following symlinks. Returns whether something was there.
pub(crate) fn remove_entry(parent: BorrowedFd<'_>, name: &[u8]) -> Result<bool, Errno> {
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let dir = rfs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Collect first: deleting while reading a directory stream may skip entries.
        for child in list_dir(dir.as_fd())? {
            remove_entry(dir.as_fd(), &child)?;
        }
        rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(parent, name, AtFlags::empty())?;
    }
    Ok(true)
}

/// The names in a directory (readable descriptor), without `.` and `..`, unsorted.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// `/proc/self/fd/<fd>[/<name>]`, for the few calls that have no descriptor-relative,
/// no-follow form (`lsetxattr`/`llistxattr` on a symlink or device, `chmod` of a device
/// held by an `O_PATH` handle). The magic link resolves to exactly the inode the handle
/// holds, so no name is looked up again except `name` itself, one component that the
/// `l*` calls do not follow.
///
/// Refuses when `/proc` is not procfs: a fake `/proc` could point anywhere.
pub(crate) fn proc_fd_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> io::Result<CString> {
    static PROC_OK: OnceLock<bool> = OnceLock::new();
    let ok = *PROC_OK.get_or_init(|| {
        rfs::statfs("/proc/self/fd").is_ok_and(|s| s.f_type == rfs::PROC_SUPER_MAGIC)
    });
    if !ok {
        return Err(io::Error::other(
            "/proc is not procfs; refusing to use /proc/self/fd",
        ));
    }
    let mut path = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}
