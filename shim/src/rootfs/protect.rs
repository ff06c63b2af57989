//! Masked and read-only paths: what the container may not read or change in `/proc`
//! and `/sys`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use rustix::fs::OFlags;

use super::{fd_path, resolve, sys_err};
use crate::error::{Error, Result};
use crate::syscall::{MountPath, Syscall};

/// The per-mount flags a bind remount must repeat (otherwise the remount would clear
/// them, or fail where they are locked).
fn locked_flags_of(fd: BorrowedFd<'_>) -> MsFlags {
    use rustix::fs::StatVfsMountFlags as F;
    let Ok(st) = rustix::fs::fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let mut out = MsFlags::empty();
    for (f, m) in [
        (F::NOSUID, MsFlags::MS_NOSUID),
        (F::NODEV, MsFlags::MS_NODEV),
        (F::NOEXEC, MsFlags::MS_NOEXEC),
        (F::NOATIME, MsFlags::MS_NOATIME),
        (F::NODIRATIME, MsFlags::MS_NODIRATIME),
        (F::RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.f_flag.contains(f) {
            out |= m;
        }
    }
    out
}

pub(super) fn locked_flags(path: &Path) -> MsFlags {
    match rustix::fs::open(
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => locked_flags_of(fd.as_fd()),
        Err(_) => MsFlags::empty(),
    }
}

pub(super) fn readonly_path(sys: &dyn Syscall, root: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let fd = match resolve::open_in_root(root, path, OFlags::PATH) {
        Ok(fd) => fd,
        // Not every kernel has every path (e.g. /proc/sysrq-trigger); nothing to protect.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => {
            return Err(Error::io(
                format!("open read-only path {}", path.display()),
                e,
            ))
        }
    };
    let target = fd_path(&fd, path);
    sys.mount(
        Some(target),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(sys_err(format!("bind read-only path {}", path.display())))?;
    let mounted = resolve::open_in_root(root, path, OFlags::PATH)
        .map_err(|e| Error::io(format!("reopen {}", path.display()), e))?;
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_REC
        | locked_flags_of(mounted.as_fd());
    sys.mount(None, fd_path(&mounted, path), None, flags, None)
        .map_err(sys_err(format!("remount {} read-only", path.display())))
}

/// Whether `fd` is the null device (1:3): the bind source for masking files must not be
/// something an attacker could have swapped in.
fn is_null(fd: &OwnedFd) -> bool {
    rustix::fs::fstat(fd).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::CharacterDevice
            && rustix::fs::major(st.st_rdev) == 1
            && rustix::fs::minor(st.st_rdev) == 3
    })
}

/// The null device to mask files with: the container's own `/dev/null` (as runc, so a
/// masked file shows the container's /dev, not the host's devtmpfs and its size), else the
/// host's.
fn open_null(root: BorrowedFd<'_>) -> Result<OwnedFd> {
    if let Ok(fd) = resolve::open_in_root(root, Path::new("/dev/null"), OFlags::PATH) {
        if is_null(&fd) {
            return Ok(fd);
        }
    }
    let fd = rustix::fs::open(
        "/dev/null",
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io("open /dev/null", e.into()))?;
    if !is_null(&fd) {
        return Err(Error::invalid(
            "/dev/null on the host is not the null device (1:3)",
        ));
    }
    Ok(fd)
}

pub(super) fn mask_paths(sys: &dyn Syscall, root: BorrowedFd<'_>, paths: &[PathBuf]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let null = open_null(root)?;
    let null_path = Path::new("/dev/null");
    for path in paths {
        let fd = match resolve::open_in_root(root, path, OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(Error::io(format!("open masked path {}", path.display()), e)),
        };
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| Error::io(format!("stat {}", path.display()), e.into()))?;
        let target = fd_path(&fd, path);
        let r = if rustix::fs::FileType::from_raw_mode(st.st_mode)
            == rustix::fs::FileType::Directory
        {
            sys.mount(
                Some(MountPath::Host(Path::new("tmpfs"))),
                target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None,
            )
        } else {
            sys.mount(
                Some(MountPath::Fd {
                    fd: null.as_fd(),
                    path: null_path,
                }),
                target,
                None,
                MsFlags::MS_BIND,
                None,
            )
        };
        r.map_err(sys_err(format!("mask {}", path.display())))?;
    }
    Ok(())
}
