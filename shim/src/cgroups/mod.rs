//! Cgroups of a container: one trait, a cgroup v1 and a cgroup v2 implementation, picked
//! at run time from the host's layout (youki's `CgroupManager` habit). This module knows
//! nothing of containers: it creates a cgroup at a path, moves pids in, applies an OCI
//! `LinuxResources`, reads stats and removes the cgroup.
//!
//! On a *hybrid* host (v1 controllers, plus a v2 hierarchy without controllers at
//! `/sys/fs/cgroup/unified`, like the machines berth is tested on) the v1 controllers are
//! what limits anything, so hybrid uses the v1 manager.

mod fs;
pub mod v1;
pub mod v2;

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::Serialize;

use crate::error::{Error, Result};

pub use v1::V1Manager;
pub use v2::V2Manager;

/// `statfs` magic of cgroup2.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Where the cgroup filesystem is mounted by default.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// One cgroup v1 hierarchy as mounted on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// Its controllers (`memory`; `cpu`,`cpuacct`; `name=systemd`), comma-joined as the
    /// mount option that mounts the same hierarchy again.
    pub options: String,
}

impl V1Hierarchy {
    /// Whether this hierarchy carries `controller`.
    pub fn has(&self, controller: &str) -> bool {
        self.options.split(',').any(|c| c == controller)
    }

    /// The directory name used for it under the container's `/sys/fs/cgroup`.
    pub fn dir_name(&self) -> String {
        match self.options.strip_prefix("name=") {
            Some(name) => name.to_string(),
            None => self.options.clone(),
        }
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Pure cgroup v2, mounted at `root`.
    Unified {
        /// Mount point of cgroup2.
        root: PathBuf,
    },
    /// Cgroup v1 controllers (legacy, or hybrid when a controller-less v2 is also mounted).
    V1 {
        /// Whether a cgroup2 hierarchy is mounted as well.
        hybrid: bool,
        /// Every mounted v1 hierarchy.
        hierarchies: Vec<V1Hierarchy>,
    },
}

/// Controllers the v1 parser recognises (anything else in the super options is a mount
/// flag such as `clone_children`).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

impl Layout {
    /// Detects the host's layout: `statfs(/sys/fs/cgroup)` says cgroup2 (unified) or not;
    /// for v1 the hierarchies come from `/proc/self/mountinfo`.
    pub fn detect() -> Result<Layout> {
        let st = nix::sys::statfs::statfs(DEFAULT_ROOT)
            .map_err(|e| Error::sys(format!("statfs {DEFAULT_ROOT}"), e))?;
        if st.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC {
            return Ok(Layout::Unified {
                root: PathBuf::from(DEFAULT_ROOT),
            });
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
        Ok(Layout::from_mountinfo(&mountinfo))
    }

    /// Parses the v1 hierarchies out of a mountinfo text.
    pub fn from_mountinfo(mountinfo: &str) -> Layout {
        let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
        let mut hybrid = false;
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            match post[0] {
                "cgroup2" => hybrid = true,
                "cgroup" => {
                    let controllers: Vec<&str> = post[2]
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .collect();
                    // A bind of a sub-directory of a hierarchy is not the hierarchy.
                    if controllers.is_empty() || pre[3] != "/" {
                        continue;
                    }
                    let options = controllers.join(",");
                    if hierarchies.iter().any(|h| h.options == options) {
                        continue;
                    }
                    hierarchies.push(V1Hierarchy {
                        mount_point: PathBuf::from(unescape_mountinfo(pre[4])),
                        options,
                    });
                }
                _ => {}
            }
        }
        Layout::V1 {
            hybrid,
            hierarchies,
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the container's `/sys/fs/cgroup` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountView {
    /// Nothing is mounted there.
    None,
    /// cgroup v2: the container's cgroup directory on the host.
    Unified {
        /// Host path of the container's cgroup.
        host_path: PathBuf,
    },
    /// cgroup v1: one entry per hierarchy.
    V1(Vec<V1View>),
}

/// One v1 hierarchy as the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1View {
    /// Directory name under `/sys/fs/cgroup` (`memory`, `cpu,cpuacct`, `systemd`).
    pub dir: String,
    /// Mount options selecting the hierarchy (`memory`, `name=systemd`).
    pub options: String,
    /// Host path of the container's cgroup in this hierarchy.
    pub host_path: PathBuf,
}

/// Memory figures.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    /// Current usage in bytes.
    pub usage: u64,
    /// Peak usage, where the kernel keeps it.
    pub max_usage: Option<u64>,
    /// The limit, `None` when unlimited.
    pub limit: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup.
    pub oom_kills: u64,
    /// Inactive file-backed page cache (reclaimable): `docker stats` leaves it out of usage.
    pub inactive_file: u64,
    /// File-backed page cache.
    pub cache: u64,
    /// Anonymous memory.
    pub rss: u64,
}

/// Pids figures.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    /// Tasks in the cgroup.
    pub current: u64,
    /// The limit, `None` when unlimited.
    pub limit: Option<u64>,
}

/// CPU figures.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// Total CPU time in nanoseconds.
    pub usage_ns: u64,
}

/// Block device I/O, summed over devices.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BlkioStats {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Read operations.
    pub read_ops: u64,
    /// Write operations.
    pub write_ops: u64,
}

/// A snapshot of a cgroup's accounting.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Memory.
    pub memory: MemoryStats,
    /// Pids.
    pub pids: PidsStats,
    /// CPU.
    pub cpu: CpuStats,
    /// Block I/O.
    pub blkio: BlkioStats,
}

/// One cgroup (the same relative path in every hierarchy it spans).
pub trait CgroupManager {
    /// The cgroup path relative to the hierarchy root.
    fn path(&self) -> &Path;
    /// Creates the cgroup (and its parents); existing directories are fine.
    fn create(&self) -> Result<()>;
    /// Moves a process into the cgroup.
    fn add_task(&self, pid: i32) -> Result<()>;
    /// Applies OCI resource limits.
    fn apply(&self, resources: &LinuxResources) -> Result<()>;
    /// Reads accounting, including the OOM-kill counter.
    fn stats(&self) -> Result<Stats>;
    /// Freezes every process of the cgroup.
    fn freeze(&self) -> Result<()>;
    /// Thaws them.
    fn thaw(&self) -> Result<()>;
    /// The pids in the cgroup.
    fn pids(&self) -> Result<Vec<i32>>;
    /// SIGKILLs every process in the cgroup and waits until it is empty.
    fn kill_all(&self) -> Result<()>;
    /// Removes the cgroup (it must be empty); a missing cgroup is not an error.
    fn remove(&self) -> Result<()>;
    /// What the container's `/sys/fs/cgroup` should show.
    fn mount_view(&self) -> MountView;
}

/// The manager for this host, chosen at run time.
#[derive(Debug, Clone)]
pub enum AnyManager {
    /// cgroup v1 (legacy or hybrid hosts).
    V1(V1Manager),
    /// cgroup v2.
    V2(V2Manager),
}

impl AnyManager {
    /// A manager for `path` (relative to the hierarchy roots; a leading `/` is ignored).
    pub fn new(layout: &Layout, path: &Path) -> Result<AnyManager> {
        let path = clean_relative(path)?;
        Ok(match layout {
            Layout::Unified { root } => AnyManager::V2(V2Manager::new(root.clone(), path)),
            Layout::V1 { hierarchies, .. } => {
                AnyManager::V1(V1Manager::new(hierarchies.clone(), path))
            }
        })
    }

    fn inner(&self) -> &dyn CgroupManager {
        match self {
            AnyManager::V1(m) => m,
            AnyManager::V2(m) => m,
        }
    }
}

/// A cgroup path made relative, refusing `..` and an empty path (which would be the
/// hierarchy root: never a container's cgroup).
pub fn clean_relative(path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => {
                return Err(Error::Cgroup(format!(
                    "cgroup path {path:?} must not contain '..'"
                )))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::Cgroup(
            "cgroup path is empty (the hierarchy root)".into(),
        ));
    }
    Ok(out)
}

impl CgroupManager for AnyManager {
    fn path(&self) -> &Path {
        self.inner().path()
    }
    fn create(&self) -> Result<()> {
        self.inner().create()
    }
    fn add_task(&self, pid: i32) -> Result<()> {
        self.inner().add_task(pid)
    }
    fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.inner().apply(resources)
    }
    fn stats(&self) -> Result<Stats> {
        self.inner().stats()
    }
    fn freeze(&self) -> Result<()> {
        self.inner().freeze()
    }
    fn thaw(&self) -> Result<()> {
        self.inner().thaw()
    }
    fn pids(&self) -> Result<Vec<i32>> {
        self.inner().pids()
    }
    fn kill_all(&self) -> Result<()> {
        self.inner().kill_all()
    }
    fn remove(&self) -> Result<()> {
        self.inner().remove()
    }
    fn mount_view(&self) -> MountView {
        self.inner().mount_view()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,relatime shared:8 - tmpfs tmpfs rw,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
28 26 0:26 / /sys/fs/cgroup/systemd rw,relatime shared:10 - cgroup cgroup rw,xattr,name=systemd
29 26 0:27 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
30 26 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
31 26 0:29 / /sys/fs/cgroup/pids rw,relatime shared:13 - cgroup cgroup rw,pids,clone_children
32 1 0:29 /sub /mnt/x rw,relatime - cgroup cgroup rw,pids
";

    #[test]
    fn hybrid_mountinfo_is_parsed() {
        let Layout::V1 {
            hybrid,
            hierarchies,
        } = Layout::from_mountinfo(HYBRID)
        else {
            panic!("not v1")
        };
        assert!(hybrid);
        let opts: Vec<&str> = hierarchies.iter().map(|h| h.options.as_str()).collect();
        assert_eq!(opts, ["name=systemd", "memory", "cpu,cpuacct", "pids"]);
        assert_eq!(
            hierarchies[2].mount_point,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(hierarchies[2].has("cpuacct"));
        assert_eq!(hierarchies[0].dir_name(), "systemd");
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
    }

    #[test]
    fn paths_must_stay_below_the_root() {
        assert_eq!(
            clean_relative(Path::new("/berth/x")).unwrap(),
            Path::new("berth/x")
        );
        assert!(clean_relative(Path::new("/")).is_err());
        assert!(clean_relative(Path::new("berth/../..")).is_err());
    }

    #[test]
    fn this_host_is_detected() {
        // Any host: detection must not fail where /sys/fs/cgroup exists.
        if Path::new(DEFAULT_ROOT).exists() {
            Layout::detect().unwrap();
        }
    }
}
