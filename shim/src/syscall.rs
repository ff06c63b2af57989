//! The seam between container setup logic and the kernel (youki's `Syscall` habit).
//!
//! Everything in [`crate::rootfs`] and [`crate::init`] that changes process or mount state
//! goes through [`Syscall`], so the order and arguments of mounts, id changes and
//! capability changes are unit-tested without root by [`RecordingSyscall`]. Reading and
//! creating files inside the rootfs is not part of the seam: it works unprivileged on a
//! temporary directory, so tests exercise the real path resolution.

mod linux;
mod recording;

use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

pub use linux::LinuxSyscall;
pub use nix::mount::{MntFlags, MsFlags};
pub use nix::sched::CloneFlags;
pub use recording::{Call, RecordingSyscall};

/// Result of a seam call: the kernel's errno, which callers put in context.
pub type SysResult<T = ()> = std::result::Result<T, nix::Error>;

/// A mount source or target: a host path, or a file descriptor opened inside the rootfs
/// (mounted through `/proc/self/fd/N`, so the kernel never resolves the container-controlled
/// path again) together with the path it stands for, for messages and tests.
#[derive(Debug, Clone, Copy)]
pub enum MountPath<'a> {
    /// A path the shim controls (on the host side).
    Host(&'a Path),
    /// An fd opened without leaving the rootfs, and the container path it was opened as.
    Fd {
        /// The opened target (usually `O_PATH`).
        fd: BorrowedFd<'a>,
        /// The path inside the container it names.
        path: &'a Path,
    },
}

impl MountPath<'_> {
    /// The path handed to the kernel.
    pub fn kernel_path(&self) -> PathBuf {
        match self {
            MountPath::Host(p) => p.to_path_buf(),
            MountPath::Fd { fd, .. } => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
        }
    }

    /// The path as a person (or a test) reads it.
    pub fn display_path(&self) -> &Path {
        match self {
            MountPath::Host(p) => p,
            MountPath::Fd { path, .. } => path,
        }
    }
}

/// One resource limit, already clamped to what the shim may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_*` resource number.
    pub resource: libc::c_int,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// A device node to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// Character device.
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
}

/// The kernel operations of container setup.
pub trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<MountPath<'_>>,
        target: MountPath<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult;
    /// `umount2(2)`.
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult;
    /// Makes `new_root` the root of the mount namespace and detaches the old root
    /// (`pivot_root(".", ".")` then `umount2(".", MNT_DETACH)`, as runc does: no
    /// directory for the old root is needed inside the image).
    fn pivot_root(&self, new_root: &Path) -> SysResult;
    /// `chdir(2)`.
    fn chdir(&self, path: &Path) -> SysResult;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> SysResult;
    /// `setdomainname(2)`.
    fn setdomainname(&self, name: &str) -> SysResult;
    /// `unshare(2)`.
    fn unshare(&self, flags: CloneFlags) -> SysResult;
    /// `setns(2)` into the namespace `fd` refers to.
    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> SysResult;
    /// `setgroups(2)`.
    fn set_groups(&self, gids: &[u32]) -> SysResult;
    /// `setresgid` then `setresuid` (all three ids each).
    fn set_id(&self, uid: u32, gid: u32) -> SysResult;
    /// `PR_SET_KEEPCAPS`: keep the permitted set across the uid change.
    fn set_keep_caps(&self, keep: bool) -> SysResult;
    /// Drops every capability not in `keep` from the bounding set.
    fn drop_bounding_caps(&self, keep: &caps::CapsHashSet) -> SysResult;
    /// Sets one capability set of the calling thread.
    fn set_caps(&self, set: caps::CapSet, value: &caps::CapsHashSet) -> SysResult;
    /// `setrlimit(2)`.
    fn set_rlimit(&self, rlimit: Rlimit) -> SysResult;
    /// `umask(2)`.
    fn umask(&self, mask: u32);
    /// `PR_SET_NO_NEW_PRIVS`.
    fn set_no_new_privs(&self) -> SysResult;
    /// `mknodat(2)` of `name` in `dir` (`path` is its container path, for messages).
    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        path: &Path,
        kind: NodeKind,
        mode: u32,
        dev: u64,
    ) -> SysResult;
    /// `fchownat(dir, name, uid, gid, AT_SYMLINK_NOFOLLOW)`.
    fn fchownat(&self, dir: BorrowedFd<'_>, name: &Path, uid: u32, gid: u32) -> SysResult;
    /// Marks every fd from `first` on close-on-exec (`close_range(CLOSE_RANGE_CLOEXEC)`).
    fn cloexec_from(&self, first: u32) -> SysResult;
}
