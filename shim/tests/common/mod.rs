//! Fixtures for tests that run real containers: a busybox rootfs, a bundle written the way
//! the engine writes it (oci-spec builders, Docker's defaults), a cgroup parent that is
//! removed afterwards, and stdout/stderr captured in files.
#![allow(dead_code)]

pub mod shim;

use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use berth_shim::cgroups::{AnyManager, CgroupManager, Layout};
use berth_shim::spec::{self, DEFAULT_CAPABILITIES};
use berth_shim::{Container, CreateOptions, ExitStatus, Stdio};
use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

/// True when the test can run; skips (prints why) when not root and CI is unset, and
/// fails when CI is set: CI must exercise these for real.
pub fn need_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the container tests are not running as root"
    );
    eprintln!("skipped: needs root");
    false
}

/// busybox applets the tests use.
const APPLETS: &[&str] = &[
    "sh", "echo", "id", "cat", "ls", "hostname", "pwd", "env", "sleep", "head", "tail", "seq",
    "grep", "true", "false", "mkdir", "touch", "stat", "readlink", "test", "wc", "cut", "tr", "dd",
    "yes", "ps", "tty", "stty", "kill",
];

/// Writes a minimal busybox image into `root`.
pub fn busybox_rootfs(root: &Path) {
    for d in ["bin", "proc", "dev", "sys", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for a in APPLETS {
        symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
}

/// One test's container world: bundle directory, rootfs, cgroup parent.
pub struct TestBundle {
    pub dir: tempfile::TempDir,
    pub id: String,
    pub cgroup_parent: PathBuf,
    layout: Layout,
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

impl TestBundle {
    /// A bundle with a busybox rootfs (created by `prepare` when given).
    pub fn new() -> TestBundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle")
            .tempdir()
            .unwrap();
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        std::fs::write(dir.path().join("hostname"), "berth-test\n").unwrap();
        std::fs::write(
            dir.path().join("hosts"),
            "127.0.0.1 localhost\n10.0.0.5 berth-test\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        TestBundle {
            dir,
            id: unique("c"),
            cgroup_parent: PathBuf::from(unique("berth-test")),
            layout: Layout::detect().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// The config the engine writes: Docker's defaults, the bundle's hostname/hosts/
    /// resolv.conf bound in, a cgroup under the test's parent.
    pub fn spec(&self, args: &[&str]) -> Spec {
        self.spec_with_nofile(args, 1_048_576)
    }

    /// [`TestBundle::spec`] with a chosen RLIMIT_NOFILE (Docker's default is 1048576).
    pub fn spec_with_nofile(&self, args: &[&str], nofile: u64) -> Spec {
        let mut mounts = spec::default_mounts().unwrap();
        for (file, dest) in [
            ("hostname", "/etc/hostname"),
            ("hosts", "/etc/hosts"),
            ("resolv.conf", "/etc/resolv.conf"),
        ] {
            mounts.push(spec::bundle_file_mount(&self.path().join(file), dest).unwrap());
        }
        let caps: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
        let process = ProcessBuilder::default()
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
                "HOME=/root".to_string(),
            ])
            .cwd("/")
            .user(UserBuilder::default().uid(0u32).gid(0u32).build().unwrap())
            .capabilities(
                LinuxCapabilitiesBuilder::default()
                    .bounding(caps.clone())
                    .effective(caps.clone())
                    .permitted(caps)
                    .build()
                    .unwrap(),
            )
            .rlimits(vec![PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(nofile)
                .hard(nofile)
                .build()
                .unwrap()])
            .no_new_privileges(true)
            .build()
            .unwrap();
        SpecBuilder::default()
            .version("1.0.2")
            .root(
                RootBuilder::default()
                    .path("rootfs")
                    .readonly(false)
                    .build()
                    .unwrap(),
            )
            .hostname("berth-test")
            .mounts(mounts)
            .process(process)
            .linux(
                LinuxBuilder::default()
                    .namespaces(spec::default_namespaces())
                    .masked_paths(spec::DEFAULT_MASKED_PATHS.map(String::from).to_vec())
                    .readonly_paths(spec::DEFAULT_READONLY_PATHS.map(String::from).to_vec())
                    .cgroups_path(PathBuf::from("/").join(&self.cgroup_parent).join(&self.id))
                    .resources(
                        LinuxResourcesBuilder::default()
                            .devices(spec::default_device_rules().unwrap())
                            .pids(LinuxPidsBuilder::default().limit(1024i64).build().unwrap())
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    /// Writes config.json.
    pub fn write(&self, spec: &Spec) {
        spec.save(self.path().join("config.json")).unwrap();
    }

    /// Host path of the container's cgroup in the hierarchy carrying `controller`.
    pub fn cgroup_dir(&self, controller: &str) -> Option<PathBuf> {
        match &self.layout {
            Layout::V1 { hierarchies, .. } => hierarchies
                .iter()
                .find(|h| h.has(controller))
                .map(|h| h.mount_point.join(&self.cgroup_parent).join(&self.id)),
            Layout::Unified { root } => Some(root.join(&self.cgroup_parent).join(&self.id)),
        }
    }
}

impl Drop for TestBundle {
    fn drop(&mut self) {
        // A test that failed may have left its container running (its shim SIGKILLed
        // by the test's guard): the container's cgroup first, then the parent.
        for path in [
            self.cgroup_parent.join(&self.id),
            self.cgroup_parent.clone(),
        ] {
            if let Ok(m) = AnyManager::new(&self.layout, &path) {
                let _ = m.kill_all();
                let _ = m.remove();
            }
        }
        // runc also joins the controller-less v2 hierarchy of a hybrid host.
        if let Layout::V1 { hybrid: true, .. } = self.layout {
            let unified = Layout::Unified {
                root: "/sys/fs/cgroup/unified".into(),
            };
            for path in [
                self.cgroup_parent.join(&self.id),
                self.cgroup_parent.clone(),
            ] {
                if let Ok(m) = AnyManager::new(&unified, &path) {
                    let _ = m.remove();
                }
            }
        }
    }
}

/// Output of a finished container.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn capture() -> (std::fs::File, OwnedFd) {
    let f = tempfile::tempfile().unwrap();
    let fd = OwnedFd::from(f.try_clone().unwrap());
    (f, fd)
}

fn read_all(mut f: std::fs::File) -> String {
    use std::io::{Read, Seek};
    f.rewind().unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

/// Writes `spec`, runs the container to completion, and checks that nothing is left:
/// the container's cgroup is gone and no mount mentions the bundle.
pub fn run(b: &TestBundle, spec: &Spec) -> berth_shim::Result<Outcome> {
    run_with(b, spec, vec![])
}

pub fn run_with(
    b: &TestBundle,
    spec: &Spec,
    rootfs_mounts: Vec<berth_shim::MountSpec>,
) -> berth_shim::Result<Outcome> {
    b.write(spec);
    let (out, out_fd) = capture();
    let (err, err_fd) = capture();
    let mut opts = CreateOptions::new(b.id.clone());
    opts.rootfs_mounts = rootfs_mounts;
    opts.stdio = Stdio {
        stdin: Some(OwnedFd::from(std::fs::File::open("/dev/null").unwrap())),
        stdout: Some(out_fd),
        stderr: Some(err_fd),
    };
    let result = berth_shim::run_container(b.path(), opts).and_then(|mut c: Container| c.wait());
    assert_clean(b);
    let status = result?;
    Ok(Outcome {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    })
}

/// Nothing of the container remains on the host.
pub fn assert_clean(b: &TestBundle) {
    for c in ["memory", "pids", "cpu", "devices", "freezer"] {
        if let Some(dir) = b.cgroup_dir(c) {
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bundle = b.path().to_string_lossy().into_owned();
    assert!(
        !mountinfo.contains(&bundle),
        "mount of the bundle left on the host:\n{mountinfo}"
    );
}

/// Runs and expects success, returning stdout.
pub fn run_ok(b: &TestBundle, spec: &Spec) -> String {
    let o = run(b, spec).unwrap();
    assert_eq!(
        o.status.code, 0,
        "stdout: {}\nstderr: {}",
        o.stdout, o.stderr
    );
    o.stdout
}
