//! The OCI runtime bundle: the contract between the engine and the shim.
//!
//! The engine writes `config.json` (built with `oci-spec`) and a rootfs; the shim loads
//! and validates it here before touching the kernel, so a bad bundle fails with a message
//! naming the field instead of failing halfway through container start. A bundle that
//! passes here must also run under `runc run` unchanged: the defaults below are Docker's,
//! written out in full (devices, capabilities, masked paths) rather than left implicit.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxNamespace,
    LinuxNamespaceType, Mount, MountBuilder, Process, Spec,
};

use crate::error::{Error, Result};

/// Largest uid/gid the shim accepts. Ids are `u32` in the kernel ABI, but `-1`
/// (4294967295) means "leave unchanged" to `setresuid`, and tools treat ids above
/// `i32::MAX` as negative: refusing them means an id never silently wraps to another one.
pub const MAX_ID: u32 = i32::MAX as u32;

/// `PATH` used when the spec's environment has none (Docker's and runc's default).
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A loaded and validated bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
    /// The container's root filesystem directory on the host, absolute.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `<dir>/config.json` and validates it.
    pub fn load(dir: &Path) -> Result<Bundle> {
        let dir = std::path::absolute(dir)
            .map_err(|e| Error::io(format!("bundle path {}", dir.display()), e))?;
        let spec = Spec::load(dir.join("config.json")).map_err(|source| Error::LoadSpec {
            bundle: dir.clone(),
            source,
        })?;
        Bundle::from_spec(&dir, spec)
    }

    /// Validates an in-memory spec for the bundle at `dir` (used by tests and by callers
    /// that built the spec themselves).
    pub fn from_spec(dir: &Path, spec: Spec) -> Result<Bundle> {
        validate(&spec)?;
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::invalid("root is missing"))?;
        let rootfs = dir.join(root.path());
        Ok(Bundle {
            dir: dir.to_path_buf(),
            spec,
            rootfs,
        })
    }

    /// Resolves a mount source the way runc does: relative sources are relative to the
    /// bundle directory.
    pub fn resolve_source(&self, source: &Path) -> PathBuf {
        if source.is_absolute() {
            source.to_path_buf()
        } else {
            self.dir.join(source)
        }
    }
}

fn has_nul(s: &str) -> bool {
    s.as_bytes().contains(&0)
}

/// True when `path` is absolute and has no `..` component: every container path the shim
/// resolves inside the rootfs must name one place, without lexical tricks.
fn is_clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path.components().all(|c| {
            matches!(
                c,
                Component::RootDir | Component::Normal(_) | Component::CurDir
            )
        })
        && !has_nul(&path.to_string_lossy())
}

/// Checks everything the shim relies on before it forks. Unsupported features are
/// refused rather than ignored, so a spec never runs with less isolation than it asked for.
pub fn validate(spec: &Spec) -> Result<()> {
    if !spec.version().starts_with("1.") {
        return Err(Error::invalid(format!(
            "ociVersion {:?} is not a 1.x runtime spec",
            spec.version()
        )));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root is missing"))?;
    if root.path().as_os_str().is_empty() {
        return Err(Error::invalid("root.path is empty"));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process is missing"))?;
    validate_process(process)?;
    validate_container(spec)
}

/// Checks an OCI `process` object: the init's, or an exec process's.
pub fn validate_process(process: &Process) -> Result<()> {
    let args = process.args().as_deref().unwrap_or_default();
    match args.first() {
        None => return Err(Error::invalid("process.args is empty")),
        Some(a) if a.is_empty() => return Err(Error::invalid("process.args[0] is empty")),
        Some(_) => {}
    }
    if args.iter().any(|a| has_nul(a)) {
        return Err(Error::invalid("process.args contains a NUL byte"));
    }
    for e in process.env().as_deref().unwrap_or_default() {
        if has_nul(e) || !e.contains('=') || e.starts_with('=') {
            return Err(Error::invalid(format!(
                "process.env entry {e:?} is not NAME=VALUE"
            )));
        }
    }
    if !is_clean_absolute(process.cwd()) {
        return Err(Error::invalid(format!(
            "process.cwd {:?} must be an absolute path without '..'",
            process.cwd()
        )));
    }
    let user = process.user();
    let ids = [user.uid(), user.gid()]
        .into_iter()
        .chain(user.additional_gids().iter().flatten().copied());
    for id in ids {
        if id > MAX_ID {
            return Err(Error::invalid(format!(
                "user/group id {id} is above {MAX_ID}; refusing rather than wrapping"
            )));
        }
    }
    if let Some(umask) = user.umask() {
        if umask > 0o777 {
            return Err(Error::invalid(format!(
                "umask {umask:o} is not a file mode"
            )));
        }
    }
    Ok(())
}

/// The container-wide part of [`validate`].
fn validate_container(spec: &Spec) -> Result<()> {
    if let Some(hooks) = spec.hooks() {
        let any = hooks.prestart().as_ref().is_some_and(|h| !h.is_empty())
            || hooks
                .create_runtime()
                .as_ref()
                .is_some_and(|h| !h.is_empty())
            || hooks
                .create_container()
                .as_ref()
                .is_some_and(|h| !h.is_empty())
            || hooks
                .start_container()
                .as_ref()
                .is_some_and(|h| !h.is_empty())
            || hooks.poststart().as_ref().is_some_and(|h| !h.is_empty())
            || hooks.poststop().as_ref().is_some_and(|h| !h.is_empty());
        if any {
            return Err(Error::invalid("hooks are not supported"));
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !is_clean_absolute(m.destination()) {
            return Err(Error::invalid(format!(
                "mount destination {:?} must be an absolute path without '..'",
                m.destination()
            )));
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(Error::invalid(format!(
                "mount {}: id-mapped mounts are not supported",
                m.destination().display()
            )));
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux is missing"))?;
    let mut seen = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(Error::invalid(format!(
                "namespace {} listed twice",
                ns.typ()
            )));
        }
        match ns.typ() {
            LinuxNamespaceType::User => {
                return Err(Error::invalid("user namespaces are not supported yet"))
            }
            LinuxNamespaceType::Time => {
                return Err(Error::invalid("time namespaces are not supported"))
            }
            _ => {}
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::invalid(format!(
                    "namespace {} path {p:?} is not absolute",
                    ns.typ()
                )));
            }
            if ns.typ() == LinuxNamespaceType::Mount {
                return Err(Error::invalid(
                    "joining an existing mount namespace is not supported: the shim builds the rootfs in a new one",
                ));
            }
        }
    }
    let private = |t: LinuxNamespaceType| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    let joined_or_private =
        |t: LinuxNamespaceType| linux.namespaces().iter().flatten().any(|n| n.typ() == t);
    if !private(LinuxNamespaceType::Mount) {
        return Err(Error::invalid(
            "a new mount namespace is required (the rootfs is mounted inside it)",
        ));
    }
    if (spec.hostname().is_some() || spec.domainname().is_some())
        && !joined_or_private(LinuxNamespaceType::Uts)
    {
        return Err(Error::invalid(
            "hostname/domainname need a uts namespace: without one they would change the host's",
        ));
    }
    for name in [spec.hostname(), spec.domainname()].into_iter().flatten() {
        if name.len() > 64 || has_nul(name) {
            return Err(Error::invalid(format!(
                "host/domain name {name:?} is invalid"
            )));
        }
    }
    if linux.uid_mappings().is_some() || linux.gid_mappings().is_some() {
        return Err(Error::invalid(
            "uid/gid mappings need user namespaces: not supported yet",
        ));
    }
    if let Some(seccomp) = linux.seccomp() {
        crate::seccomp::validate(seccomp)?;
    }
    for p in linux
        .masked_paths()
        .iter()
        .flatten()
        .chain(linux.readonly_paths().iter().flatten())
    {
        if !is_clean_absolute(Path::new(p)) {
            return Err(Error::invalid(format!(
                "masked/readonly path {p:?} must be absolute without '..'"
            )));
        }
    }
    for d in linux.devices().iter().flatten() {
        if !is_clean_absolute(d.path()) || !d.path().starts_with("/dev") {
            return Err(Error::invalid(format!(
                "device path {:?} must be an absolute path under /dev",
                d.path()
            )));
        }
        if matches!(d.typ(), LinuxDeviceType::A) {
            return Err(Error::invalid(format!(
                "device {:?}: type 'a' is not a device node type",
                d.path()
            )));
        }
        if !(0..=u32::MAX as i64).contains(&d.major())
            || !(0..=u32::MAX as i64).contains(&d.minor())
        {
            return Err(Error::invalid(format!(
                "device {:?}: major/minor out of range",
                d.path()
            )));
        }
    }
    if let Some(p) = linux.cgroups_path() {
        if p.components().any(|c| matches!(c, Component::ParentDir))
            || has_nul(&p.to_string_lossy())
        {
            return Err(Error::invalid(format!(
                "cgroupsPath {p:?} must not contain '..'"
            )));
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if crate::rootfs::options::propagation_flag(prop).is_none() {
            return Err(Error::invalid(format!(
                "rootfsPropagation {prop:?} is unknown"
            )));
        }
    }
    for key in linux.sysctl().iter().flat_map(|m| m.keys()) {
        validate_sysctl(key, &private)?;
    }
    Ok(())
}

/// Only namespaced sysctls are allowed, and only when the container has its own namespace
/// for them: otherwise writing one would change the host.
fn validate_sysctl(key: &str, private: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    if key.is_empty() || key.contains("..") || key.starts_with('/') || has_nul(key) {
        return Err(Error::invalid(format!("sysctl {key:?} is malformed")));
    }
    let k = key.replace('/', ".");
    let ipc = matches!(
        k.as_str(),
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
    ) || k.starts_with("fs.mqueue.");
    if ipc {
        if private(LinuxNamespaceType::Ipc) {
            return Ok(());
        }
        return Err(Error::invalid(format!(
            "sysctl {key}: needs a new ipc namespace"
        )));
    }
    if k.starts_with("net.") {
        if private(LinuxNamespaceType::Network) {
            return Ok(());
        }
        return Err(Error::invalid(format!(
            "sysctl {key}: needs a new network namespace"
        )));
    }
    if k == "kernel.domainname" || k == "kernel.hostname" {
        return Err(Error::invalid(format!(
            "sysctl {key}: set hostname/domainname in the spec instead"
        )));
    }
    Err(Error::invalid(format!("sysctl {key} is not namespaced")))
}

/// Docker's default capability set: what a container gets without `--cap-add/--cap-drop`.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Paths hidden from the container (Docker's list plus `/proc/interrupts`): files get
/// `/dev/null` bound over them, directories an empty read-only tmpfs.
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in the container.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The namespaces of a default container: everything but user and time. Network here is
/// a new, empty namespace (`--network none`).
pub fn default_namespaces() -> Vec<LinuxNamespace> {
    oci_spec::runtime::get_default_namespaces()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| Error::invalid(format!("building mount {dest}: {e}")))
}

/// The kernel filesystems of a default container, in mount order (runc's and Docker's
/// defaults; `/sys` and the cgroup view are read-only).
pub fn default_mounts() -> Result<Vec<Mount>> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

/// A read-only bind of a file the engine wrote into the bundle (`hostname`, `hosts`,
/// `resolv.conf`) onto a path in the container.
pub fn bundle_file_mount(source: &Path, dest: &str) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string(), "rprivate".to_string()])
        .build()
        .map_err(|e| Error::invalid(format!("building mount {dest}: {e}")))
}

fn dev_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build()
        .map_err(|e| Error::invalid(format!("building device rule: {e}")))
}

/// The device cgroup allowlist of a default container: deny everything, then allow
/// `mknod` of any node and read/write of the standard devices the shim creates in `/dev`
/// (Docker's list, with the devices runc adds implicitly written out).
pub fn default_device_rules() -> Result<Vec<LinuxDeviceCgroup>> {
    use LinuxDeviceType::{B, C};
    let rwm = "rwm";
    Ok(vec![
        dev_rule(false, LinuxDeviceType::A, None, None, rwm)?,
        dev_rule(true, C, None, None, "m")?,
        dev_rule(true, B, None, None, "m")?,
        dev_rule(true, C, Some(1), Some(3), rwm)?, // null
        dev_rule(true, C, Some(1), Some(5), rwm)?, // zero
        dev_rule(true, C, Some(1), Some(7), rwm)?, // full
        dev_rule(true, C, Some(1), Some(8), rwm)?, // random
        dev_rule(true, C, Some(1), Some(9), rwm)?, // urandom
        dev_rule(true, C, Some(5), Some(0), rwm)?, // tty
        dev_rule(true, C, Some(5), Some(2), rwm)?, // ptmx
        dev_rule(true, C, Some(136), None, rwm)?,  // pts
        dev_rule(true, C, Some(10), Some(200), rwm)?, // tun
    ])
}

/// CFS quota and period for Docker's `--cpus`: a period of 100 ms and a quota of
/// `cpus` periods. `None` for `cpus <= 0` (no limit).
pub fn cpus_to_cfs(cpus: f64) -> Option<(i64, u64)> {
    const PERIOD: u64 = 100_000;
    if cpus.is_nan() || cpus <= 0.0 || !cpus.is_finite() {
        return None;
    }
    // 1 ms is the kernel's minimum quota.
    let quota = ((cpus * PERIOD as f64).round() as i64).max(1000);
    Some((quota, PERIOD))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, SpecBuilder, UserBuilder};

    fn spec_with(user_uid: u32, ns: Vec<LinuxNamespace>) -> Spec {
        SpecBuilder::default()
            .version("1.0.2")
            .root(RootBuilder::default().path("rootfs").build().unwrap())
            .process(
                ProcessBuilder::default()
                    .args(vec!["sh".to_string()])
                    .cwd("/")
                    .user(
                        UserBuilder::default()
                            .uid(user_uid)
                            .gid(0u32)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .linux(LinuxBuilder::default().namespaces(ns).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn default_like_spec_validates() {
        let s = spec_with(1000, default_namespaces());
        validate(&s).unwrap();
    }

    #[test]
    fn ids_above_i32_max_are_refused_not_wrapped() {
        let s = spec_with(u32::MAX, default_namespaces());
        let err = validate(&s).unwrap_err().to_string();
        assert!(err.contains("4294967295"), "{err}");
        let s = spec_with(MAX_ID + 1, default_namespaces());
        assert!(validate(&s).is_err());
        validate(&spec_with(MAX_ID, default_namespaces())).unwrap();
    }

    #[test]
    fn mount_namespace_is_required() {
        let ns = default_namespaces()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Mount)
            .collect();
        assert!(validate(&spec_with(0, ns)).is_err());
    }

    #[test]
    fn hostname_without_uts_is_refused() {
        let ns = default_namespaces()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Uts)
            .collect();
        let mut s = spec_with(0, ns);
        s.set_hostname(Some("box".into()));
        assert!(validate(&s).unwrap_err().to_string().contains("uts"));
    }

    #[test]
    fn relative_or_dotdot_destinations_are_refused() {
        for dest in ["etc/hosts", "/etc/../../hosts"] {
            let mut s = spec_with(0, default_namespaces());
            s.set_mounts(Some(vec![mount(dest, "tmpfs", "tmpfs", &[]).unwrap()]));
            assert!(validate(&s).is_err(), "{dest}");
        }
    }

    #[test]
    fn user_namespace_is_refused_clearly() {
        let mut ns = default_namespaces();
        ns.push(
            oci_spec::runtime::LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::User)
                .build()
                .unwrap(),
        );
        let err = validate(&spec_with(0, ns)).unwrap_err().to_string();
        assert!(err.contains("user namespaces"), "{err}");
    }

    #[test]
    fn sysctls_must_be_namespaced() {
        let mut s = spec_with(0, default_namespaces());
        let linux = s.linux_mut().as_mut().unwrap();
        linux.set_sysctl(Some([("net.ipv4.ip_forward".into(), "1".into())].into()));
        validate(&s).unwrap();
        let linux = s.linux_mut().as_mut().unwrap();
        linux.set_sysctl(Some([("kernel.panic".into(), "1".into())].into()));
        assert!(validate(&s).is_err());
    }

    #[test]
    fn cpus_convert_to_quota() {
        assert_eq!(cpus_to_cfs(1.5), Some((150_000, 100_000)));
        assert_eq!(cpus_to_cfs(0.0), None);
        assert_eq!(cpus_to_cfs(0.001), Some((1000, 100_000)));
    }

    #[test]
    fn defaults_round_trip_through_json() {
        let mut s = spec_with(0, default_namespaces());
        s.set_mounts(Some(default_mounts().unwrap()));
        let json = serde_json::to_string(&s).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        validate(&back).unwrap();
        assert_eq!(default_device_rules().unwrap()[0].to_string(), "a *:* rwm");
    }
}
