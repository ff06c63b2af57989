//! The container's `/sys/fs/cgroup`.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;

use super::{fd_path, resolve, sys_err, MountEntry, RootfsPlan};
use crate::cgroups::MountView;
use crate::error::{Error, Result};
use crate::syscall::{MountPath, Syscall};

/// `/sys/fs/cgroup`: on cgroup v2 one `cgroup2` mount; on v1 a tmpfs with one directory
/// per hierarchy. With a cgroup namespace the cgroup filesystems are mounted fresh (the
/// kernel roots them at the container's cgroup); without one, the container's own cgroup
/// directories are bound in, so the host's tree is never visible.
pub(super) fn mount_cgroup_view(
    sys: &dyn Syscall,
    root: BorrowedFd<'_>,
    plan: &RootfsPlan,
    m: &MountEntry,
    target: &OwnedFd,
) -> Result<()> {
    let dest = &m.destination;
    let flags = m.options.flags;
    match &plan.cgroup_view {
        MountView::None => Ok(()),
        MountView::Unified { host_path } => {
            if plan.cgroup_namespace {
                sys.mount(
                    Some(MountPath::Host(Path::new("cgroup2"))),
                    fd_path(target, dest),
                    Some("cgroup2"),
                    flags,
                    None,
                )
            } else {
                sys.mount(
                    Some(MountPath::Host(host_path)),
                    fd_path(target, dest),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None,
                )
            }
            .map_err(sys_err(format!("mount cgroup2 on {}", dest.display())))?;
            if !plan.cgroup_namespace && flags.contains(MsFlags::MS_RDONLY) {
                let mounted = resolve::open_dir(root, dest)
                    .map_err(|e| Error::io("reopen cgroup mount", e))?;
                sys.mount(
                    None,
                    fd_path(&mounted, dest),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                    None,
                )
                .map_err(sys_err("remount cgroup2 read-only".into()))?;
            }
            Ok(())
        }
        MountView::V1(hierarchies) => {
            let base = flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
            sys.mount(
                Some(MountPath::Host(Path::new("tmpfs"))),
                fd_path(target, dest),
                Some("tmpfs"),
                base,
                Some("mode=755"),
            )
            .map_err(sys_err(format!("mount tmpfs on {}", dest.display())))?;
            let tmp =
                resolve::open_dir(root, dest).map_err(|e| Error::io("reopen cgroup tmpfs", e))?;
            for h in hierarchies {
                match rustix::fs::mkdirat(
                    &tmp,
                    h.dir.as_str(),
                    rustix::fs::Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!("mkdir {}/{}", dest.display(), h.dir),
                            e.into(),
                        ))
                    }
                }
                let sub_path = dest.join(&h.dir);
                let sub = resolve::open_dir(root, &sub_path)
                    .map_err(|e| Error::io(format!("open {}", sub_path.display()), e))?;
                let r = if plan.cgroup_namespace {
                    sys.mount(
                        Some(MountPath::Host(Path::new("cgroup"))),
                        fd_path(&sub, &sub_path),
                        Some("cgroup"),
                        flags,
                        Some(&h.options),
                    )
                } else {
                    sys.mount(
                        Some(MountPath::Host(&h.host_path)),
                        fd_path(&sub, &sub_path),
                        None,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None,
                    )
                    .and_then(|()| {
                        let again =
                            resolve::open_dir(root, &sub_path).map_err(|_| nix::Error::ENOENT)?;
                        sys.mount(
                            None,
                            fd_path(&again, &sub_path),
                            None,
                            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
                            None,
                        )
                    })
                };
                r.map_err(sys_err(format!(
                    "mount cgroup {} on {}",
                    h.options,
                    sub_path.display()
                )))?;
                // Co-mounted controllers ("cpu,cpuacct") are reachable under each name.
                for alias in h
                    .options
                    .split(',')
                    .filter(|c| *c != h.dir && !c.starts_with("name="))
                {
                    match rustix::fs::symlinkat(h.dir.as_str(), &tmp, alias) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => {
                            return Err(Error::io(
                                format!("symlink {alias} in {}", dest.display()),
                                e.into(),
                            ))
                        }
                    }
                }
            }
            if flags.contains(MsFlags::MS_RDONLY) {
                sys.mount(
                    None,
                    fd_path(&tmp, dest),
                    None,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | base,
                    None,
                )
                .map_err(sys_err(format!("remount {} read-only", dest.display())))?;
            }
            Ok(())
        }
    }
}
