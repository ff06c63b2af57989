//! Extended attributes: which ones a layer may carry, and reading/writing them without
//! following symlinks (on a descriptor, or with the `l*` calls on a `/proc/self/fd` path).

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, XattrFlags};
use rustix::io::Errno;

/// overlayfs keeps its own state under this prefix (whiteouts, opaque dirs, redirects,
/// copy-up origins). It never comes from or goes into a layer as an xattr.
pub(crate) const OVERLAY_PREFIX: &[u8] = b"trusted.overlay.";

/// The same state when overlayfs is mounted with `userxattr` (rootless); refused from
/// archives too, so a layer cannot steer such a mount either.
pub(crate) const USER_OVERLAY_PREFIX: &[u8] = b"user.overlay.";

/// The xattr that makes an overlay upper directory opaque.
pub(crate) const OPAQUE: &CStr = c"trusted.overlay.opaque";

/// Namespaces Linux knows; anything else (`com.apple.*` from a macOS-built tar) cannot be
/// set and is dropped.
const NAMESPACES: [&[u8]; 4] = [b"user.", b"trusted.", b"security.", b"system."];

/// Name/value pairs, sorted by name when read from disk.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Whether an xattr named in an archive should be set; `Err` when the name is unusable.
pub(crate) fn wanted_from_archive(name: &[u8]) -> Result<bool, String> {
    if name.is_empty() || name.contains(&0) {
        return Err(format!(
            "invalid xattr name {:?}",
            String::from_utf8_lossy(name)
        ));
    }
    if name.starts_with(OVERLAY_PREFIX) || name.starts_with(USER_OVERLAY_PREFIX) {
        // A layer must not steer overlayfs (redirects, metacopy, opaque) through xattrs;
        // opaque dirs come only from `.wh..wh..opq`.
        return Ok(false);
    }
    Ok(NAMESPACES.iter().any(|ns| name.starts_with(ns)))
}

/// Sets one xattr on a descriptor.
pub(crate) fn set_fd(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rfs::fsetxattr(fd, name, value, XattrFlags::empty())
}

/// Sets one xattr on a path without following its last component.
pub(crate) fn set_nofollow(path: &CStr, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rfs::lsetxattr(path, name, value, XattrFlags::empty())
}

/// All xattrs of a descriptor, sorted by name. A filesystem without xattrs has none.
pub(crate) fn list_fd(fd: BorrowedFd<'_>) -> Result<Xattrs, Errno> {
    collect(
        || rfs::flistxattr_query(fd),
        |buf| rfs::flistxattr(fd, buf),
        |name| rfs::fgetxattr_query(fd, name),
        |name, buf| rfs::fgetxattr(fd, name, buf),
    )
}

/// All xattrs of a path's last component (not followed), sorted by name.
pub(crate) fn list_nofollow(path: &CStr) -> Result<Xattrs, Errno> {
    collect(
        || rfs::llistxattr_query(path),
        |buf| rfs::llistxattr(path, buf),
        |name| rfs::lgetxattr_query(path, name),
        |name, buf| rfs::lgetxattr(path, name, buf),
    )
}

fn collect(
    list_query: impl Fn() -> Result<usize, Errno>,
    list: impl Fn(&mut [u8]) -> Result<usize, Errno>,
    get_query: impl Fn(&CStr) -> Result<usize, Errno>,
    get: impl Fn(&CStr, &mut [u8]) -> Result<usize, Errno>,
) -> Result<Xattrs, Errno> {
    let names = match read_sized(list_query, list) {
        Ok(names) => names,
        Err(Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(cname) = std::ffi::CString::new(name) else {
            continue;
        };
        match read_sized(|| get_query(&cname), |buf| get(&cname, buf)) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed between the list and the read.
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// The query-then-read dance of the xattr calls, retried when the value grows in between.
fn read_sized(
    query: impl Fn() -> Result<usize, Errno>,
    read: impl Fn(&mut [u8]) -> Result<usize, Errno>,
) -> Result<Vec<u8>, Errno> {
    loop {
        let size = query()?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}
