//! What a container may leave on the host after it is gone — mounts, cgroups, shim
//! processes — found the way the shim finds them (mountinfo, the host's cgroup layout), so
//! that every container test can assert that nothing of its containers survives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{alive, wait_until};

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points in this process's mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Mount points at or below any of `dirs`.
pub fn mounts_under(dirs: &[&Path]) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|m| dirs.iter().any(|d| m.starts_with(d)))
        .collect()
}

/// Mount points of every cgroup hierarchy on the host: the cgroup2 root on a unified host;
/// on v1 (and hybrid) every v1 hierarchy mounted at its root, plus the controller-less
/// cgroup2 of a hybrid host (the shim creates nothing there, but a leftover would show).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false);
    if unified {
        return vec![PathBuf::from("/sys/fs/cgroup")];
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let fstype = post.split(' ').next().unwrap_or_default();
        // A bind of a sub-directory of a hierarchy is not where its root is.
        if pre.len() < 5 || pre[3] != "/" || !matches!(fstype, "cgroup" | "cgroup2") {
            continue;
        }
        let mp = PathBuf::from(unescape(pre[4]));
        if !out.contains(&mp) {
            out.push(mp);
        }
    }
    out
}

/// The cgroup directories of container `id` that exist, in every hierarchy.
pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join("berth").join(id))
        .filter(|d| d.exists())
        .collect()
}

/// The container's cgroup directory in the hierarchy carrying `controller` (v1), or its
/// cgroup2 directory on a unified host.
pub fn cgroup_dir(controller: &str, id: &str) -> Option<PathBuf> {
    let roots = cgroup_roots();
    if roots.len() == 1 && roots[0] == Path::new("/sys/fs/cgroup") {
        return Some(roots[0].join("berth").join(id));
    }
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let carries = post.first() == Some(&"cgroup")
            && post
                .get(2)
                .is_some_and(|o| o.split(',').any(|c| c == controller));
        (carries && pre.len() > 4 && pre[3] == "/")
            .then(|| PathBuf::from(unescape(pre[4])).join("berth").join(id))
    })
}

/// Pids of living `berth-shim` processes whose command line names a path under `state`.
pub fn shims_of(state: &Path) -> Vec<i32> {
    let needle = state.display().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains("berth-shim") && cmdline.contains(&needle) && alive(*pid)
        })
        .collect()
}

/// Pids of processes whose mount namespace has a mount naming a path under any of `dirs`
/// (as mount point, source or option, e.g. an overlay's `lowerdir`): a container's
/// namespace kept alive by a leftover process, seen from any mount namespace.
pub fn processes_mounting(dirs: &[&Path]) -> Vec<i32> {
    let needles: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let Ok(proc_dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    proc_dir
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            let text =
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
            alive(*pid) && needles.iter().any(|n| text.contains(n.as_str()))
        })
        .collect()
}

/// Asserts that nothing of the containers `ids` of the engine on `root`/`state` is left on
/// the host: no shim process (waited for a little: a shim exits after its container), no
/// mount under either directory in this mount namespace nor any process whose mounts name
/// them, no cgroup directory in any hierarchy, no directory of theirs under
/// `<root>/containers` or `<state>/containers`.
pub fn assert_nothing_left(root: &Path, state: &Path, ids: &[String]) {
    wait_until("the shims to exit", Duration::from_secs(10), || {
        shims_of(state).is_empty()
    });
    let mounts = mounts_under(&[root, state]);
    assert!(
        mounts.is_empty(),
        "mounts left under the engine's directories: {mounts:?}"
    );
    wait_until(
        "processes with mounts of the engine's directories to exit",
        Duration::from_secs(10),
        || processes_mounting(&[root, state]).is_empty(),
    );
    for id in ids {
        for dir in [
            root.join("containers").join(id),
            state.join("containers").join(id),
        ] {
            assert!(!dir.exists(), "{} left behind", dir.display());
        }
        let left = cgroups_of(id);
        assert!(left.is_empty(), "cgroups of {id} left behind: {left:?}");
    }
}

/// For a test that failed: SIGTERMs the shims of the engine on `state` (a shim kills and
/// removes its container before it exits) and waits a while for them, so that no container
/// of a failed test outlives it. Asks nothing of the engine, which may be what failed.
pub fn stop_shims(state: &Path) {
    let shims = shims_of(state);
    for pid in &shims {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while shims.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For a test that failed: removes what its containers may have left, without the engine
/// (which may be what failed). The shims get SIGTERM first (a shim kills and removes its
/// container before it exits); then whatever is still in the containers' cgroups is
/// SIGKILLed, the cgroups removed, and mounts under the engine's directories detached.
/// Everything touched here was created by the test's own engine.
pub fn scrub(root: &Path, state: &Path, ids: &[String]) {
    stop_shims(state);
    for id in ids {
        for dir in cgroups_of(id) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<PathBuf> = cgroups_of(id)
                .into_iter()
                .filter(|d| std::fs::remove_dir(d).is_err())
                .collect();
            if left.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut mounts = mounts_under(&[root, state]);
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for m in mounts {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}
