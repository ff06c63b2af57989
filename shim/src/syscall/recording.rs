//! A [`Syscall`] that records what it is asked to do and changes nothing: unit tests of
//! rootfs and init logic run unprivileged against it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::{MountPath, NodeKind, Rlimit, SysResult, Syscall};

/// One recorded call, with paths as the container sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2 {
        target: PathBuf,
        flags: MntFlags,
    },
    PivotRoot(PathBuf),
    Chdir(PathBuf),
    Sethostname(String),
    Setdomainname(String),
    Unshare(CloneFlags),
    Setns(CloneFlags),
    SetGroups(Vec<u32>),
    SetId {
        uid: u32,
        gid: u32,
    },
    SetKeepCaps(bool),
    DropBounding(BTreeSet<String>),
    /// The set's name (`Effective`, ...) and its capabilities.
    SetCaps(&'static str, BTreeSet<String>),
    SetRlimit(Rlimit),
    Umask(u32),
    NoNewPrivs,
    Mknod {
        path: PathBuf,
        kind: NodeKind,
        mode: u32,
        dev: u64,
    },
    Chown {
        name: PathBuf,
        uid: u32,
        gid: u32,
    },
    CloexecFrom(u32),
}

/// Records calls; can be told to fail one kind of call.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<Call>>,
    fail_mount_target: RefCell<Option<(PathBuf, nix::Error)>>,
}

fn names(set: &caps::CapsHashSet) -> BTreeSet<String> {
    set.iter().map(|c| c.to_string()).collect()
}

impl RecordingSyscall {
    /// A fresh recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Only the mounts, as `(target, fstype, flags)`.
    pub fn mounts(&self) -> Vec<(PathBuf, Option<String>, MsFlags)> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::Mount {
                    target,
                    fstype,
                    flags,
                    ..
                } => Some((target.clone(), fstype.clone(), *flags)),
                _ => None,
            })
            .collect()
    }

    /// Makes the next mount on `target` fail with `err`.
    pub fn fail_mount_on(&self, target: impl Into<PathBuf>, err: nix::Error) {
        *self.fail_mount_target.borrow_mut() = Some((target.into(), err));
    }

    fn push(&self, c: Call) -> SysResult {
        self.calls.borrow_mut().push(c);
        Ok(())
    }
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<MountPath<'_>>,
        target: MountPath<'_>,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> SysResult {
        let fail = self.fail_mount_target.borrow_mut().take();
        if let Some((t, err)) = fail {
            if t == target.display_path() {
                return Err(err);
            }
            *self.fail_mount_target.borrow_mut() = Some((t, err));
        }
        self.push(Call::Mount {
            source: source.map(|s| s.display_path().to_path_buf()),
            target: target.display_path().to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }
    fn umount2(&self, target: &Path, flags: MntFlags) -> SysResult {
        self.push(Call::Umount2 {
            target: target.to_path_buf(),
            flags,
        })
    }
    fn pivot_root(&self, new_root: &Path) -> SysResult {
        self.push(Call::PivotRoot(new_root.to_path_buf()))
    }
    fn chdir(&self, path: &Path) -> SysResult {
        self.push(Call::Chdir(path.to_path_buf()))
    }
    fn sethostname(&self, name: &str) -> SysResult {
        self.push(Call::Sethostname(name.to_string()))
    }
    fn setdomainname(&self, name: &str) -> SysResult {
        self.push(Call::Setdomainname(name.to_string()))
    }
    fn unshare(&self, flags: CloneFlags) -> SysResult {
        self.push(Call::Unshare(flags))
    }
    fn setns(&self, _fd: BorrowedFd<'_>, flags: CloneFlags) -> SysResult {
        self.push(Call::Setns(flags))
    }
    fn set_groups(&self, gids: &[u32]) -> SysResult {
        self.push(Call::SetGroups(gids.to_vec()))
    }
    fn set_id(&self, uid: u32, gid: u32) -> SysResult {
        self.push(Call::SetId { uid, gid })
    }
    fn set_keep_caps(&self, keep: bool) -> SysResult {
        self.push(Call::SetKeepCaps(keep))
    }
    fn drop_bounding_caps(&self, keep: &caps::CapsHashSet) -> SysResult {
        self.push(Call::DropBounding(names(keep)))
    }
    fn set_caps(&self, set: caps::CapSet, value: &caps::CapsHashSet) -> SysResult {
        let set = match set {
            caps::CapSet::Ambient => "Ambient",
            caps::CapSet::Bounding => "Bounding",
            caps::CapSet::Effective => "Effective",
            caps::CapSet::Inheritable => "Inheritable",
            caps::CapSet::Permitted => "Permitted",
        };
        self.push(Call::SetCaps(set, names(value)))
    }
    fn set_rlimit(&self, rlimit: Rlimit) -> SysResult {
        self.push(Call::SetRlimit(rlimit))
    }
    fn umask(&self, mask: u32) {
        self.calls.borrow_mut().push(Call::Umask(mask));
    }
    fn set_no_new_privs(&self) -> SysResult {
        self.push(Call::NoNewPrivs)
    }
    fn mknodat(
        &self,
        _dir: BorrowedFd<'_>,
        _name: &Path,
        path: &Path,
        kind: NodeKind,
        mode: u32,
        dev: u64,
    ) -> SysResult {
        self.push(Call::Mknod {
            path: path.to_path_buf(),
            kind,
            mode,
            dev,
        })
    }
    fn fchownat(&self, _dir: BorrowedFd<'_>, name: &Path, uid: u32, gid: u32) -> SysResult {
        self.push(Call::Chown {
            name: name.to_path_buf(),
            uid,
            gid,
        })
    }
    fn cloexec_from(&self, first: u32) -> SysResult {
        self.push(Call::CloexecFrom(first))
    }
}
