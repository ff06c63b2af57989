//! Isolation and hardening of real containers, end to end through berthctl, as root: the
//! pid namespace, hostname/env/workdir/user, memory and pids limits, capability sets,
//! masked and read-only paths, devices, network and cgroup views, hostile images (symlinked `/dev`, `/proc`, `/dev/null`,
//! `/etc/hosts`…, `WORKDIR /proc/self/fd/N`), the fds a container starts with, and what
//! a SIGKILLed shim or engine leaves. After every test nothing of its containers is left
//! on the host (mounts, cgroups, shims): `berth_tests::leftovers`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::image::{layer_tar, with_dirs_and_links, File};
use berth_tests::leftovers;
use berth_tests::world::{busybox_changes, stderr, stdout, World, BUSYBOX_ENTRYPOINT};
use berth_tests::{alive, need_root, wait_until};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// A busybox image with users and groups, busybox as the entrypoint.
const IMG: &str = "iso-bb:latest";

/// Docker's 14 default capabilities as /proc/PID/status prints them.
const DEFAULT_CAPS: &str = "00000000a80425fb";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
    app:x:1000:1000:app:/home/app:/bin/sh\n\
    big:x:4294967296:4294967296:big:/:/bin/sh\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:2000:app\n";

/// Files of the base image: busybox, users and groups, an empty /tmp.
fn base_files() -> Vec<File<'static>> {
    let bb = std::fs::read("/bin/busybox").expect("the host has no /bin/busybox");
    vec![
        File {
            path: "bin/busybox",
            data: bb,
            mode: 0o755,
        },
        File::new("etc/passwd", PASSWD),
        File::new("etc/group", GROUP),
        File::new("etc/marker", "in-image\n"),
    ]
}

/// A rootfs tar of the base files plus symlinks (path → target) and directories.
fn rootfs_with_links(links: &[(&str, &str)], dirs: &[&str]) -> Vec<u8> {
    with_dirs_and_links(&layer_tar(&base_files()), dirs, links)
}

/// A new engine with the base image.
async fn world() -> World {
    let rootfs = rootfs_with_links(&[], &["tmp"]);
    let changes = busybox_changes(&["ENV IMGVAR=from-image OVER=image"]);
    World::new(&rootfs, IMG, &changes).await
}

/// The fields of /proc/self/status whose name starts with one of `keys`.
fn status_fields(text: &str, keys: &[&str]) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| keys.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Capability sets and NoNewPrivs of a container run with `opts`.
fn caps(w: &World, opts: &[&str]) -> Vec<(String, String)> {
    let text = w.sh_ok(opts, "cat /proc/self/status");
    status_fields(&text, &["Cap", "NoNewPrivs"])
}

fn expect_caps(prm_eff: &str, bnd: &str, nnp: &str) -> Vec<(String, String)> {
    [
        ("CapInh", "0000000000000000"),
        ("CapPrm", prm_eff),
        ("CapEff", prm_eff),
        ("CapBnd", bnd),
        ("CapAmb", "0000000000000000"),
        ("NoNewPrivs", nnp),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn namespaces_identity_and_environment_are_applied() {
    if !need_root() {
        return;
    }
    let w = world().await;

    // pid 1 inside; only the container's processes are visible (the glob is expanded by
    // the shell itself, which is pid 1; `ps` is its only child).
    let out = w.sh_ok(
        &[],
        "echo $$; ps -o pid,comm; for p in /proc/[0-9]*; do echo ${p#/proc/}; done",
    );
    assert_eq!(
        out, "1\nPID   COMMAND\n    1 busybox\n    2 ps\n1\n",
        "{out}"
    );

    // The host name: --hostname, else the short id (as Docker).
    let out = w.sh_ok(
        &["--hostname", "isobox"],
        "hostname; cat /etc/hostname /proc/sys/kernel/hostname; echo $HOSTNAME",
    );
    assert_eq!(out, "isobox\nisobox\nisobox\nisobox\n");
    let id = w.run_detached(&["--name", "named-host", IMG, "sleep", "1000"]);
    let out = w.ctl(&["run", "--rm", IMG, "hostname"]);
    assert_eq!(stdout(&out).trim().len(), 12, "{}", stdout(&out));
    assert_eq!(w.inspect("named-host")["Config"]["Hostname"], &id[..12]);

    // The environment: the image's, -e over it, --env-file, a bare -e KEY from berthctl's
    // own environment, and the defaults (PATH, HOME from /etc/passwd).
    let env_file = w.scratch().join("env.list");
    std::fs::write(
        &env_file,
        "# a comment\n\nFILEVAR=from file\nOVER=file\nFROMCTL2\n",
    )
    .unwrap();
    let out = w
        .engine()
        .ctl_command(&[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "OVER=cli",
            "-e",
            "FROMCTL",
            "-e",
            "EMPTY=",
            IMG,
            "sh",
            "-c",
            "echo \"$IMGVAR|$OVER|$FILEVAR|$FROMCTL|$FROMCTL2|${EMPTY-unset}|$HOME|$PATH\"",
        ])
        .env("FROMCTL", "ctl value")
        .env("FROMCTL2", "ctl value 2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "from-image|cli|from file|ctl value|ctl value 2||/root|\
         /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );

    // The working directory: created when missing (owned by nobody's business but root),
    // from the image's WORKDIR or -w, and -w wins.
    w.import(
        &rootfs_with_links(&[], &["tmp"]),
        "iso-wd:latest",
        &busybox_changes(&["WORKDIR /srv/app/data"]),
    );
    assert_eq!(
        w.ok(&["run", "--rm", "iso-wd:latest", "sh", "-c", "pwd -P"]),
        "/srv/app/data\n"
    );
    assert_eq!(
        w.ok(&["run", "--rm", "-w", "/x/y", "iso-wd:latest", "pwd"]),
        "/x/y\n"
    );
    assert_eq!(w.sh_ok(&["-w", "/etc"], "pwd; ls marker"), "/etc\nmarker\n");

    // Users: uid:gid, a name from the image's /etc/passwd (with its groups), a uid the
    // image does not know (its group is 0, as Docker's).
    assert_eq!(
        w.sh_ok(&["-u", "1000:1000"], "id -u; id -g; echo $HOME"),
        "1000\n1000\n/home/app\n"
    );
    assert_eq!(
        w.sh_ok(&["-u", "nobody"], "id -un; id -u; id -g; echo $HOME"),
        "nobody\n65534\n65534\n/nonexistent\n"
    );
    assert_eq!(w.sh_ok(&["-u", "app"], "id -G"), "1000 2000\n");
    assert_eq!(
        w.sh_ok(&["-u", "4242"], "id -u; id -g; echo $HOME"),
        "4242\n0\n/\n"
    );
    assert_eq!(w.sh_ok(&["-u", "2147483647"], "id -u"), "2147483647\n");
    // Above 2^31-1: refused, or at least never root.
    for user in [
        "2147483648",
        "4294967295",
        "4294967296",
        "18446744073709551616",
        "0:4294967296",
        "big",
        "-1",
    ] {
        let out = w.sh(&["-u", user], "id -u; id -g");
        if out.status.success() {
            assert!(
                !stdout(&out).lines().any(|l| l == "0"),
                "-u {user} ran as root: {}",
                stdout(&out)
            );
        } else {
            assert_eq!(out.status.code(), Some(125), "-u {user}: {}", stderr(&out));
            assert!(!stderr(&out).is_empty());
        }
    }
    w.clean_up();
}

#[tokio::test]
async fn a_process_over_the_memory_limit_is_oom_killed() {
    if !need_root() {
        return;
    }
    let w = world().await;
    // `tail` of an endless stream without newlines keeps all of it in anonymous memory.
    let out = w.ctl(&[
        "run",
        "--name",
        "hog",
        "-m",
        "32m",
        IMG,
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let state = &w.inspect("hog")["State"];
    assert_eq!(state["Status"], "exited");
    assert_eq!(state["OOMKilled"], true, "{state}");
    assert_eq!(state["ExitCode"], 137);
    let ps = w.ok(&["ps", "-a", "--filter", "name=hog"]);
    assert!(ps.contains("Exited (137)"), "{ps}");

    // A child killed while pid 1 survives: the container goes on and its exit code is its
    // own (Docker reports OOMKilled for any kill in the cgroup).
    let out = w.ctl(&[
        "run",
        "--name",
        "parent",
        "-m",
        "32m",
        IMG,
        "sh",
        "-c",
        "tail /dev/zero; echo child $?",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "child 137\n");
    assert_eq!(w.inspect("parent")["State"]["OOMKilled"], true);

    // Under the limit nothing is killed.
    let out = w.ctl(&[
        "run",
        "--name",
        "fits",
        "-m",
        "32m",
        IMG,
        "sh",
        "-c",
        "head -c 4m /dev/zero | tail > /dev/null; echo fine",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(w.inspect("fits")["State"]["OOMKilled"], false);
    w.clean_up();
}

#[tokio::test]
async fn a_fork_bomb_stops_at_the_pids_limit() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&[
        "--name",
        "bomb",
        "--pids-limit",
        "64",
        IMG,
        "sh",
        "-c",
        "b() { b | b & }; b; exec sleep 1000",
    ]);
    let dir = leftovers::cgroup_dir("pids", &id).expect("no pids cgroup hierarchy");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert_eq!(read("pids.max").trim(), "64");
    // Until the bomb has hit the limit, and for a while after, the cgroup never holds
    // more than 64 tasks.
    let mut peak = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut hit_at = None;
    while Instant::now() < deadline {
        let current: u64 = read("pids.current").trim().parse().unwrap_or(0);
        peak = peak.max(current);
        assert!(current <= 64, "{current} tasks under --pids-limit 64");
        let refused: u64 = read("pids.events")
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        match hit_at {
            None if refused > 0 => hit_at = Some(Instant::now()),
            Some(t) if t.elapsed() > Duration::from_secs(2) => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        hit_at.is_some(),
        "the bomb never reached the limit (peak {peak})"
    );
    assert!(peak >= 32, "peak {peak}");

    // The container stops (stop signal ignored by pid 1, then SIGKILL) and goes.
    let started = Instant::now();
    assert_eq!(w.ok(&["stop", "-t", "1", "bomb"]), "bomb\n");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(w.inspect("bomb")["State"]["Status"], "exited");
    assert!(leftovers::cgroups_of(&id).is_empty());
    w.ok(&["rm", "bomb"]);
    // The host still forks.
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    w.clean_up();
}

#[tokio::test]
async fn capability_sets_are_dockers() {
    if !need_root() {
        return;
    }
    let w = world().await;
    assert_eq!(
        caps(&w, &[]),
        expect_caps(DEFAULT_CAPS, DEFAULT_CAPS, "1"),
        "defaults"
    );
    // A non-root user keeps the bounding set, and nothing else (no ambient capabilities).
    assert_eq!(
        caps(&w, &["-u", "1000"]),
        expect_caps("0000000000000000", DEFAULT_CAPS, "1")
    );
    assert_eq!(
        caps(&w, &["--cap-drop", "ALL"]),
        expect_caps("0000000000000000", "0000000000000000", "1")
    );
    // NET_ADMIN is bit 12.
    assert_eq!(
        caps(&w, &["--cap-add", "NET_ADMIN"]),
        expect_caps("00000000a80435fb", "00000000a80435fb", "1")
    );
    // CHOWN is bit 0; names are case-insensitive and may carry CAP_.
    assert_eq!(
        caps(&w, &["--cap-drop", "cap_chown"]),
        expect_caps("00000000a80425fa", "00000000a80425fa", "1")
    );
    assert_eq!(
        caps(&w, &["--cap-drop", "ALL", "--cap-add", "CHOWN"]),
        expect_caps("0000000000000001", "0000000000000001", "1")
    );
    assert_eq!(
        caps(&w, &["--security-opt", "no-new-privileges=false"]),
        expect_caps(DEFAULT_CAPS, DEFAULT_CAPS, "0")
    );
    // Privileged: everything this host's bounding set has.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_bnd = status_fields(&host, &["CapBnd"])[0].1.clone();
    assert_eq!(
        caps(&w, &["--privileged"]),
        expect_caps(&host_bnd, &host_bnd, "1")
    );
    // Unknown capabilities are refused before anything runs.
    let out = w.sh(&["--cap-add", "NOPE"], "true");
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("NOPE"), "{}", stderr(&out));
    w.clean_up();
}

/// Masked paths that exist on this host (the container's /proc and /sys show the host's
/// kernel): files must read empty, directories must be empty.
fn existing(paths: &[&'static str]) -> Vec<&'static str> {
    paths
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect()
}

const MASKED: [&str; 12] = [
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

const READ_ONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

#[tokio::test]
async fn masked_and_read_only_paths() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let masked = existing(&MASKED);
    assert!(!masked.is_empty());
    // Each masked path prints "<path> <bytes or entries>".
    let mut script = String::new();
    for p in &masked {
        script.push_str(&format!(
            "if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); else echo {p} $(cat {p} | wc -c); fi; "
        ));
    }
    let out = w.sh_ok(&[], &script);
    let expected: String = masked.iter().map(|p| format!("{p} 0\n")).collect();
    assert_eq!(out, expected);
    // Masked files are the container's /dev/null (its tmpfs), not the host's devtmpfs,
    // whose size would tell the host's memory.
    let mounts = w.sh_ok(&[], "cat /proc/self/mounts");
    assert!(
        !mounts.lines().any(|l| l.starts_with("devtmpfs")),
        "{mounts}"
    );

    // Read-only paths are read-only mounts; a write to a (namespaced, so harmless) sysctl
    // fails.
    let read_only = existing(&READ_ONLY);
    let mountinfo = w.sh_ok(&[], "cat /proc/self/mountinfo");
    for p in &read_only {
        let line = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(p))
            .unwrap_or_else(|| panic!("{p} is not a mount:\n{mountinfo}"));
        let opts = line.split(' ').nth(5).unwrap_or_default();
        assert!(opts.split(',').any(|o| o == "ro"), "{line}");
    }
    let out = w.sh(&[], "echo isodomain > /proc/sys/kernel/domainname");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Read-only file system"),
        "{}",
        stderr(&out)
    );
    // /sys is read-only.
    let out = w.sh(&[], "touch /sys/kernel/berth-test");
    assert_ne!(out.status.code(), Some(0));

    // --privileged lifts both, as Docker does (reading only: nothing is written).
    let mountinfo = w.sh_ok(&["--privileged"], "cat /proc/self/mountinfo");
    for p in masked.iter().chain(&read_only) {
        assert!(
            !mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(p)),
            "{p} is still covered under --privileged:\n{mountinfo}"
        );
    }

    // --read-only: the root refuses writes, and so does /tmp (no tmpfs unless asked, as
    // Docker); /dev, /dev/shm and the bound /etc files stay writable.
    let out = w.sh_ok(
        &["--read-only"],
        "for f in /etc/x /tmp/x /newfile /dev/x /dev/shm/x /etc/hostname; do \
           if echo x >> $f 2>/dev/null; then echo $f rw; else echo $f ro; fi; done",
    );
    assert_eq!(
        out,
        "/etc/x ro\n/tmp/x ro\n/newfile ro\n/dev/x rw\n/dev/shm/x rw\n/etc/hostname rw\n"
    );
    // Without it, the root is writable.
    assert_eq!(
        w.sh_ok(&[], "echo x > /tmp/x && echo x > /newfile && echo ok"),
        "ok\n"
    );
    w.clean_up();
}

#[tokio::test]
async fn devices_network_and_cgroups_are_the_containers_own() {
    if !need_root() {
        return;
    }
    let w = world().await;
    // Docker's device set, and no block device; a device node made with CAP_MKNOD cannot
    // be opened (the device cgroup allows only the default devices).
    assert_eq!(
        w.sh_ok(&[], "find /dev -type c -o -type b | sort"),
        "/dev/full\n/dev/null\n/dev/pts/ptmx\n/dev/random\n/dev/tty\n/dev/urandom\n/dev/zero\n"
    );
    let out = w.sh(&[], "mknod /tmp/disk b 8 0 && head -c 1 /tmp/disk");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
    let out = w.sh(&[], "mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem");
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(
        w.sh_ok(
            &[],
            "head -c 5 /dev/zero | wc -c; head -c 5 /dev/urandom | wc -c"
        ),
        "5\n5\n"
    );

    // The network namespace has a loopback interface only.
    assert_eq!(w.sh_ok(&[], "ls /sys/class/net"), "lo\n");

    // The cgroup namespace: the container's cgroup is its root, and the limits read there
    // are its own (the default pids limit, the memory limit).
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    let (pids, memory) = if v1 {
        ("pids/pids.max", "memory/memory.limit_in_bytes")
    } else {
        ("pids.max", "memory.max")
    };
    let out = w.sh_ok(
        &["-m", "64m"],
        &format!(
            "cut -d: -f3 /proc/self/cgroup | sort -u; cd /sys/fs/cgroup; cat {pids} {memory}; \
             find . -maxdepth 2 -name berth | wc -l"
        ),
    );
    assert_eq!(out, format!("/\n4096\n{}\n0\n", 64 << 20));
    // The host name is the container's own: changing it (with the capability that
    // allows it) leaves the host's alone.
    let before = nix::unistd::gethostname().unwrap();
    assert_eq!(
        w.sh_ok(
            &["--hostname", "elsewhere", "--cap-add", "SYS_ADMIN"],
            "hostname other; hostname"
        ),
        "other\n"
    );
    assert_eq!(nix::unistd::gethostname().unwrap(), before);
    w.clean_up();
}

/// A host directory for a test's canaries, and its state to compare after the test.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("berth-canary")
            .tempdir()
            .unwrap();
        for f in ["file", "file2", "file3"] {
            std::fs::write(dir.path().join(f), format!("canary {f}\n")).unwrap();
        }
        Canary { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn join(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Asserts the directory holds exactly the three files, unchanged, and no mount.
    fn assert_untouched(&self, what: &str) {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["file", "file2", "file3"], "{what}");
        for f in ["file", "file2", "file3"] {
            let meta = std::fs::symlink_metadata(self.path().join(f)).unwrap();
            assert!(meta.is_file(), "{what}: {f} changed type");
            assert_eq!(
                std::fs::read_to_string(self.path().join(f)).unwrap(),
                format!("canary {f}\n"),
                "{what}: {f} was written to"
            );
        }
        let mounts = leftovers::mounts_under(&[self.path()]);
        assert!(mounts.is_empty(), "{what}: mounts on the host: {mounts:?}");
    }
}

/// Script a hostile image runs: writes through every path it subverted.
const WRITE_THROUGH: &str = "echo pwned > /dev/null; echo pwned >> /etc/hostname; \
    echo pwned >> /etc/hosts; echo pwned >> /etc/resolv.conf; \
    [ -c /dev/null ] && echo null-is-a-device; cat /etc/marker";

#[tokio::test]
async fn symlinks_in_the_image_do_not_redirect_mounts_to_the_host() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let canary = Canary::new();
    let abs = |f: &str| canary.join(f);
    // A relative link that climbs far enough to leave any rootfs.
    let rel = format!("../../../../../../../../..{}", canary.join("file2"));

    // /dev/null and the bound /etc files as links to host files: the container's own
    // /dev/null is a device, its /etc files are its own, the host's are untouched.
    let (null, hostname, hosts) = (abs("file"), abs("file3"), abs("file"));
    w.import(
        &rootfs_with_links(
            &[
                ("dev/null", &null),
                ("etc/hostname", &hostname),
                ("etc/hosts", &hosts),
                ("etc/resolv.conf", &rel),
            ],
            &["tmp"],
        ),
        "hostile-files:latest",
        &BUSYBOX_ENTRYPOINT,
    );
    let out = w.ctl(&[
        "run",
        "--rm",
        "hostile-files:latest",
        "sh",
        "-c",
        WRITE_THROUGH,
    ]);
    canary.assert_untouched("dev/null and /etc files as symlinks");
    if out.status.success() {
        assert_eq!(stdout(&out), "null-is-a-device\nin-image\n");
    } else {
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    }

    // Whole mount points as links to a host directory: refused, or mounted inside.
    for (link, tag) in [
        ("dev", "hostile-dev:latest"),
        ("proc", "hostile-proc:latest"),
        ("sys", "hostile-sys:latest"),
        ("dev/shm", "hostile-shm:latest"),
        ("dev/pts", "hostile-pts:latest"),
    ] {
        let target = canary.path().display().to_string();
        w.import(
            &rootfs_with_links(&[(link, &target)], &["tmp"]),
            tag,
            &BUSYBOX_ENTRYPOINT,
        );
        let out = w.ctl(&[
            "run",
            "--rm",
            tag,
            "sh",
            "-c",
            "echo pwned > /dev/null; touch /dev/shm/pwned /proc/pwned /sys/pwned; \
             [ -c /dev/null ] && [ -e /proc/self/status ] && echo ok",
        ]);
        canary.assert_untouched(&format!("/{link} as a symlink"));
        if !out.status.success() {
            assert_eq!(out.status.code(), Some(125), "/{link}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(&format!("/{link}")),
                "/{link}: {}",
                stderr(&out)
            );
        } else {
            assert_eq!(stdout(&out), "ok\n", "/{link}: {}", stderr(&out));
        }
    }

    // A working directory through an absolute link is created inside the rootfs.
    w.import(
        &rootfs_with_links(&[("work", &canary.path().display().to_string())], &["tmp"]),
        "hostile-wd:latest",
        &BUSYBOX_ENTRYPOINT,
    );
    let out = w.ctl(&[
        "run",
        "--rm",
        "-w",
        "/work/sub",
        "hostile-wd:latest",
        "sh",
        "-c",
        "touch pwned; pwd",
    ]);
    canary.assert_untouched("-w through a symlink");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The link is followed inside the rootfs, where the directory is created.
    assert_eq!(stdout(&out), format!("{}/sub\n", canary.path().display()));

    // An /etc/passwd linking to a host file is not read through the link.
    let passwd = canary.path().join("passwd");
    std::fs::write(&passwd, "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
    let mut files = base_files();
    files.retain(|f| f.path != "etc/passwd");
    let passwd_link = passwd.display().to_string();
    let rootfs = with_dirs_and_links(&layer_tar(&files), &[], &[("etc/passwd", &passwd_link)]);
    w.import(&rootfs, "hostile-passwd:latest", &BUSYBOX_ENTRYPOINT);
    let out = w.ctl(&[
        "run",
        "--rm",
        "-u",
        "hostonly",
        "hostile-passwd:latest",
        "id",
        "-u",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("unable to find user hostonly"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&passwd).unwrap();
    canary.assert_untouched("an /etc/passwd symlink");
    w.clean_up();
}

#[tokio::test]
async fn a_workdir_in_proc_self_fd_does_not_escape() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let canary = Canary::new();
    // Were the working directory a leaked host directory, these would land on the host.
    let script = format!(
        "touch escaped; cat ../../../../../../../../..{}; \
         touch ../../../../../../../../..{}",
        canary.join("file"),
        canary.join("escaped")
    );
    let check = |out: &Output, what: &str| {
        canary.assert_untouched(what);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            (125..=127).contains(&code),
            "{what}: exit {code}, stdout {:?}, stderr {:?}",
            stdout(out),
            stderr(out)
        );
        assert!(stderr(out).contains("/proc/self/fd"), "{}", stderr(out));
        assert!(!stdout(out).contains("canary"), "{what}: {}", stdout(out));
    };
    for fd in 3..=12 {
        let wd = format!("/proc/self/fd/{fd}");
        let out = w.sh(&["-w", &wd], &script);
        check(&out, &format!("-w {wd}"));
        let tag = format!("iso-fdwd{fd}:latest");
        w.import(
            &rootfs_with_links(&[], &["tmp"]),
            &tag,
            &busybox_changes(&[&format!("WORKDIR {wd}")]),
        );
        let out = w.ctl(&["run", "--rm", &tag, "sh", "-c", &script]);
        check(&out, &format!("WORKDIR {wd}"));
    }
    // Links in the image to magic links: refused, never followed.
    w.import(
        &rootfs_with_links(
            &[
                ("wd3", "/proc/self/fd/3"),
                ("wd5", "/proc/self/fd/5"),
                ("root1", "/proc/1/root"),
                ("cwd", "/proc/self/cwd"),
                ("fds", "../proc/self/fd"),
            ],
            &["tmp"],
        ),
        "iso-fdlinks:latest",
        &BUSYBOX_ENTRYPOINT,
    );
    for wd in [
        "/wd3",
        "/wd3/sub",
        "/wd5",
        "/root1",
        "/root1/tmp",
        "/cwd",
        "/fds/4",
    ] {
        let out = w.ctl(&[
            "run",
            "--rm",
            "-w",
            wd,
            "iso-fdlinks:latest",
            "sh",
            "-c",
            &script,
        ]);
        canary.assert_untouched(&format!("-w {wd} through a link"));
        let code = out.status.code().unwrap_or(-1);
        assert!(
            (125..=127).contains(&code),
            "-w {wd}: exit {code}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    // /proc/1/cwd (the container's own init, once started) is no way out either.
    let out = w.sh(&["-w", "/proc/1/cwd"], &script);
    canary.assert_untouched("-w /proc/1/cwd");
    assert!(!stdout(&out).contains("canary"), "{}", stdout(&out));
    w.clean_up();
}

#[tokio::test]
async fn only_stdio_is_open_inside() {
    if !need_root() {
        return;
    }
    let w = world().await;
    // pid 1's descriptors, listed by a child (`; true` keeps sh from exec'ing ls).
    assert_eq!(w.sh_ok(&[], "ls /proc/1/fd; true"), "0\n1\n2\n");
    // The process's own: 0-2 and the directory ls reads.
    assert_eq!(
        w.ctl(&["run", "--rm", IMG, "ls", "/proc/self/fd"]).stdout,
        b"0\n1\n2\n3\n"
    );

    // A detached container's init, seen from the host.
    let id = w.run_detached(&["--name", "fds", IMG, "sleep", "1000"]);
    let pid = w.inspect(&id)["State"]["Pid"].as_i64().unwrap();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        status_fields(&status, &["Cap", "NoNewPrivs"]),
        expect_caps(DEFAULT_CAPS, DEFAULT_CAPS, "1")
    );
    // It is in its own namespaces and its container's cgroup.
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup"] {
        let inner = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let outer = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(inner, outer, "{ns} namespace shared with the host");
    }
    let pids_cg = leftovers::cgroup_dir("pids", &id).unwrap();
    let procs = std::fs::read_to_string(pids_cg.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "{procs} in {}",
        pids_cg.display()
    );
    w.clean_up();
}

#[tokio::test]
async fn a_killed_shim_is_cleaned_up_and_its_name_reused() {
    if !need_root() {
        return;
    }
    let w = world().await;
    let id = w.run_detached(&["--name", "shimless", IMG, "sleep", "1000"]);
    let pid = w.inspect(&id)["State"]["Pid"].as_i64().unwrap() as i32;
    assert!(alive(pid));
    assert!(!leftovers::cgroups_of(&id).is_empty());

    kill(Pid::from_raw(w.shim_pid(&id)), Signal::SIGKILL).unwrap();
    wait_until(
        "the container marked exited",
        Duration::from_secs(10),
        || w.inspect("shimless")["State"]["Status"] == "exited",
    );
    let state = &w.inspect("shimless")["State"];
    assert_eq!(state["ExitCode"], 255);
    assert_eq!(state["Running"], false);
    assert_eq!(state["Pid"], 0);
    // Cleaned before anyone removes it: no process, cgroup or mount.
    assert!(!alive(pid), "the container's process outlived its shim");
    let cgroups = leftovers::cgroups_of(&id);
    assert!(cgroups.is_empty(), "{cgroups:?}");
    let mounts = leftovers::mounts_under(&[&w.container_dir(&id)]);
    assert!(mounts.is_empty(), "{mounts:?}");
    let e = w.engine();
    let holders = leftovers::processes_mounting(&[e.root.path(), e.state.path()]);
    assert!(
        holders.is_empty(),
        "processes still mount the rootfs: {holders:?}"
    );
    let ps = w.ok(&["ps", "-a", "--filter", "name=shimless"]);
    assert!(ps.contains("Exited (255)"), "{ps}");

    // The name is reusable once the dead container is removed; it can also start again.
    w.ok(&["start", "shimless"]);
    assert_eq!(w.inspect("shimless")["State"]["Status"], "running");
    w.ok(&["rm", "-f", "shimless"]);
    assert_eq!(
        w.ok(&["run", "--rm", "--name", "shimless", IMG, "echo", "again"]),
        "again\n"
    );

    // Whoever waits on a container whose shim dies is told, with 255: an attached run,
    // `wait`, `logs -f`, and a `stop` waiting out its timeout.
    let spawn = |args: &[&str]| {
        w.engine()
            .ctl_command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let run = spawn(&[
        "run",
        "--name",
        "attached",
        IMG,
        "sh",
        "-c",
        "trap '' TERM; echo up; while true; do sleep 0.1; done",
    ]);
    wait_until("the attached container", Duration::from_secs(10), || {
        w.ctl(&["logs", "attached"]).stdout == b"up\n"
    });
    let id = w.inspect("attached")["Id"].as_str().unwrap().to_string();
    w.remember(&id);
    let waiter = spawn(&["wait", "attached"]);
    let follower = spawn(&["logs", "-f", "attached"]);
    let stopper = spawn(&["stop", "-t", "30", "attached"]);
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    kill(Pid::from_raw(w.shim_pid(&id)), Signal::SIGKILL).unwrap();
    let mut outputs = Vec::new();
    for (what, mut child) in [
        ("run", run),
        ("wait", waiter),
        ("logs -f", follower),
        ("stop", stopper),
    ] {
        wait_until(what, Duration::from_secs(15), || {
            child.try_wait().unwrap().is_some()
        });
        outputs.push((what, child.wait_with_output().unwrap()));
    }
    assert!(killed.elapsed() < Duration::from_secs(15));
    let [(_, run), (_, waited), (_, followed), (_, stopped)] = &outputs[..] else {
        unreachable!()
    };
    assert_eq!(run.status.code(), Some(255), "{}", stderr(run));
    assert_eq!(stdout(run), "up\n");
    assert_eq!(stdout(waited), "255\n", "{}", stderr(waited));
    assert!(followed.status.success(), "{}", stderr(followed));
    assert_eq!(stdout(followed), "up\n");
    assert!(stopped.status.success(), "{}", stderr(stopped));
    assert_eq!(w.inspect("attached")["State"]["ExitCode"], 255);

    // A --rm container whose shim dies is removed, and its name is free at once.
    let id = w.run_detached(&["--rm", "--name", "ephemeral", IMG, "sleep", "1000"]);
    kill(Pid::from_raw(w.shim_pid(&id)), Signal::SIGKILL).unwrap();
    wait_until(
        "the --rm container removed",
        Duration::from_secs(10),
        || !w.all_ids().contains(&id),
    );
    assert_eq!(
        w.ok(&["run", "--rm", "--name", "ephemeral", IMG, "echo", "free"]),
        "free\n"
    );
    w.clean_up();
}

/// Lines of a container's json-file log on disk (readable while the engine is down).
fn log_lines(w: &World, id: &str) -> usize {
    let path = w
        .engine()
        .root
        .path()
        .join("containers")
        .join(id)
        .join("container.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn containers_outlive_an_engine_kill_and_dead_shims_are_found_at_restart() {
    if !need_root() {
        return;
    }
    let mut w = world().await;
    let ticker = w.run_detached(&[
        "--name",
        "ticker",
        IMG,
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done",
    ]);
    let orphan = w.run_detached(&["--name", "orphan", IMG, "sleep", "1000"]);
    // These end while the engine is down; their exits are collected at restart.
    w.run_detached(&[
        "--name",
        "ends",
        IMG,
        "sh",
        "-c",
        "sleep 1; echo done; exit 3",
    ]);
    w.run_detached(&[
        "--name",
        "ooms",
        "-m",
        "32m",
        IMG,
        "sh",
        "-c",
        "sleep 1; exec tail /dev/zero",
    ]);
    let ticker_pid = w.inspect("ticker")["State"]["Pid"].as_i64().unwrap() as i32;
    let orphan_pid = w.inspect("orphan")["State"]["Pid"].as_i64().unwrap() as i32;
    wait_until("output", Duration::from_secs(10), || {
        log_lines(&w, &ticker) > 2
    });

    w.kill_engine().await;
    // While the engine is down: the containers run, logging goes on; one shim dies.
    kill(Pid::from_raw(w.shim_pid(&orphan)), Signal::SIGKILL).unwrap();
    let before = log_lines(&w, &ticker);
    wait_until(
        "logs to grow without the engine",
        Duration::from_secs(10),
        || log_lines(&w, &ticker) > before + 3,
    );
    assert!(alive(ticker_pid));
    // The two that end have ended: their shims persisted the exits.
    wait_until("the exits persisted", Duration::from_secs(10), || {
        w.seen_ids()
            .iter()
            .filter(|id| w.container_dir(id).join("exit.json").exists())
            .count()
            == 2
    });

    w.restart_engine().await;
    let ps = w.ok(&["ps", "-a"]);
    let ps_json = w.ok(&["ps", "-a", "--format", "json"]);
    let states: Vec<(String, String)> = ps_json
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["Names"].as_str().unwrap_or_default().to_string(),
                v["State"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("ticker".into(), "running".into())),
        "{ps}\n{ps_json}"
    );
    assert!(
        states.contains(&("orphan".into(), "exited".into())),
        "{ps}\n{ps_json}"
    );
    assert_eq!(w.inspect("orphan")["State"]["ExitCode"], 255);
    let ends = &w.inspect("ends")["State"];
    assert_eq!(
        (&ends["Status"], &ends["ExitCode"], &ends["OOMKilled"]),
        (&Value::from("exited"), &Value::from(3), &Value::from(false)),
        "{ends}"
    );
    assert!(ends["FinishedAt"].as_str().unwrap() > ends["StartedAt"].as_str().unwrap());
    assert_eq!(w.ok(&["logs", "ends"]), "done\n");
    let ooms = &w.inspect("ooms")["State"];
    assert_eq!(
        (&ooms["Status"], &ooms["ExitCode"], &ooms["OOMKilled"]),
        (
            &Value::from("exited"),
            &Value::from(137),
            &Value::from(true)
        ),
        "{ooms}"
    );
    assert_eq!(w.inspect("ticker")["State"]["Pid"], ticker_pid);
    // The dead shim's container is gone from the host.
    assert!(!alive(orphan_pid));
    assert!(leftovers::cgroups_of(&orphan).is_empty());
    assert!(leftovers::mounts_under(&[&w.container_dir(&orphan)]).is_empty());

    // `logs -f` follows what the container writes now, and ends when it stops.
    let mut follow = w
        .engine()
        .ctl_command(&["logs", "-f", "--tail", "1", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = BufReader::new(follow.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let n = |l: &str| l.strip_prefix("tick").and_then(|n| n.parse::<u64>().ok());
    let start = n(&first).unwrap_or_else(|| panic!("{first}"));
    let mut last = start;
    while last < start + 5 {
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        last = n(&line).unwrap_or_else(|| panic!("{line}"));
    }
    assert_eq!(w.ok(&["stop", "ticker"]), "ticker\n");
    wait_until("logs -f to end", Duration::from_secs(10), || {
        follow.try_wait().unwrap().is_some()
    });
    assert!(follow.wait().unwrap().success());
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye"), "{rest:?}");
    assert_eq!(w.inspect("ticker")["State"]["ExitCode"], 0);

    // Both names are reusable once removed.
    w.ok(&["rm", "ticker", "orphan", "ends", "ooms"]);
    w.ok(&["run", "--rm", "--name", "orphan", IMG, "true"]);
    w.clean_up();
}
