//! The OCI runtime bundle of a container: the effective configuration turned into
//! `config.json` (oci-spec builders, Docker's defaults from `berth_shim::spec`), plus the
//! `hostname`, `hosts` and `resolv.conf` files the spec binds into the container.
//!
//! The same bundle runs under `runc run` unchanged: every default is written out (mounts,
//! capabilities, masked paths, device rules), bind sources are relative to the bundle, and
//! limits the host would refuse (an rlimit above the engine's own hard limit) are clamped
//! here with a warning instead of failing at start.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use berth_proto::engine::v1::{ContainerConfig, Ulimit};
use berth_shim::spec as defaults;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use super::user::Resolved;
use crate::error::{Error, Result};

use super::seccomp;

/// Tasks a container may have when `--pids-limit` is not given (Docker has no limit; a
/// fork bomb in one container should not take the host down).
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// RLIMIT_NOFILE of a container without `--ulimit nofile` (what Docker's containers inherit
/// from dockerd), lowered to the host's hard limit.
pub const DEFAULT_NOFILE: u64 = 1_048_576;

/// Smallest memory limit (Docker's).
pub const MIN_MEMORY: i64 = 6 << 20;

/// Every capability, for `--privileged` and `--cap-add ALL`.
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Facts about the host that shape the spec.
#[derive(Debug, Clone)]
pub struct Host {
    /// The engine's hard limit per resource (RLIMIT_* number → hard limit); a container's
    /// limit above it would be refused by runc (and by the kernel without CAP_SYS_RESOURCE).
    pub hard_limits: Vec<(PosixRlimitType, u64)>,
    /// Online CPUs.
    pub cpus: u32,
    /// The memory controller can limit swap (cgroup v1 `memory.memsw.*`, or v2).
    pub swap_limit: bool,
    /// What seccomp profiles are rendered for (architecture, kernel version).
    pub seccomp: seccomp::Target,
}

fn resource_of(t: PosixRlimitType) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    Some(match t {
        PosixRlimitType::RlimitCpu => R::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => R::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => R::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => R::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => R::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => R::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => R::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => R::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => R::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => R::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => R::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => R::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => R::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => R::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => R::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => R::RLIMIT_RTTIME,
    })
}

const RLIMITS: [(&str, PosixRlimitType); 16] = [
    ("cpu", PosixRlimitType::RlimitCpu),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("data", PosixRlimitType::RlimitData),
    ("stack", PosixRlimitType::RlimitStack),
    ("core", PosixRlimitType::RlimitCore),
    ("rss", PosixRlimitType::RlimitRss),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("as", PosixRlimitType::RlimitAs),
    ("locks", PosixRlimitType::RlimitLocks),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
];

impl Host {
    /// Reads the facts of this host.
    pub fn detect() -> Host {
        let hard_limits = RLIMITS
            .iter()
            .filter_map(|(_, t)| {
                let (_, hard) = nix::sys::resource::getrlimit(resource_of(*t)?).ok()?;
                Some((*t, hard))
            })
            .collect();
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let cg = Path::new("/sys/fs/cgroup");
        let swap_limit = cg.join("memory/memory.memsw.limit_in_bytes").exists()
            || cg.join("cgroup.controllers").exists();
        Host {
            hard_limits,
            cpus,
            swap_limit,
            seccomp: seccomp::Target::detect(),
        }
    }

    fn hard_limit(&self, t: PosixRlimitType) -> Option<u64> {
        self.hard_limits
            .iter()
            .find(|(x, _)| *x == t)
            .map(|(_, h)| *h)
    }
}

/// Everything the spec is made of.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Container id.
    pub id: &'a str,
    /// The effective configuration.
    pub config: &'a ContainerConfig,
    /// Entrypoint + cmd.
    pub argv: &'a [String],
    /// The resolved user.
    pub user: &'a Resolved,
    /// Host facts.
    pub host: &'a Host,
}

/// The spec and the warnings to give the user.
#[derive(Debug)]
pub struct Built {
    /// config.json.
    pub spec: Spec,
    /// Warnings, e.g. limits lowered to what the host allows.
    pub warnings: Vec<String>,
}

fn invalid(e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Parses a capability name as Docker accepts it ("NET_ADMIN", "cap_net_admin").
pub fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>()
        .map_err(|_| invalid(format!("unknown capability: \"{name}\"")))
}

fn all_capabilities() -> Capabilities {
    ALL_CAPABILITIES
        .iter()
        .filter_map(|c| c.parse::<Capability>().ok())
        .collect()
}

/// Docker's capability arithmetic: privileged → all; `--cap-add ALL` → all but the
/// dropped ones; `--cap-drop ALL` → only the added ones; else default − drop + add.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<Capabilities> {
    if privileged {
        return Ok(all_capabilities());
    }
    let is_all = |v: &String| v.eq_ignore_ascii_case("ALL");
    let parse = |v: &[String]| -> Result<Vec<Capability>> {
        v.iter()
            .filter(|c| !is_all(c))
            .map(|c| parse_capability(c))
            .collect()
    };
    let (adds, drops) = (parse(add)?, parse(drop)?);
    let mut out: Capabilities = if add.iter().any(is_all) {
        all_capabilities()
            .into_iter()
            .filter(|c| !drops.contains(c))
            .collect()
    } else if drop.iter().any(is_all) {
        HashSet::new()
    } else {
        defaults::DEFAULT_CAPABILITIES
            .into_iter()
            .filter(|c| !drops.contains(c))
            .collect()
    };
    out.extend(adds);
    Ok(out)
}

/// What `--security-opt` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// `no-new-privileges` (berth's default is true).
    pub no_new_privileges: bool,
    /// The seccomp profile.
    pub seccomp: seccomp::Choice,
}

/// `--security-opt`. Options berth does not implement are refused; "apparmor=unconfined"
/// and "label=disable" describe what berth does anyway and are accepted.
pub fn security_options(opts: &[String]) -> Result<Security> {
    let mut nnp = true;
    let mut profile = seccomp::Choice::Default;
    for o in opts {
        let (k, v) = o
            .split_once('=')
            .or_else(|| o.split_once(':'))
            .unwrap_or((o.as_str(), ""));
        match (k, v) {
            ("no-new-privileges", "" | "true") => nnp = true,
            ("no-new-privileges", "false") => nnp = false,
            ("seccomp", v) => profile = seccomp::Choice::parse(v)?,
            ("apparmor", "unconfined") | ("label", "disable") => {}
            _ => {
                return Err(invalid(format!(
                    "security option {o:?} is not supported (berth supports \
                     no-new-privileges[=true|false], seccomp=unconfined|builtin|<profile>, \
                     apparmor=unconfined, label=disable)"
                )))
            }
        }
    }
    Ok(Security {
        no_new_privileges: nnp,
        seccomp: profile,
    })
}

fn rlimit(t: PosixRlimitType, soft: u64, hard: u64) -> Result<PosixRlimit> {
    PosixRlimitBuilder::default()
        .typ(t)
        .soft(soft)
        .hard(hard)
        .build()
        .map_err(invalid)
}

/// `--ulimit` values (and the default NOFILE) as rlimits, lowered to the engine's own hard
/// limits.
fn rlimits(
    ulimits: &[Ulimit],
    host: &Host,
    warnings: &mut Vec<String>,
) -> Result<Vec<PosixRlimit>> {
    let value = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    let mut out: Vec<PosixRlimit> = Vec::new();
    let mut seen = HashSet::new();
    for u in ulimits {
        let name = u.name.trim().to_ascii_lowercase();
        let t = RLIMITS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| invalid(format!("invalid ulimit type: {}", u.name)))?;
        let (mut soft, mut hard) = (value(u.soft), value(u.hard));
        if soft > hard {
            return Err(invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
        if let Some(max) = host.hard_limit(t).filter(|m| hard > *m) {
            warnings.push(format!(
                "ulimit {name}={}:{} is above this host's hard limit {max}: lowered to {}:{max}",
                u.soft,
                u.hard,
                soft.min(max)
            ));
            hard = max;
            soft = soft.min(max);
        }
        seen.insert(name);
        out.retain(|r| r.typ() != t);
        out.push(rlimit(t, soft, hard)?);
    }
    if !seen.contains("nofile") {
        let max = host
            .hard_limit(PosixRlimitType::RlimitNofile)
            .unwrap_or(DEFAULT_NOFILE)
            .min(DEFAULT_NOFILE);
        out.push(rlimit(PosixRlimitType::RlimitNofile, max, max)?);
    }
    Ok(out)
}

/// `--cpuset-cpus`: "0-3", "0,2", "1-2,5"; every CPU must exist.
pub fn check_cpuset(set: &str, cpus: u32) -> Result<()> {
    let bad = || invalid(format!("invalid value {set:?} for cpuset cpus"));
    for part in set.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        if b >= cpus {
            return Err(invalid(format!(
                "Requested CPUs are not available - requested {set}, available: 0-{}",
                cpus.saturating_sub(1)
            )));
        }
    }
    Ok(())
}

fn resources(
    c: &ContainerConfig,
    host: &Host,
    warnings: &mut Vec<String>,
) -> Result<oci_spec::runtime::LinuxResources> {
    let mut devices = defaults::default_device_rules().map_err(invalid)?;
    if c.privileged {
        devices = vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(oci_spec::runtime::LinuxDeviceType::A)
            .access("rwm")
            .build()
            .map_err(invalid)?];
    }
    let mut b = LinuxResourcesBuilder::default().devices(devices);

    if c.memory < 0 || c.memory_swap < -1 {
        return Err(invalid("memory limits must not be negative"));
    }
    if c.memory_swap != 0 && c.memory == 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if c.memory > 0 {
        let memory = c.memory;
        if memory < MIN_MEMORY {
            return Err(invalid("Minimum memory limit allowed is 6MB"));
        }
        let mut m = LinuxMemoryBuilder::default().limit(memory);
        let swap = match c.memory_swap {
            0 => Some(memory.saturating_mul(2)),
            -1 => Some(-1),
            s if s < memory => {
                return Err(invalid(
                    "Minimum memoryswap limit should be larger than memory limit, see usage",
                ))
            }
            s => Some(s),
        };
        if host.swap_limit {
            if let Some(s) = swap {
                m = m.swap(s);
            }
        } else if c.memory_swap != 0 {
            warnings.push(
                "Your kernel does not support swap limit capabilities or the cgroup is not \
                 mounted. Memory limited without swap."
                    .into(),
            );
        }
        b = b.memory(m.build().map_err(invalid)?);
    }

    let mut cpu = LinuxCpuBuilder::default();
    let mut any_cpu = false;
    if c.nano_cpus < 0 {
        return Err(invalid("--cpus must not be negative"));
    }
    if c.nano_cpus > 0 {
        // Below 0.01 the CFS quota would be under the kernel's 1 ms minimum.
        if !(10_000_000..=host.cpus as i64 * 1_000_000_000).contains(&c.nano_cpus) {
            return Err(invalid(format!(
                "Range of CPUs is from 0.01 to {}.00, as there are only {} CPUs available",
                host.cpus, host.cpus
            )));
        }
        if let Some((quota, period)) = defaults::cpus_to_cfs(c.nano_cpus as f64 / 1e9) {
            cpu = cpu.quota(quota).period(period);
            any_cpu = true;
        }
    }
    if c.cpu_shares < 0 {
        return Err(invalid("--cpu-shares must not be negative"));
    }
    if c.cpu_shares > 0 {
        let shares = c.cpu_shares.clamp(2, 262_144) as u64;
        if shares as i64 != c.cpu_shares {
            warnings.push(format!(
                "cpu shares {} out of range 2-262144: set to {shares}",
                c.cpu_shares
            ));
        }
        cpu = cpu.shares(shares);
        any_cpu = true;
    }
    if !c.cpuset_cpus.is_empty() {
        check_cpuset(&c.cpuset_cpus, host.cpus)?;
        cpu = cpu.cpus(c.cpuset_cpus.clone());
        any_cpu = true;
    }
    if any_cpu {
        b = b.cpu(cpu.build().map_err(invalid)?);
    }

    let pids = match c.pids_limit {
        None => Some(DEFAULT_PIDS_LIMIT),
        Some(n) if n <= 0 => None,
        Some(n) => Some(n),
    };
    if let Some(limit) = pids {
        b = b.pids(
            LinuxPidsBuilder::default()
                .limit(limit)
                .build()
                .map_err(invalid)?,
        );
    }
    b.build().map_err(invalid)
}

/// Mounts of the container: the kernel filesystems, then the bundle's files.
fn mounts(privileged: bool) -> Result<Vec<Mount>> {
    let mut out = defaults::default_mounts().map_err(invalid)?;
    if privileged {
        // Docker gives privileged containers a writable /sys and cgroup view.
        for m in &mut out {
            let dest = m.destination().to_string_lossy().into_owned();
            if dest == "/sys" || dest == "/sys/fs/cgroup" {
                let opts: Vec<String> = m
                    .options()
                    .iter()
                    .flatten()
                    .filter(|o| *o != "ro")
                    .cloned()
                    .collect();
                m.set_options(Some(opts));
            }
        }
    }
    for (file, dest) in [
        ("hostname", "/etc/hostname"),
        ("hosts", "/etc/hosts"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        // Relative to the bundle, as runc reads bind sources: the bundle can move.
        out.push(defaults::bundle_file_mount(Path::new(file), dest).map_err(invalid)?);
    }
    Ok(out)
}

/// Every device node under the host's `dir` (`/dev`), as the container's `/dev` of a
/// privileged container (Docker gives it the host's devices). Left out, as runc and
/// containerd leave them out: the directories the container has its own of (`pts`, `shm`,
/// `mqueue`, `fd`) or that hold tooling state, the console, `ptmx` (a link to the
/// container's own devpts), and whatever is not a device node (links included).
pub fn host_devices(dir: &Path) -> Result<Vec<LinuxDevice>> {
    let mut out = Vec::new();
    add_devices(dir, Path::new("/dev"), &mut out)?;
    out.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(out)
}

fn add_devices(host: &Path, container: &Path, out: &mut Vec<LinuxDevice>) -> Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let io = |p: &Path, e| Error::io(format!("list host devices in {}", p.display()), e);
    for entry in std::fs::read_dir(host).map_err(|e| io(host, e))? {
        let entry = entry.map_err(|e| io(host, e))?;
        let name = entry.file_name();
        let (on_host, inside) = (host.join(&name), container.join(&name));
        // Not following links: a link is not a device, whatever it points to.
        let Ok(meta) = std::fs::symlink_metadata(&on_host) else {
            continue; // gone since the listing
        };
        let ft = meta.file_type();
        let skipped_dir = matches!(
            name.to_str(),
            Some("pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev")
        );
        if ft.is_dir() {
            if !skipped_dir {
                add_devices(&on_host, &inside, out)?;
            }
            continue;
        }
        if matches!(name.to_str(), Some("console" | "ptmx")) {
            continue;
        }
        let typ = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            continue;
        };
        let rdev = meta.rdev();
        out.push(
            LinuxDeviceBuilder::default()
                .path(inside)
                .typ(typ)
                .major(nix::sys::stat::major(rdev) as i64)
                .minor(nix::sys::stat::minor(rdev) as i64)
                .file_mode(meta.mode() & 0o7777)
                .uid(meta.uid())
                .gid(meta.gid())
                .build()
                .map_err(invalid)?,
        );
    }
    Ok(())
}

/// The process environment: the configuration's, plus PATH, HOSTNAME and HOME when unset.
pub fn process_env(c: &ContainerConfig, home: &str) -> Vec<String> {
    let mut env = Vec::with_capacity(c.env.len() + 3);
    if !super::options::has_env(&c.env, "PATH") {
        env.push(format!("PATH={}", defaults::DEFAULT_PATH_ENV));
    }
    env.push(format!("HOSTNAME={}", c.hostname));
    env.extend(
        c.env
            .iter()
            .filter(|e| !e.starts_with("HOSTNAME="))
            .cloned(),
    );
    if !super::options::has_env(&c.env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Builds config.json.
pub fn build(plan: &Plan<'_>) -> Result<Built> {
    let c = plan.config;
    let mut warnings = Vec::new();
    let caps = capabilities(c.privileged, &c.cap_add, &c.cap_drop)?;
    let security = security_options(&c.security_opt)?;
    let seccomp =
        seccomp::for_container(&security.seccomp, c.privileged, &caps, &plan.host.seccomp)?;
    let user = UserBuilder::default()
        .uid(plan.user.uid)
        .gid(plan.user.gid)
        .additional_gids(plan.user.additional_gids.clone())
        .build()
        .map_err(invalid)?;
    let cwd = if c.working_dir.is_empty() {
        "/".to_string()
    } else {
        c.working_dir.clone()
    };
    let process = ProcessBuilder::default()
        .terminal(c.tty)
        .args(plan.argv.to_vec())
        .env(process_env(c, &plan.user.home))
        .cwd(cwd)
        .user(user)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()
                .map_err(invalid)?,
        )
        .rlimits(rlimits(&c.ulimits, plan.host, &mut warnings)?)
        .no_new_privileges(security.no_new_privileges)
        .build()
        .map_err(invalid)?;
    let mut namespaces = defaults::default_namespaces();
    match c.network_mode.as_str() {
        "host" => namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network),
        "" | "none" => {}
        other => {
            return Err(invalid(format!(
                "network mode {other:?} is not supported yet (use none or host)"
            )))
        }
    }
    let (masked, readonly) = if c.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            defaults::DEFAULT_MASKED_PATHS.map(String::from).to_vec(),
            defaults::DEFAULT_READONLY_PATHS.map(String::from).to_vec(),
        )
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .cgroups_path(PathBuf::from("/berth").join(plan.id))
        .resources(resources(c, plan.host, &mut warnings)?);
    if let Some(s) = seccomp {
        linux = linux.seccomp(s);
    }
    if c.privileged {
        linux = linux.devices(host_devices(Path::new("/dev"))?);
    }
    let linux = linux.build().map_err(invalid)?;
    let spec = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(c.read_only)
                .build()
                .map_err(invalid)?,
        )
        .hostname(c.hostname.clone())
        .mounts(mounts(c.privileged)?)
        .process(process)
        .linux(linux)
        .annotations(
            [(
                "org.opencontainers.image.ref.name".to_string(),
                c.image.clone(),
            )]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .map_err(invalid)?;
    defaults::validate(&spec).map_err(invalid)?;
    Ok(Built { spec, warnings })
}

/// The container's /etc/hosts.
pub fn hosts_file(c: &ContainerConfig) -> Result<String> {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for h in &c.extra_hosts {
        let (name, ip) = h
            .split_once(':')
            .or_else(|| h.split_once('='))
            .ok_or_else(|| invalid(format!("invalid extra host {h:?}: expected name:ip")))?;
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(format!("invalid IP address in extra host {h:?}")));
        }
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// The container's /etc/resolv.conf: `--dns`/`--dns-search` when given, else the host's.
pub fn resolv_conf(c: &ContainerConfig) -> String {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    if c.dns.is_empty() && c.dns_search.is_empty() {
        return host;
    }
    let mut out = String::new();
    let servers: Vec<String> = if c.dns.is_empty() {
        host.lines()
            .filter(|l| l.starts_with("nameserver"))
            .map(String::from)
            .collect()
    } else {
        c.dns.iter().map(|d| format!("nameserver {d}")).collect()
    };
    for s in servers {
        out.push_str(&s);
        out.push('\n');
    }
    if !c.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", c.dns_search.join(" ")));
    }
    out
}

/// Writes the bundle into `dir` (which must exist): config.json, the bound files, and the
/// empty rootfs directory the snapshot is mounted on.
pub fn write(dir: &Path, built: &Built, c: &ContainerConfig) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("write {what} in {}", dir.display()), e);
    std::fs::create_dir_all(dir.join("rootfs")).map_err(|e| io("rootfs", e))?;
    std::fs::write(dir.join("hostname"), format!("{}\n", c.hostname))
        .map_err(|e| io("hostname", e))?;
    std::fs::write(dir.join("hosts"), hosts_file(c)?).map_err(|e| io("hosts", e))?;
    std::fs::write(dir.join("resolv.conf"), resolv_conf(c)).map_err(|e| io("resolv.conf", e))?;
    let json = serde_json::to_vec_pretty(&built.spec).map_err(|e| {
        io(
            "config.json",
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })?;
    std::fs::write(dir.join("config.json"), json).map_err(|e| io("config.json", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            hard_limits: vec![(PosixRlimitType::RlimitNofile, 20_000)],
            cpus: 2,
            swap_limit: true,
            seccomp: seccomp::Target::detect(),
        }
    }

    fn build_with(c: &ContainerConfig) -> Result<Built> {
        let user = Resolved {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![10],
            home: "/home/u".into(),
        };
        build(&Plan {
            id: "0123456789abcdef",
            config: c,
            argv: &["sh".to_string()],
            user: &user,
            host: &host(),
        })
    }

    fn base() -> ContainerConfig {
        ContainerConfig {
            image: "busybox".into(),
            hostname: "box".into(),
            env: vec!["A=1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_are_dockers() {
        let b = build_with(&base()).unwrap();
        let s = &b.spec;
        let p = s.process().as_ref().unwrap();
        let caps = p.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[10]);
        let env = p.env().as_ref().unwrap();
        assert!(env.iter().any(|e| e.starts_with("PATH=")));
        assert!(env.contains(&"HOSTNAME=box".to_string()));
        assert!(env.contains(&"HOME=/home/u".to_string()));
        assert_eq!(p.no_new_privileges(), Some(true));
        let nofile = p.rlimits().as_ref().unwrap();
        assert_eq!(nofile[0].hard(), 20_000, "clamped to the host");
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths().as_ref().unwrap().len(), 12);
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/berth/0123456789abcdef"))
        );
        let r = linux.resources().as_ref().unwrap();
        assert_eq!(r.pids().unwrap().limit(), DEFAULT_PIDS_LIMIT);
        assert!(r.memory().is_none());
        assert!(b.warnings.is_empty(), "{:?}", b.warnings);
        let json = serde_json::to_string(s).unwrap();
        assert!(json.contains("\"source\":\"hostname\""), "{json}");
    }

    #[test]
    fn limits_and_privileges() {
        let mut c = base();
        c.memory = 64 << 20;
        c.nano_cpus = 1_500_000_000;
        c.cpu_shares = 512;
        c.cpuset_cpus = "0-1".into();
        c.pids_limit = Some(-1);
        c.ulimits = vec![Ulimit {
            name: "nofile".into(),
            soft: 100_000,
            hard: 100_000,
        }];
        c.cap_add = vec!["net_admin".into()];
        c.cap_drop = vec!["CAP_CHOWN".into()];
        c.read_only = true;
        c.security_opt = vec!["no-new-privileges=false".into()];
        let b = build_with(&c).unwrap();
        let r = b
            .spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .clone()
            .unwrap();
        let m = r.memory().unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), Some(128 << 20)));
        let cpu = r.cpu().clone().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert!(r.pids().is_none());
        let p = b.spec.process().as_ref().unwrap();
        assert_eq!(p.rlimits().as_ref().unwrap()[0].hard(), 20_000);
        assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
        assert!(b.warnings[0].contains("hard limit 20000"));
        let caps = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(!caps.contains(&Capability::Chown));
        assert_eq!(p.no_new_privileges(), Some(false));
        assert!(b.spec.root().as_ref().unwrap().readonly().unwrap());

        let mut c = base();
        c.privileged = true;
        let b = build_with(&c).unwrap();
        let linux = b.spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().is_empty());
        let caps = b
            .spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 41);
    }

    #[test]
    fn bad_options_are_refused() {
        for f in [
            |c: &mut ContainerConfig| c.cap_add = vec!["CAP_NOPE".into()],
            |c: &mut ContainerConfig| c.security_opt = vec!["seccomp=profile.json".into()],
            |c: &mut ContainerConfig| c.memory_swap = 100,
            |c: &mut ContainerConfig| {
                c.memory = 64 << 20;
                c.memory_swap = 32 << 20;
            },
            |c: &mut ContainerConfig| c.nano_cpus = 3_000_000_000,
            |c: &mut ContainerConfig| c.cpuset_cpus = "0-7".into(),
            |c: &mut ContainerConfig| c.cpuset_cpus = "x".into(),
            |c: &mut ContainerConfig| {
                c.ulimits = vec![Ulimit {
                    name: "nofile".into(),
                    soft: 10,
                    hard: 5,
                }]
            },
            |c: &mut ContainerConfig| {
                c.ulimits = vec![Ulimit {
                    name: "bogus".into(),
                    soft: 1,
                    hard: 1,
                }]
            },
            |c: &mut ContainerConfig| c.network_mode = "bridge".into(),
        ] {
            let mut c = base();
            f(&mut c);
            let err = build_with(&c).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        }
    }

    #[test]
    fn capability_arithmetic() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            capabilities(false, &s(&["ALL"]), &s(&["SYS_ADMIN"]))
                .unwrap()
                .len(),
            40
        );
        assert_eq!(
            capabilities(false, &s(&["NET_RAW"]), &s(&["ALL"])).unwrap(),
            [Capability::NetRaw].into_iter().collect()
        );
        assert_eq!(capabilities(true, &[], &[]).unwrap().len(), 41);
    }

    #[test]
    fn seccomp_is_dockers_choice() {
        let seccomp_of = |c: &ContainerConfig| {
            build_with(c)
                .unwrap()
                .spec
                .linux()
                .as_ref()
                .unwrap()
                .seccomp()
                .clone()
        };
        let s = seccomp_of(&base()).expect("a default profile");
        assert_eq!(
            s.default_action(),
            oci_spec::runtime::LinuxSeccompAction::ScmpActErrno
        );
        let mut c = base();
        c.security_opt = vec!["seccomp=unconfined".into()];
        assert!(seccomp_of(&c).is_none());
        c.security_opt = vec![
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#
                .into(),
        ];
        let s = seccomp_of(&c).unwrap();
        assert_eq!(s.syscalls().as_ref().unwrap()[0].names(), &["mkdirat"]);
        c.security_opt = vec!["seccomp={\"defaultAction\":".into()];
        let err = build_with(&c).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.to_string().contains("seccomp profile"), "{err}");
        let mut c = base();
        c.privileged = true;
        assert!(seccomp_of(&c).is_none());
    }

    #[test]
    fn privileged_containers_get_the_hosts_devices() {
        let mut c = base();
        c.privileged = true;
        let b = build_with(&c).unwrap();
        let devices = b.spec.linux().as_ref().unwrap().devices().clone().unwrap();
        let null = devices
            .iter()
            .find(|d| d.path() == Path::new("/dev/null"))
            .expect("/dev/null");
        assert_eq!((null.major(), null.minor()), (1, 3));
        assert!(devices
            .iter()
            .all(|d| d.path() != Path::new("/dev/ptmx") && !d.path().starts_with("/dev/pts")));
        let mounts = b.spec.mounts().clone().unwrap();
        let sys = mounts
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert!(!sys.options().iter().flatten().any(|o| o == "ro"));
        assert!(build_with(&base())
            .unwrap()
            .spec
            .linux()
            .as_ref()
            .unwrap()
            .devices()
            .is_none());
    }

    #[test]
    fn host_devices_are_found_and_links_are_not() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("input")).unwrap();
        std::fs::create_dir_all(d.join("pts")).unwrap();
        let node = |p: &Path, kind, major, minor| {
            nix::sys::stat::mknod(
                p,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(0o620),
                nix::sys::stat::makedev(major, minor),
            )
            .unwrap()
        };
        use nix::sys::stat::SFlag;
        node(&d.join("zero"), SFlag::S_IFCHR, 1, 5);
        std::fs::set_permissions(
            d.join("zero"),
            std::os::unix::fs::PermissionsExt::from_mode(0o620),
        )
        .unwrap();
        node(&d.join("input/event0"), SFlag::S_IFCHR, 13, 64);
        node(&d.join("loop9"), SFlag::S_IFBLK, 7, 9);
        node(&d.join("pts/0"), SFlag::S_IFCHR, 136, 0);
        node(&d.join("console"), SFlag::S_IFCHR, 5, 1);
        std::os::unix::fs::symlink("/dev/sda", d.join("disk")).unwrap();
        std::fs::write(d.join("plain"), "").unwrap();
        let found = host_devices(d).unwrap();
        let paths: Vec<&Path> = found.iter().map(|x| x.path().as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/dev/input/event0"),
                Path::new("/dev/loop9"),
                Path::new("/dev/zero")
            ]
        );
        assert_eq!(found[1].typ(), LinuxDeviceType::B);
        assert_eq!((found[1].major(), found[1].minor()), (7, 9));
        assert_eq!(found[2].file_mode(), Some(0o620));
    }

    #[test]
    fn limits_below_the_kernels_minimums_are_refused_as_docker_does() {
        let mut c = base();
        c.memory = 1 << 20;
        assert!(build_with(&c).unwrap_err().to_string().contains("6MB"));
        c.memory = 6 << 20;
        assert!(build_with(&c).is_ok());
        c.nano_cpus = 9_000_000;
        assert!(build_with(&c)
            .unwrap_err()
            .to_string()
            .contains("Range of CPUs is from 0.01"));
        c.nano_cpus = 10_000_000;
        assert!(build_with(&c).is_ok());
    }

    #[test]
    fn hosts_and_resolv() {
        let mut c = base();
        c.extra_hosts = vec!["db:10.0.0.2".into()];
        assert!(hosts_file(&c).unwrap().ends_with("10.0.0.2\tdb\n"));
        c.extra_hosts = vec!["db:nope".into()];
        assert!(hosts_file(&c).is_err());
        c.dns = vec!["192.0.2.1".into()];
        c.dns_search = vec!["example.com".into()];
        assert_eq!(
            resolv_conf(&c),
            "nameserver 192.0.2.1\nsearch example.com\n"
        );
    }
}
