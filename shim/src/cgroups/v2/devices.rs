//! The device allowlist on cgroup v2, which has no devices controller: the spec's rules
//! become a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to the container's cgroup.
//!
//! Meaning of a rule list (the v1 controller's, read as an ordered list): for each access
//! bit asked for (r, w, m) the *last* rule that matches the device and names that bit
//! decides; a bit no rule decides is denied. A deny of all of rwm also refuses the
//! access-less check the kernel makes for `access(2)`, as v1 does. The program walks the
//! rules from the last to the first and returns at the first rule that settles it.
//!
//! The kernel runs the program with `struct bpf_cgroup_dev_ctx { u32 access_type; u32
//! major; u32 minor; }`, where `access_type` is `access << 16 | type`.

use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::bpf::{self, Insn, R0, R1, R2, R3, R4, R5};
use crate::error::{Error, Result};

/// `BPF_DEVCG_DEV_*`.
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
/// `BPF_DEVCG_ACC_*`.
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// A jump to the end of the rule's block, patched once the block is complete.
const TO_NEXT_RULE: i16 = i16::MIN;

/// One OCI rule in the terms of `bpf_cgroup_dev_ctx`; `None` matches anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub allow: bool,
    pub typ: Option<u32>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

impl Rule {
    pub fn parse(d: &LinuxDeviceCgroup) -> Result<Rule> {
        let typ =
            match d.typ().unwrap_or_default() {
                LinuxDeviceType::A => None,
                LinuxDeviceType::B => Some(DEV_BLOCK),
                LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
                LinuxDeviceType::P => return Err(Error::Cgroup(
                    "device rule of type 'p': a fifo is not a device the device cgroup controls"
                        .into(),
                )),
            };
        let access_text = d.access().as_deref().unwrap_or("rwm");
        let bad = || {
            Error::Cgroup(format!(
                "device rule access {access_text:?} is not a subset of rwm"
            ))
        };
        let mut access = 0;
        for c in access_text.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return Err(bad()),
            };
        }
        if access == 0 {
            return Err(bad());
        }
        Ok(Rule {
            allow: d.allow(),
            typ,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            access,
        })
    }

    /// Whether the rule covers every device and every access: nothing before it matters.
    fn is_everything(&self) -> bool {
        self.typ.is_none() && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }
}

/// A major or minor; negative means any. Values are compared as 32-bit immediates that the
/// kernel sign-extends, and no device number comes near 2^31 (majors have 12 bits,
/// minors 20), so larger ones are refused rather than silently never matching.
fn number(n: Option<i64>, what: &str) -> Result<Option<u32>> {
    match n {
        None => Ok(None),
        Some(v) if v < 0 => Ok(None),
        Some(v) if v <= i32::MAX as i64 => Ok(Some(v as u32)),
        Some(v) => Err(Error::Cgroup(format!(
            "device rule {what} number {v} is out of range"
        ))),
    }
}

/// The program for `rules` (OCI order: later rules win).
pub(crate) fn program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let rules = rules.iter().map(Rule::parse).collect::<Result<Vec<_>>>()?;
    Ok(encode(&rules))
}

pub(crate) fn encode(rules: &[Rule]) -> Vec<Insn> {
    // Docker's list starts with "deny a *:* rwm": such a rule settles every access not
    // settled by a later rule, so it becomes the default and what precedes it is dropped.
    let (default_allow, rules) = match rules.iter().rposition(Rule::is_everything) {
        Some(i) => (rules[i].allow, &rules[i + 1..]),
        None => (false, rules),
    };
    let mut p = vec![
        Insn::load_u32(R2, R1, 0),
        Insn::load_u32(R4, R1, 4),
        Insn::load_u32(R5, R1, 8),
        // r3: the access bits not yet settled; r2: the device type.
        Insn::mov32(R3, R2),
        Insn::rsh32_imm(R3, 16),
        Insn::and32_imm(R2, 0xffff),
    ];
    for r in rules.iter().rev() {
        p.extend(block(r));
    }
    p.push(Insn::mov64_imm(R0, i32::from(default_allow)));
    p.push(Insn::exit());
    p
}

/// One rule: jumps past itself when it does not match or settles nothing, returns when
/// it settles the access.
fn block(r: &Rule) -> Vec<Insn> {
    let mut b = Vec::new();
    if let Some(t) = r.typ {
        b.push(Insn::jne_imm(R2, t as i32, TO_NEXT_RULE));
    }
    if let Some(m) = r.major {
        b.push(Insn::jne_imm(R4, m as i32, TO_NEXT_RULE));
    }
    if let Some(m) = r.minor {
        b.push(Insn::jne_imm(R5, m as i32, TO_NEXT_RULE));
    }
    if r.access != ACC_ALL && r.allow {
        // Granted bits are settled; the rest is left to earlier rules.
        b.push(Insn::and32_imm(R3, !r.access));
        b.push(Insn::jne_imm(R3, 0, TO_NEXT_RULE));
    } else if r.access != ACC_ALL {
        // Refused only when it names a bit still asked for.
        b.push(Insn::mov32(R1, R3));
        b.push(Insn::and32_imm(R1, r.access));
        b.push(Insn::jeq_imm(R1, 0, TO_NEXT_RULE));
    }
    b.push(Insn::mov64_imm(R0, i32::from(r.allow)));
    b.push(Insn::exit());
    let len = b.len();
    for (i, insn) in b.iter_mut().enumerate() {
        if insn.is_cond_jump() && insn.off == TO_NEXT_RULE {
            *insn = insn.with_off((len - i - 1) as i16);
        }
    }
    b
}

/// Enforces `rules` on the cgroup v2 directory `dir`: attaches their program, then
/// detaches the programs attached there before (a second apply replaces the first one,
/// with no moment where neither applies). The program lives as long as the cgroup: the
/// kernel detaches it when the directory is removed.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let insns = program(rules)?;
    let cgroup = std::fs::File::open(dir)
        .map_err(|e| Error::Cgroup(format!("open {}: {e}", dir.display())))?;
    let fs = nix::sys::statfs::fstatfs(&cgroup)
        .map_err(|e| Error::Cgroup(format!("statfs {}: {e}", dir.display())))?;
    if fs.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(Error::Cgroup(format!(
            "{} is not a cgroup2 directory: device rules need an eBPF program attached to a cgroup v2",
            dir.display()
        )));
    }
    let previous = bpf::attached(cgroup.as_fd()).map_err(|e| {
        Error::Cgroup(format!(
            "list the device programs of {}: {e}",
            dir.display()
        ))
    })?;
    let prog = bpf::load_device_program(&insns).map_err(|e| {
        let log = if e.log.is_empty() {
            String::new()
        } else {
            format!("; verifier: {}", e.log)
        };
        Error::Cgroup(format!(
            "load the device program ({} instructions) for {}: {}{log}",
            insns.len(),
            dir.display(),
            e.error
        ))
    })?;
    bpf::attach(cgroup.as_fd(), prog.as_fd()).map_err(|e| {
        Error::Cgroup(format!(
            "attach the device program to {}: {e}",
            dir.display()
        ))
    })?;
    bpf::detach_ids(&cgroup, &previous).map_err(|e| {
        Error::Cgroup(format!(
            "detach the previous device program of {}: {e}",
            dir.display()
        ))
    })?;
    tracing::debug!(
        cgroup = %dir.display(),
        rules = rules.len(),
        instructions = insns.len(),
        replaced = previous.len(),
        "device program attached"
    );
    Ok(())
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
