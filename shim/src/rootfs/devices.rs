//! `/dev` of a container: the standard device nodes, the spec's devices, and the usual
//! symlinks, created in the fresh tmpfs the spec mounts on `/dev`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve;
use crate::error::{Error, Result};
use crate::syscall::{MountPath, NodeKind, Syscall};

/// A device node to create in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Container path (under `/dev`).
    pub path: PathBuf,
    /// Node type.
    pub kind: NodeKind,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every container gets (runc's default set).
pub fn standard() -> Vec<DeviceNode> {
    [
        ("null", 3),
        ("zero", 5),
        ("full", 7),
        ("random", 8),
        ("urandom", 9),
    ]
    .into_iter()
    .map(|(n, minor)| (n, 1, minor))
    .chain([("tty", 5, 0)])
    .map(|(name, major, minor)| DeviceNode {
        path: PathBuf::from("/dev").join(name),
        kind: NodeKind::Char,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// Standard devices plus the spec's (a spec device with a standard path replaces it).
pub fn plan(spec_devices: &[LinuxDevice]) -> Vec<DeviceNode> {
    let mut out: Vec<DeviceNode> = standard()
        .into_iter()
        .filter(|d| !spec_devices.iter().any(|s| s.path() == &d.path))
        .collect();
    for d in spec_devices {
        let kind = match d.typ() {
            LinuxDeviceType::B => NodeKind::Block,
            LinuxDeviceType::P => NodeKind::Fifo,
            _ => NodeKind::Char,
        };
        out.push(DeviceNode {
            path: d.path().clone(),
            kind,
            // Range-checked by spec validation.
            major: d.major() as u32,
            minor: d.minor() as u32,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    out
}

/// Creates the device nodes and symlinks. `mknod` is the normal path (the shim is real
/// root); where the kernel refuses it, the host's node is bind-mounted instead.
pub fn populate(
    sys: &dyn Syscall,
    root: BorrowedFd<'_>,
    devices: &[DeviceNode],
    has_pts: bool,
) -> Result<()> {
    for d in devices {
        let parent_path = d.path.parent().unwrap_or(Path::new("/dev"));
        let Some(name) = d.path.file_name() else {
            continue;
        };
        let parent = resolve::mkdir_all(root, parent_path, 0o755)?;
        let dev = nix::sys::stat::makedev(d.major.into(), d.minor.into());
        match sys.mknodat(
            parent.as_fd(),
            Path::new(name),
            &d.path,
            d.kind,
            d.mode,
            dev,
        ) {
            Ok(()) => {}
            Err(nix::Error::EPERM) => bind_host_device(sys, root, d)?,
            Err(e) => return Err(Error::sys(format!("mknod {}", d.path.display()), e)),
        }
        if d.uid != 0 || d.gid != 0 {
            sys.fchownat(parent.as_fd(), Path::new(name), d.uid, d.gid)
                .map_err(|e| Error::sys(format!("chown {}", d.path.display()), e))?;
        }
    }
    let dev = resolve::open_dir(root, Path::new("/dev")).map_err(|e| Error::io("open /dev", e))?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if has_pts {
        // Each container has its own devpts instance; /dev/ptmx must use it.
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        match rustix::fs::symlinkat(target, &dev, name) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(Error::io(format!("symlink /dev/{name}"), e.into())),
        }
    }
    Ok(())
}

fn bind_host_device(sys: &dyn Syscall, root: BorrowedFd<'_>, d: &DeviceNode) -> Result<()> {
    let target = resolve::ensure_target(root, &d.path, resolve::TargetKind::File)?;
    sys.mount(
        Some(MountPath::Host(&d.path)),
        MountPath::Fd {
            fd: target.as_fd(),
            path: &d.path,
        },
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| Error::sys(format!("bind host device {}", d.path.display()), e))
}
