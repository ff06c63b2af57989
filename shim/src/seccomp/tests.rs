use super::*;
use serde_json::json;

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | e as u32
}

fn spec(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).unwrap()
}

fn compile(v: serde_json::Value) -> Filter {
    Filter::from_spec(&spec(v)).unwrap()
}

fn refused(v: serde_json::Value) -> String {
    let e = Filter::from_spec(&spec(v)).unwrap_err();
    assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
    e.to_string()
}

const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// A small profile shaped like Docker's: an allowlist, argument-conditioned rules and an
/// errno other than the default's.
fn dockerish() -> Filter {
    compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [
            {"names": ["read", "write", "getpid", "seccomp", "chown32", "exit_group"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        ]
    }))
}

fn v(f: &Filter, name: &str, args: &[u64]) -> u32 {
    f.verdict_for(name, args)
        .unwrap_or_else(|| panic!("{name} is not a syscall here"))
}

#[test]
fn allowlist_with_default_errno() {
    let f = dockerish();
    assert_eq!(v(&f, "getpid", &[]), ALLOW);
    assert_eq!(v(&f, "read", &[0, 0, 0]), ALLOW);
    assert_eq!(v(&f, "mount", &[]), errno(libc::EPERM));
    assert_eq!(
        v(&f, "unshare", &[libc::CLONE_NEWUSER as u64]),
        errno(libc::EPERM)
    );
    assert_eq!(v(&f, "clone3", &[]), errno(libc::ENOSYS));
    assert_eq!(f.skipped(), ["chown32".to_string()]);
}

#[test]
fn argument_conditions() {
    let f = dockerish();
    assert_eq!(v(&f, "socket", &[libc::AF_INET as u64, 1, 0]), ALLOW);
    assert_eq!(
        v(&f, "socket", &[libc::AF_VSOCK as u64, 1, 0]),
        errno(libc::EPERM)
    );
    for ok in [0, 8, 0xffff_ffff] {
        assert_eq!(v(&f, "personality", &[ok]), ALLOW, "{ok:#x}");
    }
    // Full 64-bit comparisons: a high word does not alias a low one.
    for no in [1, 0x1_0000_0008, 0xffff_ffff_ffff_ffff] {
        assert_eq!(v(&f, "personality", &[no]), errno(libc::EPERM), "{no:#x}");
    }
    let sigchld = libc::SIGCHLD as u64;
    assert_eq!(v(&f, "clone", &[sigchld | libc::CLONE_VM as u64]), ALLOW);
    assert_eq!(
        v(&f, "clone", &[sigchld | libc::CLONE_NEWUSER as u64]),
        errno(libc::EPERM)
    );
    assert_eq!(
        v(&f, "clone", &[libc::CLONE_NEWNET as u64]),
        errno(libc::EPERM)
    );
}

#[test]
fn every_operator_compares_whole_arguments() {
    let big = 0x1_0000_0000u64;
    let ops = [
        ("SCMP_CMP_EQ", [(big, true), (0, false), (big + 1, false)]),
        ("SCMP_CMP_NE", [(big, false), (0, true), (big + 1, true)]),
        (
            "SCMP_CMP_LT",
            [(big, false), (big - 1, true), (big + 1, false)],
        ),
        (
            "SCMP_CMP_LE",
            [(big, true), (big - 1, true), (big + 1, false)],
        ),
        (
            "SCMP_CMP_GT",
            [(big, false), (big - 1, false), (big + 1, true)],
        ),
        (
            "SCMP_CMP_GE",
            [(big, true), (big - 1, false), (big + 1, true)],
        ),
    ];
    for (op, cases) in ops {
        let f = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7,
                          "args": [{"index": 1, "value": big, "op": op}]}]
        }));
        for (arg, denied) in cases {
            let want = if denied { errno(7) } else { ALLOW };
            assert_eq!(v(&f, "getpriority", &[0, arg]), want, "{op} {arg:#x}");
        }
    }
}

#[test]
fn masked_equal_takes_the_mask_from_value() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["fchmod"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 1, "value": 0o7000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ"}]}]
    }));
    assert_eq!(v(&f, "fchmod", &[3, 0o4755]), errno(libc::EPERM));
    assert_eq!(v(&f, "fchmod", &[3, 0o0755]), ALLOW);
    assert_eq!(v(&f, "fchmod", &[3, 0o6755]), ALLOW);
    // A value with bits outside the mask can never match (libseccomp's reading).
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["fchmod"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 1, "value": 0o7000, "valueTwo": 0o4001, "op": "SCMP_CMP_MASKED_EQ"}]}]
    }));
    assert_eq!(v(&f, "fchmod", &[3, 0o4001]), ALLOW);
}

#[test]
fn conditions_on_different_arguments_all_hold_on_the_same_one_any() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["kill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["tkill"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                      {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    assert_eq!(v(&f, "kill", &[1, 9]), ALLOW);
    assert_eq!(v(&f, "kill", &[1, 15]), errno(libc::EPERM));
    assert_eq!(v(&f, "kill", &[2, 9]), errno(libc::EPERM));
    assert_eq!(v(&f, "tkill", &[5, 9]), ALLOW);
    assert_eq!(v(&f, "tkill", &[5, 15]), ALLOW);
    assert_eq!(v(&f, "tkill", &[5, 2]), errno(libc::EPERM));
}

#[test]
fn unconditional_rules_absorb_conditional_ones() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(v(&f, "getppid", &[7]), ALLOW);
    assert_eq!(v(&f, "getpid", &[]), KILL_PROCESS);
}

#[test]
fn actions_map_to_the_kernels() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getuid"], "action": "SCMP_ACT_KILL"},
            {"names": ["getgid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["geteuid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getegid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_LOG"},
            {"names": ["getsid"], "action": "SCMP_ACT_TRACE", "errnoRet": 3},
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    assert_eq!(v(&f, "getuid", &[]), libc::SECCOMP_RET_KILL_THREAD);
    assert_eq!(v(&f, "getgid", &[]), libc::SECCOMP_RET_KILL_THREAD);
    assert_eq!(v(&f, "geteuid", &[]), KILL_PROCESS);
    assert_eq!(v(&f, "getegid", &[]), libc::SECCOMP_RET_TRAP);
    assert_eq!(v(&f, "getpgrp", &[]), libc::SECCOMP_RET_LOG);
    assert_eq!(v(&f, "getsid", &[]), libc::SECCOMP_RET_TRACE | 3);
    assert_eq!(v(&f, "getcwd", &[]), errno(libc::EPERM));
    assert_eq!(v(&f, "getpid", &[]), ALLOW);
    assert_eq!(v(&f, "getppid", &[]), ALLOW);
}

#[test]
fn rules_with_the_default_action_are_dropped() {
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                     {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2}]
    }));
    assert_eq!(v(&f, "getpid", &[]), errno(1));
    assert_eq!(v(&f, "getppid", &[]), errno(2));
}

#[test]
fn other_architectures_and_x32_are_killed() {
    let f = dockerish();
    let mut call = SyscallData::native(syscalls::number("getpid").unwrap(), &[]);
    assert_eq!(f.verdict(&call), ALLOW);
    call.arch = 0x4000_0003; // AUDIT_ARCH_I386
    assert_eq!(f.verdict(&call), KILL_PROCESS);
    if cfg!(target_arch = "x86_64") {
        let x32 = SyscallData::native(
            i64::from(X32_SYSCALL_BIT) | syscalls::number("mkdir").unwrap(),
            &[],
        );
        // Even under a profile that allows everything but a few calls.
        let open = compile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        assert_eq!(open.verdict(&x32), KILL_PROCESS);
    }
}

#[test]
fn an_allow_all_profile_is_still_a_filter() {
    let f = compile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    assert!(f.instructions() > 0);
    assert_eq!(v(&f, "mount", &[]), ALLOW);
}

#[test]
fn the_filter_can_install_itself_when_a_profile_denies_seccomp() {
    // Default allow; seccomp(2) denied; another action's program too: the one that
    // refuses seccomp(2) must be installed last.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["seccomp"], "action": "SCMP_ACT_ERRNO"},
                     {"names": ["getpid"], "action": "SCMP_ACT_TRAP"}]
    }));
    let call = SyscallData::native(libc::SYS_seccomp, &[1, 0]);
    let (last, rest) = f.programs.split_last().unwrap();
    assert!(rest.iter().all(|p| run_program(p, &call) == Some(ALLOW)));
    assert_eq!(run_program(last, &call), Some(errno(libc::EPERM)));
    // An allowlist without seccomp: the gate goes last.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                     {"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]
    }));
    assert_eq!(
        run_program(f.programs.last().unwrap(), &call),
        Some(errno(libc::EPERM))
    );
}

#[test]
fn unsupported_things_are_refused_clearly() {
    let notify = refused(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(notify.contains("SCMP_ACT_NOTIFY"), "{notify}");
    let notify = refused(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(notify.contains("syscalls[0]"), "{notify}");
    let index = refused(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert!(index.contains("index 6"), "{index}");
    let big = refused(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}));
    assert!(big.contains("70000"), "{big}");
    let flag = refused(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}));
    assert!(flag.contains("WAIT_KILLABLE"), "{flag}");
    let empty = refused(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(empty.contains("no names"), "{empty}");
}

#[test]
fn flags_are_passed_to_the_kernel() {
    let f = compile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}));
    assert_eq!(
        f.flags,
        libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );
}

/// Reads `/proc/self/status` into a stack buffer and finds "Seccomp:\t<mode>" (no
/// allocation: this runs in a forked child of a multi-threaded test).
fn seccomp_mode_raw() -> Option<u8> {
    let mut buf = [0u8; 8192];
    // SAFETY: a NUL-terminated path and a buffer we own.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let text = buf.get(..usize::try_from(n).ok()?)?;
    let key = b"Seccomp:\t";
    let at = text.windows(key.len()).position(|w| w == key)?;
    text.get(at + key.len()).copied()
}

/// Forks; the child runs `body` and exits with its result; returns that exit code.
fn in_child(body: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only makes raw syscalls on memory prepared before fork, then
    // `_exit`s; it never returns into the test harness.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = body();
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(rc, pid);
            assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }
}

fn errno_now() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[test]
fn a_filtered_child_gets_eperm_for_denied_calls() {
    // Deny mkdir/mkdirat (whichever this arch has) and unshare; allow everything else.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat", "unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                     {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    }));
    let dir = tempfile::tempdir().unwrap();
    let target =
        std::ffi::CString::new(dir.path().join("x").as_os_str().as_encoded_bytes()).unwrap();
    let code = in_child(|| {
        if seccomp_mode_raw() != Some(b'0') {
            return 10;
        }
        // SAFETY: prctl with constant arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return 11;
        }
        if f.install().is_err() {
            return 12;
        }
        if seccomp_mode_raw() != Some(b'2') {
            return 13;
        }
        // SAFETY: a valid C string.
        if unsafe { libc::mkdir(target.as_ptr(), 0o755) } == 0 || errno_now() != libc::EPERM {
            return 14;
        }
        // SAFETY: unshare with a constant flag.
        if unsafe { libc::unshare(libc::CLONE_NEWUTS) } == 0 || errno_now() != libc::EPERM {
            return 15;
        }
        // SAFETY: clone3 with no arguments fails before it looks at them.
        if unsafe { libc::syscall(libc::SYS_clone3, 0, 0) } == 0 || errno_now() != libc::ENOSYS {
            return 16;
        }
        // SAFETY: getpid cannot fail.
        if unsafe { libc::getpid() } <= 0 {
            return 17;
        }
        0
    });
    assert_eq!(code, 0, "step {code} failed in the filtered child");
    assert!(!dir.path().join("x").exists());
    // The parent is not filtered.
    std::fs::create_dir(dir.path().join("x")).unwrap();
}

#[test]
fn an_allowlist_lets_a_child_live_and_denies_the_rest() {
    // Enough to run: the calls the child makes after install are listed.
    let f = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["getpid", "exit", "exit_group", "open", "openat", "read", "close", "seccomp"],
                      "action": "SCMP_ACT_ALLOW"}]
    }));
    let code = in_child(|| {
        // SAFETY: as above.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return 11;
            }
        }
        if f.install().is_err() {
            return 12;
        }
        if seccomp_mode_raw() != Some(b'2') {
            return 13;
        }
        // SAFETY: getppid/getuid cannot fault.
        unsafe {
            if libc::getpid() <= 0 {
                return 14;
            }
            if libc::syscall(libc::SYS_getppid) != -1 || errno_now() != libc::EPERM {
                return 15;
            }
        }
        0
    });
    assert_eq!(code, 0, "step {code} failed in the filtered child");
}
