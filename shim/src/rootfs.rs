//! The container's filesystem view, built inside its new mount namespace: the rootfs
//! mount, the spec's mounts, `/dev`, masked and read-only paths, then `pivot_root`.
//!
//! [`RootfsPlan`] is computed in the shim before it forks (so a bad spec fails with a
//! message before any process exists); [`setup`] runs in the container's init and
//! changes the kernel only through [`Syscall`]. Every target inside the rootfs is opened
//! with in-root resolution (see [`resolve`]) and mounted through its fd.

mod cgroupfs;
pub mod devices;
pub mod options;
mod protect;
pub mod resolve;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use rustix::fs::OFlags;
use serde::{Deserialize, Serialize};

use crate::cgroups::MountView;
use crate::error::{Error, Result};
use crate::spec::Bundle;
use crate::syscall::{MountPath, Syscall};
pub use devices::DeviceNode;
use resolve::TargetKind;

/// One filesystem of the rootfs, as the snapshotter describes it (`overlay` with
/// `lowerdir=...`, or a `bind`). The shim mounts these itself, at `<bundle>/rootfs`, inside
/// the container's mount namespace, so they disappear with the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Filesystem type (`overlay`, `bind`, ...).
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// fstab-style options.
    pub options: Vec<String>,
}

/// How a spec mount is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind of a host path (from the bundle or the host).
    Bind {
        /// Host path, absolute.
        source: PathBuf,
        /// Whether the source is a directory (decides the target's kind).
        source_is_dir: bool,
    },
    /// The container's view of its cgroups at `/sys/fs/cgroup`.
    Cgroup,
    /// Any other filesystem (`proc`, `tmpfs`, `sysfs`, `devpts`, `mqueue`, ...).
    Fs {
        /// Filesystem type.
        fstype: String,
        /// Source (informational for most kernel filesystems).
        source: String,
    },
}

/// One entry of the spec's `mounts`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Path in the container.
    pub destination: PathBuf,
    /// What to mount.
    pub kind: MountKind,
    /// Parsed options.
    pub options: options::ParsedOptions,
}

impl MountEntry {
    /// Kernel filesystems whose target must be a real directory in the image (never a
    /// symlink): mounting `proc` through an image's symlink could land on the host.
    fn strict_target(&self) -> bool {
        match &self.kind {
            MountKind::Cgroup => true,
            MountKind::Bind { .. } => false,
            MountKind::Fs { fstype, .. } => {
                matches!(
                    fstype.as_str(),
                    "proc" | "sysfs" | "devpts" | "mqueue" | "cgroup" | "cgroup2"
                ) || self.destination == Path::new("/dev")
            }
        }
    }
}

/// Everything [`setup`] needs, computed before fork.
#[derive(Debug, Clone)]
pub struct RootfsPlan {
    /// `<bundle>/rootfs` on the host.
    pub rootfs: PathBuf,
    /// Filesystems mounted at `rootfs` first (empty: `rootfs` is used as it is).
    pub rootfs_mounts: Vec<MountSpec>,
    /// The spec's mounts, in order.
    pub mounts: Vec<MountEntry>,
    /// Device nodes created when `/dev` is a fresh tmpfs.
    pub devices: Vec<DeviceNode>,
    /// Paths hidden from the container.
    pub masked_paths: Vec<PathBuf>,
    /// Paths made read-only.
    pub readonly_paths: Vec<PathBuf>,
    /// Namespaced sysctls (`net.ipv4.ip_forward` → value).
    pub sysctl: Vec<(String, String)>,
    /// The process's working directory, created when missing.
    pub cwd: PathBuf,
    /// Whether `/` is remounted read-only at the end.
    pub readonly_root: bool,
    /// The spec's `rootfsPropagation`, applied to `/` after `pivot_root`.
    pub root_propagation: Option<MsFlags>,
    /// How `/sys/fs/cgroup` is filled.
    pub cgroup_view: MountView,
    /// Whether the container has its own cgroup namespace (then cgroup filesystems are
    /// mounted fresh and show only the container's subtree).
    pub cgroup_namespace: bool,
}

impl RootfsPlan {
    /// Builds the plan from a validated bundle.
    pub fn new(
        bundle: &Bundle,
        rootfs_mounts: Vec<MountSpec>,
        cgroup_view: MountView,
        cgroup_namespace: bool,
    ) -> Result<RootfsPlan> {
        let spec = &bundle.spec;
        let linux = spec.linux().as_ref();
        let mut mounts = Vec::new();
        for m in spec.mounts().iter().flatten() {
            let opts = options::parse(m.options().as_deref().unwrap_or_default());
            let typ = m.typ().as_deref().unwrap_or("");
            let kind = if opts.is_bind() || typ == "bind" {
                let src = m.source().as_ref().ok_or_else(|| {
                    Error::invalid(format!(
                        "bind mount {} has no source",
                        m.destination().display()
                    ))
                })?;
                let source = bundle.resolve_source(src);
                let meta = std::fs::metadata(&source).map_err(|e| {
                    Error::io(
                        format!(
                            "bind mount source {} for {}",
                            source.display(),
                            m.destination().display()
                        ),
                        e,
                    )
                })?;
                MountKind::Bind {
                    source,
                    source_is_dir: meta.is_dir(),
                }
            } else if typ == "cgroup" || typ == "cgroup2" {
                MountKind::Cgroup
            } else if typ.is_empty() {
                return Err(Error::invalid(format!(
                    "mount {} has no type",
                    m.destination().display()
                )));
            } else {
                MountKind::Fs {
                    fstype: typ.to_string(),
                    source: m
                        .source()
                        .as_ref()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| typ.to_string()),
                }
            };
            let mut options = opts;
            if matches!(kind, MountKind::Bind { .. }) {
                options.flags.insert(MsFlags::MS_BIND);
            }
            mounts.push(MountEntry {
                destination: m.destination().clone(),
                kind,
                options,
            });
        }
        let spec_devices = linux.and_then(|l| l.devices().as_ref());
        let devices = devices::plan(spec_devices.map(Vec::as_slice).unwrap_or_default());
        let paths = |v: Option<&Vec<String>>| -> Vec<PathBuf> {
            v.into_iter().flatten().map(PathBuf::from).collect()
        };
        let mut sysctl: Vec<(String, String)> = linux
            .and_then(|l| l.sysctl().as_ref())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        sysctl.sort();
        Ok(RootfsPlan {
            rootfs: bundle.rootfs.clone(),
            rootfs_mounts,
            mounts,
            devices,
            masked_paths: paths(linux.and_then(|l| l.masked_paths().as_ref())),
            readonly_paths: paths(linux.and_then(|l| l.readonly_paths().as_ref())),
            sysctl,
            cwd: spec
                .process()
                .as_ref()
                .map(|p| p.cwd().clone())
                .unwrap_or_else(|| PathBuf::from("/")),
            readonly_root: spec
                .root()
                .as_ref()
                .and_then(|r| r.readonly())
                .unwrap_or(false),
            root_propagation: linux
                .and_then(|l| l.rootfs_propagation().as_deref())
                .and_then(options::propagation_flag),
            cgroup_view,
            cgroup_namespace,
        })
    }

    /// True when the spec mounts a tmpfs on `/dev`: then the shim fills it with the
    /// standard devices (as runc does); a bind-mounted `/dev` is left alone.
    fn fresh_dev(&self) -> bool {
        self.mounts.iter().any(|m| {
            m.destination == Path::new("/dev")
                && matches!(&m.kind, MountKind::Fs { fstype, .. } if fstype == "tmpfs")
        })
    }
}

pub(crate) fn sys_err(what: String) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::sys(what, e)
}

pub(crate) fn fd_path<'a>(fd: &'a OwnedFd, path: &'a Path) -> MountPath<'a> {
    MountPath::Fd {
        fd: fd.as_fd(),
        path,
    }
}

/// Builds the container's filesystem view and pivots into it. Runs in the container init,
/// in its new mount namespace, as root, with umask 0.
pub fn setup(sys: &dyn Syscall, plan: &RootfsPlan) -> Result<()> {
    // Nothing we mount may propagate back to the host (or from other namespaces in).
    sys.mount(
        None,
        MountPath::Host(Path::new("/")),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(sys_err("make / private in the new mount namespace".into()))?;
    mount_rootfs(sys, plan)?;
    let root = rustix::fs::open(
        &plan.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io(format!("open rootfs {}", plan.rootfs.display()), e.into()))?;
    for m in &plan.mounts {
        mount_entry(sys, root.as_fd(), plan, m)?;
    }
    if plan.fresh_dev() {
        devices::populate(
            sys,
            root.as_fd(),
            &plan.devices,
            has_mount(plan, "/dev/pts"),
        )?;
    }
    for (key, value) in &plan.sysctl {
        write_sysctl(root.as_fd(), key, value)?;
    }
    // The working directory is created as root, before the user switch, like runc does;
    // resolution is in-root, so a WORKDIR naming a symlink or /proc/self/fd/N cannot
    // escape (and after pivot_root the init's chdir is checked again).
    resolve::mkdir_all(root.as_fd(), &plan.cwd, 0o755)?;
    for p in &plan.readonly_paths {
        protect::readonly_path(sys, root.as_fd(), p)?;
    }
    protect::mask_paths(sys, root.as_fd(), &plan.masked_paths)?;
    drop(root);
    sys.pivot_root(&plan.rootfs)
        .map_err(sys_err(format!("pivot_root to {}", plan.rootfs.display())))?;
    if let Some(prop) = plan.root_propagation {
        sys.mount(None, MountPath::Host(Path::new("/")), None, prop, None)
            .map_err(sys_err("set rootfsPropagation on /".into()))?;
    }
    if plan.readonly_root {
        let flags = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | protect::locked_flags(Path::new("/"));
        sys.mount(None, MountPath::Host(Path::new("/")), None, flags, None)
            .map_err(sys_err("remount / read-only".into()))?;
    }
    Ok(())
}

fn has_mount(plan: &RootfsPlan, dest: &str) -> bool {
    plan.mounts.iter().any(|m| m.destination == Path::new(dest))
}

fn mount_rootfs(sys: &dyn Syscall, plan: &RootfsPlan) -> Result<()> {
    let target = MountPath::Host(&plan.rootfs);
    if plan.rootfs_mounts.is_empty() {
        // pivot_root needs the new root to be a mount point.
        return sys
            .mount(
                Some(target),
                target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(sys_err(format!(
                "bind rootfs {} onto itself",
                plan.rootfs.display()
            )));
    }
    for m in &plan.rootfs_mounts {
        let mut opts = options::parse(&m.options);
        let fstype = if m.fs_type == "bind" || opts.is_bind() {
            opts.flags.insert(MsFlags::MS_BIND);
            None
        } else {
            Some(m.fs_type.as_str())
        };
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        sys.mount(
            Some(MountPath::Host(Path::new(&m.source))),
            target,
            fstype,
            opts.flags,
            data,
        )
        .map_err(sys_err(format!(
            "mount rootfs {} ({}) at {}",
            m.source,
            m.fs_type,
            plan.rootfs.display()
        )))?;
        if opts.is_bind() && !opts.bind_remount_flags().is_empty() {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | opts.bind_remount_flags();
            sys.mount(None, target, None, flags, None)
                .map_err(sys_err(format!("remount rootfs {}", plan.rootfs.display())))?;
        }
    }
    Ok(())
}

fn mount_entry(
    sys: &dyn Syscall,
    root: BorrowedFd<'_>,
    plan: &RootfsPlan,
    m: &MountEntry,
) -> Result<()> {
    let dest = &m.destination;
    let ctx = |what: &str| format!("{what} {}", dest.display());
    let data = (!m.options.data.is_empty()).then_some(m.options.data.as_str());
    match &m.kind {
        MountKind::Bind {
            source,
            source_is_dir,
        } => {
            let kind = if *source_is_dir {
                TargetKind::Dir
            } else {
                TargetKind::File
            };
            let target = resolve::ensure_target(root, dest, kind)?;
            let flags = m.options.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
            sys.mount(
                Some(MountPath::Host(source)),
                fd_path(&target, dest),
                None,
                flags,
                None,
            )
            .map_err(sys_err(format!(
                "bind {} to {}",
                source.display(),
                dest.display()
            )))?;
            let extra = m.options.bind_remount_flags();
            if !extra.is_empty() {
                // The fd still names the directory under the new mount; reopen to reach
                // the mount itself.
                let mounted = resolve::open_in_root(root, dest, OFlags::PATH)
                    .map_err(|e| Error::io(ctx("reopen"), e))?;
                let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
                sys.mount(None, fd_path(&mounted, dest), None, flags, None)
                    .map_err(sys_err(ctx("remount")))?;
            }
        }
        MountKind::Cgroup => {
            let target = resolve::ensure_mountpoint_dir(root, dest)?;
            cgroupfs::mount_cgroup_view(sys, root, plan, m, &target)?;
        }
        MountKind::Fs { fstype, source } => {
            let target = if m.strict_target() {
                resolve::ensure_mountpoint_dir(root, dest)?
            } else {
                resolve::ensure_target(root, dest, TargetKind::Dir)?
            };
            sys.mount(
                Some(MountPath::Host(Path::new(source))),
                fd_path(&target, dest),
                Some(fstype),
                m.options.flags,
                data,
            )
            .map_err(sys_err(format!("mount {fstype} on {}", dest.display())))?;
        }
    }
    if !m.options.propagation.is_empty() {
        let mounted = resolve::open_in_root(root, dest, OFlags::PATH)
            .map_err(|e| Error::io(ctx("reopen"), e))?;
        for p in &m.options.propagation {
            sys.mount(None, fd_path(&mounted, dest), None, *p, None)
                .map_err(sys_err(ctx("set propagation on")))?;
        }
    }
    Ok(())
}

fn write_sysctl(root: BorrowedFd<'_>, key: &str, value: &str) -> Result<()> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let fd = resolve::open_in_root(root, &path, OFlags::WRONLY | OFlags::TRUNC)
        .map_err(|e| Error::io(format!("open sysctl {key}"), e))?;
    rustix::io::write(&fd, value.as_bytes())
        .map_err(|e| Error::io(format!("write sysctl {key}={value}"), e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
