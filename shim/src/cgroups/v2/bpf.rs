//! The little eBPF the shim needs for cgroup v2 device rules: an instruction type with the
//! handful of instructions a device program uses, and the bpf(2) commands that load such a
//! program and attach it to (or detach it from) a cgroup directory.
//!
//! The numbers come from the kernel's uapi `linux/bpf.h` and `linux/bpf_common.h`. libc only
//! has the classic-BPF subset (typed for `sock_filter`), so they are defined here.

use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// Instruction classes.
pub(super) const CLASS_LDX: u8 = 0x01;
pub(super) const CLASS_ALU: u8 = 0x04;
pub(super) const CLASS_JMP: u8 = 0x05;
pub(super) const CLASS_ALU64: u8 = 0x07;
// Load size and mode.
pub(super) const SIZE_W: u8 = 0x00;
pub(super) const MODE_MEM: u8 = 0x60;
// Operand source: immediate or register.
pub(super) const SRC_K: u8 = 0x00;
pub(super) const SRC_X: u8 = 0x08;
// ALU operations.
pub(super) const OP_AND: u8 = 0x50;
pub(super) const OP_RSH: u8 = 0x70;
pub(super) const OP_MOV: u8 = 0xb0;
// Jump operations.
pub(super) const OP_JEQ: u8 = 0x10;
pub(super) const OP_JNE: u8 = 0x50;
pub(super) const OP_EXIT: u8 = 0x90;

// bpf(2) commands.
const BPF_PROG_LOAD: c_int = 5;
const BPF_PROG_ATTACH: c_int = 8;
const BPF_PROG_DETACH: c_int = 9;
const BPF_PROG_GET_FD_BY_ID: c_int = 13;
const BPF_PROG_QUERY: c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs on one cgroup, all of which must allow an access; without it a
/// second program could not be attached next to the first while it is replaced.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// The kernel's limit of programs per cgroup and attach type (`BPF_CGROUP_MAX_PROGS`).
const MAX_PROGS: usize = 64;

/// An eBPF register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub(super) u8);

/// Return value.
pub const R0: Reg = Reg(0);
/// First argument: the context pointer.
pub const R1: Reg = Reg(1);
pub const R2: Reg = Reg(2);
pub const R3: Reg = Reg(3);
pub const R4: Reg = Reg(4);
pub const R5: Reg = Reg(5);

/// One `struct bpf_insn`: the register nibbles are a C bitfield, whose order follows the
/// byte order of the machine.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub(super) code: u8,
    regs: u8,
    pub(super) off: i16,
    pub(super) imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        let regs = if cfg!(target_endian = "little") {
            (src.0 << 4) | (dst.0 & 0x0f)
        } else {
            (dst.0 << 4) | (src.0 & 0x0f)
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// The destination register.
    #[cfg(test)]
    pub fn dst(&self) -> Reg {
        if cfg!(target_endian = "little") {
            Reg(self.regs & 0x0f)
        } else {
            Reg(self.regs >> 4)
        }
    }

    /// The source register.
    #[cfg(test)]
    pub fn src(&self) -> Reg {
        if cfg!(target_endian = "little") {
            Reg(self.regs >> 4)
        } else {
            Reg(self.regs & 0x0f)
        }
    }

    /// Whether this is a conditional jump (whose `off` is relative to the next instruction).
    pub fn is_cond_jump(&self) -> bool {
        self.code & 0x07 == CLASS_JMP && self.code & 0xf0 != OP_EXIT
    }

    /// The same instruction jumping `off` instructions past the next one.
    pub fn with_off(self, off: i16) -> Insn {
        Insn { off, ..self }
    }

    /// `dst = *(u32 *)(src + off)`, zero-extended.
    pub fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(CLASS_LDX | SIZE_W | MODE_MEM, dst, src, off, 0)
    }

    /// `wdst = wsrc` (32-bit move; the upper half becomes 0).
    pub fn mov32(dst: Reg, src: Reg) -> Insn {
        Insn::new(CLASS_ALU | OP_MOV | SRC_X, dst, src, 0, 0)
    }

    /// `dst = imm` (64-bit).
    pub fn mov64_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(CLASS_ALU64 | OP_MOV | SRC_K, dst, R0, 0, imm)
    }

    /// `wdst &= imm`.
    pub fn and32_imm(dst: Reg, imm: u32) -> Insn {
        Insn::new(CLASS_ALU | OP_AND | SRC_K, dst, R0, 0, imm as i32)
    }

    /// `wdst >>= imm`.
    pub fn rsh32_imm(dst: Reg, imm: u32) -> Insn {
        Insn::new(CLASS_ALU | OP_RSH | SRC_K, dst, R0, 0, imm as i32)
    }

    /// `if dst != imm goto +off`. The 64-bit compare sign-extends `imm`, so callers keep
    /// it below 2^31 when `dst` holds a zero-extended u32.
    pub fn jne_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JNE | SRC_K, dst, R0, off, imm)
    }

    /// `if dst == imm goto +off`.
    pub fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(CLASS_JMP | OP_JEQ | SRC_K, dst, R0, off, imm)
    }

    /// `return r0`.
    pub fn exit() -> Insn {
        Insn::new(CLASS_JMP | OP_EXIT, R0, R0, 0, 0)
    }
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to the fields we set (the kernel
/// accepts a shorter attr and zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// The `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

/// The `BPF_PROG_GET_FD_BY_ID` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: c_int, attr: &mut T) -> io::Result<c_int> {
    // SAFETY: `attr` is a live, initialised `#[repr(C)]` prefix of `union bpf_attr` for
    // `cmd`, and its size is passed along; pointers inside it outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as c_int)
    }
}

fn owned(fd: c_int) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor, nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A verifier refusal: the errno and the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    /// The kernel's answer.
    pub error: io::Error,
    /// What the verifier said (empty when the failure was not the verifier's).
    pub log: String,
}

/// Loads `insns` as a `BPF_PROG_TYPE_CGROUP_DEVICE` program. On failure the load is
/// retried with a log buffer, so the verifier's reason can be reported.
pub fn load_device_program(insns: &[Insn]) -> Result<OwnedFd, LoadError> {
    let load = |log: Option<&mut Vec<u8>>| {
        let mut name = [0u8; 16];
        name[..10].copy_from_slice(b"berth_devs");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            // Device programs call no GPL-only helper: any license string does.
            license: c"Apache-2.0".as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    };
    match load(None) {
        Ok(fd) => Ok(fd),
        Err(error) => {
            let mut buf = vec![0u8; 64 * 1024];
            let log = match load(Some(&mut buf)) {
                Ok(_) => String::new(),
                Err(_) => {
                    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                    String::from_utf8_lossy(&buf[..end]).trim().to_string()
                }
            };
            Err(LoadError { error, log })
        }
    }
}

/// Attaches a device program to the cgroup directory `cgroup` (`BPF_F_ALLOW_MULTI`, so
/// programs of the parents and a program being replaced keep applying).
pub fn attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detaches one device program from the cgroup directory `cgroup`.
pub fn detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// Ids of the device programs attached to the cgroup directory `cgroup` itself (not its
/// parents').
pub fn attached(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; MAX_PROGS];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// A descriptor for the loaded program `id`.
pub fn prog_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(owned)
}

/// Detaches every device program of `cgroup` whose id is in `ids`.
pub fn detach_ids(cgroup: impl AsFd, ids: &[u32]) -> io::Result<()> {
    for id in ids {
        let prog = match prog_by_id(*id) {
            Ok(p) => p,
            // Gone meanwhile: nothing to detach.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        match detach(cgroup.as_fd(), prog.as_fd()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
