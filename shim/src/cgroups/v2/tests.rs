//! cgroup v2 against a fake cgroupfs: a directory tree holding the files the kernel
//! would have, so every write and read of the manager is checked without root.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder,
    LinuxResourcesBuilder,
};

use super::cpu::shares_to_weight;
use super::V2Manager;
use crate::cgroups::CgroupManager;

fn fake_tree(controllers: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    fs::write(
        r.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma misc",
    )
    .unwrap();
    fs::write(r.join("cgroup.subtree_control"), "").unwrap();
    fs::create_dir_all(r.join("berth")).unwrap();
    fs::write(
        r.join("berth/cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids",
    )
    .unwrap();
    fs::write(r.join("berth/cgroup.subtree_control"), "").unwrap();
    let leaf = r.join("berth/c1");
    fs::create_dir_all(&leaf).unwrap();
    for (f, v) in [
        ("cgroup.controllers", controllers),
        ("cgroup.subtree_control", ""),
        ("cgroup.procs", ""),
        ("cgroup.freeze", "0"),
        ("cgroup.events", "populated 0\nfrozen 1\n"),
        ("memory.max", "max"),
        ("memory.swap.max", "max"),
        ("memory.low", "0"),
        ("memory.current", "1234"),
        ("memory.peak", "5678"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        ),
        ("cpu.weight", "100"),
        ("cpu.max", "max 100000"),
        (
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        ),
        ("cpuset.cpus", ""),
        ("cpuset.mems", ""),
        ("pids.max", "max"),
        ("pids.current", "3"),
        (
            "memory.stat",
            "anon 4096\nfile 8192\nkernel_stack 0\nactive_file 100\ninactive_file 700\n",
        ),
        (
            "io.stat",
            "8:0 rbytes=1000 wbytes=2000 rios=3 wios=4 dbytes=0 dios=0\n\
             8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
        ),
    ] {
        fs::write(leaf.join(f), v).unwrap();
    }
    (root, leaf)
}

fn read(p: &Path, f: &str) -> String {
    fs::read_to_string(p.join(f)).unwrap()
}

#[test]
fn create_enables_controllers_down_the_tree() {
    let (root, _) = fake_tree("cpuset cpu io memory pids");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    m.create().unwrap();
    assert_eq!(
        read(root.path(), "cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +pids"
    );
    assert_eq!(
        read(&root.path().join("berth"), "cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +pids"
    );
    // The leaf itself delegates nothing: it holds the processes.
    assert_eq!(
        read(&root.path().join("berth/c1"), "cgroup.subtree_control"),
        ""
    );
}

#[test]
fn resources_are_written_in_v2_terms() {
    let (root, leaf) = fake_tree("cpuset cpu io memory pids");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(96i64 << 20)
                .reservation(16i64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20i64).build().unwrap())
        .build()
        .unwrap();
    m.apply(&r).unwrap();
    assert_eq!(read(&leaf, "memory.max"), (64u64 << 20).to_string());
    // OCI swap is memory+swap; v2 wants swap alone.
    assert_eq!(read(&leaf, "memory.swap.max"), (32u64 << 20).to_string());
    assert_eq!(read(&leaf, "memory.low"), (16u64 << 20).to_string());
    assert_eq!(read(&leaf, "cpu.weight"), shares_to_weight(512).to_string());
    assert_eq!(read(&leaf, "cpu.max"), "50000 100000");
    assert_eq!(read(&leaf, "cpuset.cpus"), "0-1");
    assert_eq!(read(&leaf, "pids.max"), "20");

    // Unlimited values are "max".
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(-1i64)
                .swap(-1i64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .build()
        .unwrap();
    m.apply(&r).unwrap();
    assert_eq!(read(&leaf, "memory.max"), "max");
    assert_eq!(read(&leaf, "memory.swap.max"), "max");
    assert_eq!(read(&leaf, "pids.max"), "max");
    assert_eq!(read(&leaf, "cpu.max"), "max 100000");
}

#[test]
fn shares_convert_like_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(0), 100);
}

#[test]
fn missing_controller_is_a_clear_error() {
    let (root, _) = fake_tree("cpu pids");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(1i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = m.apply(&r).unwrap_err().to_string();
    assert!(e.contains("memory controller is not available"), "{e}");
}

#[test]
fn swap_below_memory_is_refused() {
    let (root, _) = fake_tree("memory");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(32i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(m.apply(&r).is_err());
}

#[test]
fn stats_and_oom_kills_are_read() {
    let (root, leaf) = fake_tree("cpuset cpu io memory pids");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    let s = m.stats().unwrap();
    assert_eq!(s.memory.usage, 1234);
    assert_eq!(s.memory.max_usage, Some(5678));
    assert_eq!(s.memory.limit, None);
    assert_eq!(s.memory.oom_kills, 1);
    assert_eq!(s.pids.current, 3);
    assert_eq!(s.cpu.usage_ns, 1_500_000);
    assert_eq!(s.memory.inactive_file, 700);
    assert_eq!((s.memory.cache, s.memory.rss), (8192, 4096));
    assert_eq!(s.blkio.read_bytes, 1001);
    assert_eq!(s.blkio.write_bytes, 2002);
    assert_eq!((s.blkio.read_ops, s.blkio.write_ops), (4, 5));
    // Without the io controller or memory.stat: zeros, not an error.
    fs::remove_file(leaf.join("io.stat")).unwrap();
    fs::remove_file(leaf.join("memory.stat")).unwrap();
    let s = m.stats().unwrap();
    assert_eq!(s.blkio, crate::cgroups::BlkioStats::default());
    assert_eq!((s.memory.inactive_file, s.memory.usage), (0, 1234));
    fs::write(leaf.join("cgroup.procs"), "12\n34\n").unwrap();
    assert_eq!(m.pids().unwrap(), vec![12, 34]);
}

#[test]
fn freeze_writes_and_waits_for_the_event() {
    let (root, leaf) = fake_tree("memory");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    m.freeze().unwrap();
    assert_eq!(read(&leaf, "cgroup.freeze"), "1");
    fs::write(leaf.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    m.thaw().unwrap();
    assert_eq!(read(&leaf, "cgroup.freeze"), "0");
}

#[test]
fn mount_view_is_the_cgroup_directory() {
    let (root, leaf) = fake_tree("memory");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    assert_eq!(
        m.mount_view(),
        crate::cgroups::MountView::Unified { host_path: leaf }
    );
}

#[test]
fn device_rules_need_a_real_cgroup2_directory() {
    let (root, _) = fake_tree("memory");
    let m = V2Manager::new(root.path().to_path_buf(), "berth/c1".into());
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let r = LinuxResourcesBuilder::default()
        .devices(vec![deny_all.clone()])
        .build()
        .unwrap();
    let e = m.apply(&r).unwrap_err().to_string();
    assert!(e.contains("is not a cgroup2 directory"), "{e}");
    // A bad rule is reported before the directory is looked at.
    let mut bad = deny_all;
    bad.set_access(Some("rwx".into()));
    let r = LinuxResourcesBuilder::default()
        .devices(vec![bad])
        .build()
        .unwrap();
    let e = m.apply(&r).unwrap_err().to_string();
    assert!(e.contains("not a subset of rwm"), "{e}");
    // No device rules: nothing is attached, the fake tree is fine.
    m.apply(&LinuxResourcesBuilder::default().build().unwrap())
        .unwrap();
}
