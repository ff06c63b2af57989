//! The container's init process: what it does between `clone` and `execve`.
//!
//! [`InitConfig`] is computed by the shim before it forks (validation, capability and
//! rlimit clamping, C strings), so the init only executes it. The init never logs (a
//! forked child of a multi-threaded shim must not take the logger's locks); every failure
//! goes back to the shim as a [`ChildMessage::Error`] naming the step.
//!
//! [`ProcessConfig`] and `exec_process` are the part every container process shares
//! with exec processes ([`crate::exec`]): user, capabilities, limits, working directory,
//! the executable lookup and the Ready/Start handshake that ends in `execve`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType, Process};

use crate::capabilities::{self, CapsPlan};
use crate::cgroups::MountView;
use crate::channel::{ChildChannel, ChildMessage, ParentMessage};
use crate::console;
use crate::error::{Error, Result};
use crate::rootfs::{self, MountSpec, RootfsPlan};
use crate::spec::{Bundle, DEFAULT_PATH_ENV};
use crate::syscall::{CloneFlags, Rlimit, Syscall};

/// The container's cgroup namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupNamespace {
    /// Shares the shim's.
    Host,
    /// A new one, rooted at the container's cgroup (unshared after the shim moved the
    /// init into that cgroup).
    New,
    /// Joins an existing one.
    Join(PathBuf),
}

/// Everything the init does, decided before fork.
#[derive(Debug, Clone)]
pub struct InitConfig {
    /// Container id (for messages).
    pub id: String,
    /// The filesystem view.
    pub rootfs: RootfsPlan,
    /// Existing namespaces to join (`/proc/PID/ns/net`, a bind-mounted netns, ...).
    pub join_namespaces: Vec<(PathBuf, CloneFlags)>,
    /// New namespaces to create (all but the cgroup namespace).
    pub unshare: CloneFlags,
    /// The cgroup namespace.
    pub cgroup_namespace: CgroupNamespace,
    /// Hostname in the new uts namespace.
    pub hostname: Option<String>,
    /// Domain name in the new uts namespace.
    pub domainname: Option<String>,
    /// The process itself.
    pub process: ProcessConfig,
    /// The seccomp filter of `linux.seccomp`, compiled before fork.
    pub seccomp: Option<crate::seccomp::Filter>,
}

/// The process part of a container process (the init's or an exec's), decided before
/// fork from an OCI `process` object.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// A pseudo-terminal from the container's devpts becomes its stdio and controlling
    /// terminal; the master goes to the shim.
    pub terminal: bool,
    /// User id of the process.
    pub uid: u32,
    /// Group id of the process.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// The process's umask.
    pub umask: u32,
    /// Capability sets.
    pub caps: CapsPlan,
    /// Resource limits, clamped to what the shim may set.
    pub rlimits: Vec<Rlimit>,
    /// `PR_SET_NO_NEW_PRIVS` before exec.
    pub no_new_privs: bool,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
    /// argv.
    pub args: Vec<CString>,
    /// envp.
    pub env: Vec<CString>,
    /// `PATH` used to find `args[0]`.
    pub path_env: String,
    /// Working directory inside the container.
    pub cwd: PathBuf,
}

fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Clamps a requested limit to the shim's own hard limit when the shim cannot raise hard
/// limits (no `CAP_SYS_RESOURCE`, as on the machines berth is tested on): the container
/// still starts, with the highest limit possible, and the caller warns.
pub fn clamp_rlimit(requested: Rlimit, current_hard: u64, can_raise: bool) -> (Rlimit, bool) {
    if can_raise || requested.hard <= current_hard {
        return (requested, false);
    }
    let hard = current_hard;
    (
        Rlimit {
            resource: requested.resource,
            soft: requested.soft.min(hard),
            hard,
        },
        true,
    )
}

fn current_hard_limit(resource: libc::c_int) -> std::result::Result<u64, nix::Error> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer for the duration of the call.
    let rc = unsafe { libc::getrlimit(resource as _, &mut lim) };
    nix::errno::Errno::result(rc).map(|_| lim.rlim_max)
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}

impl ProcessConfig {
    /// Builds a process plan from a validated OCI `process`. Returns warnings (clamped
    /// rlimits, capabilities the shim does not hold) for the caller to log.
    pub fn new(process: &Process) -> Result<(ProcessConfig, Vec<String>)> {
        let mut warnings = Vec::new();
        let held = capabilities::held_by_self();
        let (caps, dropped) = CapsPlan::new(process.capabilities().as_ref(), &held);
        if !dropped.is_empty() {
            warnings.push(format!(
                "capabilities the shim does not hold are left out: {}",
                dropped.join(", ")
            ));
        }
        let can_raise = held.contains(&caps::Capability::CAP_SYS_RESOURCE);
        let mut rlimits = Vec::new();
        for r in process.rlimits().iter().flatten() {
            if r.soft() > r.hard() {
                return Err(Error::invalid(format!(
                    "rlimit {}: soft limit {} is above the hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )));
            }
            let requested = Rlimit {
                resource: rlimit_resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            };
            let cur_hard = current_hard_limit(requested.resource)
                .map_err(|e| Error::sys(format!("getrlimit {}", r.typ()), e))?;
            let (clamped, was) = clamp_rlimit(requested, cur_hard, can_raise);
            if was {
                warnings.push(format!(
                    "rlimit {}: hard limit {} is above the shim's own hard limit {} and the shim lacks CAP_SYS_RESOURCE; clamped to {}/{}",
                    r.typ(),
                    r.hard(),
                    cur_hard,
                    clamped.soft,
                    clamped.hard
                ));
            }
            rlimits.push(clamped);
        }
        let env_list = process.env().clone().unwrap_or_default();
        let path_env = env_list
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH_ENV)
            .to_string();
        let user = process.user();
        Ok((
            ProcessConfig {
                terminal: process.terminal().unwrap_or(false),
                uid: user.uid(),
                gid: user.gid(),
                additional_gids: user.additional_gids().clone().unwrap_or_default(),
                umask: user.umask().unwrap_or(0o022),
                caps,
                rlimits,
                no_new_privs: process.no_new_privileges().unwrap_or(false),
                oom_score_adj: process.oom_score_adj(),
                args: process
                    .args()
                    .iter()
                    .flatten()
                    .map(|a| cstring(a, "process.args"))
                    .collect::<Result<_>>()?,
                env: env_list
                    .iter()
                    .map(|e| cstring(e, "process.env"))
                    .collect::<Result<_>>()?,
                path_env,
                cwd: process.cwd().clone(),
            },
            warnings,
        ))
    }
}

impl InitConfig {
    /// Builds the init's plan from a validated bundle. Returns warnings (clamped rlimits,
    /// capabilities the shim does not hold) for the caller to log with the container id.
    pub fn new(
        bundle: &Bundle,
        id: &str,
        rootfs_mounts: Vec<MountSpec>,
        cgroup_view: MountView,
    ) -> Result<(InitConfig, Vec<String>)> {
        let spec = &bundle.spec;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::invalid("process is missing"))?;
        let linux = spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::invalid("linux is missing"))?;
        let mut unshare = CloneFlags::empty();
        let mut join = Vec::new();
        let mut cgroup_namespace = CgroupNamespace::Host;
        for ns in linux.namespaces().iter().flatten() {
            let flag = CloneFlags::from_bits_truncate(ns.typ() as i32);
            match (ns.typ(), ns.path()) {
                (LinuxNamespaceType::Cgroup, None) => cgroup_namespace = CgroupNamespace::New,
                (LinuxNamespaceType::Cgroup, Some(p)) => {
                    cgroup_namespace = CgroupNamespace::Join(p.clone())
                }
                (_, None) => unshare |= flag,
                (_, Some(p)) => join.push((p.clone(), flag)),
            }
        }
        let cgroupns = cgroup_namespace != CgroupNamespace::Host;
        let rootfs = RootfsPlan::new(bundle, rootfs_mounts, cgroup_view, cgroupns)?;
        let (process, warnings) = ProcessConfig::new(process)?;
        Ok((
            InitConfig {
                id: id.to_string(),
                rootfs,
                join_namespaces: join,
                unshare,
                cgroup_namespace,
                hostname: spec.hostname().clone(),
                domainname: spec.domainname().clone(),
                process,
                seccomp: linux
                    .seccomp()
                    .as_ref()
                    .map(crate::seccomp::Filter::from_spec)
                    .transpose()?,
            },
            warnings,
        ))
    }
}

/// Sets the host and domain names of the container's uts namespace.
pub fn set_names(sys: &dyn Syscall, cfg: &InitConfig) -> Result<()> {
    if let Some(h) = &cfg.hostname {
        sys.sethostname(h)
            .map_err(|e| Error::sys(format!("sethostname {h:?}"), e))?;
    }
    if let Some(d) = &cfg.domainname {
        sys.setdomainname(d)
            .map_err(|e| Error::sys(format!("setdomainname {d:?}"), e))?;
    }
    Ok(())
}

/// Sets up the process after the filesystem: limits, working directory, user and
/// capabilities. The order matters and is the unit-tested part: bounding set while still
/// privileged, keep-caps across the uid change, groups before gid before uid, then the
/// capability sets for the new uid.
pub fn setup_process(sys: &dyn Syscall, cfg: &ProcessConfig) -> Result<()> {
    for r in &cfg.rlimits {
        sys.set_rlimit(*r).map_err(|e| {
            Error::sys(
                format!("setrlimit resource {} to {}/{}", r.resource, r.soft, r.hard),
                e,
            )
        })?;
    }
    sys.chdir(&cfg.cwd).map_err(|e| {
        Error::sys(
            format!("chdir to working directory {}", cfg.cwd.display()),
            e,
        )
    })?;
    sys.drop_bounding_caps(&cfg.caps.bounding)
        .map_err(|e| Error::sys("drop capabilities from the bounding set", e))?;
    sys.set_keep_caps(true)
        .map_err(|e| Error::sys("PR_SET_KEEPCAPS", e))?;
    sys.set_groups(&cfg.additional_gids)
        .map_err(|e| Error::sys(format!("setgroups {:?}", cfg.additional_gids), e))?;
    sys.set_id(cfg.uid, cfg.gid)
        .map_err(|e| Error::sys(format!("set uid/gid to {}:{}", cfg.uid, cfg.gid), e))?;
    sys.set_keep_caps(false)
        .map_err(|e| Error::sys("PR_SET_KEEPCAPS", e))?;
    // Effective first: it may only shrink to within the (still larger) permitted set.
    sys.set_caps(caps::CapSet::Effective, &cfg.caps.effective)
        .map_err(|e| Error::sys("set effective capabilities", e))?;
    sys.set_caps(caps::CapSet::Permitted, &cfg.caps.permitted)
        .map_err(|e| Error::sys("set permitted capabilities", e))?;
    sys.set_caps(caps::CapSet::Inheritable, &caps::CapsHashSet::new())
        .map_err(|e| Error::sys("clear inheritable capabilities", e))?;
    sys.set_caps(caps::CapSet::Ambient, &caps::CapsHashSet::new())
        .map_err(|e| Error::sys("clear ambient capabilities", e))?;
    if cfg.no_new_privs {
        sys.set_no_new_privs()
            .map_err(|e| Error::sys("PR_SET_NO_NEW_PRIVS", e))?;
    }
    sys.umask(cfg.umask);
    Ok(())
}

/// Finds `arg0` the way `execvp` would, inside the container (after `pivot_root`, so
/// `root` is `/`; tests pass a directory). The error texts are Docker's.
pub fn find_executable(
    root: &Path,
    arg0: &str,
    path_env: &str,
) -> std::result::Result<PathBuf, String> {
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let usable = |p: &Path| -> std::result::Result<(), nix::Error> {
        let st = nix::sys::stat::stat(p)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(nix::Error::EACCES);
        }
        nix::unistd::access(p, nix::unistd::AccessFlags::X_OK)
    };
    if arg0.contains('/') {
        let p = Path::new(arg0);
        return match usable(&inside(p)) {
            Ok(()) => Ok(p.to_path_buf()),
            Err(e) => Err(format!("exec {arg0}: {}", e.desc().to_lowercase())),
        };
    }
    for dir in path_env.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg0);
        if usable(&inside(&candidate)).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "exec: \"{arg0}\": executable file not found in $PATH"
    ))
}

/// The init's whole job. Returns only on failure (success ends in `execve`).
pub(crate) fn run(sys: &dyn Syscall, cfg: &InitConfig, ch: &ChildChannel) -> Result<Infallible> {
    match ch.recv()? {
        Some(ParentMessage::CgroupJoined) => {}
        // The shim is gone or confused: nothing to report to.
        other => {
            return Err(Error::Protocol(format!(
                "expected CgroupJoined, got {other:?}"
            )))
        }
    }
    match &cfg.cgroup_namespace {
        CgroupNamespace::Host => {}
        CgroupNamespace::New => sys
            .unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(|e| Error::sys("unshare the cgroup namespace", e))?,
        CgroupNamespace::Join(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
            sys.setns(f.as_fd(), CloneFlags::CLONE_NEWCGROUP)
                .map_err(|e| Error::sys(format!("join cgroup namespace {}", p.display()), e))?;
        }
    }
    write_oom_score_adj(&cfg.process)?;
    // Exact modes for device nodes and directories the shim creates.
    sys.umask(0);
    rootfs::setup(sys, &cfg.rootfs)?;
    if cfg.process.terminal {
        console::setup(sys, ch, cfg.process.uid, true)?;
    }
    set_names(sys, cfg)?;
    exec_process(sys, &cfg.process, cfg.seccomp.as_ref(), ch)
}

/// `/proc/self/oom_score_adj`, when the spec sets it.
pub(crate) fn write_oom_score_adj(p: &ProcessConfig) -> Result<()> {
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Error::io("write /proc/self/oom_score_adj", e))?;
    }
    Ok(())
}

/// The end of every container process, init or exec, once it is inside the container's
/// root: process attributes, the working-directory check, the executable lookup, then
/// Ready, and `execve` on Start. Returns only on failure.
///
/// `seccomp` is installed in the one place that suits it: without `no_new_privs` the
/// kernel wants `CAP_SYS_ADMIN` for it, so before the capabilities are dropped; with
/// `no_new_privs`, last before `execve`, so that as little as possible of the setup runs
/// under it.
pub(crate) fn exec_process(
    sys: &dyn Syscall,
    cfg: &ProcessConfig,
    seccomp: Option<&crate::seccomp::Filter>,
    ch: &ChildChannel,
) -> Result<Infallible> {
    let (early, late) = match seccomp {
        Some(f) if !cfg.no_new_privs => (Some(f), None),
        other => (None, other),
    };
    if let Some(f) = early {
        f.install()?;
    }
    setup_process(sys, cfg)?;
    // A working directory reached through something outside the root (an fd leaked
    // into the container, CVE-2024-21626) has no path from "/": getcwd says so.
    let cwd = nix::unistd::getcwd().map_err(|e| Error::sys("getcwd", e))?;
    if !cwd.is_absolute() {
        return Err(Error::invalid(format!(
            "working directory {} is outside the container root",
            cfg.cwd.display()
        )));
    }
    let arg0 = cfg
        .args
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe = find_executable(Path::new("/"), &arg0, &cfg.path_env).map_err(Error::Init)?;
    let exe = CString::new(exe.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("executable path has a NUL byte"))?;
    ch.send(&ChildMessage::Ready)?;
    match ch.recv()? {
        Some(ParentMessage::Start) => {}
        other => return Err(Error::Protocol(format!("expected Start, got {other:?}"))),
    }
    // Every fd but stdio closes at exec, including the channel: its EOF tells the shim
    // that exec succeeded.
    sys.cloexec_from(3)
        .map_err(|e| Error::sys("close_range", e))?;
    if let Some(f) = late {
        f.install()?;
    }
    let e = match nix::unistd::execve(&exe, &cfg.args, &cfg.env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(Error::Init(format!(
        "exec {arg0}: {}",
        e.desc().to_lowercase()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, RecordingSyscall};

    fn config() -> InitConfig {
        InitConfig {
            id: "t".into(),
            rootfs: RootfsPlan {
                rootfs: "/nonexistent".into(),
                rootfs_mounts: vec![],
                mounts: vec![],
                devices: vec![],
                masked_paths: vec![],
                readonly_paths: vec![],
                sysctl: vec![],
                cwd: "/".into(),
                readonly_root: false,
                root_propagation: None,
                cgroup_view: MountView::None,
                cgroup_namespace: false,
            },
            join_namespaces: vec![],
            unshare: CloneFlags::empty(),
            cgroup_namespace: CgroupNamespace::New,
            hostname: Some("box".into()),
            domainname: None,
            process: process_config(),
            seccomp: None,
        }
    }

    fn process_config() -> ProcessConfig {
        ProcessConfig {
            terminal: false,
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10, 20],
            umask: 0o027,
            caps: CapsPlan {
                bounding: [caps::Capability::CAP_CHOWN].into_iter().collect(),
                effective: Default::default(),
                permitted: Default::default(),
            },
            rlimits: vec![Rlimit {
                resource: libc::RLIMIT_NOFILE as i32,
                soft: 100,
                hard: 200,
            }],
            no_new_privs: true,
            oom_score_adj: None,
            args: vec![CString::new("sh").unwrap()],
            env: vec![],
            path_env: DEFAULT_PATH_ENV.into(),
            cwd: "/work".into(),
        }
    }

    #[test]
    fn process_setup_order() {
        let sys = RecordingSyscall::new();
        let cfg = config();
        set_names(&sys, &cfg).unwrap();
        setup_process(&sys, &cfg.process).unwrap();
        let calls = sys.calls();
        let pos = |f: &dyn Fn(&Call) -> bool| calls.iter().position(f).unwrap();
        let hostname = pos(&|c| matches!(c, Call::Sethostname(h) if h == "box"));
        let bounding = pos(&|c| matches!(c, Call::DropBounding(_)));
        let keep = pos(&|c| matches!(c, Call::SetKeepCaps(true)));
        let groups = pos(&|c| matches!(c, Call::SetGroups(g) if g == &[10, 20]));
        let id = pos(&|c| {
            matches!(
                c,
                Call::SetId {
                    uid: 1000,
                    gid: 1000
                }
            )
        });
        let unkeep = pos(&|c| matches!(c, Call::SetKeepCaps(false)));
        let eff = pos(&|c| matches!(c, Call::SetCaps("Effective", _)));
        let inh = pos(&|c| matches!(c, Call::SetCaps("Inheritable", s) if s.is_empty()));
        let amb = pos(&|c| matches!(c, Call::SetCaps("Ambient", s) if s.is_empty()));
        let nnp = pos(&|c| matches!(c, Call::NoNewPrivs));
        assert!(hostname < bounding && bounding < keep && keep < groups && groups < id);
        assert!(id < unkeep && unkeep < eff && eff < inh && inh < amb && amb < nnp);
        assert_eq!(calls.last(), Some(&Call::Umask(0o027)));
        assert!(calls.contains(&Call::Chdir("/work".into())));
    }

    #[test]
    fn rlimits_are_clamped_only_when_they_must_be() {
        let r = Rlimit {
            resource: libc::RLIMIT_NOFILE as i32,
            soft: 1_048_576,
            hard: 1_048_576,
        };
        let (c, clamped) = clamp_rlimit(r, 20_000, false);
        assert!(clamped);
        assert_eq!((c.soft, c.hard), (20_000, 20_000));
        assert_eq!(clamp_rlimit(r, 20_000, true), (r, false));
        let small = Rlimit {
            soft: 10,
            hard: 100,
            ..r
        };
        assert_eq!(clamp_rlimit(small, 20_000, false), (small, false));
    }

    #[test]
    fn executables_are_found_in_path_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let exe = dir.path().join("bin/tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.path().join("bin/data"), "").unwrap();
        assert_eq!(
            find_executable(dir.path(), "tool", "/usr/bin:/bin").unwrap(),
            Path::new("/bin/tool")
        );
        assert_eq!(
            find_executable(dir.path(), "nope", "/bin").unwrap_err(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert!(find_executable(dir.path(), "data", "/bin").is_err());
        assert!(find_executable(dir.path(), "/bin/nope", "/bin")
            .unwrap_err()
            .contains("no such file"));
    }
}
