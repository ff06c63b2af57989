//! The real [`Syscall`]: nix, libc and the `caps` crate.

use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid};

use super::{MountPath, NodeKind, Rlimit, SysResult, Syscall};

/// Talks to the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

/// The `caps` crate reports failures as strings; the errno of the syscall it made is
/// still the thread's last error, and that is what callers need.
fn caps_err(_: caps::errors::CapsError) -> nix::Error {
    match Errno::last() {
        Errno::UnknownErrno => Errno::EPERM,
        e => e,
    }
}

impl Syscall for LinuxSyscall {
    fn mount(
        &self,
        source: Option<MountPath<'_>>,
        target: MountPath<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        let source = source.map(|s| s.kernel_path());
        nix::mount::mount(
            source.as_deref(),
            &target.kernel_path(),
            fstype,
            flags,
            data,
        )
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult {
        nix::mount::umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &Path) -> SysResult {
        nix::unistd::chdir(new_root)?;
        // With new_root == put_old the old root ends up stacked under the new one, and
        // unmounting "." removes it without needing a directory for it in the image.
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)?;
        nix::unistd::chdir("/")
    }

    fn chdir(&self, path: &Path) -> SysResult {
        nix::unistd::chdir(path)
    }

    fn sethostname(&self, name: &str) -> SysResult {
        nix::unistd::sethostname(name)
    }

    fn setdomainname(&self, name: &str) -> SysResult {
        // SAFETY: the pointer and length describe `name`, which outlives the call.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        Errno::result(rc).map(drop)
    }

    fn unshare(&self, flags: CloneFlags) -> SysResult {
        nix::sched::unshare(flags)
    }

    fn setns(&self, fd: BorrowedFd<'_>, flags: CloneFlags) -> SysResult {
        nix::sched::setns(fd, flags)
    }

    fn set_groups(&self, gids: &[u32]) -> SysResult {
        let gids: Vec<Gid> = gids.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids)
    }

    fn set_id(&self, uid: u32, gid: u32) -> SysResult {
        let (u, g) = (Uid::from_raw(uid), Gid::from_raw(gid));
        nix::unistd::setresgid(g, g, g)?;
        nix::unistd::setresuid(u, u, u)
    }

    fn set_keep_caps(&self, keep: bool) -> SysResult {
        nix::sys::prctl::set_keepcaps(keep)
    }

    fn drop_bounding_caps(&self, keep: &caps::CapsHashSet) -> SysResult {
        // Only capabilities this kernel knows: dropping an unknown one is EINVAL.
        for cap in caps::runtime::thread_all_supported() {
            if !keep.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(caps_err)?;
            }
        }
        Ok(())
    }

    fn set_caps(&self, set: caps::CapSet, value: &caps::CapsHashSet) -> SysResult {
        if matches!(set, caps::CapSet::Ambient) && value.is_empty() {
            return caps::clear(None, set).map_err(caps_err);
        }
        caps::set(None, set, value).map_err(caps_err)
    }

    fn set_rlimit(&self, rlimit: Rlimit) -> SysResult {
        let lim = libc::rlimit {
            rlim_cur: rlimit.soft,
            rlim_max: rlimit.hard,
        };
        // SAFETY: `lim` is a valid rlimit and the old-value pointer is null.
        let rc = unsafe { libc::prlimit(0, rlimit.resource as _, &lim, std::ptr::null_mut()) };
        Errno::result(rc).map(drop)
    }

    fn umask(&self, mask: u32) {
        nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    }

    fn set_no_new_privs(&self) -> SysResult {
        nix::sys::prctl::set_no_new_privs()
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        _path: &Path,
        kind: NodeKind,
        mode: u32,
        dev: u64,
    ) -> SysResult {
        let kind = match kind {
            NodeKind::Char => SFlag::S_IFCHR,
            NodeKind::Block => SFlag::S_IFBLK,
            NodeKind::Fifo => SFlag::S_IFIFO,
        };
        nix::sys::stat::mknodat(dir, name, kind, Mode::from_bits_truncate(mode), dev)
    }

    fn fchownat(&self, dir: BorrowedFd<'_>, name: &Path, uid: u32, gid: u32) -> SysResult {
        nix::unistd::fchownat(
            dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }

    fn cloexec_from(&self, first: u32) -> SysResult {
        // SAFETY: close_range only changes fd flags; no memory is passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        Errno::result(rc).map(drop)
    }
}
