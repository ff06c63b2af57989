//! The device program: its meaning checked by running it in a small interpreter against a
//! plain model of the rules, its encoding checked by the kernel's verifier, and its effect
//! checked for real on a cgroup2 directory (root only).

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder,
};

use super::super::bpf::{
    self, Insn, CLASS_ALU, CLASS_ALU64, CLASS_JMP, CLASS_LDX, MODE_MEM, OP_AND, OP_EXIT, OP_JEQ,
    OP_JNE, OP_MOV, OP_RSH, SIZE_W, SRC_K, SRC_X,
};
use super::*;
use crate::cgroups::{CgroupManager, V2Manager};

const PROLOGUE: usize = 6;
const EPILOGUE: usize = 2;

fn rule(allow: bool, typ: &str, major: i64, minor: i64, access: &str) -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ.parse::<LinuxDeviceType>().unwrap())
        .major(major)
        .minor(minor)
        .access(access)
        .build()
        .unwrap()
}

fn deny_all() -> LinuxDeviceCgroup {
    rule(false, "a", -1, -1, "rwm")
}

/// The list Docker sends: deny everything, then its standard devices.
fn docker_rules() -> Vec<LinuxDeviceCgroup> {
    vec![
        deny_all(),
        rule(true, "c", -1, -1, "m"),
        rule(true, "b", -1, -1, "m"),
        rule(true, "c", 1, 3, "rwm"),
        rule(true, "c", 1, 5, "rwm"),
        rule(true, "c", 1, 7, "rwm"),
        rule(true, "c", 1, 8, "rwm"),
        rule(true, "c", 1, 9, "rwm"),
        rule(true, "c", 5, 0, "rwm"),
        rule(true, "c", 5, 1, "rwm"),
        rule(true, "c", 136, -1, "rwm"),
        rule(true, "c", 5, 2, "rwm"),
        rule(true, "c", 10, 200, "rwm"),
        rule(false, "c", 10, 229, "rwm"),
    ]
}

/// Runs a device program on one request: the subset of eBPF the encoder emits, with the
/// checks the verifier would make (registers read before written, jumps in range).
fn run(p: &[Insn], typ: u32, major: u32, minor: u32, access: u32) -> bool {
    const CTX: u64 = 0xc7c7_0000_0000;
    let ctx = [(access << 16) | typ, major, minor];
    let mut regs = [0u64; 11];
    let mut init = [false; 11];
    regs[1] = CTX;
    init[1] = true;
    let mut pc = 0usize;
    for _ in 0..=p.len() {
        let i = p[pc];
        let (dst, src) = (i.dst().0 as usize, i.src().0 as usize);
        let at = pc;
        let get = |r: usize| {
            assert!(init[r], "r{r} read before written at {at}: {p:?}");
            regs[r]
        };
        pc += 1;
        let value = match (i.code & 0x07, i.code & 0xf8) {
            (CLASS_LDX, op) if op == SIZE_W | MODE_MEM => {
                assert_eq!(get(src), CTX, "load from something else than the context");
                u64::from(ctx[usize::try_from(i.off).unwrap() / 4])
            }
            (CLASS_ALU, op) if op == OP_MOV | SRC_X => u64::from(get(src) as u32),
            (CLASS_ALU, op) if op == OP_AND | SRC_K => u64::from(get(dst) as u32 & i.imm as u32),
            (CLASS_ALU, op) if op == OP_RSH | SRC_K => u64::from((get(dst) as u32) >> i.imm),
            (CLASS_ALU64, op) if op == OP_MOV | SRC_K => i.imm as i64 as u64,
            (CLASS_JMP, op) if op == OP_JNE | SRC_K || op == OP_JEQ | SRC_K => {
                let equal = get(dst) == i.imm as i64 as u64;
                assert!(i.off > 0, "backward or empty jump at {at}");
                if equal == (op == OP_JEQ | SRC_K) {
                    pc += i.off as usize;
                }
                assert!(pc < p.len(), "jump out of the program");
                continue;
            }
            (CLASS_JMP, OP_EXIT) => return get(0) != 0,
            _ => panic!("unexpected instruction {i:?}"),
        };
        regs[dst] = value;
        init[dst] = true;
    }
    panic!("the program does not end: {p:?}")
}

/// What the rules mean, written plainly: per access bit, the last matching rule that names
/// it decides; a deny of all of rwm refuses even an access-less check.
fn model(rules: &[Rule], typ: u32, major: u32, minor: u32, access: u32) -> bool {
    let mut pending = access;
    for r in rules.iter().rev() {
        let matches = r.typ.is_none_or(|t| t == typ)
            && r.major.is_none_or(|m| m == major)
            && r.minor.is_none_or(|m| m == minor);
        if !matches {
            continue;
        }
        if r.allow {
            pending &= !r.access;
            if pending == 0 {
                return true;
            }
        } else if pending & r.access != 0 || r.access == ACC_ALL {
            return false;
        }
    }
    false
}

fn decide(rules: &[LinuxDeviceCgroup], typ: u32, major: u32, minor: u32, access: u32) -> bool {
    run(&program(rules).unwrap(), typ, major, minor, access)
}

#[test]
fn docker_list_allows_its_devices_only() {
    let rules = docker_rules();
    let p = program(&rules).unwrap();
    // The leading deny-all is the default, not a block. Mknod of any c or b: a type check,
    // two to settle the bit, a return. Each of the 10 single devices: three checks and a
    // return; 136:* two checks and a return.
    assert_eq!(p.len(), PROLOGUE + 2 * 5 + 10 * 5 + 4 + EPILOGUE, "{p:#?}");
    let rw = ACC_READ | ACC_WRITE;
    assert!(run(&p, DEV_CHAR, 1, 3, rw), "/dev/null");
    assert!(run(&p, DEV_CHAR, 136, 4, rw), "/dev/pts/4");
    assert!(!run(&p, DEV_CHAR, 1, 4, ACC_READ), "/dev/port");
    assert!(!run(&p, DEV_BLOCK, 8, 0, ACC_READ), "/dev/sda");
    assert!(
        run(&p, DEV_BLOCK, 8, 0, ACC_MKNOD),
        "mknod is allowed for any node"
    );
    assert!(!run(&p, DEV_BLOCK, 8, 0, ACC_MKNOD | ACC_READ));
    assert!(
        !run(&p, DEV_CHAR, 10, 229, ACC_MKNOD),
        "the last rule denies /dev/fuse"
    );
    // The access-less check of access(2): allowed where some rule allows the device.
    assert!(run(&p, DEV_CHAR, 1, 3, 0));
    assert!(!run(&p, DEV_CHAR, 10, 229, 0));
}

#[test]
fn later_rules_win() {
    let allow_all = rule(true, "a", -1, -1, "rwm");
    let deny_zero_w = rule(false, "c", 1, 5, "w");
    let rules = [allow_all.clone(), deny_zero_w.clone()];
    assert!(decide(&rules, DEV_CHAR, 1, 5, ACC_READ));
    assert!(!decide(&rules, DEV_CHAR, 1, 5, ACC_WRITE));
    assert!(!decide(&rules, DEV_CHAR, 1, 5, ACC_READ | ACC_WRITE));
    assert!(decide(&rules, DEV_CHAR, 1, 3, ACC_READ | ACC_WRITE));
    assert!(decide(&rules, DEV_BLOCK, 1, 5, ACC_WRITE));
    // The other way round the allow-all comes last and is all there is.
    let rules = [deny_zero_w, allow_all];
    assert_eq!(program(&rules).unwrap().len(), PROLOGUE + EPILOGUE);
    assert!(decide(&rules, DEV_CHAR, 1, 5, ACC_WRITE));

    // A deny-all drops what came before it.
    let rules = [rule(true, "c", 1, 3, "rwm"), deny_all()];
    assert_eq!(program(&rules).unwrap().len(), PROLOGUE + EPILOGUE);
    assert!(!decide(&rules, DEV_CHAR, 1, 3, ACC_READ));
    // And an allow after a deny of the same device wins.
    let rules = [
        deny_all(),
        rule(false, "c", 1, 3, "rwm"),
        rule(true, "c", 1, 3, "r"),
    ];
    assert!(decide(&rules, DEV_CHAR, 1, 3, ACC_READ));
    assert!(!decide(&rules, DEV_CHAR, 1, 3, ACC_READ | ACC_WRITE));
}

#[test]
fn access_bits_are_settled_one_by_one() {
    let rules = [
        deny_all(),
        rule(true, "c", 1, 3, "r"),
        rule(true, "c", 1, 3, "w"),
    ];
    assert!(decide(&rules, DEV_CHAR, 1, 3, ACC_READ | ACC_WRITE));
    assert!(!decide(&rules, DEV_CHAR, 1, 3, ACC_MKNOD));
    assert!(!decide(&rules, DEV_CHAR, 1, 3, ACC_READ | ACC_MKNOD));
    // No rule at all: nothing is allowed.
    assert!(!decide(&[], DEV_CHAR, 1, 3, ACC_READ));
}

#[test]
fn missing_fields_mean_any() {
    let r = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .build()
        .unwrap();
    assert_eq!(
        Rule::parse(&r).unwrap(),
        Rule {
            allow: true,
            typ: None,
            major: None,
            minor: None,
            access: ACC_ALL
        }
    );
    let u = rule(true, "u", 4, -1, "rw");
    assert_eq!(Rule::parse(&u).unwrap().typ, Some(DEV_CHAR));
}

#[test]
fn bad_rules_are_refused() {
    for (r, want) in [
        (rule(true, "c", 1, 3, ""), "not a subset of rwm"),
        (rule(true, "c", 1, 3, "rx"), "not a subset of rwm"),
        (rule(true, "p", 1, 3, "rw"), "fifo"),
        (rule(true, "c", 1 << 31, 3, "rw"), "major number 2147483648"),
        (rule(true, "c", 1, 1 << 40, "rw"), "minor number"),
    ] {
        let e = program(&[r]).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

/// xorshift: a deterministic stream of rule lists.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.next(from.len() as u64) as usize]
    }
}

#[test]
fn program_means_what_the_rules_say() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.next(7) as usize;
        let rules: Vec<Rule> = (0..len)
            .map(|_| Rule {
                allow: rng.next(2) == 0,
                typ: rng.pick(&[None, Some(DEV_BLOCK), Some(DEV_CHAR)]),
                major: rng.pick(&[None, Some(1), Some(8)]),
                minor: rng.pick(&[None, Some(3), Some(5)]),
                access: rng.next(7) as u32 + 1,
            })
            .collect();
        let p = encode(&rules);
        let blocks = rules.iter().filter(|r| !r.is_everything()).count();
        // At most three checks, three to settle the access and a return per rule.
        assert!(p.len() <= PROLOGUE + EPILOGUE + blocks * 8);
        for typ in [DEV_BLOCK, DEV_CHAR] {
            for major in [1, 8, 9] {
                for minor in [3, 5, 6] {
                    for access in 0..=ACC_ALL {
                        assert_eq!(
                            run(&p, typ, major, minor, access),
                            model(&rules, typ, major, minor, access),
                            "{typ} {major}:{minor} access {access} under {rules:?}"
                        );
                    }
                }
            }
        }
    }
}

fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the device program tests as root"
    );
    eprintln!("skipped: needs root");
    false
}

#[test]
fn kernel_verifier_accepts_the_programs() {
    if !need_root() {
        return;
    }
    let mut long = vec![deny_all()];
    for major in 0..200 {
        long.push(rule(major % 3 != 0, "c", major, -1, "rw"));
    }
    let sets: Vec<Vec<LinuxDeviceCgroup>> = vec![
        vec![],
        vec![deny_all()],
        vec![rule(true, "a", -1, -1, "rwm")],
        docker_rules(),
        vec![rule(true, "a", -1, -1, "rwm"), rule(false, "b", 8, -1, "w")],
        vec![rule(false, "a", -1, -1, "r"), rule(true, "a", -1, -1, "m")],
        long,
    ];
    for rules in sets {
        let p = program(&rules).unwrap();
        if let Err(e) = bpf::load_device_program(&p) {
            panic!("{} rules: {}\n{}", rules.len(), e.error, e.log);
        }
    }
}

#[test]
fn verifier_log_is_reported() {
    if !need_root() {
        return;
    }
    // r0 is never written: the verifier refuses and says why.
    let e = bpf::load_device_program(&[Insn::exit()]).unwrap_err();
    assert_eq!(e.error.raw_os_error(), Some(libc::EACCES), "{}", e.error);
    assert!(e.log.contains("R0"), "{}", e.log);
}

/// The cgroup2 mount of this host: `/sys/fs/cgroup` on a unified host, its `unified`
/// directory on a hybrid one.
fn cgroup2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| {
            nix::sys::statfs::statfs(p.as_path())
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        })
}

/// What a process in the cgroup tries.
enum Try<'a> {
    Open(&'a str, libc::c_int),
    Mknod(&'a Path, u32, u32),
}

/// Forks a child that moves itself into the cgroup whose `cgroup.procs` is `procs`, makes
/// each attempt and reports its errno (0 for success). The first value is the move's.
fn in_cgroup(procs: &Path, tries: &[Try]) -> Vec<i32> {
    let procs = std::fs::OpenOptions::new().write(true).open(procs).unwrap();
    let paths: Vec<CString> = tries
        .iter()
        .map(|t| match t {
            Try::Open(p, _) => CString::new(*p).unwrap(),
            Try::Mknod(p, ..) => CString::new(p.as_os_str().as_bytes()).unwrap(),
        })
        .collect();
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe2.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only makes async-signal-safe calls on memory prepared before the
    // fork, then _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: raw syscalls on fds and C strings made before the fork.
        unsafe {
            let errno = || *libc::__errno_location();
            let mut out = [0i32; 16];
            out[0] = if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) == 1 {
                0
            } else {
                errno()
            };
            for (i, (t, path)) in tries.iter().zip(&paths).enumerate() {
                let r = match t {
                    Try::Open(_, flags) => {
                        let fd = libc::open(path.as_ptr(), *flags);
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        fd
                    }
                    Try::Mknod(_, major, minor) => libc::mknod(
                        path.as_ptr(),
                        libc::S_IFCHR | 0o600,
                        libc::makedev(*major, *minor),
                    ),
                };
                out[i + 1] = if r >= 0 { 0 } else { errno() };
            }
            let n = (tries.len() + 1) * 4;
            libc::write(fds[1], out.as_ptr().cast(), n);
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end, which we own.
    unsafe { libc::close(fds[1]) };
    let mut buf = [0i32; 16];
    // SAFETY: reading into a buffer of 64 bytes.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 64) };
    // SAFETY: our read end; the child is ours to reap.
    unsafe {
        libc::close(fds[0]);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    assert_eq!(
        n as usize,
        (tries.len() + 1) * 4,
        "the child did not report"
    );
    buf[..tries.len() + 1].to_vec()
}

/// Removes the test's cgroup even when the test failed.
struct Cleanup(V2Manager);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.kill_all();
        let _ = self.0.remove();
    }
}

fn resources(devices: Vec<LinuxDeviceCgroup>) -> oci_spec::runtime::LinuxResources {
    LinuxResourcesBuilder::default()
        .devices(devices)
        .build()
        .unwrap()
}

#[test]
fn real_cgroup_enforces_and_replaces_the_rules() {
    if !need_root() {
        return;
    }
    let Some(root) = cgroup2_root() else {
        eprintln!("skipped: no cgroup2 hierarchy is mounted on this host");
        return;
    };
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "berth-test-devbpf-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let m = V2Manager::new(root.clone(), name.into());
    let _cleanup = Cleanup(m.clone());
    m.create().unwrap();
    let dir = m.dir();
    let procs = dir.join("cgroup.procs");
    let tmp = tempfile::tempdir().unwrap();

    m.apply(&resources(vec![
        deny_all(),
        rule(true, "c", 1, 3, "rw"),
        rule(true, "c", 1, 7, "m"),
    ]))
    .unwrap();
    let got = in_cgroup(
        &procs,
        &[
            Try::Open("/dev/null", libc::O_RDWR),
            Try::Open("/dev/zero", libc::O_RDONLY),
            Try::Mknod(&tmp.path().join("null"), 1, 3),
            Try::Mknod(&tmp.path().join("full"), 1, 7),
        ],
    );
    assert_eq!(got, [0, 0, libc::EPERM, libc::EPERM, 0]);

    // A second apply replaces the program: /dev/null is no longer allowed.
    m.apply(&resources(vec![deny_all(), rule(true, "c", 1, 5, "r")]))
        .unwrap();
    let cgroup = std::fs::File::open(&dir).unwrap();
    let ids = bpf::attached(std::os::fd::AsFd::as_fd(&cgroup)).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    drop(cgroup);
    let got = in_cgroup(
        &procs,
        &[
            Try::Open("/dev/zero", libc::O_RDONLY),
            Try::Open("/dev/zero", libc::O_WRONLY),
            Try::Open("/dev/null", libc::O_RDONLY),
        ],
    );
    assert_eq!(got, [0, 0, libc::EPERM, libc::EPERM]);

    // Removing the cgroup works with the program attached, and frees the program.
    m.remove().unwrap();
    assert!(!dir.exists());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bpf::prog_by_id(ids[0]).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "program {} outlived its cgroup",
            ids[0]
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        bpf::prog_by_id(ids[0]).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
}
