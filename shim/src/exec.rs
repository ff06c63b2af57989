//! Exec processes: an extra process in a running container (`docker exec`).
//!
//! The start protocol is the init's ([`crate::process`]): the shim forks an intermediate
//! that joins every namespace of the container's init — opened by fd from
//! `/proc/<init>/ns/*` before any is joined, the mount namespace last — and clones the
//! exec process (a fork is needed after joining a pid namespace). The shim moves it into
//! the container's cgroup before it goes on; then it sets up its terminal, user,
//! capabilities, limits and working directory exactly as the init does
//! (`init::exec_process`) and waits for Start.

use std::convert::Infallible;
use std::fs::File;
use std::os::unix::fs::MetadataExt;

use nix::unistd::Pid;
use oci_spec::runtime::{Process, Spec};

use crate::channel::{ChildChannel, ParentMessage};
use crate::console;
use crate::error::{Error, Result};
use crate::init::{self, ProcessConfig};
use crate::seccomp::Filter;
use crate::spec;
use crate::syscall::{CloneFlags, Syscall};

/// Everything an exec process does, decided before fork.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The process.
    pub process: ProcessConfig,
    /// The container's seccomp filter (the spec's `linux.seccomp`): an exec process is
    /// confined as the init is.
    pub seccomp: Option<Filter>,
}

/// What exec processes take from the container's spec (its seccomp filter, compiled).
/// The task keeps this for the container's life instead of the whole spec, which is tens
/// of KiB of heap per shim.
#[derive(Debug, Clone, Default)]
pub struct ExecBase {
    seccomp: Option<Filter>,
}

impl ExecBase {
    /// Takes from the container's spec what its exec processes share with the init.
    pub fn new(container: &Spec) -> Result<ExecBase> {
        let seccomp = container
            .linux()
            .as_ref()
            .and_then(|l| l.seccomp().as_ref())
            .map(Filter::from_spec)
            .transpose()?;
        Ok(ExecBase { seccomp })
    }
}

impl ExecConfig {
    /// Validates an OCI `process` object (the Exec request's JSON) and plans it, with
    /// what is container-wide (seccomp). Returns warnings for the caller to log with the
    /// container id.
    pub fn new(process: &Process, base: &ExecBase) -> Result<(ExecConfig, Vec<String>)> {
        spec::validate_process(process)?;
        let (process, warnings) = ProcessConfig::new(process)?;
        let seccomp = base.seccomp.clone();
        Ok((ExecConfig { process, seccomp }, warnings))
    }

    /// Parses the Exec request's `spec` bytes, then as [`ExecConfig::new`].
    pub fn from_json(json: &[u8], base: &ExecBase) -> Result<(ExecConfig, Vec<String>)> {
        let process: Process = serde_json::from_slice(json)
            .map_err(|e| Error::invalid(format!("exec process spec: {e}")))?;
        ExecConfig::new(&process, base)
    }
}

/// A namespace of the init, opened.
#[derive(Debug)]
pub struct OpenNamespace {
    /// `/proc/<pid>/ns/<name>`.
    pub file: File,
    /// Its type.
    pub flag: CloneFlags,
    /// What it is, for messages (`the init's ipc namespace`, a path from the spec).
    pub name: String,
}

/// Namespaces an exec joins, in joining order: the mount namespace last, since joining
/// it changes what paths mean (the fds are all open by then anyway). The user namespace
/// is not used by berth; the time namespace is refused by spec validation.
const NAMESPACES: [(&str, CloneFlags); 6] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Opens the namespaces of `init` that differ from the shim's own (joining one the shim
/// is in already would change nothing). The caller must keep `init` from being reaped
/// meanwhile, so that the pid still names the container's init.
pub fn init_namespaces(init: Pid) -> Result<Vec<OpenNamespace>> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        let path = format!("/proc/{}/ns/{name}", init.as_raw());
        let file = File::open(&path).map_err(|e| {
            Error::FailedPrecondition(format!(
                "the container's init is gone ({path}: {e}): the container is not running"
            ))
        })?;
        let theirs = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {path}"), e))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(|e| Error::io(format!("stat /proc/self/ns/{name}"), e))?;
        if (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()) {
            out.push(OpenNamespace {
                file,
                flag,
                name: format!("the init's {name} namespace"),
            });
        }
    }
    Ok(out)
}

/// The exec process's whole job, in the container's namespaces. Returns only on
/// failure (success ends in `execve`).
pub(crate) fn run(sys: &dyn Syscall, cfg: &ExecConfig, ch: &ChildChannel) -> Result<Infallible> {
    match ch.recv()? {
        Some(ParentMessage::CgroupJoined) => {}
        other => {
            return Err(Error::Protocol(format!(
                "expected CgroupJoined, got {other:?}"
            )))
        }
    }
    if cfg.process.terminal {
        console::setup(sys, ch, cfg.process.uid, false)?;
    }
    init::write_oom_score_adj(&cfg.process)?;
    init::exec_process(sys, &cfg.process, cfg.seccomp.as_ref(), ch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(seccomp: Option<serde_json::Value>) -> Spec {
        let mut spec = Spec::default();
        if let Some(s) = seccomp {
            let mut linux = spec.linux().clone().unwrap_or_default();
            linux.set_seccomp(Some(serde_json::from_value(s).unwrap()));
            spec.set_linux(Some(linux));
        }
        spec
    }

    fn process(v: serde_json::Value) -> Vec<u8> {
        let mut base = json!({
            "args": ["sh"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "env": ["PATH=/bin"]
        });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            for (k, val) in extra {
                b.insert(k.clone(), val.clone());
            }
        }
        serde_json::to_vec(&base).unwrap()
    }

    #[test]
    fn the_process_is_validated_like_the_inits() {
        let c = container(None);
        let refused = |v| {
            ExecConfig::from_json(&process(v), &ExecBase::new(&c).unwrap())
                .unwrap_err()
                .to_string()
        };
        assert!(refused(json!({"args": []})).contains("args is empty"));
        assert!(refused(json!({"cwd": "tmp"})).contains("cwd"));
        assert!(refused(json!({"env": ["NOEQUALS"]})).contains("NAME=VALUE"));
        assert!(refused(json!({"user": {"uid": 4294967295u32, "gid": 0}})).contains("above"));
        let e = ExecConfig::from_json(b"{not json", &ExecBase::new(&c).unwrap()).unwrap_err();
        assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
        let (cfg, _) = ExecConfig::from_json(
            &process(json!({"terminal": true})),
            &ExecBase::new(&c).unwrap(),
        )
        .unwrap();
        assert!(cfg.process.terminal);
        assert!(cfg.seccomp.is_none());
    }

    #[test]
    fn the_containers_seccomp_filter_is_carried() {
        let c = container(Some(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })));
        let (cfg, _) =
            ExecConfig::from_json(&process(json!({})), &ExecBase::new(&c).unwrap()).unwrap();
        let filter = cfg.seccomp.expect("a filter");
        assert_eq!(
            filter.verdict_for("mkdir", &[]),
            Some(libc::SECCOMP_RET_ERRNO | 1)
        );
    }
}
