//! Facts about the host the engine reports in `Info`.

use std::path::Path;

/// How cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1 controllers only.
    Legacy,
    /// cgroup v1 controllers with a v2 hierarchy mounted beside them (`unified/`).
    Hybrid,
    /// cgroup v2 only.
    Unified,
}

impl CgroupLayout {
    /// Detects the layout under `root` (normally `/sys/fs/cgroup`).
    pub fn detect(root: &Path) -> Option<Self> {
        let is_cgroup2 = |p: &Path| {
            nix::sys::statfs::statfs(p)
                .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
                .unwrap_or(false)
        };
        if is_cgroup2(root) {
            Some(CgroupLayout::Unified)
        } else if is_cgroup2(&root.join("unified")) {
            Some(CgroupLayout::Hybrid)
        } else if root.is_dir() {
            Some(CgroupLayout::Legacy)
        } else {
            None
        }
    }

    /// "1" or "2": the version containers' resources are managed with.
    pub fn version(self) -> &'static str {
        match self {
            CgroupLayout::Legacy | CgroupLayout::Hybrid => "1",
            CgroupLayout::Unified => "2",
        }
    }

    /// "legacy", "hybrid" or "unified".
    pub fn name(self) -> &'static str {
        match self {
            CgroupLayout::Legacy => "legacy",
            CgroupLayout::Hybrid => "hybrid",
            CgroupLayout::Unified => "unified",
        }
    }
}

/// Kernel release, e.g. "6.1.0-18-amd64".
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Machine architecture as the kernel names it, e.g. "x86_64".
pub fn machine() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| std::env::consts::ARCH.to_string())
}

/// `PRETTY_NAME` from os-release, e.g. "Debian GNU/Linux 12 (bookworm)".
pub fn operating_system() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string())
}

/// Total memory in bytes, from /proc/meminfo.
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Online CPUs.
pub fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_a_layout_on_this_host() {
        // Every Linux host running the tests has cgroups mounted somewhere standard.
        let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup")).unwrap();
        assert!(matches!(layout.version(), "1" | "2"));
    }

    #[test]
    fn a_plain_directory_is_legacy_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(CgroupLayout::detect(dir.path()), Some(CgroupLayout::Legacy));
        assert_eq!(CgroupLayout::detect(&dir.path().join("missing")), None);
    }
}
