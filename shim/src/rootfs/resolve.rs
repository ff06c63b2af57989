//! Path resolution inside the rootfs that never leaves it.
//!
//! Every container path is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to an fd of the rootfs: symlinks in the image (absolute or full of `..`)
//! resolve as if the rootfs were `/`, and `/proc/self/fd/N`-style magic links are refused.
//! Mounts then go onto `/proc/self/fd/<fd>` of what was opened, so nothing re-resolves the
//! image-controlled path between the check and the mount.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::error::{Error, Result};

/// What a mount target has to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A directory (most mounts).
    Dir,
    /// Anything but a directory (bind of a file).
    File,
}

/// Symlinks followed while creating a missing target, as the kernel's own limit.
const MAX_SYMLINKS: usize = 40;

fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// Opens `path` (a container path) inside `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            &rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // EAGAIN: a rename raced with the lookup; the kernel asks us to retry.
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Opens a directory as `O_PATH`.
pub fn open_dir(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    open_in_root(root, path, OFlags::PATH | OFlags::DIRECTORY)
}

/// `base` joined with a symlink's `link`, normalised lexically with `..` stopping at `/`
/// (the lookup that follows is in-root anyway; this only decides what to create).
fn lexical_join(base: &Path, link: &Path) -> PathBuf {
    let joined = if link.is_absolute() {
        link.to_path_buf()
    } else {
        base.join(link)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn err(path: &Path, what: &str, e: io::Error) -> Error {
    Error::io(format!("{what} {} in the rootfs", path.display()), e)
}

/// Creates `path` and its parents as directories inside `root` (following the image's
/// symlinks, dangling ones too, without leaving the root) and returns an `O_PATH` fd.
pub fn mkdir_all(root: BorrowedFd<'_>, path: &Path, mode: u32) -> Result<OwnedFd> {
    mkdir_all_depth(root, path, mode, 0)
}

fn mkdir_all_depth(root: BorrowedFd<'_>, path: &Path, mode: u32, depth: usize) -> Result<OwnedFd> {
    let comps: Vec<_> = relative(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    let mut fd = open_dir(root, Path::new("/")).map_err(|e| err(path, "open", e))?;
    let mut done = PathBuf::from("/");
    for (i, comp) in comps.iter().enumerate() {
        let next = done.join(comp);
        match open_dir(root, &next) {
            Ok(f) => fd = f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                match rustix::fs::readlinkat(&fd, comp.as_os_str(), Vec::new()) {
                    Ok(link) => {
                        // A dangling symlink: create what it points to, inside the root.
                        if depth >= MAX_SYMLINKS {
                            return Err(err(
                                path,
                                "resolve",
                                io::Error::from_raw_os_error(libc::ELOOP),
                            ));
                        }
                        let mut target = lexical_join(
                            &done,
                            Path::new(std::ffi::OsStr::from_bytes(link.as_bytes())),
                        );
                        for rest in &comps[i + 1..] {
                            target.push(rest);
                        }
                        return mkdir_all_depth(root, &target, mode, depth + 1);
                    }
                    Err(_) => {
                        match rustix::fs::mkdirat(
                            &fd,
                            comp.as_os_str(),
                            Mode::from_bits_truncate(mode),
                        ) {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                            Err(e) => return Err(err(&next, "create directory", e.into())),
                        }
                        fd = open_dir(root, &next).map_err(|e| err(&next, "open", e))?;
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                return Err(Error::invalid(format!(
                    "{} in the rootfs is not a directory",
                    next.display()
                )))
            }
            Err(e) => return Err(err(&next, "open", e)),
        }
        done = next;
    }
    Ok(fd)
}

fn is_dir(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let st = rustix::fs::fstat(fd)?;
    Ok(rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory)
}

/// Opens the target of a bind mount, creating it (and its parents) when missing, and
/// checks that it is of the kind the source is: a directory for a directory, a
/// non-directory for a file. Symlinks in the image are followed inside the root only.
pub fn ensure_target(root: BorrowedFd<'_>, path: &Path, kind: TargetKind) -> Result<OwnedFd> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match open_in_root(root, &path, OFlags::PATH) {
            Ok(fd) => {
                let dir = is_dir(fd.as_fd()).map_err(|e| err(&path, "stat", e))?;
                return match (kind, dir) {
                    (TargetKind::Dir, true) | (TargetKind::File, false) => Ok(fd),
                    (TargetKind::Dir, false) => Err(Error::invalid(format!(
                        "mount target {} in the rootfs is not a directory, but the source is one",
                        path.display()
                    ))),
                    (TargetKind::File, true) => Err(Error::invalid(format!(
                        "mount target {} in the rootfs is a directory, but the source is a file",
                        path.display()
                    ))),
                };
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err(&path, "open", e)),
        }
        let parent_path = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            return Err(Error::invalid("mount target is the rootfs itself"));
        };
        let parent = mkdir_all(root, &parent_path, 0o755)?;
        if let Ok(link) = rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new()) {
            // Dangling symlink (e.g. /etc/resolv.conf -> ../run/...): create its target.
            path = lexical_join(
                &parent_path,
                Path::new(std::ffi::OsStr::from_bytes(link.as_bytes())),
            );
            continue;
        }
        let created = match kind {
            TargetKind::Dir => {
                rustix::fs::mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o755))
            }
            TargetKind::File => rustix::fs::openat(
                &parent,
                name.as_os_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )
            .map(drop),
        };
        match created {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(err(&path, "create", e.into())),
        }
    }
    Err(err(
        &path,
        "resolve",
        io::Error::from_raw_os_error(libc::ELOOP),
    ))
}

/// Opens (creating if missing) a directory on which a kernel filesystem (proc, sysfs,
/// devpts, the /dev tmpfs, ...) is mounted. The last component must be a real directory:
/// an image shipping `/proc` or `/dev` as a symlink is refused rather than followed.
pub fn ensure_mountpoint_dir(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    let Some(name) = path.file_name() else {
        return Err(Error::invalid("mount target is the rootfs itself"));
    };
    let parent = mkdir_all(root, parent_path, 0o755)?;
    let open = || {
        rustix::fs::openat2(
            &parent,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
        )
    };
    let refuse = || {
        Error::invalid(format!(
            "{} in the rootfs is a symlink or not a directory: refusing to mount there",
            path.display()
        ))
    };
    match open() {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::NOENT) => {
            match rustix::fs::mkdirat(&parent, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(err(path, "create directory", e.into())),
            }
            open().map_err(|e| match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => refuse(),
                e => err(path, "open", e.into()),
            })
        }
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => Err(refuse()),
        Err(e) => Err(err(path, "open", e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(
            dir.path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        (dir, fd)
    }

    fn real_path(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(fd)
        ))
        .unwrap()
    }

    #[test]
    fn absolute_symlink_to_host_resolves_inside_root() {
        let (dir, r) = root();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        // /etc/hosts -> <host tempdir>/canary: must land inside the root instead.
        let canary = outside.path().join("canary");
        symlink(&canary, dir.path().join("etc/hosts")).unwrap();
        let fd = ensure_target(r.as_fd(), Path::new("/etc/hosts"), TargetKind::File).unwrap();
        let real = real_path(&fd);
        assert!(real.starts_with(dir.path()), "{real:?}");
        assert!(!canary.exists());
    }

    #[test]
    fn dotdot_symlink_cannot_climb_out() {
        let (dir, r) = root();
        symlink("../../../../../../tmp", dir.path().join("up")).unwrap();
        let fd = mkdir_all(r.as_fd(), Path::new("/up/x"), 0o755).unwrap();
        assert!(real_path(&fd).starts_with(dir.path()));
        assert!(dir.path().join("tmp/x").is_dir());
    }

    #[test]
    fn dangling_relative_symlink_creates_its_target_inside() {
        let (dir, r) = root();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        symlink(
            "../run/resolve/stub.conf",
            dir.path().join("etc/resolv.conf"),
        )
        .unwrap();
        let fd = ensure_target(r.as_fd(), Path::new("/etc/resolv.conf"), TargetKind::File).unwrap();
        assert_eq!(real_path(&fd), dir.path().join("run/resolve/stub.conf"));
    }

    #[test]
    fn magic_links_are_refused() {
        let (dir, r) = root();
        symlink("/proc/self/fd/0", dir.path().join("w")).unwrap();
        // In-root resolution turns it into <root>/proc/self/fd/0, which does not exist...
        assert!(open_dir(r.as_fd(), Path::new("/w")).is_err());
        // ...and a real magic link is refused outright.
        let host_root =
            rustix::fs::open("/", OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let e = open_in_root(
            host_root.as_fd(),
            Path::new("/proc/self/fd/0"),
            OFlags::PATH,
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn kernel_fs_target_must_not_be_a_symlink() {
        let (dir, r) = root();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), dir.path().join("proc")).unwrap();
        let e = ensure_mountpoint_dir(r.as_fd(), Path::new("/proc")).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        // Missing ones are created, real ones accepted.
        ensure_mountpoint_dir(r.as_fd(), Path::new("/sys")).unwrap();
        assert!(dir.path().join("sys").is_dir());
        ensure_mountpoint_dir(r.as_fd(), Path::new("/sys")).unwrap();
    }

    #[test]
    fn target_kind_is_checked() {
        let (dir, r) = root();
        std::fs::create_dir_all(dir.path().join("etc/hosts")).unwrap();
        assert!(ensure_target(r.as_fd(), Path::new("/etc/hosts"), TargetKind::File).is_err());
        std::fs::write(dir.path().join("data"), "x").unwrap();
        assert!(ensure_target(r.as_fd(), Path::new("/data"), TargetKind::Dir).is_err());
        ensure_target(r.as_fd(), Path::new("/a/b/c"), TargetKind::Dir).unwrap();
        assert!(dir.path().join("a/b/c").is_dir());
    }
}
