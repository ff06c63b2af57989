//! Detaching from the engine: the process the engine starts (the *launcher*) forks; the
//! child calls `setsid` and forks again; the grandchild is the shim. The middle process
//! exits at once, so the shim is reparented away from the engine (to the host's init or
//! the nearest subreaper) and belongs to no session of the engine's: killing or
//! restarting the engine leaves it alone. No parent-death signal is set, on purpose.
//!
//! The launcher stays until the shim reports on a pipe that it is serving (or why it
//! could not), then exits 0 or prints the reason and exits 1. So the engine's spawn is a
//! plain "run a command and check its status", and no launcher outlives that.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use nix::unistd::{ForkResult, Pid};

use crate::state;

/// What this process became.
pub enum Role {
    /// The launcher: return this code from `main`.
    Launcher(ExitCode),
    /// The detached shim, with the pipe to report readiness on.
    Daemon(Ready),
}

/// The write end of the readiness pipe (none in the foreground).
#[derive(Debug, Default)]
pub struct Ready {
    fd: Option<OwnedFd>,
}

impl Ready {
    /// Nobody waits (the shim runs in the foreground).
    pub fn none() -> Self {
        Ready { fd: None }
    }

    /// The shim is listening: the launcher exits 0.
    pub fn ok(&mut self) {
        self.send("OK\n");
    }

    /// The shim cannot start: the launcher prints `message` and exits 1.
    pub fn fail(&mut self, message: &str) {
        self.send(&format!("ERR {message}\n"));
    }

    fn send(&mut self, text: &str) {
        if let Some(fd) = self.fd.take() {
            // The launcher gone is no reason to fail the shim.
            let _ = File::from(fd).write_all(text.as_bytes());
        }
    }
}

/// Detaches. Must run before any thread exists (before the async runtime and logging).
/// The shim's stdout and stderr go to `<state_dir>/shim.log`.
pub fn daemonize(state_dir: &Path) -> Role {
    let log_path = state_dir.join(state::SHIM_LOG);
    let log = match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(e) => return fail_launch(&format!("open {}: {e}", log_path.display())),
    };
    let (ready_r, ready_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail_launch(&format!("create the readiness pipe: {e}")),
    };
    // SAFETY: no other thread exists yet (see above), so the child may run anything.
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail_launch(&format!("fork: {e}")),
        Ok(ForkResult::Parent { child }) => {
            drop(ready_w);
            drop(log);
            Role::Launcher(launcher(child, ready_r, &log_path))
        }
        Ok(ForkResult::Child) => {
            drop(ready_r);
            let mut ready = Ready { fd: Some(ready_w) };
            if let Err(e) = nix::unistd::setsid() {
                ready.fail(&format!("setsid: {e}"));
                // SAFETY: ends the forked middle process without unwinding.
                unsafe { libc::_exit(1) }
            }
            // SAFETY: still single-threaded.
            match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Parent { .. }) => {
                    // SAFETY: as above; the grandchild keeps the pipe.
                    unsafe { libc::_exit(0) }
                }
                Err(e) => {
                    ready.fail(&format!("fork: {e}"));
                    // SAFETY: as above.
                    unsafe { libc::_exit(1) }
                }
                Ok(ForkResult::Child) => {}
            }
            if let Err(e) = redirect_stdio(&log) {
                ready.fail(&format!("redirect stdio to {}: {e}", log_path.display()));
                return Role::Launcher(ExitCode::FAILURE);
            }
            Role::Daemon(ready)
        }
    }
}

fn fail_launch(message: &str) -> Role {
    eprintln!("berth-shim: {message}");
    Role::Launcher(ExitCode::FAILURE)
}

/// stdin from /dev/null; stdout and stderr to the shim log (nothing of the engine's
/// terminal or pipes stays open in the shim).
fn redirect_stdio(log: &File) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 onto the standard fds, which this process owns.
        nix::errno::Errno::result(unsafe { libc::dup2(from, to) })?;
    }
    Ok(())
}

fn launcher(middle: Pid, ready: OwnedFd, log_path: &Path) -> ExitCode {
    let _ = nix::sys::wait::waitpid(middle, None);
    let mut report = String::new();
    // EOF once the shim reported (or died): every write end is closed by then.
    let _ = File::from(ready).read_to_string(&mut report);
    if report.starts_with("OK") {
        return ExitCode::SUCCESS;
    }
    let message = match report.strip_prefix("ERR ").map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!(
            "the shim exited before it was ready; the end of {}:\n{}",
            log_path.display(),
            tail(log_path, 20)
        ),
    };
    eprintln!("berth-shim: {message}");
    ExitCode::FAILURE
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
