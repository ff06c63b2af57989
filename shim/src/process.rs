//! Creating container processes: the shim's side of the start protocol, for the init
//! and for exec processes alike.
//!
//! ```text
//!  shim ──fork──▶ intermediate ──clone(CLONE_PARENT)──▶ process (init: pid 1 in a new
//!   │              joins/unshares namespaces            pid ns; exec: in the init's)
//!   │◀── Pid ──────┘ exits                                │ waits for CgroupJoined
//!   │ moves it into the cgroup ── CgroupJoined ──────────▶│ init: cgroup ns, rootfs,
//!   │◀──────────────────────── Console (fd, with a tty) ──┤ pivot_root; terminal;
//!   │◀──────────────────────────────────── Ready ─────────┤ user, caps, cwd
//!   │ ── Start ──────────────────────────────────────────▶│ execve
//!   │◀── EOF (exec done) or Error(text) ──────────────────┘
//! ```
//!
//! Why two processes: a new (or joined) pid namespace only applies to children of the
//! process that unshared (or joined) it, and `unshare`/`setns` of mount and other
//! namespaces is refused in a multi-threaded process (the shim serves gRPC on tokio).
//! `fork` (unlike a raw `clone`) runs glibc's atfork handlers, so the single-threaded
//! intermediate can allocate safely; its `CLONE_PARENT` child is the shim's own child, so
//! the shim waits for it directly. Neither child logs: it reports through the channel.
//!
//! The intermediate makes itself non-dumpable before it joins anything, and its child
//! inherits that until `execve`: while a process of the container's pid namespace still
//! runs the shim's binary, nothing in the container can open `/proc/<pid>/exe` or its
//! memory (the CVE-2019-5736 class of attacks on runc).

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};

use crate::cgroups::CgroupManager;
use crate::channel::{self, ChildChannel, ChildMessage, ParentChannel, ParentMessage};
use crate::error::{Error, Result};
use crate::exec::{self, ExecConfig, OpenNamespace};
use crate::init::{self, InitConfig};
use crate::syscall::{CloneFlags, LinuxSyscall, Syscall};

/// File descriptors that become the process's stdin, stdout and stderr (`None`: inherit
/// the shim's).
#[derive(Debug, Default)]
pub struct Stdio {
    /// fd 0.
    pub stdin: Option<OwnedFd>,
    /// fd 1.
    pub stdout: Option<OwnedFd>,
    /// fd 2.
    pub stderr: Option<OwnedFd>,
}

/// A container process that finished setup and waits for [`CreatedProcess::start`].
#[derive(Debug)]
pub struct CreatedProcess {
    pid: Pid,
    channel: ParentChannel,
    console: Option<OwnedFd>,
}

impl CreatedProcess {
    /// The process's pid (in the shim's pid namespace).
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The master of the process's terminal (once; when it has one).
    pub fn take_console(&mut self) -> Option<OwnedFd> {
        self.console.take()
    }

    /// Lets the process exec the container program. An exec failure (binary missing, not
    /// executable) comes back as [`Error::Init`]; the process has then exited and been
    /// reaped.
    pub fn start(self) -> Result<Pid> {
        if let Err(e) = self.channel.send(&ParentMessage::Start) {
            reap(self.pid);
            return Err(e);
        }
        match self.channel.recv() {
            Ok(None) => Ok(self.pid),
            Ok(Some(ChildMessage::Error(e))) => {
                reap(self.pid);
                Err(Error::Init(e))
            }
            Ok(Some(other)) => {
                kill_and_reap(self.pid);
                Err(Error::Protocol(format!("unexpected {other:?} after Start")))
            }
            Err(e) => {
                kill_and_reap(self.pid);
                Err(e)
            }
        }
    }

    /// Kills and reaps the process (one that is not to be started).
    pub fn abort(self) {
        kill_and_reap(self.pid);
    }
}

fn reap(pid: Pid) {
    loop {
        match waitpid(pid, None) {
            Err(nix::Error::EINTR) => continue,
            _ => return,
        }
    }
}

fn kill_and_reap(pid: Pid) {
    // Our own child, not yet reaped: the pid cannot have been reused.
    let _ = signal::kill(pid, Signal::SIGKILL);
    reap(pid);
}

/// Duplicates a caller's stdio fd above 2 (close-on-exec), so that moving fds onto 0–2
/// in the child can never overwrite one that is still to be moved.
fn dup_high(fd: &OwnedFd) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| Error::io("dup stdio fd", e.into()))
}

/// What the cloned process runs.
#[derive(Clone, Copy)]
enum Role<'a> {
    Init(&'a InitConfig),
    Exec(&'a ExecConfig),
}

/// Namespaces the intermediate joins (opened beforehand) and creates.
struct Namespaces {
    join: Vec<OpenNamespace>,
    unshare: CloneFlags,
}

/// Creates the container's init: forks the intermediate, gets the init's pid, moves the
/// init into `cgroup`, and waits until the init is set up.
pub fn create(
    cfg: &InitConfig,
    stdio: Stdio,
    cgroup: &dyn CgroupManager,
) -> Result<CreatedProcess> {
    // Open every namespace first: joining one could change what the next path means.
    let mut join = Vec::new();
    for (path, flag) in &cfg.join_namespaces {
        let file = File::open(path)
            .map_err(|e| Error::io(format!("open namespace {}", path.display()), e))?;
        join.push(OpenNamespace {
            file,
            flag: *flag,
            name: format!("namespace {}", path.display()),
        });
    }
    let ns = Namespaces {
        join,
        unshare: cfg.unshare,
    };
    spawn(Role::Init(cfg), &ns, stdio, cgroup)
}

/// Creates an exec process in the namespaces of the running container whose init is
/// `init`, and in `cgroup`; it waits for [`CreatedProcess::start`] once set up. The caller
/// must keep `init` from being reaped meanwhile.
pub fn create_exec(
    init: Pid,
    cfg: &ExecConfig,
    stdio: Stdio,
    cgroup: &dyn CgroupManager,
) -> Result<CreatedProcess> {
    let ns = Namespaces {
        join: exec::init_namespaces(init)?,
        unshare: CloneFlags::empty(),
    };
    spawn(Role::Exec(cfg), &ns, stdio, cgroup)
}

fn spawn(
    role: Role<'_>,
    ns: &Namespaces,
    stdio: Stdio,
    cgroup: &dyn CgroupManager,
) -> Result<CreatedProcess> {
    let (parent_ch, child_ch) = channel::pair()?;
    let stdio_fds = [&stdio.stdin, &stdio.stdout, &stdio.stderr]
        .map(|fd| fd.as_ref().map(dup_high).transpose());
    let [stdin, stdout, stderr] = stdio_fds;
    let stdio_fds = [stdin?, stdout?, stderr?];
    drop(stdio);
    // SAFETY: the child only runs `intermediate`, which uses no lock another thread of
    // the shim could hold (no logging, no std::env) and ends in `_exit`.
    let fork = unsafe { nix::unistd::fork() }.map_err(|e| Error::sys("fork", e))?;
    let child = match fork {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                intermediate(role, ns, &child_ch, &stdio_fds)
            }))
            .unwrap_or(3);
            // SAFETY: ends the forked child without running the parent's atexit handlers
            // or destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    // Only the container side may hold its end: its EOF is how we learn of exec/death.
    drop(child_ch);
    drop(stdio_fds);
    let first = parent_ch.recv();
    reap(child);
    let pid = match first? {
        Some(ChildMessage::Pid(p)) => Pid::from_raw(p),
        Some(ChildMessage::Error(e)) => return Err(Error::Init(e)),
        Some(other) => return Err(Error::Protocol(format!("expected Pid, got {other:?}"))),
        None => {
            return Err(Error::Protocol(
                "the intermediate process exited without reporting the pid".into(),
            ))
        }
    };
    if let Err(e) = cgroup.add_task(pid.as_raw()) {
        kill_and_reap(pid);
        return Err(e);
    }
    if let Err(e) = parent_ch.send(&ParentMessage::CgroupJoined) {
        kill_and_reap(pid);
        return Err(e);
    }
    let mut console = None;
    loop {
        match parent_ch.recv_with_fd() {
            Ok(Some((ChildMessage::Console, Some(fd)))) if console.is_none() => {
                console = Some(fd);
            }
            Ok(Some((ChildMessage::Ready, _))) => {
                return Ok(CreatedProcess {
                    pid,
                    channel: parent_ch,
                    console,
                })
            }
            Ok(Some((ChildMessage::Error(e), _))) => {
                reap(pid);
                return Err(Error::Init(e));
            }
            Ok(other) => {
                kill_and_reap(pid);
                return Err(Error::Protocol(format!(
                    "the container process ended setup without a result ({:?})",
                    other.map(|(m, _)| m)
                )));
            }
            Err(e) => {
                kill_and_reap(pid);
                return Err(e);
            }
        }
    }
}

/// Restores default signal handling: the shim ignores SIGPIPE (Rust's runtime does) and
/// may block signals, and ignored signals survive `execve`.
fn reset_signals() {
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL has no handler code to be unsafe about.
            let _ = unsafe { signal::signal(sig, SigHandler::SigDfl) };
        }
    }
    let _ = signal::sigprocmask(
        signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    );
}

/// Closes every fd except `keep` (sorted gaps closed with close_range): fds the shim's
/// other threads opened must not reach the container.
fn close_fds_except(keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut next: u32 = 3;
    for &fd in keep.iter() {
        let fd = fd as u32;
        if fd > next {
            // SAFETY: closes fds only; nothing in this process uses the closed ones.
            unsafe { libc::syscall(libc::SYS_close_range, next, fd - 1, 0) };
        }
        next = next.max(fd + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, next, u32::MAX, 0) };
}

fn intermediate(
    role: Role<'_>,
    ns: &Namespaces,
    ch: &ChildChannel,
    stdio: &[Option<OwnedFd>; 3],
) -> i32 {
    let result = (|| -> Result<i32> {
        reset_signals();
        let mut keep: Vec<RawFd> = stdio.iter().flatten().map(|f| f.as_raw_fd()).collect();
        keep.push(ch.raw_fd());
        keep.extend(ns.join.iter().map(|n| n.file.as_raw_fd()));
        close_fds_except(&mut keep);
        for (target, fd) in stdio.iter().enumerate() {
            if let Some(fd) = fd {
                // SAFETY: plain dup2 onto 0-2; the source stays open until exec.
                let rc = unsafe { libc::dup2(fd.as_raw_fd(), target as i32) };
                nix::errno::Errno::result(rc).map_err(|e| Error::sys("dup2 stdio", e))?;
            }
        }
        // Before any namespace of the container is joined (see the module doc).
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        nix::errno::Errno::result(rc).map_err(|e| Error::sys("PR_SET_DUMPABLE", e))?;
        let sys = LinuxSyscall;
        for n in &ns.join {
            sys.setns(std::os::fd::AsFd::as_fd(&n.file), n.flag)
                .map_err(|e| Error::sys(format!("join {}", n.name), e))?;
        }
        sys.unshare(ns.unshare)
            .map_err(|e| Error::sys(format!("unshare namespaces {:?}", ns.unshare), e))?;
        // SAFETY: a raw clone without CLONE_VM is a fork whose child's parent is the
        // shim (CLONE_PARENT); this process is single-threaded, so the child's copy of
        // the heap and locks is consistent.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        let pid = nix::errno::Errno::result(rc)
            .map_err(|e| Error::sys("clone the container process", e))?;
        if pid == 0 {
            let failed = match role {
                Role::Init(cfg) => init::run(&sys, cfg, ch),
                Role::Exec(cfg) => exec::run(&sys, cfg, ch),
            };
            let e = match failed {
                Err(e) => e,
                Ok(never) => match never {},
            };
            let _ = ch.send(&ChildMessage::Error(e.to_string()));
            // SAFETY: ends the process without unwinding into the copied shim stack.
            unsafe { libc::_exit(1) }
        }
        ch.send(&ChildMessage::Pid(pid as i32))?;
        Ok(0)
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = ch.send(&ChildMessage::Error(e.to_string()));
            1
        }
    }
}
