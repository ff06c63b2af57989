//! Exec processes of the Task API. Exec validates and records the process and opens its
//! stdio (so clients can attach before Start); Start creates it in the running container
//! and execs it, returning once `execve` succeeded (or with its error); the reaper routes
//! its exit here. An exec's exit status lives in memory only: unlike the init's it is
//! not needed after a shim restart (the container's execs die with the shim anyway).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::sys::wait::WaitStatus;
use tokio::sync::{watch, MutexGuard};

use super::io::{self, Io, StdioSpec};
use super::{blocking, Inner, Phase, Status, Task};
use crate::console;
use crate::container::start_failure_code;
use crate::error::{Error, Result};
use crate::exec::ExecConfig;
use crate::process::Stdio;
use crate::state::ExitRecord;

/// How long an exec's exit waits for its output to be copied.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// Longest exec id accepted.
const MAX_EXEC_ID: usize = 1024;

/// An Exec request in domain terms.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// The new process's id, unique in the container.
    pub exec_id: String,
    /// The OCI `process` object, as JSON.
    pub spec: Vec<u8>,
    /// A pseudo-terminal for it.
    pub terminal: bool,
    /// Its stdio.
    pub stdio: StdioSpec,
    /// Initial terminal size (width, height).
    pub console_size: Option<(u32, u32)>,
}

/// One exec process.
pub(super) struct ExecProcess {
    config: Arc<ExecConfig>,
    pub(super) status: Status,
    pub(super) pid: u32,
    /// Signals go through it: unlike the pid, it can never name a reused pid.
    pidfd: Option<OwnedFd>,
    pub(super) started_at: Option<SystemTime>,
    pub(super) exit: Option<ExitRecord>,
    exit_tx: watch::Sender<Option<ExitRecord>>,
    pub(super) io: Io,
    /// The process's ends of its stdio, until Start hands them over.
    stdio: Option<Stdio>,
    console_size: Option<(u16, u16)>,
}

impl ExecProcess {
    fn record_exit(&mut self, record: ExitRecord) {
        self.status = Status::Stopped;
        self.pidfd = None;
        self.exit = Some(record.clone());
        self.exit_tx.send_replace(Some(record));
    }
}

/// What a successful exec Start hands back from the blocking part.
struct Started {
    pid: u32,
    pidfd: OwnedFd,
    console: Option<OwnedFd>,
}

/// `pidfd_send_signal(2)`.
fn signal_errno(pidfd: &OwnedFd, signal: libc::c_int) -> std::result::Result<(), nix::Error> {
    // SAFETY: pidfd_send_signal takes an fd, a signal number, a null siginfo and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    nix::errno::Errno::result(rc).map(drop)
}

/// Signals a process whose failure to receive it needs no report (it exited).
fn signal(pidfd: &OwnedFd, signal: libc::c_int) {
    let _ = signal_errno(pidfd, signal);
}

fn exit_code(status: WaitStatus) -> Option<(u32, Option<i32>)> {
    match status {
        WaitStatus::Exited(_, code) => Some((code.max(0) as u32, None)),
        WaitStatus::Signaled(_, sig, _) => Some((128 + sig as u32, Some(sig as i32))),
        _ => None,
    }
}

impl Task {
    fn running_container(&self, inner: &Inner) -> Result<()> {
        match inner.phase {
            Phase::Live(Status::Running) => Ok(()),
            Phase::Live(Status::Paused) => Err(Error::FailedPrecondition(format!(
                "container {} is paused: resume it first",
                self.id
            ))),
            Phase::Live(_) => Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                self.id
            ))),
            Phase::Empty | Phase::Deleted => Err(self.not_created()),
        }
    }

    pub(super) fn exec_entry<'a>(
        &self,
        inner: &'a Inner,
        exec_id: &str,
    ) -> Result<&'a ExecProcess> {
        inner.execs.get(exec_id).ok_or_else(|| {
            Error::NotFound(format!(
                "no exec process {exec_id:?} in container {}",
                self.id
            ))
        })
    }

    fn exec_entry_mut<'a>(
        &self,
        inner: &'a mut Inner,
        exec_id: &str,
    ) -> Result<&'a mut ExecProcess> {
        inner.execs.get_mut(exec_id).ok_or_else(|| {
            Error::NotFound(format!(
                "no exec process {exec_id:?} in container {}",
                self.id
            ))
        })
    }

    /// Records an exec process (Exec): the container must be running.
    pub async fn exec(&self, spec: ExecSpec) -> Result<()> {
        if spec.exec_id.is_empty() || spec.exec_id.len() > MAX_EXEC_ID {
            return Err(Error::InvalidArgument(format!(
                "exec id must be 1 to {MAX_EXEC_ID} bytes"
            )));
        }
        let mut inner = self.inner.lock().await;
        self.running_container(&inner)?;
        if inner.execs.contains_key(&spec.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec process {:?} exists in container {}",
                spec.exec_id, self.id
            )));
        }
        let base = inner.exec_base.clone().ok_or_else(|| self.not_created())?;
        let (config, warnings) = ExecConfig::from_json(&spec.spec, &base)?;
        if config.process.terminal != spec.terminal {
            return Err(Error::InvalidArgument(format!(
                "exec {:?}: the request's terminal ({}) and the process spec's ({}) disagree",
                spec.exec_id, spec.terminal, config.process.terminal
            )));
        }
        for w in warnings {
            tracing::warn!(container = %self.id, exec_id = %spec.exec_id, "{w}");
        }
        let (io, stdio) = Io::open(&spec.stdio, &self.id, spec.terminal)?;
        let console_size = spec
            .console_size
            .map(|(w, h)| (io::clamp_cells(w), io::clamp_cells(h)));
        inner.execs.insert(
            spec.exec_id.clone(),
            ExecProcess {
                config: Arc::new(config),
                status: Status::Created,
                pid: 0,
                pidfd: None,
                started_at: None,
                exit: None,
                exit_tx: watch::Sender::new(None),
                io,
                stdio: Some(stdio),
                console_size,
            },
        );
        tracing::info!(container = %self.id, exec_id = %spec.exec_id, terminal = spec.terminal, "exec created");
        Ok(())
    }

    /// Starts a created exec process; returns its host pid once it has exec'd its
    /// program. An exec failure comes back as the process's own message (Docker's
    /// "executable file not found in $PATH"), and the process is then stopped with 127
    /// (126 for "permission denied").
    pub(super) async fn exec_start(&self, exec_id: &str) -> Result<u32> {
        let mut inner = self.inner.lock().await;
        self.exec_entry(&inner, exec_id)?;
        self.running_container(&inner)?;
        let entry = self.exec_entry_mut(&mut inner, exec_id)?;
        if entry.status != Status::Created {
            return Err(Error::FailedPrecondition(format!(
                "exec process {exec_id:?} is already started"
            )));
        }
        let stdio = entry.stdio.take().ok_or_else(|| {
            Error::FailedPrecondition(format!("exec process {exec_id:?} has no stdio"))
        })?;
        let cfg = entry.config.clone();
        let size = entry.console_size;
        let Some(container) = inner.container.take() else {
            return Err(self.not_created());
        };
        let reap_guard = self.reap_lock.clone().lock_owned().await;
        let (container, started) = blocking(move || {
            // The core waits for the intermediate process (and for the exec process on
            // failure), and the init must stay unreaped while its namespaces are opened.
            let _reap_guard = reap_guard;
            let r = (|| {
                let mut created = container.exec(&cfg, stdio)?;
                let console = created.take_console();
                let pidfd = rustix::process::Pid::from_raw(created.pid().as_raw())
                    .ok_or_else(|| Error::Protocol("exec process pid 0".into()))
                    .and_then(|p| {
                        rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty())
                            .map_err(|e| Error::io("pidfd_open the exec process", e.into()))
                    });
                let ready = match (&console, size) {
                    (Some(c), Some((w, h))) => console::set_size(c.as_fd(), w, h),
                    _ => Ok(()),
                }
                .and(pidfd);
                let pidfd = match ready {
                    Ok(fd) => fd,
                    Err(e) => {
                        created.abort();
                        return Err(e);
                    }
                };
                let pid = created.start()?;
                Ok(Started {
                    pid: pid.as_raw() as u32,
                    pidfd,
                    console,
                })
            })();
            (container, r)
        })
        .await?;
        inner.container = Some(container);
        let id = self.id.clone();
        let entry = self.exec_entry_mut(&mut inner, exec_id)?;
        match started {
            Ok(s) => {
                entry.pid = s.pid;
                entry.status = Status::Running;
                entry.started_at = Some(SystemTime::now());
                if let Some(master) = s.console {
                    if let Err(e) = entry.io.set_console(master, None) {
                        // Nobody could read its terminal: it would block once the
                        // terminal's buffer is full.
                        tracing::error!(container = %id, exec_id, error = %e, "the exec's terminal is lost; killing it");
                        entry.io.abandon();
                        signal(&s.pidfd, libc::SIGKILL);
                    }
                }
                entry.pidfd = Some(s.pidfd);
                tracing::info!(container = %id, exec_id, pid = s.pid, "exec started");
                Ok(s.pid)
            }
            Err(e) => {
                let code = start_failure_code(&e) as u32;
                entry.io.abandon();
                entry.record_exit(ExitRecord {
                    pid: 0,
                    exit_status: code,
                    signal: None,
                    oom_killed: false,
                    exited_at: SystemTime::now(),
                });
                tracing::info!(container = %id, exec_id, exit_status = code, error = %e, "exec failed to start");
                Err(e)
            }
        }
    }

    /// Signals an exec process.
    pub(super) async fn exec_kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        if all {
            return Err(Error::InvalidArgument(
                "`all` signals every process of the container: it goes with the init only".into(),
            ));
        }
        let inner = self.inner.lock().await;
        let entry = self.exec_entry(&inner, exec_id)?;
        let pidfd = match (entry.status, &entry.pidfd) {
            (Status::Running, Some(fd)) => fd,
            (Status::Created, _) => {
                return Err(Error::FailedPrecondition(format!(
                    "exec process {exec_id:?} is not started"
                )))
            }
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "exec process {exec_id:?} is not running"
                )))
            }
        };
        match signal_errno(pidfd, signal as libc::c_int) {
            // It exited; the reaper is about to record it.
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(e) => {
                return Err(Error::sys(
                    format!("signal {signal} to exec process {exec_id:?}"),
                    e,
                ))
            }
        }
        tracing::info!(container = %self.id, exec_id, signal, "signalled");
        Ok(())
    }

    /// Blocks until an exec process exits.
    pub(super) async fn exec_wait(&self, exec_id: &str) -> Result<ExitRecord> {
        let mut rx = {
            let inner = self.inner.lock().await;
            let entry = self.exec_entry(&inner, exec_id)?;
            if let Some(e) = &entry.exit {
                return Ok(e.clone());
            }
            entry.exit_tx.subscribe()
        };
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| Error::NotFound(format!("exec process {exec_id:?} was deleted")))?;
        (*exit)
            .clone()
            .ok_or_else(|| Error::NotFound(format!("exec process {exec_id:?} has no exit status")))
    }

    /// Removes an exec process that is not running.
    pub(super) async fn exec_delete(&self, exec_id: &str) -> Result<ExitRecord> {
        let mut inner = self.inner.lock().await;
        let entry = self.exec_entry(&inner, exec_id)?;
        if entry.status == Status::Running {
            return Err(Error::FailedPrecondition(format!(
                "exec process {exec_id:?} is running: kill it before deleting it"
            )));
        }
        let record = entry.exit.clone().unwrap_or(ExitRecord {
            pid: 0,
            exit_status: 0,
            signal: None,
            oom_killed: false,
            exited_at: SystemTime::now(),
        });
        inner.execs.remove(exec_id);
        tracing::info!(container = %self.id, exec_id, "exec deleted");
        Ok(record)
    }

    /// Sets an exec's terminal size (before Start: the size it will start with).
    pub(super) fn exec_resize(
        &self,
        inner: &mut MutexGuard<'_, Inner>,
        exec_id: &str,
        width: u16,
        height: u16,
    ) -> Result<()> {
        let entry = self.exec_entry_mut(inner, exec_id)?;
        if !entry.io.terminal() {
            return Err(Error::FailedPrecondition(format!(
                "exec process {exec_id:?} has no terminal"
            )));
        }
        if !entry.io.resize(width, height)? {
            entry.console_size = Some((width, height));
        }
        Ok(())
    }

    /// The reaper reaped `status` of a pid that may be an exec's: records its end once its
    /// output is copied (without holding the lock meanwhile). False when no running exec
    /// has that pid.
    pub(super) async fn exec_exited(
        &self,
        inner: MutexGuard<'_, Inner>,
        status: WaitStatus,
        at: SystemTime,
    ) -> bool {
        let Some(pid) = status.pid() else {
            return false;
        };
        let Some((code, signal)) = exit_code(status) else {
            return false;
        };
        let pid = pid.as_raw() as u32;
        let found = inner
            .execs
            .iter()
            .find(|(_, e)| e.status == Status::Running && e.pid == pid)
            .map(|(id, e)| (id.clone(), e.io.copiers()));
        let Some((exec_id, copiers)) = found else {
            return false;
        };
        drop(inner);
        io::drain(copiers, OUTPUT_DRAIN, &self.id).await;
        let mut inner = self.inner.lock().await;
        if let Some(entry) = inner.execs.get_mut(&exec_id) {
            if entry.status == Status::Running && entry.pid == pid {
                entry.record_exit(ExitRecord {
                    pid,
                    exit_status: code,
                    signal,
                    oom_killed: false,
                    exited_at: at,
                });
                tracing::info!(container = %self.id, exec_id, exit_status = code, "exec exited");
            }
        }
        true
    }
}
