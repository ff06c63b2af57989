//! Rootfs setup against a temporary directory and the recording syscall seam: the mount
//! plan (order, flags, targets resolved inside the rootfs) is checked without root.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder};

use super::*;
use crate::cgroups::{MountView, V1View};
use crate::spec::{self, Bundle};
use crate::syscall::{Call, RecordingSyscall};

struct Fixture {
    bundle_dir: tempfile::TempDir,
    bundle: Bundle,
}

impl Fixture {
    fn rootfs(&self) -> PathBuf {
        self.bundle.rootfs.clone()
    }
}

fn spec(bundle: &Path, readonly_root: bool) -> Spec {
    let mut mounts = spec::default_mounts().unwrap();
    mounts.push(spec::bundle_file_mount(&bundle.join("hosts"), "/etc/hosts").unwrap());
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(readonly_root)
                .build()
                .unwrap(),
        )
        .hostname("box")
        .mounts(mounts)
        .process(
            ProcessBuilder::default()
                .args(vec!["sh".to_string()])
                .cwd("/work")
                .build()
                .unwrap(),
        )
        .linux(
            LinuxBuilder::default()
                .namespaces(spec::default_namespaces())
                .masked_paths(spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec())
                .readonly_paths(spec::DEFAULT_READONLY_PATHS.map(String::from).to_vec())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn fixture(readonly_root: bool, prepare: impl FnOnce(&Path)) -> Fixture {
    let bundle_dir = tempfile::tempdir().unwrap();
    let root = bundle_dir.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(bundle_dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
    prepare(&root);
    let bundle =
        Bundle::from_spec(bundle_dir.path(), spec(bundle_dir.path(), readonly_root)).unwrap();
    Fixture { bundle_dir, bundle }
}

fn v1_view() -> MountView {
    MountView::V1(vec![
        V1View {
            dir: "memory".into(),
            options: "memory".into(),
            host_path: "/sys/fs/cgroup/memory/berth/c1".into(),
        },
        V1View {
            dir: "cpu,cpuacct".into(),
            options: "cpu,cpuacct".into(),
            host_path: "/sys/fs/cgroup/cpu,cpuacct/berth/c1".into(),
        },
    ])
}

fn plan(f: &Fixture) -> RootfsPlan {
    RootfsPlan::new(&f.bundle, vec![], v1_view(), true).unwrap()
}

#[test]
fn mounts_are_planned_in_order_inside_the_rootfs() {
    let f = fixture(true, |root| {
        // What a real /proc and /sys would have, so masking and read-only paths apply.
        std::fs::create_dir_all(root.join("proc/sys")).unwrap();
        std::fs::write(root.join("proc/kcore"), "").unwrap();
        std::fs::create_dir_all(root.join("sys/firmware")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/cgroup")).unwrap();
    });
    let sys = RecordingSyscall::new();
    setup(&sys, &plan(&f)).unwrap();
    let rootfs = f.rootfs();
    let mounts = sys.mounts();
    let targets: Vec<&Path> = mounts.iter().map(|(t, _, _)| t.as_path()).collect();
    assert_eq!(
        mounts[0],
        (
            PathBuf::from("/"),
            None,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE
        )
    );
    assert_eq!(
        mounts[1],
        (rootfs.clone(), None, MsFlags::MS_BIND | MsFlags::MS_REC)
    );
    let pos = |p: &str| {
        targets
            .iter()
            .position(|t| *t == Path::new(p))
            .unwrap_or_else(|| panic!("{p} not mounted: {targets:?}"))
    };
    assert!(pos("/proc") < pos("/dev") && pos("/dev") < pos("/dev/pts"));
    assert!(pos("/dev/pts") < pos("/dev/shm") && pos("/dev/shm") < pos("/dev/mqueue"));
    assert!(pos("/dev/mqueue") < pos("/sys") && pos("/sys") < pos("/sys/fs/cgroup"));
    assert_eq!(mounts[pos("/proc")].1.as_deref(), Some("proc"));
    assert!(mounts[pos("/sys")].2.contains(MsFlags::MS_RDONLY));
    // cgroup v1 view: tmpfs, one cgroup mount per hierarchy, then read-only.
    assert_eq!(
        mounts[pos("/sys/fs/cgroup/memory")].1.as_deref(),
        Some("cgroup")
    );
    assert!(mounts[pos("/sys/fs/cgroup/memory")]
        .2
        .contains(MsFlags::MS_RDONLY));
    assert!(std::fs::read_link(rootfs.join("sys/fs/cgroup/cpu")).is_ok());
    // Bundle files are bound.
    assert!(targets.contains(&Path::new("/etc/hosts")));
    // Masked: a file gets /dev/null, a directory a read-only tmpfs.
    let calls = sys.calls();
    assert!(calls.iter().any(|c| matches!(c, Call::Mount { source: Some(s), target, flags, .. }
        if s == Path::new("/dev/null") && target == Path::new("/proc/kcore") && *flags == MsFlags::MS_BIND)));
    assert!(calls.iter().any(|c| matches!(c, Call::Mount { target, fstype: Some(t), flags, .. }
        if target == Path::new("/sys/firmware") && t == "tmpfs" && flags.contains(MsFlags::MS_RDONLY))));
    // Read-only path: bind, then remount read-only.
    assert!(calls.iter().any(|c| matches!(c, Call::Mount { target, flags, .. }
        if target == Path::new("/proc/sys") && flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY))));
    // Devices, working directory, pivot, read-only root.
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        let p = PathBuf::from("/dev").join(dev);
        assert!(
            calls
                .iter()
                .any(|c| matches!(c, Call::Mknod { path, mode: 0o666, .. } if *path == p)),
            "{dev}"
        );
    }
    assert_eq!(
        std::fs::read_link(rootfs.join("dev/ptmx")).unwrap(),
        Path::new("pts/ptmx")
    );
    assert!(rootfs.join("work").is_dir());
    let pivot = calls
        .iter()
        .position(|c| *c == Call::PivotRoot(rootfs.clone()))
        .unwrap();
    let last = calls.last().unwrap();
    assert!(
        matches!(last, Call::Mount { target, flags, .. } if target == Path::new("/") && flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REMOUNT))
    );
    assert!(pivot > pos("/sys/fs/cgroup"));
    drop(f.bundle_dir);
}

#[test]
fn image_proc_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    let f = fixture(false, |root| symlink(&target, root.join("proc")).unwrap());
    let sys = RecordingSyscall::new();
    let e = setup(&sys, &plan(&f)).unwrap_err().to_string();
    assert!(e.contains("/proc") && e.contains("symlink"), "{e}");
    assert!(!sys.mounts().iter().any(|(t, _, _)| t == Path::new("/proc")));
}

#[test]
fn bind_target_symlinked_to_the_host_lands_inside() {
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary");
    std::fs::write(&canary, "host").unwrap();
    let canary2 = canary.clone();
    let f = fixture(false, move |root| {
        std::fs::create_dir_all(root.join("etc")).unwrap();
        symlink(&canary2, root.join("etc/hosts")).unwrap();
    });
    let sys = RecordingSyscall::new();
    setup(&sys, &plan(&f)).unwrap();
    // The symlink's absolute target was followed inside the rootfs and created there.
    let inside = f.rootfs().join(canary.strip_prefix("/").unwrap());
    assert!(inside.is_file(), "{inside:?}");
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "host");
}

#[test]
fn image_dev_symlink_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    let f = fixture(false, |root| symlink(&target, root.join("dev")).unwrap());
    let sys = RecordingSyscall::new();
    let e = setup(&sys, &plan(&f)).unwrap_err().to_string();
    assert!(e.contains("/dev") && e.contains("symlink"), "{e}");
}

#[test]
fn rootfs_mounts_replace_the_self_bind() {
    let f = fixture(false, |_| {});
    let mut p = plan(&f);
    p.rootfs_mounts = vec![MountSpec {
        fs_type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "lowerdir=/l".into(),
            "upperdir=/u".into(),
            "workdir=/w".into(),
        ],
    }];
    let sys = RecordingSyscall::new();
    setup(&sys, &p).unwrap();
    let calls = sys.calls();
    assert!(
        matches!(&calls[1], Call::Mount { target, fstype: Some(t), data: Some(d), .. }
        if *target == f.rootfs() && t == "overlay" && d == "lowerdir=/l,upperdir=/u,workdir=/w")
    );
}

#[test]
fn a_failed_mount_names_the_destination() {
    let f = fixture(false, |_| {});
    let sys = RecordingSyscall::new();
    sys.fail_mount_on("/dev/mqueue", nix::Error::ENODEV);
    let e = setup(&sys, &plan(&f)).unwrap_err().to_string();
    assert!(e.contains("mqueue") && e.contains("/dev/mqueue"), "{e}");
}
