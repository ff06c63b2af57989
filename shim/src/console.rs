//! A container process's terminal.
//!
//! The pty comes from the container's own devpts instance (`/dev/pts/ptmx` inside its
//! root), opened by the container process itself once it is inside that root (the init
//! after `pivot_root`, an exec process after joining the mount namespace): so the slave
//! is a `/dev/pts/N` the container can name, and `tty` or `ttyname(3)` work there, as
//! with runc. The master goes to the shim over the start channel and never stays in the
//! container; the process makes the slave its controlling terminal and its stdio. For the
//! init the slave is also bind-mounted onto `/dev/console`, as Docker does.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::MsFlags;
use rustix::fs::{Mode, OFlags};

use crate::channel::{ChildChannel, ChildMessage};
use crate::error::{Error, Result};
use crate::rootfs::resolve::{self, TargetKind};
use crate::syscall::{MountPath, Syscall};

/// `statfs` magic of devpts.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;
/// Device numbers of a devpts `ptmx` node.
const PTMX_MAJOR: u64 = 5;
const PTMX_MINOR: u64 = 2;

/// A pty pair.
#[derive(Debug)]
pub struct Pty {
    /// The master: the shim's end.
    pub master: OwnedFd,
    /// The slave: the process's terminal.
    pub slave: OwnedFd,
}

fn sys_err(what: &str) -> impl FnOnce(nix::Error) -> Error + '_ {
    move |e| Error::sys(what, e)
}

/// Opens a new pty in the devpts at `/dev/pts` of the calling process's root. The path
/// resolves inside that root only (no symlink may lead out), and what it opened must be
/// a devpts `ptmx`: a container that replaced its `/dev/pts` cannot hand the shim
/// anything else.
pub fn open() -> Result<Pty> {
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open / for the terminal", e.into()))?;
    let master = resolve::open_in_root(
        root.as_fd(),
        Path::new("/dev/pts/ptmx"),
        OFlags::RDWR | OFlags::NOCTTY,
    )
    .map_err(|e| {
        Error::io(
            "open /dev/pts/ptmx in the container (a terminal needs devpts at /dev/pts)",
            e,
        )
    })?;
    let fs =
        rustix::fs::fstatfs(&master).map_err(|e| Error::io("statfs /dev/pts/ptmx", e.into()))?;
    let st = rustix::fs::fstat(&master).map_err(|e| Error::io("stat /dev/pts/ptmx", e.into()))?;
    let rdev = st.st_rdev;
    if fs.f_type as i64 != DEVPTS_SUPER_MAGIC
        || rustix::fs::major(rdev) as u64 != PTMX_MAJOR
        || rustix::fs::minor(rdev) as u64 != PTMX_MINOR
    {
        return Err(Error::invalid(
            "/dev/pts/ptmx in the container is not a devpts ptmx",
        ));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the valid pointer.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    nix::errno::Errno::result(rc).map_err(sys_err("unlock the pty"))?;
    // TIOCGPTPEER opens the slave through the master, with no path lookup at all.
    // SAFETY: the ioctl takes open flags by value and returns a new fd.
    let fd = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let fd = nix::errno::Errno::result(fd).map_err(sys_err("open the pty slave"))?;
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Pty { master, slave })
}

/// Sets the terminal size (the foreground process group gets SIGWINCH).
pub fn set_size(fd: BorrowedFd<'_>, width: u16, height: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the valid pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(sys_err("set the terminal size"))
}

/// Makes `slave` the controlling terminal of a new session and the process's stdio.
/// Runs as root, before the user switch; the slave is handed to the process's user as
/// login(1) does, so that programs which reopen their tty may.
fn make_controlling(slave: &OwnedFd, uid: u32) -> Result<()> {
    nix::unistd::setsid().map_err(sys_err("setsid"))?;
    // SAFETY: TIOCSCTTY takes an int argument by value.
    let rc = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    nix::errno::Errno::result(rc).map_err(sys_err("make the pty the controlling terminal"))?;
    if uid != 0 {
        nix::unistd::fchown(slave, Some(nix::unistd::Uid::from_raw(uid)), None)
            .map_err(sys_err("chown the pty slave"))?;
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard fds, which this process owns.
        let rc = unsafe { libc::dup2(slave.as_raw_fd(), target) };
        nix::errno::Errno::result(rc).map_err(sys_err("dup2 the pty slave"))?;
    }
    Ok(())
}

/// Bind-mounts the slave onto `/dev/console`, created inside the root if missing (a
/// symlink there resolves inside the root only).
fn bind_console(sys: &dyn Syscall, slave: &OwnedFd) -> Result<()> {
    let root = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::io("open / for /dev/console", e.into()))?;
    let console = Path::new("/dev/console");
    let target = resolve::ensure_target(root.as_fd(), console, TargetKind::File)?;
    sys.mount(
        Some(MountPath::Fd {
            fd: slave.as_fd(),
            path: Path::new("/dev/pts (the console)"),
        }),
        MountPath::Fd {
            fd: target.as_fd(),
            path: console,
        },
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(sys_err("bind the terminal onto /dev/console"))
}

/// In the container process: opens the terminal, hands the master to the shim, and
/// makes the slave the process's controlling terminal and stdio (`console`: also
/// `/dev/console`, for the init).
pub(crate) fn setup(sys: &dyn Syscall, ch: &ChildChannel, uid: u32, console: bool) -> Result<()> {
    let pty = open()?;
    if console {
        bind_console(sys, &pty.slave)?;
    }
    ch.send_with_fd(&ChildMessage::Console, pty.master.as_fd())?;
    // The container must never hold the master.
    drop(pty.master);
    make_controlling(&pty.slave, uid)
}
