//! cgroup v1 against a fake tree (no root needed) and for real on this host (as root).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::V1Manager;
use crate::cgroups::{AnyManager, CgroupManager, Layout, MountView, V1Hierarchy};

const CONTROLLERS: [&str; 7] = [
    "memory",
    "cpu,cpuacct",
    "cpuset",
    "pids",
    "devices",
    "freezer",
    "blkio",
];

const IO_SERVICE_BYTES: &str = "\
8:0 Read 4096
8:0 Write 1000
8:0 Total 5096
8:16 Read 1
8:16 Write 2
8:16 Total 3
Total 5099
";

fn fake_tree() -> (tempfile::TempDir, Vec<V1Hierarchy>) {
    let root = tempfile::tempdir().unwrap();
    let mut hs = Vec::new();
    for c in CONTROLLERS {
        let mp = root.path().join(c);
        let leaf = mp.join("berth/c1");
        fs::create_dir_all(&leaf).unwrap();
        let files: &[(&str, &str)] = match c {
            "memory" => &[
                ("memory.limit_in_bytes", "9223372036854771712"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712"),
                ("memory.soft_limit_in_bytes", "9223372036854771712"),
                ("memory.usage_in_bytes", "4096"),
                ("memory.max_usage_in_bytes", "8192"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                ("memory.swappiness", "60"),
                (
                    "memory.stat",
                    "cache 1\nrss 2\ninactive_file 3\ntotal_cache 2048\ntotal_rss 1024\ntotal_inactive_file 512\n",
                ),
            ],
            "cpu,cpuacct" => &[
                ("cpu.shares", "1024"),
                ("cpu.cfs_quota_us", "-1"),
                ("cpu.cfs_period_us", "100000"),
                ("cpuacct.usage", "777"),
            ],
            "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
            "pids" => &[("pids.max", "max"), ("pids.current", "2")],
            "devices" => &[("devices.allow", ""), ("devices.deny", "")],
            "freezer" => &[("freezer.state", "THAWED")],
            "blkio" => &[
                ("blkio.throttle.io_service_bytes_recursive", IO_SERVICE_BYTES),
                ("blkio.throttle.io_service_bytes", "8:0 Read 7\n8:0 Write 8\nTotal 15"),
                ("blkio.throttle.io_serviced_recursive", "8:0 Read 3\n8:0 Write 4\nTotal 7"),
                ("blkio.throttle.io_serviced", "8:0 Read 1\n8:0 Write 1\nTotal 2"),
            ],
            _ => &[],
        };
        for dir in [mp.clone(), mp.join("berth"), leaf.clone()] {
            fs::write(dir.join("cgroup.procs"), "").unwrap();
            for (f, v) in files {
                fs::write(dir.join(f), v).unwrap();
            }
        }
        if c == "cpuset" {
            fs::write(mp.join("cpuset.cpus"), "0-3").unwrap();
            fs::write(mp.join("cpuset.mems"), "0").unwrap();
        }
        hs.push(V1Hierarchy {
            mount_point: mp,
            options: c.to_string(),
        });
    }
    (root, hs)
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap().trim().to_string()
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(64i64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
        .devices(crate::spec::default_device_rules().unwrap())
        .build()
        .unwrap()
}

#[test]
fn fake_tree_create_inherits_cpuset_and_applies_limits() {
    let (root, hs) = fake_tree();
    let m = V1Manager::new(hs, "berth/c1".into());
    m.create().unwrap();
    let r = root.path();
    // Parent and leaf got the root's cpus/mems: tasks could not join otherwise.
    assert_eq!(read(&r.join("cpuset/berth/cpuset.cpus")), "0-3");
    assert_eq!(read(&r.join("cpuset/berth/c1/cpuset.mems")), "0");
    m.apply(&resources()).unwrap();
    let leaf = |c: &str, f: &str| read(&r.join(c).join("berth/c1").join(f));
    assert_eq!(
        leaf("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        leaf("memory", "memory.memsw.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(leaf("cpu,cpuacct", "cpu.shares"), "512");
    assert_eq!(leaf("cpu,cpuacct", "cpu.cfs_quota_us"), "50000");
    assert_eq!(leaf("cpuset", "cpuset.cpus"), "0");
    assert_eq!(leaf("pids", "pids.max"), "20");
    // The fake keeps only the last write: the final allow rule of the list.
    assert_eq!(leaf("devices", "devices.allow"), "c 10:200 rwm");
    assert_eq!(leaf("devices", "devices.deny"), "a *:* rwm");
}

#[test]
fn fake_tree_stats_read_the_oom_kill_counter() {
    let (_root, hs) = fake_tree();
    let m = V1Manager::new(hs, "berth/c1".into());
    let s = m.stats().unwrap();
    assert_eq!(s.memory.oom_kills, 2);
    assert_eq!(s.memory.limit, None);
    assert_eq!(s.memory.usage, 4096);
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, None);
    assert_eq!(s.cpu.usage_ns, 777);
    assert_eq!(s.memory.inactive_file, 512);
    assert_eq!((s.memory.cache, s.memory.rss), (2048, 1024));
    assert_eq!(s.blkio.read_bytes, 4097);
    assert_eq!(s.blkio.write_bytes, 1002);
    assert_eq!((s.blkio.read_ops, s.blkio.write_ops), (3, 4));
}

#[test]
fn fake_tree_blkio_falls_back_and_missing_files_are_zeros() {
    let (root, hs) = fake_tree();
    let m = V1Manager::new(hs, "berth/c1".into());
    let leaf = root.path().join("blkio/berth/c1");
    fs::remove_file(leaf.join("blkio.throttle.io_service_bytes_recursive")).unwrap();
    fs::remove_file(leaf.join("blkio.throttle.io_serviced_recursive")).unwrap();
    let s = m.stats().unwrap();
    assert_eq!((s.blkio.read_bytes, s.blkio.write_bytes), (7, 8));
    assert_eq!((s.blkio.read_ops, s.blkio.write_ops), (1, 1));
    fs::remove_file(leaf.join("blkio.throttle.io_service_bytes")).unwrap();
    fs::remove_file(leaf.join("blkio.throttle.io_serviced")).unwrap();
    fs::remove_file(root.path().join("memory/berth/c1/memory.stat")).unwrap();
    let s = m.stats().unwrap();
    assert_eq!(s.blkio, crate::cgroups::BlkioStats::default());
    assert_eq!(s.memory.inactive_file, 0);
    assert_eq!(s.memory.usage, 4096);
}

#[test]
fn fake_tree_missing_controller_is_reported() {
    let (_root, hs) = fake_tree();
    let hs = hs.into_iter().filter(|h| h.options != "pids").collect();
    let m = V1Manager::new(hs, "berth/c1".into());
    let e = m.apply(&resources()).unwrap_err().to_string();
    assert!(e.contains("pids controller is not mounted"), "{e}");
}

#[test]
fn mount_view_lists_every_hierarchy() {
    let (root, hs) = fake_tree();
    let m = V1Manager::new(hs, "berth/c1".into());
    let MountView::V1(v) = m.mount_view() else {
        panic!()
    };
    assert_eq!(v.len(), CONTROLLERS.len());
    assert_eq!(v[1].dir, "cpu,cpuacct");
    assert_eq!(v[1].host_path, root.path().join("cpu,cpuacct/berth/c1"));
}

fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run the cgroup tests as root"
    );
    eprintln!("skipped: needs root");
    false
}

/// Removes the test's parent cgroup in every hierarchy, even when the test failed.
struct Cleanup(AnyManager);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.0.kill_all();
        let _ = self.0.remove();
    }
}

fn random_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("berth-test-{}-{nanos:x}", std::process::id())
}

#[test]
fn real_v1_cgroup_lifecycle() {
    if !need_root() {
        return;
    }
    let layout = Layout::detect().unwrap();
    let Layout::V1 { hierarchies, .. } = &layout else {
        eprintln!("skipped: host is not cgroup v1");
        return;
    };
    let parent = PathBuf::from(random_name());
    let _cleanup = Cleanup(AnyManager::new(&layout, &parent).unwrap());
    let m = AnyManager::new(&layout, &parent.join("c1")).unwrap();
    m.create().unwrap();
    m.apply(&resources()).unwrap();
    let dir = |c: &str| {
        hierarchies
            .iter()
            .find(|h| h.has(c))
            .unwrap()
            .mount_point
            .join(&parent)
            .join("c1")
    };
    assert_eq!(
        read(&dir("memory").join("memory.limit_in_bytes")),
        (64u64 << 20).to_string()
    );
    if dir("memory").join("memory.memsw.limit_in_bytes").exists() {
        assert_eq!(
            read(&dir("memory").join("memory.memsw.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
    }
    assert_eq!(read(&dir("cpu").join("cpu.shares")), "512");
    assert_eq!(read(&dir("cpu").join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&dir("cpu").join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&dir("cpuset").join("cpuset.cpus")), "0");
    assert_eq!(read(&dir("pids").join("pids.max")), "20");
    let devices = read(&dir("devices").join("devices.list"));
    assert!(
        devices.contains("c 1:3 rwm") && !devices.contains("a *:*"),
        "{devices}"
    );

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    m.add_task(child.id() as i32).unwrap();
    assert_eq!(m.pids().unwrap(), vec![child.id() as i32]);
    let stats = m.stats().unwrap();
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, Some(20));
    assert_eq!(stats.memory.limit, Some(64 << 20));
    assert_eq!(stats.memory.oom_kills, 0);
    m.freeze().unwrap();
    assert_eq!(read(&dir("freezer").join("freezer.state")), "FROZEN");
    m.thaw().unwrap();
    m.kill_all().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    m.remove().unwrap();
    for h in hierarchies {
        assert!(!h.mount_point.join(&parent).join("c1").exists());
    }
    // Removing what is gone is fine.
    m.remove().unwrap();
}
