//! The seccomp profile of a container, chosen as Docker chooses it, and rendered into the
//! OCI `linux.seccomp` of its bundle.
//!
//! - By default: berth's default profile ([`default_profile`]): an allowlist with the
//!   default action "fail with EPERM", where some syscalls are allowed only when the
//!   container holds the capability that guards them, and a few only with harmless
//!   arguments (`clone` without namespace flags, `personality` with the values programs
//!   use, `socket` of any family but vsock).
//! - `--security-opt seccomp=unconfined` or `--privileged`: no filter.
//! - `--security-opt seccomp=<profile>`: a profile in Docker's JSON format. As with docker,
//!   the client reads the file and sends its content; the engine never opens a path a
//!   client names. `seccomp=builtin` names the default profile.
//!
//! A profile is written for every architecture and capability set, with conditions on
//! rules (`includes`/`excludes`: capabilities, architectures, a minimum kernel); rendering
//! keeps the rules whose conditions hold for this container on this host, as Docker does.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder,
};
use serde::Deserialize;

use crate::error::{Error, Result};

/// What `--security-opt seccomp=…` asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Choice {
    /// No option, or `seccomp=builtin`: the default profile.
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// A profile's JSON text.
    Profile(String),
}

impl Choice {
    /// Reads the value of a `seccomp=` option.
    pub fn parse(value: &str) -> Result<Choice> {
        match value {
            "unconfined" => Ok(Choice::Unconfined),
            "builtin" | "default" => Ok(Choice::Default),
            v if v.trim_start().starts_with('{') => Ok(Choice::Profile(v.to_string())),
            v => Err(invalid(format!(
                "security option seccomp={v}: expected \"unconfined\", \"builtin\" or a profile's \
                 JSON (berthctl reads a profile file and sends its content; an API client must \
                 send the profile itself)"
            ))),
        }
    }
}

/// The facts of the host a profile is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The architecture, as profiles name it in `includes.arches` ("amd64", "arm64").
    pub arch: &'static str,
    /// The architecture as `architectures`/`archMap` name it.
    pub seccomp_arch: Arch,
    /// The kernel's (major, minor) version.
    pub kernel: (u32, u32),
}

impl Target {
    /// This host.
    pub fn detect() -> Target {
        let kernel = nix::sys::utsname::uname()
            .ok()
            .and_then(|u| kernel_version(&u.release().to_string_lossy()))
            .unwrap_or((0, 0));
        Target {
            arch: if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            },
            seccomp_arch: if cfg!(target_arch = "aarch64") {
                Arch::ScmpArchAarch64
            } else {
                Arch::ScmpArchX86_64
            },
            kernel,
        }
    }
}

/// "6.1.0-13-amd64" → (6, 1).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(msg.into())
}

/// A seccomp profile in Docker's JSON format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// Action for the syscalls no rule names. With no rules either, the profile means
    /// "no filter" (Docker's reading of `{}`).
    #[serde(default)]
    pub default_action: Option<LinuxSeccompAction>,
    /// Errno of an `SCMP_ACT_ERRNO` default (EPERM when unset).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Architectures to filter, as in OCI.
    #[serde(default)]
    pub architectures: Option<Vec<Arch>>,
    /// Per native architecture, the architectures to filter (Docker's form).
    #[serde(default)]
    pub arch_map: Option<Vec<ArchMap>>,
    /// `SECCOMP_FILTER_FLAG_*`.
    #[serde(default)]
    pub flags: Option<Vec<LinuxSeccompFilterFlag>>,
    /// The seccomp agent's socket (for `SCMP_ACT_NOTIFY`, which berth refuses).
    #[serde(default)]
    pub listener_path: Option<std::path::PathBuf>,
    /// Data for the seccomp agent.
    #[serde(default)]
    pub listener_metadata: Option<String>,
    /// The rules.
    #[serde(default)]
    pub syscalls: Option<Vec<Rule>>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The native architecture this entry is for.
    pub architecture: Arch,
    /// What else to filter on it (32-bit compat ABIs).
    #[serde(default)]
    pub sub_architectures: Option<Vec<Arch>>,
}

/// One rule of a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Syscall names.
    #[serde(default)]
    pub names: Option<Vec<String>>,
    /// One name (the older form).
    #[serde(default)]
    pub name: Option<String>,
    /// What happens when the rule matches.
    pub action: LinuxSeccompAction,
    /// Errno for `SCMP_ACT_ERRNO`.
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Argument conditions.
    #[serde(default)]
    pub args: Option<Vec<LinuxSeccompArg>>,
    /// The rule applies only when all of these hold.
    #[serde(default)]
    pub includes: Option<When>,
    /// The rule does not apply when any of these holds.
    #[serde(default)]
    pub excludes: Option<When>,
}

/// Conditions on the container and the host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct When {
    /// Capabilities ("CAP_SYS_ADMIN").
    #[serde(default)]
    pub caps: Option<Vec<String>>,
    /// Architectures ("amd64", "arm64", "s390x", …).
    #[serde(default)]
    pub arches: Option<Vec<String>>,
    /// A kernel version, "major.minor".
    #[serde(default)]
    pub min_kernel: Option<String>,
}

impl Profile {
    /// Parses a profile's JSON.
    pub fn parse(json: &str) -> Result<Profile> {
        serde_json::from_str(json)
            .map_err(|e| invalid(format!("seccomp profile is not valid: {e}")))
    }
}

fn held(caps: &HashSet<Capability>, name: &str) -> bool {
    crate::containers::bundle::parse_capability(name).is_ok_and(|c| caps.contains(&c))
}

fn at_least(target: &Target, version: &str) -> Result<bool> {
    let bad = || {
        invalid(format!(
            "seccomp profile: minKernel {version:?} is not \"<major>.<minor>\""
        ))
    };
    let (a, b) = version.split_once('.').ok_or_else(bad)?;
    let want: (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    Ok(target.kernel >= want)
}

/// Whether a rule applies to this container on this host (Docker's reading of
/// `includes`/`excludes`).
fn applies(rule: &Rule, caps: &HashSet<Capability>, target: &Target) -> Result<bool> {
    let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    if let Some(ex) = &rule.excludes {
        if list(&ex.arches).iter().any(|a| a == target.arch)
            || list(&ex.caps).iter().any(|c| held(caps, c))
        {
            return Ok(false);
        }
        if let Some(v) = &ex.min_kernel {
            if at_least(target, v)? {
                return Ok(false);
            }
        }
    }
    if let Some(inc) = &rule.includes {
        let arches = list(&inc.arches);
        if !arches.is_empty() && !arches.iter().any(|a| a == target.arch) {
            return Ok(false);
        }
        if !list(&inc.caps).iter().all(|c| held(caps, c)) {
            return Ok(false);
        }
        if let Some(v) = &inc.min_kernel {
            if !at_least(target, v)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The profile for a container holding `caps`, on `target`: `None` for no filter.
pub fn render(
    profile: &Profile,
    caps: &HashSet<Capability>,
    target: &Target,
) -> Result<Option<LinuxSeccomp>> {
    let rules = profile.syscalls.as_deref().unwrap_or_default();
    let Some(default_action) = profile.default_action else {
        if rules.is_empty() {
            return Ok(None);
        }
        return Err(invalid("seccomp profile: defaultAction is missing"));
    };
    let architectures = match (&profile.architectures, &profile.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            return Err(invalid(
                "seccomp profile: give either 'architectures' or 'archMap', not both",
            ))
        }
        (_, Some(m)) if !m.is_empty() => m
            .iter()
            .find(|e| e.architecture == target.seccomp_arch)
            .map(|e| {
                std::iter::once(e.architecture)
                    .chain(e.sub_architectures.iter().flatten().copied())
                    .collect()
            })
            .unwrap_or_default(),
        (a, _) => a.clone().unwrap_or_default(),
    };
    let mut syscalls: Vec<LinuxSyscall> = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if !applies(rule, caps, target)? {
            continue;
        }
        let names = match (&rule.name, &rule.names) {
            (Some(_), Some(n)) if !n.is_empty() => {
                return Err(invalid(format!(
                    "seccomp profile: syscalls[{i}] gives both 'name' and 'names'"
                )))
            }
            (Some(n), _) => vec![n.clone()],
            (None, Some(n)) if !n.is_empty() => n.clone(),
            _ => {
                return Err(invalid(format!(
                    "seccomp profile: syscalls[{i}] names no syscall"
                )))
            }
        };
        let mut b = LinuxSyscallBuilder::default()
            .names(names)
            .action(rule.action);
        if let Some(e) = rule.errno_ret {
            b = b.errno_ret(e);
        }
        if let Some(args) = &rule.args {
            if !args.is_empty() {
                b = b.args(args.clone());
            }
        }
        syscalls.push(b.build().map_err(|e| invalid(e.to_string()))?);
    }
    let mut b = LinuxSeccompBuilder::default()
        .default_action(default_action)
        .syscalls(syscalls);
    if let Some(e) = profile.default_errno_ret {
        b = b.default_errno_ret(e);
    }
    if !architectures.is_empty() {
        b = b.architectures(architectures);
    }
    if let Some(f) = &profile.flags {
        if !f.is_empty() {
            b = b.flags(f.clone());
        }
    }
    if let Some(p) = &profile.listener_path {
        b = b.listener_path(p.clone());
    }
    if let Some(m) = &profile.listener_metadata {
        b = b.listener_metadata(m.clone());
    }
    let out = b.build().map_err(|e| invalid(e.to_string()))?;
    // Refuse now what the shim would refuse at start (SCMP_ACT_NOTIFY, bad indexes, a
    // program too large for the kernel), so that create fails and leaves nothing.
    berth_shim::seccomp::Filter::from_spec(&out).map_err(|e| match e {
        berth_shim::Error::InvalidSpec(m) => invalid(m),
        e => invalid(e.to_string()),
    })?;
    Ok(Some(out))
}

/// The `linux.seccomp` of a container: the choice, except that a privileged container
/// runs unfiltered (as with docker, whatever profile it names).
pub fn for_container(
    choice: &Choice,
    privileged: bool,
    caps: &HashSet<Capability>,
    target: &Target,
) -> Result<Option<LinuxSeccomp>> {
    if privileged {
        return Ok(None);
    }
    match choice {
        Choice::Unconfined => Ok(None),
        Choice::Default => render(&default_profile()?, caps, target),
        Choice::Profile(json) => render(&Profile::parse(json)?, caps, target),
    }
}

// The default profile, as data. It allows what ordinary programs need and what a
// container's capabilities already permit; what would let a process reach past its
// namespaces (new namespaces, mounts, module loading, kernel keyrings, clock changes, …)
// needs the matching capability, added with `--cap-add`.

/// Allowed for every container.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed from Linux 4.8 on, where ptrace can no longer be used to step around seccomp.
const SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// What each capability unlocks, on top of [`ALLOWED`].
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Architecture-specific calls, by the architectures (profile names) that have them.
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// `personality(2)` values programs use: Linux, its 32-bit-compat flag, and the query.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The flags that make `clone` create namespaces.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

fn strings(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| s.to_string()).collect())
}

fn allow(list: &[&str]) -> Rule {
    Rule {
        names: strings(list),
        name: None,
        action: LinuxSeccompAction::ScmpActAllow,
        errno_ret: None,
        args: None,
        includes: None,
        excludes: None,
    }
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
) -> Result<LinuxSeccompArg> {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(value_two)
        .build()
        .map_err(|e| invalid(e.to_string()))
}

fn when_caps(caps: &[&str]) -> Option<When> {
    Some(When {
        caps: strings(caps),
        ..Default::default()
    })
}

/// berth's default profile, for every architecture and capability set.
pub fn default_profile() -> Result<Profile> {
    let mut rules = vec![allow(ALLOWED)];
    rules.push(Rule {
        includes: Some(When {
            min_kernel: Some("4.8".into()),
            ..Default::default()
        }),
        ..allow(SINCE_4_8)
    });
    rules.push(Rule {
        args: Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpNe,
            libc::AF_VSOCK as u64,
            0,
        )?]),
        ..allow(&["socket"])
    });
    for p in PERSONALITIES {
        rules.push(Rule {
            args: Some(vec![arg(0, LinuxSeccompOperator::ScmpCmpEq, *p, 0)?]),
            ..allow(&["personality"])
        });
    }
    for (arches, list) in BY_ARCH {
        rules.push(Rule {
            includes: Some(When {
                arches: strings(arches),
                ..Default::default()
            }),
            ..allow(list)
        });
    }
    for (cap, list) in BY_CAPABILITY {
        rules.push(Rule {
            includes: when_caps(&[cap]),
            ..allow(list)
        });
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags (the flags are the second
    // argument on s390), and clone3, whose flags sit in memory seccomp cannot read, fails
    // with ENOSYS so that libc falls back to clone.
    let no_admin = || {
        Some(When {
            caps: strings(&["CAP_SYS_ADMIN"]),
            ..Default::default()
        })
    };
    rules.push(Rule {
        args: Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            NAMESPACE_FLAGS,
            0,
        )?]),
        excludes: Some(When {
            arches: strings(&["s390", "s390x"]),
            ..no_admin().unwrap_or_default()
        }),
        ..allow(&["clone"])
    });
    rules.push(Rule {
        args: Some(vec![arg(
            1,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            NAMESPACE_FLAGS,
            0,
        )?]),
        includes: Some(When {
            arches: strings(&["s390", "s390x"]),
            ..Default::default()
        }),
        excludes: no_admin(),
        ..allow(&["clone"])
    });
    rules.push(Rule {
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(libc::ENOSYS as u32),
        excludes: no_admin(),
        ..allow(&["clone3"])
    });
    Ok(Profile {
        default_action: Some(LinuxSeccompAction::ScmpActErrno),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: Some(vec![
            ArchMap {
                architecture: Arch::ScmpArchX86_64,
                sub_architectures: Some(vec![Arch::ScmpArchX86, Arch::ScmpArchX32]),
            },
            ArchMap {
                architecture: Arch::ScmpArchAarch64,
                sub_architectures: Some(vec![Arch::ScmpArchArm]),
            },
        ]),
        syscalls: Some(rules),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_shim::seccomp::Filter;

    const TARGET: Target = Target {
        arch: "amd64",
        seccomp_arch: Arch::ScmpArchX86_64,
        kernel: (6, 1),
    };

    fn caps(extra: &[Capability]) -> HashSet<Capability> {
        berth_shim::spec::DEFAULT_CAPABILITIES
            .into_iter()
            .chain(extra.iter().copied())
            .collect()
    }

    /// The default profile compiled for this host, as the shim will install it.
    fn compiled(extra: &[Capability]) -> Filter {
        let target = Target::detect();
        let s = for_container(&Choice::Default, false, &caps(extra), &target)
            .unwrap()
            .unwrap();
        Filter::from_spec(&s).unwrap()
    }

    const ALLOWED_NOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    fn verdict(f: &Filter, name: &str, args: &[u64]) -> u32 {
        f.verdict_for(name, args).unwrap()
    }

    #[test]
    fn default_profile_denies_what_reaches_past_the_namespaces() {
        let f = compiled(&[]);
        for ok in [
            "read", "openat", "execve", "getpid", "futex", "rseq", "capset", "chown",
        ] {
            assert_eq!(verdict(&f, ok, &[]), ALLOWED_NOW, "{ok}");
        }
        for no in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "kexec_load",
            "add_key",
            "keyctl",
            "clock_settime",
            "bpf",
            "perf_event_open",
            "open_by_handle_at",
        ]
        .into_iter()
        .filter(|n| berth_shim::seccomp::syscall_number(n).is_some())
        {
            assert_eq!(verdict(&f, no, &[]), EPERM, "{no}");
        }
        // Each program fits the kernel's 4096 instructions, with room for custom rules.
        assert!(f.instructions() < 3000, "{}", f.instructions());
        // CAP_SYS_CHROOT is a default capability.
        assert_eq!(verdict(&f, "chroot", &[]), ALLOWED_NOW);
        // The kernel here is past 4.8.
        assert_eq!(verdict(&f, "ptrace", &[]), ALLOWED_NOW);
    }

    #[test]
    fn argument_rules_of_the_default_profile() {
        let f = compiled(&[]);
        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(verdict(&f, "clone", &[sigchld]), ALLOWED_NOW);
        assert_eq!(
            verdict(&f, "clone", &[sigchld | libc::CLONE_NEWUSER as u64]),
            EPERM
        );
        assert_eq!(verdict(&f, "clone3", &[]), ENOSYS);
        assert_eq!(verdict(&f, "personality", &[0xffff_ffff]), ALLOWED_NOW);
        assert_eq!(verdict(&f, "personality", &[0x0040_0000]), EPERM);
        assert_eq!(verdict(&f, "socket", &[libc::AF_INET as u64]), ALLOWED_NOW);
        assert_eq!(verdict(&f, "socket", &[libc::AF_VSOCK as u64]), EPERM);
    }

    #[test]
    fn capabilities_unlock_their_syscalls() {
        let admin = compiled(&[Capability::SysAdmin]);
        for ok in [
            "mount",
            "unshare",
            "setns",
            "umount2",
            "sethostname",
            "clone3",
        ] {
            assert_eq!(verdict(&admin, ok, &[]), ALLOWED_NOW, "{ok}");
        }
        assert_eq!(
            verdict(&admin, "clone", &[libc::CLONE_NEWUSER as u64]),
            ALLOWED_NOW
        );
        for (cap, call) in [
            (Capability::SysPtrace, "kcmp"),
            (Capability::SysModule, "finit_module"),
            (Capability::SysBoot, "reboot"),
            (Capability::SysTime, "clock_settime"),
            (Capability::Syslog, "syslog"),
            (Capability::SysNice, "mbind"),
            (Capability::SysPacct, "acct"),
            (Capability::SysRawio, "iopl"),
            (Capability::Bpf, "bpf"),
            (Capability::Perfmon, "perf_event_open"),
            (Capability::DacReadSearch, "open_by_handle_at"),
        ] {
            if berth_shim::seccomp::syscall_number(call).is_none() {
                continue;
            }
            assert_eq!(
                verdict(&compiled(&[]), call, &[]),
                EPERM,
                "{call} without {cap}"
            );
            assert_eq!(
                verdict(&compiled(&[cap]), call, &[]),
                ALLOWED_NOW,
                "{call} with {cap}"
            );
        }
        // Dropping a default capability takes its syscalls away.
        let target = Target::detect();
        let mut no_chroot = caps(&[]);
        no_chroot.remove(&Capability::SysChroot);
        let s = for_container(&Choice::Default, false, &no_chroot, &target)
            .unwrap()
            .unwrap();
        assert_eq!(
            verdict(&Filter::from_spec(&s).unwrap(), "chroot", &[]),
            EPERM
        );
    }

    #[test]
    fn rendering_follows_arch_kernel_and_caps() {
        let s = render(&default_profile().unwrap(), &caps(&[]), &TARGET)
            .unwrap()
            .unwrap();
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let all: Vec<&String> = s
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|c| c.names())
            .collect();
        assert!(all.iter().any(|n| *n == "arch_prctl"));
        assert!(!all.iter().any(|n| *n == "s390_runtime_instr"));
        assert!(!all.iter().any(|n| *n == "mount"));
        assert!(all.iter().any(|n| *n == "ptrace"));
        let old = Target {
            kernel: (4, 4),
            ..TARGET
        };
        let s = render(&default_profile().unwrap(), &caps(&[]), &old)
            .unwrap()
            .unwrap();
        assert!(!s
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|c| c.names())
            .any(|n| n == "ptrace"));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
    }

    #[test]
    fn choices() {
        assert_eq!(Choice::parse("unconfined").unwrap(), Choice::Unconfined);
        assert_eq!(Choice::parse("builtin").unwrap(), Choice::Default);
        assert!(Choice::parse("/etc/profile.json").is_err());
        let c = caps(&[]);
        let t = Target::detect();
        assert!(for_container(&Choice::Unconfined, false, &c, &t)
            .unwrap()
            .is_none());
        assert!(for_container(&Choice::Default, true, &c, &t)
            .unwrap()
            .is_none());
        assert!(for_container(&Choice::Default, false, &c, &t)
            .unwrap()
            .is_some());
        // Docker reads "{}" as no filter.
        let empty = Choice::Profile("{}".into());
        assert!(for_container(&empty, false, &c, &t).unwrap().is_none());
    }

    #[test]
    fn docker_format_profiles() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "args": [], "comment": "",
                 "includes": {}, "excludes": {}},
                {"name": "unlinkat", "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": null},
                {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_NET_ADMIN"]}},
                {"names": ["fchownat"], "action": "SCMP_ACT_ERRNO", "excludes": {"minKernel": "3.0"}}
            ],
            "unknownField": true
        }"#;
        let s = for_container(&Choice::Profile(json.into()), false, &caps(&[]), &TARGET)
            .unwrap()
            .unwrap();
        let calls = s.syscalls().clone().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].names(), &["unlinkat".to_string()]);
        assert_eq!(calls[1].errno_ret(), Some(13));
        let f = Filter::from_spec(&s).unwrap();
        assert_eq!(verdict(&f, "mkdirat", &[]), EPERM);
        assert_eq!(verdict(&f, "unlinkat", &[]), libc::SECCOMP_RET_ERRNO | 13);
        // Its capability is not held; the kernel is past 3.0.
        assert_eq!(verdict(&f, "fchmodat", &[]), ALLOWED_NOW);
        assert_eq!(verdict(&f, "fchownat", &[]), ALLOWED_NOW);
    }

    #[test]
    fn malformed_profiles_are_refused_clearly() {
        let bad = |json: &str| {
            let e = for_container(&Choice::Profile(json.into()), false, &caps(&[]), &TARGET)
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
            e.to_string()
        };
        assert!(bad("{not json").contains("not valid"));
        assert!(bad(r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#).contains("SCMP_ACT_MAYBE"));
        assert!(
            bad(r#"{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#)
                .contains("defaultAction")
        );
        assert!(bad(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                        "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#
        )
        .contains("archMap"));
        assert!(bad(r#"{"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#)
        .contains("both"));
        assert!(bad(r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).contains("NOTIFY"));
        assert!(bad(r#"{"defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                      "includes": {"minKernel": "five"}}]}"#)
        .contains("minKernel"));
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(kernel_version("5.10.0-23-amd64"), Some((5, 10)));
        assert_eq!(kernel_version("x"), None);
    }
}
