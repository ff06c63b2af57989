//! Seccomp: a spec's `linux.seccomp` compiled into classic BPF, and installed in a
//! container process.
//!
//! [`Filter::from_spec`] runs in the shim before fork: it maps syscall names to this
//! architecture's numbers ([`syscalls`]) and builds the programs with `seccompiler`.
//! [`Filter::install`] runs in the container's process as one of its last steps, and on
//! success only makes `seccomp(2)` calls on memory prepared before fork: it allocates,
//! locks and logs nothing.
//!
//! A `seccompiler` program has one action for a match and one for a mismatch, while a
//! profile gives each rule its own action. The kernel runs every filter a process has and
//! keeps the most restrictive answer, so a profile becomes a small stack of programs:
//! - the *gate*: a syscall that any rule matches is allowed, anything else gets the
//!   profile's default action (left out when the default is to allow);
//! - one program per other action of the rules (errno 38 for `clone3`, trap, log, …): its
//!   rules answer that action, anything else is allowed;
//! - on x86_64, a guard that kills x32-ABI calls: they carry the x86_64 audit arch but
//!   other numbers, so without it a deny rule could be stepped around.
//!
//! A syscall matching rules of action A passes the gate, and A's program answers A; a
//! syscall matching nothing meets the gate's default. Calls of another architecture (32-bit
//! x86 on x86_64, arm32 on aarch64) kill the process: the profile's other architectures
//! are not compiled, and refusing them is the safe side of ignoring them.
//!
//! Semantics follow runc with libseccomp: a rule whose action is the default action is
//! dropped; conditions on different arguments must all hold, several conditions on the same
//! argument are alternatives; comparisons are on the full 64-bit argument; `SCMP_ACT_ERRNO`
//! and `SCMP_ACT_TRACE` without `errnoRet` mean EPERM; names this architecture lacks are
//! skipped.

mod syscalls;

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use seccompiler::{
    sock_filter, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

pub use syscalls::number as syscall_number;

/// The kernel's limit on the instructions of all filters a syscall runs through
/// (`MAX_INSNS_PER_PATH`), counting 4 more per filter.
const MAX_INSNS_PER_PATH: usize = (1 << 18) / 8;

/// The index of the last syscall argument.
const LAST_ARG: usize = 5;

/// `seccomp_data.arch` of this architecture.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 183 | 0x8000_0000 | 0x4000_0000;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: u32 = 0;

/// Syscall numbers of the x32 ABI have this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/bpf_common.h) for the guard and the simulator.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGT_K: u16 = 0x05 | 0x20;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

// `seccomp_data` and `sock_filter` are the kernel's layouts; seccompiler's `sock_filter`
// is `repr(C)` with libc's fields, which `install` relies on.
const _: () =
    assert!(std::mem::size_of::<sock_filter>() == std::mem::size_of::<libc::sock_filter>());

/// A compiled profile, ready to install in a process.
///
/// Build it before fork with [`Filter::from_spec`]; call [`Filter::install`] in the child
/// (the init, or an exec'd process): without `no_new_privs` it needs `CAP_SYS_ADMIN`, so
/// install it before dropping capabilities; with `no_new_privs`, as the last step before
/// `execve`, so that as few of the process's own calls as possible run under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Programs in installation order.
    programs: Vec<Vec<sock_filter>>,
    /// `SECCOMP_FILTER_FLAG_*` for each `seccomp(2)` call.
    flags: libc::c_ulong,
    /// Names the profile uses that this architecture does not have.
    skipped: Vec<String>,
}

/// What the kernel hands a filter for one syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyscallData {
    /// `seccomp_data.arch`.
    pub arch: u32,
    /// The syscall number.
    pub nr: i32,
    /// The arguments.
    pub args: [u64; 6],
}

impl SyscallData {
    /// A call of this architecture.
    pub fn native(nr: i64, args: &[u64]) -> SyscallData {
        let mut a = [0u64; 6];
        for (slot, v) in a.iter_mut().zip(args) {
            *slot = *v;
        }
        SyscallData {
            arch: AUDIT_ARCH,
            nr: nr as i32,
            args: a,
        }
    }

    fn word(&self, offset: u32) -> Option<u32> {
        match offset {
            DATA_NR => Some(self.nr as u32),
            DATA_ARCH => Some(self.arch),
            o if (DATA_ARGS..DATA_ARGS + 48).contains(&o) && o.is_multiple_of(4) => {
                let arg = self.args[((o - DATA_ARGS) / 8) as usize];
                // Little-endian: the low half of an argument comes first.
                Some(if (o - DATA_ARGS).is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                })
            }
            _ => None,
        }
    }
}

/// The action a rule or the default asks for, with runc's defaults for missing errnos.
fn action(a: LinuxSeccompAction, errno: Option<u32>, what: &str) -> Result<SeccompAction> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    if errno > 0xffff {
        return Err(Error::invalid(format!(
            "seccomp {what}: errnoRet {errno} does not fit the 16 bits the kernel returns"
        )));
    }
    Ok(match a {
        LinuxSeccompAction::ScmpActAllow => SeccompAction::Allow,
        LinuxSeccompAction::ScmpActErrno => SeccompAction::Errno(errno),
        LinuxSeccompAction::ScmpActTrace => SeccompAction::Trace(errno),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompAction::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::invalid(format!(
            "seccomp {what}: SCMP_ACT_NOTIFY needs a seccomp agent, which berth does not support"
        )))
        }
    })
}

fn flags(spec: &LinuxSeccomp) -> Result<libc::c_ulong> {
    let mut out = 0;
    for f in spec.flags().iter().flatten() {
        out |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            // The process is single-threaded when it installs the filter.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(Error::invalid(
                    "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV only applies to SCMP_ACT_NOTIFY, which berth does not support",
                ))
            }
        };
    }
    Ok(out)
}

fn host_arch() -> Option<TargetArch> {
    if cfg!(target_arch = "x86_64") {
        Some(TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(TargetArch::aarch64)
    } else {
        None
    }
}

fn is_host_arch(a: Arch) -> bool {
    match a {
        Arch::ScmpArchNative => true,
        Arch::ScmpArchX86_64 => cfg!(target_arch = "x86_64"),
        Arch::ScmpArchAarch64 => cfg!(target_arch = "aarch64"),
        _ => false,
    }
}

/// One argument condition; `None` when it can never hold (a masked compare whose value
/// has bits outside its mask: libseccomp never matches it, seccompiler would).
fn condition(arg: &LinuxSeccompArg) -> Result<Option<SeccompCondition>> {
    let (op, value) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (SeccompCmpOp::Ne, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => (SeccompCmpOp::Lt, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => (SeccompCmpOp::Le, arg.value()),
        LinuxSeccompOperator::ScmpCmpEq => (SeccompCmpOp::Eq, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => (SeccompCmpOp::Ge, arg.value()),
        LinuxSeccompOperator::ScmpCmpGt => (SeccompCmpOp::Gt, arg.value()),
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let (mask, want) = (arg.value(), arg.value_two().unwrap_or(0));
            if want & !mask != 0 {
                return Ok(None);
            }
            (SeccompCmpOp::MaskedEq(mask), want)
        }
    };
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| usize::from(*i) <= LAST_ARG)
        .ok_or_else(|| {
            Error::invalid(format!(
                "seccomp: argument index {} is above {LAST_ARG}",
                arg.index()
            ))
        })?;
    SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value)
        .map(Some)
        .map_err(|e| Error::invalid(format!("seccomp: argument condition: {e}")))
}

/// When a syscall matches: always, or when one of these rules holds.
#[derive(Debug, Clone)]
enum Match {
    Always,
    When(Vec<SeccompRule>),
}

type Rules = BTreeMap<i64, Match>;

fn add(rules: &mut Rules, nr: i64, m: &Match) {
    let merged = match (rules.remove(&nr), m) {
        (None, m) => m.clone(),
        (Some(Match::Always), _) | (_, Match::Always) => Match::Always,
        (Some(Match::When(mut a)), Match::When(b)) => {
            a.extend(b.iter().cloned());
            Match::When(a)
        }
    };
    rules.insert(nr, merged);
}

fn to_seccompiler(rules: &Rules) -> BTreeMap<i64, Vec<SeccompRule>> {
    rules
        .iter()
        .map(|(nr, m)| {
            let v = match m {
                Match::Always => Vec::new(),
                Match::When(r) => r.clone(),
            };
            (*nr, v)
        })
        .collect()
}

/// The rules of one syscall entry: all conditions together, or (runc's reading) each
/// on its own when one argument is compared more than once. `None`: it can never match.
fn entry_match(args: &[LinuxSeccompArg]) -> Result<Option<Match>> {
    if args.is_empty() {
        return Ok(Some(Match::Always));
    }
    let mut per_index = [0usize; LAST_ARG + 1];
    for a in args {
        if let Some(n) = per_index.get_mut(a.index()) {
            *n += 1;
        }
    }
    let separate = per_index.iter().any(|n| *n > 1);
    let mut rules = Vec::new();
    if separate {
        for a in args {
            if let Some(c) = condition(a)? {
                rules.push(rule(vec![c])?);
            }
        }
    } else {
        let mut all = Vec::with_capacity(args.len());
        for a in args {
            match condition(a)? {
                Some(c) => all.push(c),
                None => return Ok(None),
            }
        }
        rules.push(rule(all)?);
    }
    Ok((!rules.is_empty()).then_some(Match::When(rules)))
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule> {
    SeccompRule::new(conditions).map_err(|e| Error::invalid(format!("seccomp rule: {e}")))
}

fn build(filter: SeccompFilter, what: &str) -> Result<Vec<sock_filter>> {
    seccompiler::BpfProgram::try_from(filter)
        .map_err(|e| Error::invalid(format!("seccomp: compiling the {what}: {e}")))
}

fn new_filter(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    on_match: SeccompAction,
    arch: TargetArch,
) -> Result<SeccompFilter> {
    SeccompFilter::new(rules, mismatch, on_match, arch)
        .map_err(|e| Error::invalid(format!("seccomp: {e}")))
}

/// On x86_64: x32-ABI calls are killed, everything else is left to the other programs.
fn x32_guard() -> Vec<sock_filter> {
    let s = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let j = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    vec![
        s(BPF_LD_W_ABS, DATA_ARCH),
        j(BPF_JMP_JEQ_K, AUDIT_ARCH, 0, 3),
        s(BPF_LD_W_ABS, DATA_NR),
        j(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1),
        s(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        s(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Runs one program on `data`, as the kernel's classic BPF interpreter does for the
/// instructions seccomp filters use. `None` for anything else (the kernel would have
/// refused the program).
fn run_program(prog: &[sock_filter], data: &SyscallData) -> Option<u32> {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    while let Some(ins) = prog.get(pc) {
        pc += 1;
        let jump = |taken: bool| usize::from(if taken { ins.jt } else { ins.jf });
        match ins.code {
            BPF_LD_W_ABS => acc = data.word(ins.k)?,
            BPF_ALU_AND_K => acc &= ins.k,
            BPF_JMP_JA => pc += ins.k as usize,
            BPF_JMP_JEQ_K => pc += jump(acc == ins.k),
            BPF_JMP_JGT_K => pc += jump(acc > ins.k),
            BPF_JMP_JGE_K => pc += jump(acc >= ins.k),
            BPF_RET_K => return Some(ins.k),
            _ => return None,
        }
    }
    None
}

/// The more restrictive of two filter results, by the kernel's rule: the action part
/// compared as a signed number, lower wins; on a tie the first one stays.
fn stricter(a: u32, b: u32) -> u32 {
    let action = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
    if action(b) < action(a) {
        b
    } else {
        a
    }
}

/// The kernel's answer for programs installed in this order.
fn verdict(programs: &[Vec<sock_filter>], data: &SyscallData) -> u32 {
    // The newest filter runs first and keeps ties.
    programs
        .iter()
        .rev()
        .map(|p| run_program(p, data).unwrap_or(libc::SECCOMP_RET_KILL_PROCESS))
        .fold(libc::SECCOMP_RET_ALLOW, stricter)
}

/// Checks what can be checked without compiling: actions, flags, argument indexes and
/// operators. [`crate::spec::validate`] uses it; [`Filter::from_spec`] compiles.
pub fn validate(spec: &LinuxSeccomp) -> Result<()> {
    if host_arch().is_none() {
        return Err(Error::invalid(
            "seccomp is not supported on this architecture",
        ));
    }
    action(
        spec.default_action(),
        spec.default_errno_ret(),
        "defaultAction",
    )?;
    flags(spec)?;
    for (i, call) in spec.syscalls().iter().flatten().enumerate() {
        let what = format!("syscalls[{i}] ({})", call.names().join(","));
        if call.names().is_empty() {
            return Err(Error::invalid(format!("seccomp {what}: no names")));
        }
        action(call.action(), call.errno_ret(), &what)?;
        for a in call.args().iter().flatten() {
            condition(a).map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        }
    }
    Ok(())
}

impl Filter {
    /// Compiles a spec's seccomp section for this architecture. Unknown syscall names are
    /// skipped (see [`Filter::skipped`]); unsupported actions and malformed rules are
    /// refused with [`Error::InvalidSpec`].
    pub fn from_spec(spec: &LinuxSeccomp) -> Result<Filter> {
        validate(spec)?;
        let arch =
            host_arch().ok_or_else(|| Error::invalid("seccomp: unsupported architecture"))?;
        let default = action(
            spec.default_action(),
            spec.default_errno_ret(),
            "defaultAction",
        )?;
        let ignored: Vec<String> = spec
            .architectures()
            .iter()
            .flatten()
            .filter(|a| !is_host_arch(**a))
            .map(|a| a.to_string())
            .collect();
        if !ignored.is_empty() {
            tracing::debug!(architectures = ?ignored, "seccomp: only the host architecture is filtered; calls of the others are killed");
        }

        // Rules by action (keyed by the action's return value), and all of them.
        let mut by_action: BTreeMap<u32, (SeccompAction, Rules)> = BTreeMap::new();
        let mut any = Rules::new();
        let mut skipped = Vec::new();
        for (i, call) in spec.syscalls().iter().flatten().enumerate() {
            let what = format!("syscalls[{i}]");
            let act = action(call.action(), call.errno_ret(), &what)?;
            if act == default {
                continue;
            }
            let Some(m) = entry_match(call.args().as_deref().unwrap_or_default())? else {
                continue;
            };
            for name in call.names() {
                let Some(nr) = syscalls::number(name) else {
                    if !skipped.contains(name) {
                        skipped.push(name.clone());
                    }
                    continue;
                };
                let key = u32::from(act.clone());
                let group = by_action
                    .entry(key)
                    .or_insert_with(|| (act.clone(), Rules::new()));
                add(&mut group.1, nr, &m);
                add(&mut any, nr, &m);
            }
        }
        if !skipped.is_empty() {
            tracing::debug!(syscalls = ?skipped, "seccomp: syscalls this architecture does not have are skipped");
        }

        let mut programs = Vec::new();
        if default != SeccompAction::Allow {
            let gate = new_filter(
                to_seccompiler(&any),
                default.clone(),
                SeccompAction::Allow,
                arch,
            )?;
            programs.push(build(gate, "profile")?);
        }
        for (act, rules) in by_action.into_values() {
            if act == SeccompAction::Allow {
                continue;
            }
            let what = format!("rules of action {act:?}");
            let f = new_filter(to_seccompiler(&rules), SeccompAction::Allow, act, arch)?;
            programs.push(build(f, &what)?);
        }
        if programs.is_empty() {
            // Everything allowed: still a filter, as the profile asked (foreign
            // architectures are refused, and /proc shows the process filtered).
            let f = new_filter(
                BTreeMap::new(),
                SeccompAction::Allow,
                SeccompAction::KillProcess,
                arch,
            )?;
            programs.push(build(f, "profile")?);
        }
        if cfg!(target_arch = "x86_64") {
            programs.push(x32_guard());
        }
        let total: usize = programs.iter().map(|p| p.len() + 4).sum();
        if total > MAX_INSNS_PER_PATH {
            return Err(Error::invalid(format!(
                "seccomp: the profile compiles to {total} BPF instructions, above the kernel's limit of {MAX_INSNS_PER_PATH}"
            )));
        }
        let flags = flags(spec)?;
        let programs = installable_order(programs, flags)?;
        Ok(Filter {
            programs,
            flags,
            skipped,
        })
    }

    /// Installs the filter in the calling thread (the whole process, when single-threaded
    /// as a container process is). Without `no_new_privs` the caller needs
    /// `CAP_SYS_ADMIN`. Allocates only to describe a failure.
    pub fn install(&self) -> Result<()> {
        for p in &self.programs {
            let prog = libc::sock_fprog {
                // Checked against MAX_INSNS_PER_PATH when compiled.
                len: p.len() as libc::c_ushort,
                // The kernel copies the program and never writes through this pointer;
                // the layouts are the same (asserted above).
                filter: p.as_ptr() as *mut libc::sock_filter,
            };
            // SAFETY: `prog` points to a live, well-formed program for the whole call.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_seccomp,
                    libc::SECCOMP_SET_MODE_FILTER,
                    self.flags,
                    &prog as *const libc::sock_fprog,
                )
            };
            if rc != 0 {
                let e = nix::errno::Errno::last();
                let hint = if e == nix::errno::Errno::EACCES {
                    " (without no_new_privs this needs CAP_SYS_ADMIN)"
                } else {
                    ""
                };
                return Err(Error::sys(format!("install the seccomp filter{hint}"), e));
            }
        }
        Ok(())
    }

    /// The kernel's answer to `data` once this filter is installed: `SECCOMP_RET_*` with
    /// its data (an errno), computed by running the programs as the kernel does. For tests
    /// and diagnostics.
    pub fn verdict(&self, data: &SyscallData) -> u32 {
        verdict(&self.programs, data)
    }

    /// The kernel's answer to syscall `name` of this architecture with `args`; `None`
    /// when the architecture has no such syscall.
    pub fn verdict_for(&self, name: &str, args: &[u64]) -> Option<u32> {
        let nr = syscalls::number(name)?;
        Some(self.verdict(&SyscallData::native(nr, args)))
    }

    /// Syscall names of the profile this architecture does not have (skipped).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// BPF instructions in all programs.
    pub fn instructions(&self) -> usize {
        self.programs.iter().map(Vec::len).sum()
    }
}

/// Orders the programs so that each `seccomp(2)` call that installs the next one is
/// allowed by those already installed: a profile may deny `seccomp` itself. Programs
/// that would refuse the call go last; two of them cannot both be installed.
fn installable_order(
    programs: Vec<Vec<sock_filter>>,
    flags: libc::c_ulong,
) -> Result<Vec<Vec<sock_filter>>> {
    let call = SyscallData::native(
        libc::SYS_seccomp,
        &[u64::from(libc::SECCOMP_SET_MODE_FILTER), flags],
    );
    let lets_through = |p: &Vec<sock_filter>| {
        run_program(p, &call).is_some_and(|r| {
            let action = r & libc::SECCOMP_RET_ACTION_FULL;
            action == libc::SECCOMP_RET_ALLOW || action == libc::SECCOMP_RET_LOG
        })
    };
    let (pass, block): (Vec<_>, Vec<_>) = programs.into_iter().partition(lets_through);
    if block.len() > 1 {
        return Err(Error::invalid(
            "seccomp: the profile refuses seccomp(2) in a way that keeps its own filters from being installed",
        ));
    }
    Ok(pass.into_iter().chain(block).collect())
}

#[cfg(test)]
mod tests;
